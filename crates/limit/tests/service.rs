//! The limit as a `tower` service, in paused time: shedding with the typed
//! error, the permit as a guard, classification, windows, partitions and
//! the newest-first queue.
#![cfg(not(loom))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::{BoxError, BulkheadFull, ErrorKind, Rejection};
use portcullis_limit::{
    AimdConfig, Gradient2Config, LimitConfig, LimitConfigBuilder, LimitExceeded, LimitLayer,
    Limiter,
};
use tokio::time::sleep;
use tower::{Layer, Service, ServiceExt, service_fn};

type Log = Arc<Mutex<Vec<u64>>>;

/// AIMD from `initial` in [1, `max`], moving after every call.
fn aimd(initial: u32, max: u32) -> LimitConfigBuilder {
    LimitConfig::builder()
        .aimd(AimdConfig {
            initial_limit: initial,
            min_limit: 1,
            max_limit: max,
            ..AimdConfig::default()
        })
        .window(Duration::ZERO)
        .min_samples(1)
}

/// Sleeps for the request's milliseconds (logging the request when it
/// starts), then answers it; an odd request fails, and 0 answers with an
/// inner bulkhead's rejection.
fn sleeper(log: Log) -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(move |ms: u64| {
        log.lock().unwrap().push(ms);
        async move {
            if ms == 0 {
                return Err::<u64, BoxError>(BulkheadFull::new("inner").into());
            }
            sleep(Duration::from_millis(ms)).await;
            if ms % 2 == 1 {
                Err(std::io::Error::other("odd").into())
            } else {
                Ok(ms)
            }
        }
    })
}

fn service(
    config: LimitConfigBuilder,
) -> (
    Limiter,
    Log,
    impl Service<u64, Response = u64, Error = BoxError, Future: Send + 'static> + Clone,
) {
    let limiter = Limiter::from_config("api", config.build().unwrap()).unwrap();
    let log = Log::default();
    let service = LimitLayer::new(limiter.clone()).layer(sleeper(log.clone()));
    (limiter, log, service)
}

#[tokio::test(start_paused = true)]
async fn sheds_at_the_limit_with_a_503_and_a_retry_after() {
    let (limiter, log, mut service) = service(aimd(2, 2));
    // One call first, so that the limiter knows a latency: 40 ms.
    assert_eq!(service.ready().await.unwrap().call(40).await.unwrap(), 40);

    let a = tokio::spawn(service.ready().await.unwrap().call(100));
    let b = tokio::spawn(service.ready().await.unwrap().call(100));
    tokio::task::yield_now().await;
    assert_eq!(limiter.inflight(), 2);

    let error = service.ready().await.unwrap().call(2).await.unwrap_err();
    let shed = error
        .downcast_ref::<LimitExceeded>()
        .expect("the typed rejection");
    assert_eq!(shed.name(), "api");
    assert_eq!(shed.status_hint(), 503);
    assert!(shed.never_sent());
    assert_eq!(
        Rejection::retry_after(shed),
        Some(Duration::from_millis(40)),
        "about one call's latency"
    );
    assert_eq!(
        ErrorKind::of(error.as_ref()),
        ErrorKind::LimitExceeded {
            retry_after: Some(Duration::from_millis(40))
        }
    );
    assert_eq!(
        *log.lock().unwrap(),
        [40, 100, 100],
        "the shed call never reached it"
    );

    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let snapshot = limiter.snapshot();
    assert_eq!(
        (snapshot.admitted, snapshot.shed, snapshot.inflight),
        (3, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_gives_its_room_back_and_records_nothing() {
    let (limiter, _log, mut service) = service(aimd(1, 10));
    let call = service.ready().await.unwrap().call(100);
    assert_eq!(limiter.inflight(), 1);
    assert!(
        service.ready().await.unwrap().call(2).await.is_err(),
        "at the limit"
    );
    // An outer timeout gives up on the call: its future is dropped.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err()
    );
    let snapshot = limiter.snapshot();
    assert_eq!(snapshot.inflight, 0, "the room came back");
    assert_eq!(snapshot.cancelled, 1);
    assert_eq!(snapshot.updates, 0, "no sample from a cancelled call");
    assert_eq!(limiter.limit(), 1);
    assert_eq!(service.ready().await.unwrap().call(2).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn failures_are_drops_and_ignored_outcomes_record_nothing() {
    let (limiter, _log, mut service) = service(aimd(10, 20));
    // An inner rejection is ignored: no sample, the limit holds.
    let error = service.ready().await.unwrap().call(0).await.unwrap_err();
    assert!(error.is::<BulkheadFull>(), "passed through as it was");
    let snapshot = limiter.snapshot();
    assert_eq!(
        (snapshot.ignored, snapshot.updates, snapshot.limit),
        (1, 0, 10)
    );
    // A failure is a drop: floor(10 · 0.9) = 9.
    service.ready().await.unwrap().call(3).await.unwrap_err();
    let snapshot = limiter.snapshot();
    assert_eq!(
        (snapshot.dropped, snapshot.updates, snapshot.limit),
        (1, 1, 9)
    );
    // A success with 1 in flight of 9 is application-limited: 9 holds.
    service.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(limiter.limit(), 9);
    assert_eq!(limiter.inflight(), 0);
}

#[tokio::test(start_paused = true)]
async fn gradient2_moves_once_per_window_with_exact_latencies() {
    let config = LimitConfig::builder()
        .gradient2(Gradient2Config {
            initial_limit: 4,
            min_limit: 1,
            ..Gradient2Config::default()
        })
        .window(Duration::from_millis(100))
        .min_samples(4);
    let (limiter, _log, service) = service(config);
    // Rounds of 4 concurrent 10 ms calls: a window closes at the first
    // call that ends 100 ms or more after the window began, with 4 or
    // more samples in it.
    let round = |ms: u64| {
        let service = service.clone();
        async move {
            let calls: Vec<_> = (0..4)
                .map(|_| tokio::spawn(service.clone().oneshot(ms)))
                .collect();
            for call in calls {
                call.await.unwrap().unwrap();
            }
        }
    };
    for _ in 0..9 {
        round(10).await;
    }
    // 9 rounds of 10 ms: 90 ms, no window closed yet.
    assert_eq!(limiter.snapshot().updates, 0);
    round(10).await;
    // At 100 ms the window closes with rtt exactly 10 ms and inflight 4:
    // long = 10, gradient = min(1, 1.5) = 1, new = 4 + 4 = 8, smoothed
    // 4·0.8 + 8·0.2 = 4.8 → 4.
    let snapshot = limiter.snapshot();
    assert_eq!(snapshot.updates, 1);
    assert_eq!(snapshot.last_rtt, Duration::from_millis(10));
    assert_eq!(snapshot.limit, 4);
    for _ in 0..10 {
        round(10).await;
    }
    // The second window: 4.8·0.8 + 8.8·0.2 = 5.6 → 5.
    let snapshot = limiter.snapshot();
    assert_eq!((snapshot.updates, snapshot.limit), (2, 5));
    assert_eq!(snapshot.base_rtt, Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn a_partition_keeps_its_guaranteed_share() {
    // Limit 10: live is guaranteed 9, batch 1.
    let config = aimd(10, 10).partition("live", 0.9).partition("batch", 0.1);
    let limiter = Limiter::from_config("api", config.build().unwrap()).unwrap();
    let (live, batch) = (limiter.partition("live"), limiter.partition("batch"));
    assert!(live.is_some() && batch.is_some() && limiter.partition("other").is_none());
    let layer = LimitLayer::new(limiter.clone())
        .partition_by(move |ms: &u64| if ms % 4 == 0 { live } else { batch });
    let service = layer.layer(sleeper(Log::default()));

    // Live (multiples of 4) floods: it takes its 9 and borrows batch's 1.
    let mut calls = Vec::new();
    for _ in 0..12 {
        calls.push(tokio::spawn(service.clone().oneshot(1000)));
    }
    tokio::task::yield_now().await;
    let snapshot = limiter.snapshot();
    assert_eq!(snapshot.inflight, 10);
    assert_eq!(snapshot.shed, 2);
    assert_eq!(snapshot.partitions[0].inflight, 10);
    assert_eq!(snapshot.partitions[0].guaranteed, 9);
    assert_eq!(snapshot.partitions[1].guaranteed, 1);

    // Batch still gets its guaranteed call, beyond the total...
    let first = tokio::spawn(service.clone().oneshot(1002));
    tokio::task::yield_now().await;
    assert_eq!(limiter.inflight(), 11);
    // ...but not a second one: it is at its share and the total is full.
    let error = service.clone().oneshot(1002).await.unwrap_err();
    assert!(error.is::<LimitExceeded>());
    // Nor live: it is over its share and the total is full.
    assert!(service.clone().oneshot(1000).await.is_err());

    for call in calls {
        let _ = call.await.unwrap();
    }
    first.await.unwrap().unwrap();
    let snapshot = limiter.snapshot();
    assert_eq!(snapshot.inflight, 0);
    assert!(snapshot.partitions.iter().all(|p| p.inflight == 0));
}

/// Starts a call of `ms` and lets it reach the limiter.
async fn start<S>(service: &S, ms: u64) -> tokio::task::JoinHandle<Result<u64, BoxError>>
where
    S: Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let call = tokio::spawn(service.clone().oneshot(ms));
    tokio::task::yield_now().await;
    call
}

#[tokio::test(start_paused = true)]
async fn the_queue_serves_the_newest_first_and_sheds_the_oldest() {
    // One call at a time; two may wait, up to 500 ms.
    let (limiter, log, service) = service(aimd(1, 1).queue(2, Duration::from_millis(500)));
    let spawn = |ms| start(&service, ms);
    let running = spawn(100).await;
    let b = spawn(102).await;
    let c = spawn(104).await;
    assert_eq!(limiter.snapshot().queued, 2);
    // A fourth waiter overflows the queue: the oldest (b) is shed.
    let d = spawn(106).await;
    let error = b.await.unwrap().unwrap_err();
    assert!(error.is::<LimitExceeded>(), "{error}");
    assert_eq!(limiter.snapshot().queued, 2);

    // When the running call ends, the newest waiter (d) goes first, then c.
    assert_eq!(running.await.unwrap().unwrap(), 100);
    assert_eq!(d.await.unwrap().unwrap(), 106);
    assert_eq!(c.await.unwrap().unwrap(), 104);
    assert_eq!(*log.lock().unwrap(), [100, 106, 104]);

    // A waiter whose wait expires is shed: the running call takes 1 s.
    let long = spawn(1000).await;
    let started = tokio::time::Instant::now();
    let late = spawn(2).await;
    let error = late.await.unwrap().unwrap_err();
    assert!(error.is::<LimitExceeded>());
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(long.await.unwrap().unwrap(), 1000);
    let snapshot = limiter.snapshot();
    assert_eq!(
        (snapshot.shed, snapshot.queued, snapshot.inflight),
        (2, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue() {
    let (limiter, _log, service) = service(aimd(1, 1).queue(4, Duration::from_secs(5)));
    let running = tokio::spawn(service.clone().oneshot(100));
    tokio::task::yield_now().await;
    let waiting = tokio::spawn(service.clone().oneshot(2));
    tokio::task::yield_now().await;
    assert_eq!(limiter.snapshot().queued, 1);
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(limiter.snapshot().queued, 0);
    running.await.unwrap().unwrap();
    assert_eq!(limiter.inflight(), 0);
    assert_eq!(service.clone().oneshot(2).await.unwrap(), 2);
}
