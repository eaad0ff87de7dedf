//! End to end over loopback: an axum upstream that serves 32 calls at a
//! time, 50 ms each, and queues the rest (a semaphore before the work, so
//! its latency grows with its concurrency as a queue with 32 servers
//! does), called through a hyper client by 270 closed-loop callers — far
//! more than it can serve. A shed caller backs off 50 ms and calls again.
//!
//! - Unloaded: 8 callers, a quarter of the capacity, through the limiter
//!   (which learns its long-term latency meanwhile): the upstream's own
//!   latency.
//! - Behind Gradient2 starting at 250 (as if the limit had been set for a
//!   bigger upstream): the limit falls to about 1.2× the upstream's
//!   capacity plus Gradient2's queue of 4 (see `TOLERANCE`), and the
//!   p99 latency of the calls it admits stays within 2× the unloaded p99.
//! - Behind a fixed bulkhead of 250 (the limiter's starting size): 250
//!   calls in flight, 218 of them queued upstream: some 8× the work's
//!   50 ms, so p99 is over 5× the unloaded p99 even when a loaded machine
//!   stretches that to 70 ms.
//! - A sweep of fixed bulkheads finds the best goodput; the limiter's is
//!   at least 90 % of it.
//!
//! Latency and goodput are measured over the last 1.5 s of each 3 s run,
//! once the limit has settled (Gradient2 needs some 15 windows of 50 ms to
//! come down from 250). The numbers are printed.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadLayer};
use portcullis_core::BoxError;
use portcullis_limit::{Gradient2Config, LimitConfig, LimitExceeded, LimitLayer, Limiter};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const CAPACITY: usize = 32;
const WORK: Duration = Duration::from_millis(50);
const CALLERS: usize = 270;
const START: u32 = 250;
const SETTLE: Duration = Duration::from_millis(1500);
const RUN: Duration = Duration::from_millis(3000);
/// Gradient2's tolerance: with Netflix's 1.5 the limit settles where the
/// latency is 1.5× its long-term average (plus the queue size of 4), and
/// that average drifts up under a sustained overload; measured here: the
/// limit at 68, p99 2.3× the unloaded latency. 1.2 asks for what this
/// test checks, a tail within 2×.
const TOLERANCE: f64 = 1.2;
const BACK_OFF: Duration = Duration::from_millis(50);

type Request = http::Request<Empty<Bytes>>;

async fn handler(State(slots): State<Arc<Semaphore>>) -> &'static str {
    let _slot = slots.acquire().await.expect("never closed");
    tokio::time::sleep(WORK).await;
    "ok"
}

async fn upstream() -> String {
    let router = Router::new()
        .route("/", get(handler))
        .with_state(Arc::new(Semaphore::new(CAPACITY)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/")
}

/// What one loaded run measured, after it settled.
struct Run {
    /// Latencies of the calls that were answered, sorted.
    latencies: Vec<Duration>,
    /// Answered calls per second.
    goodput: f64,
    shed: u64,
}

/// `callers` closed-loop callers through `service` for `RUN`; calls that
/// end after `SETTLE` are counted.
async fn drive<S>(service: S, uri: &str, callers: usize) -> Run
where
    S: Service<Request, Response = http::Response<hyper::body::Incoming>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let started = Instant::now();
    let (settled, end) = (started + SETTLE, started + RUN);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let service = service.clone();
            let uri = uri.to_owned();
            tokio::spawn(async move {
                let (mut latencies, mut shed) = (Vec::new(), 0);
                while Instant::now() < end {
                    let request = http::Request::get(&uri).body(Empty::new()).unwrap();
                    let call = Instant::now();
                    match service.clone().oneshot(request).await {
                        Ok(response) => {
                            let latency = call.elapsed();
                            assert_eq!(response.status(), 200);
                            response.into_body().collect().await.unwrap();
                            if Instant::now() >= settled {
                                latencies.push(latency);
                            }
                        }
                        Err(error) => {
                            assert!(
                                error.is::<LimitExceeded>() || error.is::<BulkheadFull>(),
                                "{error}"
                            );
                            if Instant::now() >= settled {
                                shed += 1;
                            }
                            tokio::time::sleep(BACK_OFF).await;
                        }
                    }
                }
                (latencies, shed)
            })
        })
        .collect();
    let (mut latencies, mut shed) = (Vec::new(), 0);
    for task in tasks {
        let (mine, my_shed) = task.await.unwrap();
        latencies.extend(mine);
        shed += my_shed;
    }
    latencies.sort();
    let goodput = latencies.len() as f64 / (RUN - SETTLE).as_secs_f64();
    Run {
        latencies,
        goodput,
        shed,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "no call answered in the run");
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CALLERS * 2)
        .build_http()
}

/// The hyper client with its error boxed, as the layers want it.
fn boxed(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
) -> impl Service<
    Request,
    Response = http::Response<hyper::body::Incoming>,
    Error = BoxError,
    Future: Send,
> + Clone
+ Send
+ 'static {
    client.map_err(BoxError::from)
}

fn bulkhead(size: u32) -> BulkheadLayer {
    let config = BulkheadConfig::builder()
        .max_concurrent_calls(size)
        .build()
        .unwrap();
    BulkheadLayer::new(Bulkhead::from_config(format!("fixed-{size}"), config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient2_keeps_the_tail_near_the_unloaded_latency_where_a_fixed_bulkhead_does_not() {
    let uri = upstream().await;
    let config = LimitConfig::builder()
        .gradient2(Gradient2Config {
            initial_limit: START,
            max_limit: 400,
            rtt_tolerance: TOLERANCE,
            ..Gradient2Config::default()
        })
        .window(Duration::from_millis(50))
        .build()
        .unwrap();
    let limiter = Limiter::from_config("upstream", config).unwrap();
    let limited = LimitLayer::new(limiter.clone()).layer(boxed(client()));

    // Unloaded (8 callers, a quarter of the capacity), through the
    // limiter: it learns the long-term latency from its first windows.
    let unloaded = drive(limited.clone(), &uri, 8).await;
    let base = percentile(&unloaded.latencies, 0.99);
    assert_eq!(
        limiter.limit(),
        u64::from(START),
        "8 callers: application-limited"
    );

    let adaptive = drive(limited, &uri, CALLERS).await;
    let snapshot = limiter.snapshot();
    let adaptive_p99 = percentile(&adaptive.latencies, 0.99);

    let fixed = drive(bulkhead(START).layer(boxed(client())), &uri, CALLERS).await;
    let fixed_p99 = percentile(&fixed.latencies, 0.99);

    let mut sweep = Vec::new();
    for size in [32, 48, 64] {
        let run = drive(bulkhead(size).layer(boxed(client())), &uri, CALLERS).await;
        sweep.push((size, run.goodput, percentile(&run.latencies, 0.99)));
    }
    let (best_size, best, _) = sweep
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();

    println!(
        "unloaded p50 {:?} p99 {base:?}; gradient2: limit {} (from {START}), p50 {:?} p99 \
         {adaptive_p99:?}, goodput {:.0}/s, shed {}, {} windows; fixed {START}: p50 {:?} p99 \
         {fixed_p99:?}, goodput {:.0}/s; sweep (size, goodput/s, p99): {:?}; best fixed {best_size}: \
         {best:.0}/s",
        percentile(&unloaded.latencies, 0.5),
        snapshot.limit,
        percentile(&adaptive.latencies, 0.5),
        adaptive.goodput,
        adaptive.shed,
        snapshot.updates,
        percentile(&fixed.latencies, 0.5),
        fixed.goodput,
        sweep
            .iter()
            .map(|(s, g, p)| (*s, g.round(), *p))
            .collect::<Vec<_>>(),
    );
    assert!(
        snapshot.limit < u64::from(START) / 2,
        "the limit came down: {}",
        snapshot.limit
    );
    assert!(
        adaptive_p99 <= base * 2,
        "the limiter's p99 {adaptive_p99:?} over 2× the unloaded p99 {base:?}"
    );
    assert!(
        fixed_p99 >= base * 5,
        "the fixed bulkhead's p99 {fixed_p99:?} under 5× the unloaded p99 {base:?}"
    );
    assert!(
        adaptive.goodput >= best * 0.9,
        "goodput {:.0}/s under 90 % of the best fixed ({best_size}: {best:.0}/s)",
        adaptive.goodput
    );
}
