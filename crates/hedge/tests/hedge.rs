//! The hedge's rules in paused time: when hedges are sent, how many, what
//! the budget allows, which answer wins, and that losers are dropped.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::BoxError;
use portcullis_hedge::{DelayConfig, HedgeConfig, HedgeLayer, RetryBudget, ThrottleConfig};
use portcullis_retry::{RetryConfig, RetryLayer};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// What attempt `n` (0 for the first) does: wait, then answer or fail.
type Plan = fn(usize) -> (u64, Result<&'static str, &'static str>);

/// Sets its flag when dropped: an attempt's future was dropped.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The upstream: records when each attempt was sent and whether its future
/// was dropped before it answered.
#[derive(Clone, Default)]
struct Upstream {
    sent: Arc<Mutex<Vec<Duration>>>,
    dropped: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn service(
        &self,
        epoch: Instant,
        plan: Plan,
    ) -> impl Service<u32, Response = &'static str, Error = BoxError, Future: Send> + Clone + use<>
    {
        let upstream = self.clone();
        service_fn(move |_: u32| {
            let n = upstream.calls.fetch_add(1, Ordering::SeqCst);
            upstream.sent.lock().unwrap().push(epoch.elapsed());
            let flag = Arc::new(AtomicBool::new(false));
            upstream.dropped.lock().unwrap().push(flag.clone());
            let (wait, result) = plan(n);
            async move {
                let guard = DropGuard(flag);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                std::mem::forget(guard);
                result.map_err(BoxError::from)
            }
        })
    }

    fn sent(&self) -> Vec<Duration> {
        self.sent.lock().unwrap().clone()
    }

    fn dropped(&self) -> Vec<bool> {
        let flags = self.dropped.lock().unwrap();
        flags
            .iter()
            .map(|flag| flag.load(Ordering::SeqCst))
            .collect()
    }
}

fn fixed(delay_ms: u64, max_hedges: u32) -> HedgeConfig {
    HedgeConfig::builder()
        .delay(DelayConfig::fixed(Duration::from_millis(delay_ms)))
        .max_hedges(max_hedges)
        .build()
        .unwrap()
}

async fn call<S>(service: &mut S) -> (Result<&'static str, String>, Duration)
where
    S: Service<u32, Response = &'static str, Error = BoxError>,
{
    let started = Instant::now();
    let result = service.ready().await.unwrap().call(1).await;
    (result.map_err(|e| e.to_string()), started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn the_hedge_goes_after_the_delay_and_the_loser_is_dropped() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 1)).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |n| {
        if n == 0 {
            (1000, Ok("first"))
        } else {
            (5, Ok("hedge"))
        }
    }));
    let (result, took) = call(&mut service).await;
    assert_eq!(result.unwrap(), "hedge");
    assert_eq!(took, 15 * MS, "10 ms of delay, then a hedge of 5 ms");
    assert_eq!(upstream.sent(), [Duration::ZERO, 10 * MS]);
    assert_eq!(
        upstream.dropped(),
        [true, false],
        "the slow first attempt was dropped"
    );
    let metrics = layer.metrics();
    assert_eq!(
        (
            metrics.calls,
            metrics.hedges,
            metrics.hedges_won,
            metrics.cancelled
        ),
        (1, 1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_faster_than_the_delay_sends_no_hedge() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 1)).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |_| (9, Ok("first"))));
    let (result, took) = call(&mut service).await;
    assert_eq!((result.unwrap(), took), ("first", 9 * MS));
    tokio::time::sleep(100 * MS).await;
    assert_eq!(upstream.sent().len(), 1);
    assert_eq!(layer.metrics().hedges, 0);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_hedges_each_a_delay_after_the_one_before() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 2)).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |n| {
        (if n == 0 { 100 } else { 1000 }, Ok("answer"))
    }));
    let (result, took) = call(&mut service).await;
    assert_eq!((result.unwrap(), took), ("answer", 100 * MS));
    assert_eq!(
        upstream.sent(),
        [Duration::ZERO, 10 * MS, 20 * MS],
        "no third hedge"
    );
    assert_eq!(upstream.dropped(), [false, true, true]);
    let metrics = layer.metrics();
    assert_eq!(
        (metrics.hedges, metrics.hedges_won, metrics.cancelled),
        (2, 0, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_max_hedges_is_zero() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 0)).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |_| (100, Ok("first"))));
    assert_eq!(call(&mut service).await.1, 100 * MS);
    assert_eq!(upstream.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_denies_the_hedge() {
    let upstream = Upstream::default();
    // Half a hedge per call, no floor: the first call pays for none, the
    // second for one.
    let budget = RetryBudget::new(0.5, 0, Duration::from_secs(10)).unwrap();
    let layer = HedgeLayer::from_config("t", fixed(10, 1))
        .unwrap()
        .with_budget(budget.clone());
    let mut service =
        layer.layer(upstream.service(Instant::now(), |n| (if n == 0 { 50 } else { 5 }, Ok("x"))));
    assert_eq!(
        call(&mut service).await.1,
        50 * MS,
        "denied: the first attempt's time"
    );
    assert_eq!(layer.metrics().budget_denied, 1);
    assert_eq!(upstream.sent().len(), 1);
    assert_eq!(
        call(&mut service).await.1,
        5 * MS,
        "the second call's first attempt is fast"
    );
    assert_eq!(budget.snapshot().withdrawals, 0);
}

/// A retry around a hedge, on one throttling budget of 4 tokens, and every
/// attempt failing at once (a failure costs a token). Given the budget by
/// `with_budget`, the hedge records the answer it returns and so does the
/// retry; by `with_retry_budget`, each attempt counts once.
#[tokio::test(start_paused = true)]
async fn a_throttling_budget_shared_with_a_retry_stops_both() {
    for retry_budget in [false, true] {
        let upstream = Upstream::default();
        let budget = RetryBudget::throttling("shared", ThrottleConfig::new(4, 1.0)).unwrap();
        let hedge = HedgeLayer::from_config("t", fixed(10, 1)).unwrap();
        let hedge = if retry_budget {
            hedge.with_retry_budget(budget.clone())
        } else {
            hedge.with_budget(budget.clone())
        };
        let retry =
            RetryLayer::from_config("t", RetryConfig::builder().max_attempts(3).build().unwrap())
                .unwrap()
                .with_budget(budget.clone());
        let mut service =
            retry.layer(hedge.layer(upstream.service(Instant::now(), |_| (0, Err("down")))));
        let (result, _) = call(&mut service).await;
        assert_eq!(result.unwrap_err(), "down");
        // The first attempt fails (3 left) and its hedge goes at once
        // (non-fatal), fails (2 left, at half): no more hedges, and the
        // retry does not retry. With `with_budget` the retry records the
        // returned failure a second time (1 left).
        assert_eq!(upstream.sent().len(), 2);
        assert_eq!(budget.available(), if retry_budget { 2 } else { 1 });
        assert!(!budget.try_withdraw());
        assert_eq!(hedge.metrics().hedges, 1);
        assert_eq!(
            retry.metrics().retries,
            0,
            "the hedge's failures throttled the retry"
        );
    }
}

/// With the retry's budget given by `with_retry_budget`, a windowed budget
/// takes one deposit per request, however many hedges.
#[tokio::test(start_paused = true)]
async fn a_budget_shared_through_with_retry_budget_counts_each_request_once() {
    let upstream = Upstream::default();
    let budget = RetryBudget::new(1.0, 0, Duration::from_secs(10)).unwrap();
    let hedge = HedgeLayer::from_config("t", fixed(10, 1))
        .unwrap()
        .with_retry_budget(budget.clone());
    let retry = RetryLayer::from_config("t", RetryConfig::default())
        .unwrap()
        .with_budget(budget.clone());
    // The first attempt takes 30 ms, its hedge after 10 ms answers in 5.
    let mut service = retry.layer(hedge.layer(upstream.service(Instant::now(), |n| {
        if n % 2 == 0 {
            (30, Ok("first"))
        } else {
            (5, Ok("hedge"))
        }
    })));
    for _ in 0..3 {
        assert_eq!(call(&mut service).await.0.unwrap(), "hedge");
    }
    let snapshot = budget.snapshot();
    assert_eq!(snapshot.deposits, 3, "one per request");
    assert_eq!(snapshot.withdrawals, 3, "one per hedge");
    assert_eq!(budget.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_non_fatal_failure_sends_the_next_hedge_at_once() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 1)).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |n| {
        if n == 0 {
            (2, Err("reset"))
        } else {
            (5, Ok("hedge"))
        }
    }));
    let (result, took) = call(&mut service).await;
    assert_eq!((result.unwrap(), took), ("hedge", 7 * MS));
    assert_eq!(
        upstream.sent(),
        [Duration::ZERO, 2 * MS],
        "not after the 10 ms delay"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fatal_failure_stops_hedging() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 2))
        .unwrap()
        .non_fatal_if(|_: Result<&&str, &BoxError>| false);
    let mut service = layer.layer(upstream.service(Instant::now(), |n| {
        if n == 0 {
            (20, Err("fatal"))
        } else {
            (100, Ok("hedge"))
        }
    }));
    let (result, took) = call(&mut service).await;
    // The hedge sent at 10 ms goes on after the fatal failure at 20 ms;
    // no second hedge is sent at 20 ms, and the hedge's answer wins.
    assert_eq!((result.unwrap(), took), ("hedge", 110 * MS));
    assert_eq!(upstream.sent(), [Duration::ZERO, 10 * MS]);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_is_returned() {
    let upstream = Upstream::default();
    let layer = HedgeLayer::from_config("t", fixed(10, 1)).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |n| {
        if n == 0 {
            (30, Err("first"))
        } else {
            (10, Err("hedge"))
        }
    }));
    let (result, took) = call(&mut service).await;
    // The hedge (sent at 10 ms) fails at 20 ms, the first attempt at 30 ms.
    assert_eq!((result.unwrap_err(), took), ("first".to_owned(), 30 * MS));
    assert_eq!(layer.metrics().cancelled, 0);
}

#[tokio::test(start_paused = true)]
async fn the_percentile_delay_after_min_data_points_and_the_fallback_before() {
    let upstream = Upstream::default();
    // 16 refreshes per window of 1.6 s: every 100 ms.
    let delay = DelayConfig::percentile(0.9, 20, Duration::from_millis(50))
        .window(Duration::from_millis(1600));
    let config = HedgeConfig::builder().delay(delay).build().unwrap();
    let layer = HedgeLayer::from_config("t", config).unwrap();
    let mut service = layer.layer(upstream.service(Instant::now(), |n| match n {
        0..20 => (10, Ok("fast")),
        20 => (1000, Ok("slow")),
        _ => (1, Ok("hedge")),
    }));
    for _ in 0..19 {
        assert_eq!(call(&mut service).await.1, 10 * MS);
    }
    tokio::time::advance(100 * MS).await;
    assert_eq!(layer.current_delay(), 50 * MS, "19 latencies: the fallback");
    assert_eq!(call(&mut service).await.1, 10 * MS);
    tokio::time::advance(100 * MS).await;
    let delay = layer.current_delay();
    // 10 ms falls in the bucket [9984, 10240) µs: its upper edge.
    assert_eq!(
        delay,
        Duration::from_micros(10_240),
        "20 latencies: the percentile"
    );
    let (result, took) = call(&mut service).await;
    // tokio's timer fires on whole milliseconds: at 11 ms, then 1 ms of hedge.
    assert_eq!((result.unwrap(), took), ("hedge", 12 * MS));
    assert_eq!(layer.metrics().hedges, 1);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_idempotency_gate_of_http() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    let config = fixed(10, 1);
    let layer = HedgeLayer::http("t", config).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |request: http::Request<_>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let body: Bytes = BodyExt::collect(request.into_body()).await?.to_bytes();
            tokio::time::sleep(if n % 2 == 0 { 100 * MS } else { MS }).await;
            Ok::<_, BoxError>(http::Response::new(body))
        }
    });
    let mut service = layer.layer(inner);
    let send = |method: &str| {
        http::Request::builder()
            .method(method)
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap()
    };
    let started = Instant::now();
    let response = service
        .ready()
        .await
        .unwrap()
        .call(send("PUT"))
        .await
        .unwrap();
    assert_eq!(response.body(), "payload", "the hedge replays the body");
    assert_eq!(started.elapsed(), 11 * MS);
    assert_eq!(calls.swap(0, Ordering::SeqCst), 2);

    let started = Instant::now();
    let response = service
        .ready()
        .await
        .unwrap()
        .call(send("POST"))
        .await
        .unwrap();
    assert_eq!(response.body(), "payload");
    assert_eq!(started.elapsed(), 100 * MS, "a POST is not hedged");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "grpc")]
#[tokio::test(start_paused = true)]
async fn grpc_non_fatal_codes_send_the_next_hedge_at_once() {
    use http_body_util::Empty;

    let config = HedgeConfig::builder()
        .delay(DelayConfig::fixed(Duration::from_millis(50)))
        .max_hedges(2)
        .hedge_non_idempotent(true)
        .non_fatal_status_codes([14])
        .build()
        .unwrap();
    let layer = HedgeLayer::grpc("t", config).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |_: http::Request<_>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(2 * MS).await;
            // UNAVAILABLE (non-fatal), then INTERNAL (fatal), then OK.
            let code = ["14", "13", "0"][n];
            let response = http::Response::builder().header("grpc-status", code);
            Ok::<_, BoxError>(response.body(()).unwrap())
        }
    });
    let mut service = layer.layer(inner);
    let request = http::Request::post("/lookup.v1.Directory/Find")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    // 14 at 2 ms: a hedge at once; 13 at 4 ms is fatal: no third attempt,
    // and with nothing left in flight the last failure is the answer.
    assert_eq!(response.headers()["grpc-status"], "13");
    assert_eq!(started.elapsed(), 4 * MS);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
