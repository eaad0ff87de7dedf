//! A breaker shared by two axum routes, over loopback: when one route's
//! upstream fails, both routes are protected.
#![cfg(not(loom))]

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_breaker::{Breaker, BreakerConfig, BreakerOpen, CircuitBreakerLayer, State};
use portcullis_core::{BoxError, HttpClassifier};
use portcullis_testing as client;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

async fn rejection(error: BoxError) -> Response {
    match error.downcast_ref::<BreakerOpen>() {
        Some(open) => {
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            if let Some(wait) = open.retry_after() {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::test]
async fn a_breaker_shared_by_two_routes_trips_for_both() {
    let config = BreakerConfig::builder()
        .count_window(4)
        .minimum_calls(4)
        .wait_in_open(Duration::from_secs(30))
        .build()
        .unwrap();
    let shared = Breaker::from_config("upstream", config.clone()).unwrap();
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rejection))
        .layer(CircuitBreakerLayer::new(shared.clone()).classifier(HttpClassifier));
    let per_route = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rejection))
        .layer(
            CircuitBreakerLayer::per_service("own", config)
                .unwrap()
                .classifier(HttpClassifier),
        );

    let app = Router::new()
        .route(
            "/orders",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }).layer(stack.clone()),
        )
        .route("/stock", get(|| async { "in stock" }).layer(stack))
        .route(
            "/own",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }).layer(per_route),
        )
        // Give the router its state now: a handler's layers are applied then,
        // once. (Served without it, axum applies them per connection, and a
        // per-service breaker would live for one connection only.)
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(client::get(addr, "/stock").await.status, 200);
    for _ in 0..3 {
        assert_eq!(client::get(addr, "/orders").await.status, 500);
    }
    assert_eq!(shared.state(), State::Open, "3 of 4 calls failed");

    let response = client::get(addr, "/stock").await;
    assert_eq!(
        response.status, 503,
        "the healthy route shares the open breaker"
    );
    assert_eq!(response.header("retry-after"), Some("30"));
    assert_eq!(client::get(addr, "/orders").await.status, 503);

    // A per-route breaker is its own: it does not see the shared one.
    for _ in 0..4 {
        assert_eq!(client::get(addr, "/own").await.status, 500);
    }
    assert_eq!(
        client::get(addr, "/own").await.status,
        503,
        "and it trips on its own failures"
    );
    assert_eq!(shared.snapshot().not_permitted_calls, 2);
    server.abort();
}
