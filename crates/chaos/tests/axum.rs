//! Chaos in a real axum Router over loopback, switched at runtime.
#![cfg(all(not(loom), feature = "http"))]

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_chaos::{Chaos, ChaosConfig, ChaosError, ChaosLayer};
use portcullis_core::BoxError;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

async fn injected(error: BoxError) -> Response {
    match error.downcast_ref::<ChaosError>() {
        Some(fault) => (StatusCode::INTERNAL_SERVER_ERROR, fault.to_string()).into_response(),
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Sends `GET path`; returns the status, the chaos mark and the body.
async fn get_page(addr: std::net::SocketAddr, path: &str) -> (u16, bool, String) {
    let response = portcullis_testing::get(addr, path).await;
    let marked = response.header("x-portcullis-chaos") == Some("injected");
    (response.status, marked, response.body)
}

#[tokio::test]
async fn chaos_routes_switched_at_runtime() {
    let responses = Chaos::from_config(
        "responses",
        ChaosConfig::builder()
            .response_rate(1.0)
            .disabled()
            .build()
            .unwrap(),
    )
    .unwrap();
    let errors = Chaos::from_config(
        "errors",
        ChaosConfig::builder().error_rate(1.0).build().unwrap(),
    )
    .unwrap();

    let app = Router::new()
        .route(
            "/catalog",
            // No injected error: the route keeps the handler's Infallible.
            get(|| async { "catalog" }).layer(
                ChaosLayer::new(responses.clone())
                    .without_errors()
                    .respond_with_status(StatusCode::SERVICE_UNAVAILABLE),
            ),
        )
        .route(
            "/orders",
            get(|| async { "orders" }).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(injected))
                    .layer(ChaosLayer::new(errors.clone())),
            ),
        )
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(
        get_page(addr, "/catalog").await,
        (200, false, "catalog".into()),
        "off"
    );
    responses.enable();
    assert_eq!(
        get_page(addr, "/catalog").await,
        (503, true, String::new()),
        "on"
    );
    responses.disable();
    assert_eq!(get_page(addr, "/catalog").await.0, 200, "off again");

    assert_eq!(
        get_page(addr, "/orders").await,
        (500, false, "injected fault".into())
    );
    errors.set_error_rate(0.0).unwrap();
    assert_eq!(
        get_page(addr, "/orders").await,
        (200, false, "orders".into())
    );
    let stats = errors.stats();
    assert_eq!((stats.calls, stats.errors), (2, 1));
    assert_eq!(responses.stats().responses, 1);
    server.abort();
}
