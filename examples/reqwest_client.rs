//! A reqwest client with one circuit breaker and one bulkhead per upstream
//! host, calling a healthy server and a failing one.
//!
//! Run it with `cargo run --example reqwest_client`. Two axum servers
//! listen on loopback: `healthy` answers 200, `failing` answers 500. The
//! same `reqwest::Client` (a `tower::Service<reqwest::Request>`) calls both
//! through [`PerAuthorityLayer`], which takes each host's breaker and
//! bulkhead from a registry. The failing host's breaker opens after a few
//! calls and its later calls are refused before they are sent; the healthy
//! host's breaker stays closed. The example prints every call and the
//! registry's breakers, and exits with an error if that is not what
//! happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use portcullis::breaker::{BreakerConfig, State};
use portcullis::client::PerAuthorityLayer;
use portcullis::core::{BoxError, HttpClassifier};
use portcullis::registry::Registry;
use tower::{ServiceBuilder, ServiceExt};

/// What happened, for `main` to print and the tests to check.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// Calls that got a 200 from the healthy host.
    pub(crate) healthy_ok: u64,
    /// Calls that got a 500 from the failing host.
    pub(crate) failing_errors: u64,
    /// Calls to the failing host refused by its open breaker.
    pub(crate) failing_rejected: u64,
    /// Requests each server received: healthy, failing.
    pub(crate) received: (u64, u64),
    /// The breakers' keys and states, as the registry lists them.
    pub(crate) breakers: Vec<(String, State)>,
}

const ROUNDS: usize = 8;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let summary = run().await?;
    println!(
        "healthy: {} ok; failing: {} errors, {} refused by its breaker",
        summary.healthy_ok, summary.failing_errors, summary.failing_rejected
    );
    println!(
        "the servers received {} (healthy) and {} (failing) requests",
        summary.received.0, summary.received.1
    );
    for (key, state) in &summary.breakers {
        println!("breaker upstream[{key}]: {state:?}");
    }
    check(&summary)
}

/// Serves both hosts and sends [`ROUNDS`] calls to each.
pub(crate) async fn run() -> Result<Summary, BoxError> {
    let healthy_hits = Arc::new(AtomicU64::new(0));
    let failing_hits = Arc::new(AtomicU64::new(0));
    let healthy = serve(healthy_hits.clone(), StatusCode::OK).await?;
    let failing = serve(failing_hits.clone(), StatusCode::INTERNAL_SERVER_ERROR).await?;

    // Every host's breaker opens when half of its last four calls failed,
    // and stays open for longer than the example runs.
    let registry = Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(50.0)
                .wait_in_open(Duration::from_secs(30))
                .build()?,
        )
        .build()?;

    // Loopback only: no proxy from the environment.
    let reqwest = reqwest::Client::builder().no_proxy().build()?;
    let client = ServiceBuilder::new()
        .layer(
            PerAuthorityLayer::new(registry.clone(), "upstream")
                .with_bulkheads()
                .classifier(HttpClassifier),
        )
        // reqwest answers `reqwest::Response`; the classifier reads `http::Response`.
        .map_response(http::Response::from)
        // The keyed layer reads `http::Request`s; reqwest sends its own.
        .filter(reqwest::Request::try_from)
        .service(reqwest);

    let mut summary = Summary::default();
    for round in 1..=ROUNDS {
        for (host, addr) in [("healthy", healthy), ("failing", failing)] {
            let request = http::Request::get(format!("http://{addr}/stock")).body(String::new())?;
            match client.clone().oneshot(request).await {
                Ok(response) => {
                    let status = response.status();
                    println!("round {round} {host:>7}: {status}");
                    match (host, status.is_success()) {
                        ("healthy", true) => summary.healthy_ok += 1,
                        ("failing", false) => summary.failing_errors += 1,
                        _ => return Err(format!("{host} answered {status}").into()),
                    }
                }
                Err(error) => {
                    println!("round {round} {host:>7}: refused: {error}");
                    let refused = portcullis::ErrorKind::of(error.as_ref()).never_sent();
                    if host != "failing" || !refused {
                        return Err(error);
                    }
                    summary.failing_rejected += 1;
                }
            }
        }
    }
    summary.received = (
        healthy_hits.load(Ordering::SeqCst),
        failing_hits.load(Ordering::SeqCst),
    );
    summary.breakers = registry
        .breakers()
        .into_iter()
        .map(|b| (b.key.unwrap_or_default(), b.snapshot.state))
        .collect();
    // Sorted by key: the ports decide which host comes first.
    summary
        .breakers
        .sort_by_key(|(key, _)| *key != healthy.to_string());
    Ok(summary)
}

/// The breakers did their job: the failing host's opened after four
/// calls, the healthy host's stayed closed.
pub(crate) fn check(summary: &Summary) -> Result<(), BoxError> {
    let expected_states = [State::Closed, State::Open];
    let states: Vec<State> = summary.breakers.iter().map(|(_, s)| *s).collect();
    if summary.healthy_ok != ROUNDS as u64
        || summary.failing_errors != 4
        || summary.failing_rejected != ROUNDS as u64 - 4
        || summary.received != (ROUNDS as u64, 4)
        || states != expected_states
    {
        return Err(format!("unexpected outcome: {summary:?}").into());
    }
    Ok(())
}

/// An axum server on loopback answering `status` to every request and
/// counting them, until the runtime ends.
async fn serve(hits: Arc<AtomicU64>, status: StatusCode) -> Result<SocketAddr, BoxError> {
    let app: Router = Router::new()
        .route(
            "/stock",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async move { (status, "in stock") }
            }),
        )
        .with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
