//! Over loopback: a hyper client behind the retry, talking to a real hyper
//! server that fails twice with 503; and the retry in an axum route.
#![cfg(all(not(loom), feature = "http"))]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_retry::{ConstantBackoff, NoJitter, ReplayBody, RetryConfig, RetryLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Each attempt's body and `content-length`, as the server received them.
type Received = Arc<Mutex<Vec<(Bytes, Option<String>)>>>;

fn config() -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .jitter(NoJitter)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_hyper_client_gets_its_body_through_on_the_third_attempt() {
    let bodies: Received = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = bodies.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let length = request
                            .headers()
                            .get("content-length")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let mut seen = seen.lock().await;
                        seen.push((body, length));
                        let status = if seen.len() <= 2 { 503 } else { 200 };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(format!("attempt {}", seen.len()))))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let layer = RetryLayer::http("upstream", config()).unwrap();
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(client);

    let payload: Bytes = (0..20_000)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let request = Request::put(format!("http://{addr}/objects/1"))
        .body(Full::new(payload.clone()))
        .unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(answer, "attempt 3");

    let bodies = bodies.lock().await;
    assert_eq!(bodies.len(), 3);
    for (attempt, (body, length)) in bodies.iter().enumerate() {
        assert_eq!(body, &payload, "attempt {} arrived intact", attempt + 1);
        assert_eq!(
            length.as_deref(),
            Some("20000"),
            "same framing on every attempt"
        );
    }
    let metrics = layer.metrics();
    assert_eq!((metrics.successful_with_retry, metrics.retries), (1, 2));
    server.abort();
}

/// Sends `PUT path` with `body` and returns the status and the response body.
async fn put(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "PUT {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn in_an_axum_route_a_flaky_handler_is_retried_with_its_request_body() {
    use axum::Router;
    use axum::body::Body;
    use axum::error_handling::HandleErrorLayer;
    use axum::routing::put as put_route;

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = move |body: String| {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if call < 2 {
                (StatusCode::SERVICE_UNAVAILABLE, String::new())
            } else {
                (StatusCode::OK, format!("stored {body}"))
            }
        }
    };
    let layer = RetryLayer::http("handler", config()).unwrap();
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(
            |error: portcullis_core::BoxError| async move {
                (StatusCode::BAD_GATEWAY, error.to_string())
            },
        ))
        .layer(layer.clone())
        .map_request(|request: Request<ReplayBody<Body>>| request.map(Body::new));
    let app = Router::new()
        .route("/items", put_route(handler).layer(stack))
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, body) = put(addr, "/items", "bolts=12").await;
    assert_eq!(status, 200);
    assert_eq!(
        body, "stored bolts=12",
        "the third attempt read the replayed body"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(layer.metrics().successful_with_retry, 1);
    server.abort();
}
