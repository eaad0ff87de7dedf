//! An axum route behind the HTTP timeout, over loopback: a handler that
//! never answers gets a 504 and the router keeps `Error = Infallible`.
#![cfg(not(loom))]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use portcullis_testing as client;
use portcullis_timeout::HttpTimeoutLayer;
use tokio::net::TcpListener;

#[tokio::test]
async fn a_handler_that_never_answers_gets_a_504() {
    let app = Router::new()
        .route("/hang", get(std::future::pending::<&'static str>))
        .route("/fast", get(|| async { "fast" }))
        .layer(HttpTimeoutLayer::new(Duration::from_millis(50)))
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(client::get(addr, "/fast").await.status, 200);
    assert_eq!(client::get(addr, "/hang").await.status, 504);
    server.abort();
}
