//! A hyper-util client behind a total timeout, a retry that replays the
//! request body, a circuit breaker and a per-attempt timeout, posting to a
//! server that fails twice before it succeeds.
//!
//! Run it with `cargo run --example hyper_client`. An axum server on
//! loopback answers its first two requests with 503 and the third with
//! 201, and records the body of each. The client POSTs one order with an
//! `Idempotency-Key` (without one, a POST is sent once: the retry's
//! idempotency gate), and the retry sends the same body three times, from
//! what it kept of the first attempt's stream. The example prints each
//! attempt as the server saw it, the breaker's figures and the retry's
//! counters, and exits with an error if the body was not replayed intact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::ServiceBuilderExt;
use portcullis::breaker::{Breaker, BreakerSnapshot, CircuitBreakerLayer};
use portcullis::core::{BoxError, HttpClassifier};
use portcullis::retry::{
    ConstantBackoff, NoJitter, ReplayBody, RetryConfig, RetryLayer, RetryMetrics,
};
use tower::{ServiceBuilder, ServiceExt};

const ORDER: &str = r#"{"sku": 42, "quantity": 3}"#;

/// What happened, for `main` to print and the tests to check.
#[derive(Debug)]
pub(crate) struct Summary {
    /// The final status and body the client got.
    pub(crate) answer: (u16, String),
    /// The bodies the server received, one per attempt, and its answers.
    pub(crate) attempts: Vec<(String, u16)>,
    /// The breaker's figures after the call.
    pub(crate) breaker: BreakerSnapshot,
    /// The retry's counters after the call.
    pub(crate) retry: RetryMetrics,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let summary = run().await?;
    for (n, (body, status)) in summary.attempts.iter().enumerate() {
        println!(
            "attempt {}: the server got {body} and answered {status}",
            n + 1
        );
    }
    println!("the client got {} {}", summary.answer.0, summary.answer.1);
    println!(
        "breaker 'orders': {:?}, {} calls, {} failed",
        summary.breaker.state, summary.breaker.buffered_calls, summary.breaker.failed_calls
    );
    println!(
        "retry 'orders': {} retries, {} call succeeded after retrying",
        summary.retry.retries, summary.retry.successful_with_retry
    );
    check(&summary)
}

/// Serves the flaky endpoint and posts one order to it.
pub(crate) async fn run() -> Result<Summary, BoxError> {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let addr = serve(attempts.clone()).await?;

    // The body type is the retry's: it keeps the first attempt's chunks to
    // send them again.
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let breaker = Breaker::new("orders");
    let retry = RetryLayer::http(
        "orders",
        RetryConfig::builder()
            .max_attempts(4)
            .backoff(ConstantBackoff::new(Duration::from_millis(20)))
            .jitter(NoJitter)
            .build()?,
    )?;
    // Outermost first: total timeout, retry, breaker (which sees every
    // attempt), per-attempt timeout, client.
    let service = ServiceBuilder::new()
        .timeout_after(Duration::from_secs(3))
        .retry_with(retry.clone())
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
        .timeout_after(Duration::from_millis(500))
        .service(client);

    let request = http::Request::post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .header("idempotency-key", "order-7")
        .body(Full::new(Bytes::from_static(ORDER.as_bytes())))?;
    let response = service.oneshot(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();

    let attempts = attempts.lock().expect("not poisoned").clone();
    Ok(Summary {
        answer: (status, String::from_utf8_lossy(&body).into_owned()),
        attempts,
        breaker: breaker.snapshot(),
        retry: retry.metrics(),
    })
}

/// Three attempts, the same body each time, and the breaker saw them all.
pub(crate) fn check(summary: &Summary) -> Result<(), BoxError> {
    let statuses: Vec<u16> = summary.attempts.iter().map(|(_, s)| *s).collect();
    let replayed = summary.attempts.iter().all(|(body, _)| body == ORDER);
    if summary.answer.0 != 201
        || statuses != [503, 503, 201]
        || !replayed
        || (summary.breaker.buffered_calls, summary.breaker.failed_calls) != (3, 2)
        || summary.retry.retries != 2
    {
        return Err(format!("unexpected outcome: {summary:?}").into());
    }
    Ok(())
}

/// An axum server on loopback whose `POST /orders` fails twice, then
/// accepts, recording each body.
async fn serve(attempts: Arc<Mutex<Vec<(String, u16)>>>) -> Result<std::net::SocketAddr, BoxError> {
    let app: Router = Router::new()
        .route(
            "/orders",
            post(move |body: String| async move {
                let mut attempts = attempts.lock().expect("not poisoned");
                let status = if attempts.len() < 2 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::CREATED
                };
                attempts.push((body, status.as_u16()));
                (status, format!("order {}", attempts.len()))
            }),
        )
        .with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
