//! The retry as a tower service, driven with `tower_test::mock` and paused
//! time: delays, jitter bounds, rejections, the deadline, the budget,
//! exhaustion, counters and events.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_core::BoxError;
use portcullis_retry::{
    Backoff, BreakerOpen, BudgetConfig, BulkheadFull, ConstantBackoff, DecorrelatedJitter, Elapsed,
    EqualJitter, ExponentialBackoff, FullJitter, GiveUpReason, LinearBackoff, NoJitter,
    ProportionalJitter, RateLimited, RetriesExhausted, RetryBudget, RetryConfig,
    RetryConfigBuilder, RetryEvent, RetryLayer, RetryMetrics,
};
use tokio::time::{self, Instant};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn layer(config: RetryConfigBuilder) -> RetryLayer {
    RetryLayer::from_config("svc", config.build().unwrap()).unwrap()
}

fn down() -> std::io::Error {
    std::io::Error::other("connection reset")
}

/// Fails the first `failures` attempts of every call made with the mock
/// handle, answers the next, and returns the instants the attempts arrived.
async fn serve(handle: &mut mock::Handle<u32, u32>, failures: usize) -> Vec<Instant> {
    let mut arrivals = Vec::new();
    for attempt in 0..=failures {
        let (request, send) = handle.next_request().await.expect("an attempt");
        arrivals.push(Instant::now());
        if attempt < failures {
            send.send_error(down());
        } else {
            send.send_response(request * 2);
        }
    }
    arrivals
}

fn gaps(arrivals: &[Instant]) -> Vec<Duration> {
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn each_backoff_is_waited_exactly_before_each_retry() {
    let backoffs: [(portcullis_retry::BackoffConfig, [u64; 3]); 3] = [
        (ConstantBackoff::new(ms(50)).into(), [50, 50, 50]),
        (
            LinearBackoff::new(ms(100), ms(25), ms(140)).into(),
            [100, 125, 140],
        ),
        (
            ExponentialBackoff::new(ms(10), 3.0, ms(60)).into(),
            [10, 30, 60],
        ),
    ];
    for (backoff, expected) in backoffs {
        let layer = layer(
            RetryConfig::builder()
                .max_attempts(4)
                .backoff(backoff)
                .jitter(NoJitter),
        );
        let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
        assert!(service.poll_ready().is_ready());
        let response = tokio::spawn(service.call(21));
        let arrivals = serve(&mut handle, 3).await;
        assert_eq!(response.await.unwrap().unwrap(), 42);
        assert_eq!(gaps(&arrivals), expected.map(ms), "{backoff:?}");
        assert_eq!(layer.metrics(), metrics(0, 1, 0, 0, 3), "{backoff:?}");
    }
}

fn metrics(
    successful_without_retry: u64,
    successful_with_retry: u64,
    failed_without_retry: u64,
    failed_with_retry: u64,
    retries: u64,
) -> RetryMetrics {
    let mut metrics = RetryMetrics::default();
    metrics.successful_without_retry = successful_without_retry;
    metrics.successful_with_retry = successful_with_retry;
    metrics.failed_without_retry = failed_without_retry;
    metrics.failed_with_retry = failed_with_retry;
    metrics.retries = retries;
    metrics
}

#[tokio::test(start_paused = true)]
async fn each_jitter_stays_within_its_bounds() {
    let backoff = ExponentialBackoff::new(ms(100), 2.0, ms(800));
    let nominal = |retry: u32| backoff.delay(retry);
    type Bound = fn(Duration, Duration) -> (Duration, Duration);
    let jitters: [(portcullis_retry::JitterConfig, Bound); 5] = [
        (NoJitter.into(), |d, _| (d, d)),
        (FullJitter.into(), |d, _| (Duration::ZERO, d)),
        (EqualJitter.into(), |d, _| (d / 2, d)),
        (ProportionalJitter::new(0.25).into(), |d, _| {
            (d.mul_f64(0.75), d.mul_f64(1.25).min(ms(800)))
        }),
        (DecorrelatedJitter.into(), |_, previous| {
            (ms(100), (previous.max(ms(100)) * 3).min(ms(800)))
        }),
    ];
    for (jitter, bounds) in jitters {
        for seed in 0..20 {
            let layer = layer(
                RetryConfig::builder()
                    .max_attempts(6)
                    .backoff(backoff)
                    .jitter(jitter)
                    .jitter_seed(seed),
            );
            let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
            assert!(service.poll_ready().is_ready());
            let response = tokio::spawn(service.call(1));
            let arrivals = serve(&mut handle, 5).await;
            assert_eq!(response.await.unwrap().unwrap(), 2);
            let mut previous = Duration::ZERO;
            for (retry, gap) in (1..).zip(gaps(&arrivals)) {
                let (low, high) = bounds(nominal(retry), previous);
                assert!(
                    gap >= low && gap <= high,
                    "{jitter:?}, seed {seed}, retry {retry}: {gap:?} not in [{low:?}, {high:?}]"
                );
                previous = gap;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_seeded_jitter_replays_the_same_delays() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let layer = layer(
            RetryConfig::builder()
                .max_attempts(5)
                .jitter(FullJitter)
                .jitter_seed(1234),
        );
        let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = tokio::spawn(service.call(1));
        let arrivals = serve(&mut handle, 4).await;
        response.await.unwrap().unwrap();
        runs.push(gaps(&arrivals));
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].windows(2).any(|w| w[0] != w[1]), "{:?}", runs[0]);
}

#[tokio::test(start_paused = true)]
async fn rejections_of_inner_layers_fail_fast_but_timeouts_are_retried() {
    let rejections: [fn() -> BoxError; 3] = [
        || BreakerOpen::new("inner", Some(Duration::from_secs(5))).into(),
        || BulkheadFull::new("inner").into(),
        || RateLimited::new("inner", Some(Duration::from_secs(1))).into(),
    ];
    for rejection in rejections {
        let layer = layer(RetryConfig::builder().max_attempts(5));
        let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
        assert!(service.poll_ready().is_ready());
        let response = tokio::spawn(service.call(1));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(rejection());
        let error = response.await.unwrap().unwrap_err();
        assert!(
            portcullis_retry::error::find_rejection(error.as_ref()).is_some(),
            "{error}"
        );
        let again = time::timeout(Duration::from_secs(60), handle.next_request()).await;
        assert!(again.is_err(), "{error}: not retried");
        assert_eq!(layer.metrics(), metrics(0, 0, 1, 0, 0), "{error}");
    }

    let layer = layer(RetryConfig::builder().max_attempts(2));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(Elapsed::new(ms(250)));
    let (_, send) = handle
        .next_request()
        .await
        .expect("a timed-out attempt is retried");
    send.send_response(7);
    assert_eq!(response.await.unwrap().unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_stops_retrying() {
    let layer = layer(
        RetryConfig::builder()
            .max_attempts(10)
            .backoff(ConstantBackoff::new(ms(100)))
            .jitter(NoJitter)
            .total_deadline(ms(250)),
    );
    let mut events = layer.subscribe();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    let started = Instant::now();
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(1));
    for _ in 0..3 {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(down());
    }
    let error = response.await.unwrap().unwrap_err();
    assert!(
        error.is::<std::io::Error>(),
        "the last error as it came: {error}"
    );
    assert_eq!(
        started.elapsed(),
        ms(200),
        "attempts at 0, 100 and 200 ms; a third wait would end at 300 ms"
    );
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
    let last = std::iter::from_fn(|| events.try_recv())
        .last()
        .unwrap()
        .unwrap();
    assert_eq!(
        last,
        RetryEvent::GaveUp {
            name: "svc".into(),
            attempts: 3,
            reason: GiveUpReason::Deadline
        }
    );
    assert_eq!(layer.metrics(), metrics(0, 0, 0, 1, 2));
}

#[tokio::test(start_paused = true)]
async fn the_last_error_comes_back_as_it_came_or_wrapped() {
    for wrap in [false, true] {
        let layer = layer(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(ConstantBackoff::new(ms(10)))
                .fail_after_max_attempts(wrap),
        );
        let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = tokio::spawn(service.call(1));
        for _ in 0..3 {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_error(down());
        }
        let error = response.await.unwrap().unwrap_err();
        if wrap {
            let exhausted = error.downcast_ref::<RetriesExhausted>().expect("wrapped");
            assert_eq!(exhausted.attempts(), 3);
            assert_eq!(exhausted.reason(), GiveUpReason::MaxAttempts);
            assert!(exhausted.last_error().is::<std::io::Error>());
            assert_eq!(
                error.to_string(),
                "retries exhausted after 3 attempts (max attempts reached)"
            );
        } else {
            assert!(error.is::<std::io::Error>(), "{error}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_spare_service_is_polled_ready_before_a_retry() {
    let layer = layer(
        RetryConfig::builder()
            .backoff(ConstantBackoff::new(ms(10)))
            .jitter(NoJitter),
    );
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(5));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(down());
    let early = time::timeout(Duration::from_secs(5), handle.next_request()).await;
    assert!(early.is_err(), "no retry until the service is ready");
    handle.allow(1);
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, 5);
    send.send_response(10);
    assert_eq!(response.await.unwrap().unwrap(), 10);
}

#[tokio::test(start_paused = true)]
async fn events_tell_each_retry_with_its_attempt_and_delay() {
    let layer = layer(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(ExponentialBackoff::new(ms(100), 2.0, ms(1000)))
            .jitter(NoJitter),
    );
    let mut events = layer.subscribe();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(1));
    serve(&mut handle, 2).await;
    response.await.unwrap().unwrap();
    let events: Vec<_> = std::iter::from_fn(|| events.try_recv())
        .map(Result::unwrap)
        .collect();
    let retry = |attempt, delay| RetryEvent::Retry {
        name: "svc".into(),
        attempt,
        delay: ms(delay),
        server_directed: false,
    };
    assert_eq!(
        events,
        [
            retry(2, 100),
            retry(3, 200),
            RetryEvent::Succeeded {
                name: "svc".into(),
                attempts: 3
            }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn four_counters() {
    let layer = layer(
        RetryConfig::builder()
            .max_attempts(2)
            .backoff(ConstantBackoff::new(Duration::ZERO)),
    );
    // Fails when the request is odd; a request of 2 succeeds on its retry.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let mut service = layer.layer(service_fn(move |x: u32| {
        let attempt = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match x {
                0 => Ok(0),
                2 if attempt % 2 == 1 => Ok(2),
                2 => Err::<u32, BoxError>(down().into()),
                4 => Err(BreakerOpen::new("b", None).into()),
                _ => Err(down().into()),
            }
        }
    }));
    for x in [0, 0, 2, 4, 1] {
        seen.store(0, Ordering::SeqCst);
        let _ = service.ready().await.unwrap().call(x).await;
    }
    assert_eq!(layer.metrics(), metrics(2, 1, 1, 1, 2));
}

/// Sends `requests` calls that always fail through a retry with `budget`,
/// and returns how many attempts reached the service.
async fn attempts_under_budget(budget: RetryBudget, requests: u64, concurrent: bool) -> u64 {
    let layer = layer(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(ConstantBackoff::new(Duration::ZERO)),
    )
    .with_budget(budget);
    let attempts = Arc::new(AtomicU64::new(0));
    let counter = attempts.clone();
    let service = layer.layer(service_fn(move |_: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, BoxError>(down().into()) }
    }));
    if concurrent {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..requests {
            calls.spawn(service.clone().oneshot(i as u32));
        }
        while let Some(result) = calls.join_next().await {
            assert!(result.unwrap().is_err());
        }
    } else {
        for i in 0..requests {
            assert!(service.clone().oneshot(i as u32).await.is_err());
        }
    }
    attempts.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn a_budget_of_20_percent_allows_at_most_20_percent_more_attempts() {
    for concurrent in [false, true] {
        let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10)).unwrap();
        let attempts = attempts_under_budget(budget.clone(), 100, concurrent).await;
        assert!(attempts <= 120, "{attempts} attempts for 100 requests");
        if !concurrent {
            assert_eq!(attempts, 120, "the whole budget is used");
        }
        assert_eq!(budget.available(), 0);
    }
    // tower's TpsBudget (tower#857) lets 0.3 through as 1/3 and 0.7 as 1/1.
    for (ratio, most) in [(0.3, 130), (0.7, 170)] {
        let budget = RetryBudget::new(ratio, 0, Duration::from_secs(10)).unwrap();
        let attempts = attempts_under_budget(budget, 100, false).await;
        assert_eq!(attempts, most, "ratio {ratio}");
    }
    // The floor adds exactly min_per_second × ttl retries.
    let budget =
        RetryBudget::from_config(BudgetConfig::new(0.2, 1, Duration::from_secs(10))).unwrap();
    assert_eq!(attempts_under_budget(budget, 100, false).await, 130);
}

#[tokio::test(start_paused = true)]
async fn a_budget_spent_returns_the_last_outcome() {
    let budget = RetryBudget::new(0.0, 0, Duration::from_secs(10)).unwrap();
    let layer = layer(RetryConfig::builder()).with_budget(budget);
    let mut events = layer.subscribe();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(down());
    assert!(response.await.unwrap().unwrap_err().is::<std::io::Error>());
    assert!(matches!(
        events.try_recv(),
        Some(Ok(RetryEvent::GaveUp {
            reason: GiveUpReason::Budget,
            attempts: 1,
            ..
        }))
    ));
    assert_eq!(layer.metrics(), metrics(0, 0, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let layer = layer(RetryConfig::builder().max_attempts(1));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(down());
    assert!(response.await.unwrap().is_err());
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
    assert_eq!(layer.metrics(), metrics(0, 0, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_makes_no_further_attempt() {
    let layer = layer(RetryConfig::builder().backoff(ConstantBackoff::new(ms(100))));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(down());
    time::sleep(ms(10)).await;
    response.abort(); // while it waits out the delay
    assert!(response.await.unwrap_err().is_cancelled());
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
}
