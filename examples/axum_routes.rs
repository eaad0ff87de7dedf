//! Different resilience stacks per axum route: some from code (a preset
//! and `ServiceBuilderExt`), some from a config file (`routes.toml`),
//! with the registry's health, metrics and dashboard mounted at `/admin`.
//!
//! `cargo run --example axum_routes` serves on a free loopback port, sends
//! itself a few requests, prints what each route answered, reloads the
//! config file with a change, and exits (with an error if a route did not
//! behave as configured). `cargo run --example axum_routes -- --serve`
//! serves on 127.0.0.1:3000 until stopped; try `/checkout`, `/search`,
//! `/reports`, `/`, `/inventory`, and the dashboard at `/admin/`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use portcullis::ServiceBuilderExt;
use portcullis::config::Routes;
use portcullis::core::BoxError;
use portcullis::http::ErrorMappingLayer;
use portcullis::preset::standard_server_route;
use portcullis::registry::{Registry, RegistryService};
use portcullis_testing as client;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// The config file, compiled in so that the example runs from anywhere.
const ROUTES: &str = include_str!("routes.toml");

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().any(|arg| arg == "--serve");
    let registry = Registry::new();

    // From the config file: each route's stack, with its breaker and
    // bulkhead from the registry under the route's name.
    let routes = Routes::from_toml(ROUTES, registry.clone())?;

    // From code: the standard server route preset (rate limit, timeout,
    // breaker, bulkhead), its breaker registered to be served at /admin.
    let home = standard_server_route("home")
        .timeout(Duration::from_secs(1))
        .build()?;
    registry.breakers().register(home.breaker().clone())?;
    registry.bulkheads().register(home.bulkhead().clone())?;

    // From code: a bulkhead from the registry and a timeout, by hand.
    let inventory = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .bulkhead(registry.bulkheads().get("inventory"))
        .timeout_after(Duration::from_millis(500));

    let app = Router::new()
        .route("/", get(|| async { "home" }).route_layer(home))
        .route(
            "/inventory",
            get(|| async { "12 in stock" }).route_layer(inventory),
        )
        .route(
            "/checkout",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "payment provider down") })
                .route_layer(routes.route_layer("checkout")?),
        )
        .route(
            "/search",
            get(|| async { r#"{"results": ["tower", "axum"]}"# })
                .route_layer(routes.route_layer("search")?),
        )
        .route(
            "/reports",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "the report"
            })
            .route_layer(routes.route_layer("reports")?),
        )
        .nest_service("/admin", RegistryService::new(registry.clone()))
        // Layers are applied once, now, rather than per connection.
        .with_state(());

    let address: SocketAddr = if serve {
        ([127, 0, 0, 1], 3000).into()
    } else {
        ([127, 0, 0, 1], 0).into()
    };
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    if serve {
        println!("serving on http://{address}/ (dashboard at http://{address}/admin/)");
        axum::serve(listener, app).await?;
        return Ok(());
    }
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut answers = Vec::new();
    let mut ask = async |path: &str| {
        let response = client::get(address, path).await;
        let note = response
            .header("x-portcullis-error")
            .map(|kind| format!(" ({kind})"))
            .or_else(|| {
                response
                    .header("x-portcullis-fallback")
                    .map(|_| " (fallback)".to_owned())
            })
            .unwrap_or_default();
        println!(
            "GET {path:<12} {}{note}  {}",
            response.status, response.body
        );
        answers.push((path.to_owned(), response.status));
        response.status
    };

    ask("/").await;
    ask("/inventory").await;
    for _ in 0..6 {
        ask("/checkout").await;
    }
    for _ in 0..6 {
        ask("/search").await;
    }
    ask("/reports").await;
    let health = client::get(address, "/admin/health").await;
    println!("GET /admin/health  {}  {}", health.status, health.body);

    // Reload with a lower failure threshold for payments: the live breaker
    // takes the new config and keeps its state (still open).
    let reload = routes.reload(&ROUTES.replace(
        "failure_rate_threshold = 50.0",
        "failure_rate_threshold = 40.0",
    ))?;
    println!(
        "reloaded: {} live breaker(s) reconfigured; checkout's breaker is {:?} at {}%",
        reload.breakers,
        registry.breakers().get("checkout").state(),
        registry
            .breakers()
            .get("checkout")
            .config()
            .failure_rate_threshold()
    );
    server.abort();

    // What each route should have answered.
    let statuses = |path: &str| -> Vec<u16> {
        answers
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, s)| *s)
            .collect()
    };
    let expected: [(&str, Vec<u16>); 5] = [
        ("/", vec![200]),
        ("/inventory", vec![200]),
        ("/checkout", vec![500, 500, 500, 500, 500, 503]),
        ("/search", vec![200; 6]),
        ("/reports", vec![504]),
    ];
    for (path, want) in expected {
        let got = statuses(path);
        if got != want {
            return Err(format!("{path} answered {got:?}, expected {want:?}").into());
        }
    }
    if reload.breakers != 1 {
        return Err("the reload did not reconfigure the checkout breaker".into());
    }
    println!("every route behaved as configured");
    Ok(())
}
