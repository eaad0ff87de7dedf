//! End to end over loopback: an axum upstream whose 5 % slowest calls take
//! 200 ms, called through a hyper client with and without a hedge.
//!
//! With the hedge, the p99 latency falls to at most the hedge delay plus
//! the upstream's p95 (plus a margin for a loaded machine), the extra
//! attempts stay within the budget, and the upstream sees the losers
//! dropped: their connections close and their handlers are cancelled.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_hedge::{DelayConfig, HedgeConfig, HedgeLayer, RetryBudget};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const CALLS: usize = 200;
const DELAY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    finished: AtomicU64,
    dropped: AtomicU64,
}

/// Counts a handler dropped before it answered.
struct Guard(Arc<Counts>, bool);

impl Drop for Guard {
    fn drop(&mut self) {
        let counter = if self.1 {
            &self.0.finished
        } else {
            &self.0.dropped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

async fn handler(State(counts): State<Arc<Counts>>) -> &'static str {
    let n = counts.calls.fetch_add(1, Ordering::SeqCst);
    let mut guard = Guard(counts, false);
    // One call in 20 is slow.
    let wait = if n % 20 == 19 { 200 } else { 2 };
    tokio::time::sleep(Duration::from_millis(wait)).await;
    guard.1 = true;
    "ok"
}

async fn upstream() -> (String, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let router = Router::new()
        .route("/", get(handler))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}/"), counts)
}

/// The latencies of `CALLS` calls made one after the other, sorted.
async fn latencies<S, B>(service: &mut S, uri: &str) -> Vec<Duration>
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut latencies = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let request = http::Request::get(uri).body(Empty::new()).unwrap();
        let started = Instant::now();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        latencies.push(started.elapsed());
        assert_eq!(response.status(), 200);
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_cuts_the_tail_within_the_budget_and_cancels_the_losers() {
    // Without hedging: the upstream's own latencies.
    let (uri, counts) = upstream().await;
    let mut bare = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let base = latencies(&mut bare, &uri).await;
    let (base_p95, base_p99) = (percentile(&base, 0.95), percentile(&base, 0.99));
    assert!(
        base_p99 >= Duration::from_millis(200),
        "the slow tail: p99 {base_p99:?}"
    );
    assert_eq!(counts.calls.load(Ordering::SeqCst), CALLS as u64);

    // With a hedge after 20 ms, drawn from a budget of 10 % of the calls.
    let (uri, counts) = upstream().await;
    let budget = RetryBudget::new(0.1, 0, Duration::from_secs(60)).unwrap();
    let config = HedgeConfig::builder()
        .delay(DelayConfig::fixed(DELAY))
        .build()
        .unwrap();
    let layer = HedgeLayer::http("upstream", config)
        .unwrap()
        .with_budget(budget);
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut hedged = layer.layer(client);
    let with = latencies(&mut hedged, &uri).await;
    let p99 = percentile(&with, 0.99);
    // The margin covers a loaded machine: still well below the 200 ms tail.
    let bound = DELAY + base_p95 + Duration::from_millis(60);
    assert!(
        p99 <= bound,
        "p99 {p99:?} over {bound:?} (upstream p95 {base_p95:?})"
    );

    let metrics = layer.metrics();
    assert_eq!(metrics.calls, CALLS as u64);
    assert!(metrics.hedges >= 1, "the slow calls were hedged");
    assert!(
        metrics.hedges <= CALLS as u64 / 10,
        "{} hedges for {CALLS} calls: over the budget",
        metrics.hedges
    );
    // Every call the upstream saw is a call or a hedge.
    assert_eq!(
        counts.calls.load(Ordering::SeqCst),
        metrics.calls + metrics.hedges
    );

    // The losers' connections were closed: the upstream dropped their
    // handlers before they answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = counts.dropped.load(Ordering::SeqCst);
    assert!(metrics.cancelled >= 1);
    assert!(
        dropped >= 1 && dropped <= metrics.cancelled,
        "{dropped} handlers dropped for {} cancelled attempts",
        metrics.cancelled
    );
    println!(
        "p99 without hedging {base_p99:?}, with {p99:?} (upstream p95 {base_p95:?}); \
         {} hedges for {CALLS} calls, {} won, {} cancelled, {dropped} dropped by the upstream",
        metrics.hedges, metrics.hedges_won, metrics.cancelled
    );
}
