//! A bulkhead shared by two axum routes, over loopback: while one route's
//! slow call holds the only permit, both routes answer 503.
#![cfg(not(loom))]

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadLayer};
use portcullis_core::BoxError;
use portcullis_testing as client;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceBuilder;

async fn rejection(error: BoxError) -> Response {
    if error.is::<BulkheadFull>() {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    } else {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

#[tokio::test]
async fn a_full_bulkhead_answers_503_on_every_route_that_shares_it() {
    let config = BulkheadConfig::builder()
        .max_concurrent_calls(1)
        .build()
        .unwrap();
    let shared = Bulkhead::from_config("upstream", config).unwrap();
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rejection))
        .layer(BulkheadLayer::new(shared.clone()));

    // `/slow` tells the test when it is running and waits for a gate.
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(0));
    let slow = {
        let gate = gate.clone();
        move || async move {
            entered_tx.send(()).unwrap();
            gate.acquire().await.unwrap().forget();
            "slow"
        }
    };
    let app = Router::new()
        .route("/slow", get(slow).layer(stack.clone()))
        .route("/fast", get(|| async { "fast" }).layer(stack))
        // Give the router its state now: a handler's layers are applied then.
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(client::get(addr, "/fast").await.status, 200);
    assert_eq!(shared.in_flight(), 0);

    let first = tokio::spawn(client::get(addr, "/slow"));
    entered.recv().await.expect("the slow call is running");
    assert_eq!(shared.in_flight(), 1);
    assert_eq!(
        client::get(addr, "/fast").await.status,
        503,
        "the routes share the permit"
    );
    assert_eq!(client::get(addr, "/slow").await.status, 503);
    assert_eq!(shared.rejected(), 2);

    gate.add_permits(1);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        client::get(addr, "/fast").await.status,
        200,
        "the permit came back"
    );
    assert_eq!(shared.in_flight(), 0);
    server.abort();
}
