//! An axum route behind the HTTP timeout, over loopback: a handler that
//! never answers gets a 504 and the router keeps `Error = Infallible`.
#![cfg(not(loom))]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use portcullis_timeout::HttpTimeoutLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn status_of(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw[9..12].parse().unwrap()
}

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

    assert_eq!(status_of(addr, "/fast").await, 200);
    assert_eq!(status_of(addr, "/hang").await, 504);
    server.abort();
}
