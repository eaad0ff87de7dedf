//! No public duration setting can panic: for any `Duration` (zero, one
//! nanosecond, `Duration::MAX`, anything between), each setting is either
//! refused by `build()` with an error naming it, or taken, and then a call
//! through the layer it configures completes without a panic, under paused
//! time so that the longest waits pass at once.
#![cfg(not(loom))]
#![cfg(feature = "full")]

use std::future::Future;
use std::time::Duration;

use portcullis::breaker::{Breaker, BreakerConfig, BreakerConfigBuilder, CircuitBreakerLayer};
use portcullis::bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer};
use portcullis::chaos::{Chaos, ChaosConfig, ChaosLayer};
use portcullis::core::{BoxError, ConfigError};
use portcullis::preset::{standard_http_client, standard_server_route};
use portcullis::ratelimit::{RateLimitConfig, RateLimitLayer, RateLimiter};
use portcullis::retry::{
    ConstantBackoff, ExponentialBackoff, LinearBackoff, RetryBudget, RetryConfig, RetryLayer,
};
use portcullis::timeout::{TimeoutConfig, TimeoutLayer};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};

/// Durations a user could pass: the edges, and any value at all.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX / 2)),
        (0u64..=86_400 * 365 * 100).prop_map(Duration::from_secs),
        (0u64..=10_000_000_000).prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Runs `future` on a fresh paused runtime: sleeps of years pass at once.
fn paused<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// Calls `service` twice at once, so that a second call has to wait where
/// a layer makes calls wait (a bulkhead of one, a limit of one).
async fn call_twice<S>(service: S)
where
    S: Service<(), Error = BoxError> + Clone,
{
    let first = service.clone().oneshot(());
    let second = service.oneshot(());
    let _ = tokio::join!(first, second);
}

/// A service that answers at once, or fails at once.
fn inner(fail: bool) -> impl Service<(), Response = (), Error = BoxError, Future: Send> + Clone {
    service_fn(move |()| async move {
        if fail {
            Err::<(), BoxError>("upstream down".into())
        } else {
            Ok(())
        }
    })
}

/// Either outcome of a setting is fine, as long as a refusal names a field.
fn taken<T>(result: Result<T, ConfigError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            assert!(!error.field().is_empty(), "{error}");
            None
        }
    }
}

fn breaker_settings(d: Duration) -> Vec<(&'static str, BreakerConfigBuilder)> {
    let b = BreakerConfig::builder;
    vec![
        ("time_window", b().time_window(d, 10)),
        ("slow_call_duration", b().slow_call_duration(d)),
        ("wait_in_open", b().wait_in_open(d)),
        ("open_wait_backoff", b().open_wait_backoff(2.0, d)),
        ("max_wait_in_half_open", b().max_wait_in_half_open(d)),
        ("open_on_retry_after", b().open_on_retry_after(d)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_timeout_setting_panics(d in any_duration()) {
        paused(async {
            call_twice(TimeoutLayer::new(d).layer(inner(false))).await;
            if let Some(layer) = taken(TimeoutLayer::from_config(&TimeoutConfig::new(d))) {
                call_twice(layer.layer(inner(false))).await;
            }
        });
    }

    #[test]
    fn no_breaker_setting_panics(d in any_duration()) {
        for (setting, builder) in breaker_settings(d) {
            let Some(config) = taken(builder.build()) else { continue };
            paused(async {
                let breaker = Breaker::from_config(setting, config).expect("a built config is valid");
                let service = CircuitBreakerLayer::new(breaker.clone()).layer(inner(true));
                for _ in 0..30 {
                    call_twice(service.clone()).await;
                    tokio::time::advance(d.min(Duration::from_secs(86_400 * 365))).await;
                }
                let _ = breaker.snapshot();
            });
        }
        // A manual open for any wait.
        paused(async {
            let breaker = Breaker::new("manual");
            breaker.open_for(d).expect("closed breakers can be opened");
            call_twice(CircuitBreakerLayer::new(breaker.clone()).layer(inner(false))).await;
            tokio::time::advance(Duration::from_secs(86_400)).await;
            call_twice(CircuitBreakerLayer::new(breaker.clone()).layer(inner(false))).await;
            let _ = breaker.snapshot();
        });
    }

    #[test]
    fn no_bulkhead_setting_panics(d in any_duration()) {
        let config = BulkheadConfig::builder().max_concurrent_calls(1).max_wait(d).build();
        if let Some(config) = taken(config) {
            paused(async {
                let bulkhead = Bulkhead::from_config("bulkhead", config).expect("valid");
                call_twice(BulkheadLayer::new(bulkhead).layer(inner(false))).await;
            });
        }
    }

    #[test]
    fn no_rate_limit_setting_panics(d in any_duration(), wait in any_duration()) {
        for config in [
            RateLimitConfig::builder().rate(1).period(d).build(),
            RateLimitConfig::builder().rate(1).max_wait(wait).build(),
            RateLimitConfig::builder().rate(1).period(d).max_wait(wait).build(),
        ] {
            let Some(config) = taken(config) else { continue };
            paused(async {
                let limiter = RateLimiter::from_config("limit", config).expect("valid");
                call_twice(RateLimitLayer::new(limiter).layer(inner(false))).await;
            });
        }
    }

    #[test]
    fn no_retry_setting_panics(d in any_duration()) {
        let b = RetryConfig::builder;
        for config in [
            b().total_deadline(d).build(),
            b().max_retry_after(d).build(),
            b().backoff(ConstantBackoff::new(d)).build(),
            b().backoff(LinearBackoff::new(d, d, d)).build(),
            b().backoff(ExponentialBackoff::new(d, 2.0, d)).build(),
        ] {
            let Some(config) = taken(config) else { continue };
            paused(async {
                let layer = RetryLayer::from_config("retry", config).expect("valid");
                call_twice(layer.layer(inner(true))).await;
            });
        }
        if let Some(budget) = taken(RetryBudget::new(0.2, 10, d)) {
            paused(async {
                budget.deposit();
                let _ = budget.try_withdraw();
                tokio::time::advance(Duration::from_secs(3600)).await;
                let _ = budget.try_withdraw();
            });
        }
    }

    #[test]
    fn no_chaos_setting_panics(d in any_duration(), max in any_duration()) {
        for config in [
            ChaosConfig::builder().latency(1.0, d).build(),
            ChaosConfig::builder().latency_range(1.0, d.min(max), max).build(),
        ] {
            let Some(config) = taken(config) else { continue };
            paused(async {
                let chaos = Chaos::from_config("chaos", config).expect("valid");
                call_twice(ChaosLayer::new(chaos).layer(inner(false))).await;
            });
        }
        paused(async {
            let chaos = Chaos::new("outage");
            let _ = chaos.set_latency(d);
            chaos.outage_for(d);
            call_twice(ChaosLayer::new(chaos).layer(inner(false))).await;
        });
    }

    #[test]
    fn no_preset_duration_panics(d in any_duration()) {
        let _ = standard_http_client("client").total_timeout(d).build();
        let _ = standard_http_client("client").attempt_timeout(d).build();
        let _ = standard_http_client("client")
            .attempt_timeout(d)
            .total_timeout(d)
            .build();
        let route = standard_server_route("route").timeout(d).build();
        if let Ok(layer) = route {
            paused(async {
                let service = layer.layer(service_fn(|_: http::Request<String>| async {
                    Ok::<_, BoxError>(http::Response::new(String::new()))
                }));
                let _ = service.oneshot(http::Request::new(String::new())).await;
            });
        }
    }
}

/// A breaker older than the 48 bits its deadlines hold (8.9 years) still
/// answers every call: a half-open timeout re-opens it once and rejects,
/// where it used to loop between half-open and open for ever.
#[test]
fn a_breaker_older_than_its_clock_still_answers() {
    for config in [
        BreakerConfig::builder().time_window(Duration::from_secs(86_400 * 20), 10),
        BreakerConfig::builder().max_wait_in_half_open(Duration::from_secs(60)),
        BreakerConfig::builder(),
    ] {
        let config = config.build().expect("a valid config");
        paused(async {
            let breaker = Breaker::from_config("old", config).expect("valid");
            let service = CircuitBreakerLayer::new(breaker.clone()).layer(inner(true));
            for _ in 0..30 {
                call_twice(service.clone()).await;
                tokio::time::advance(Duration::from_secs(86_400 * 200)).await;
            }
            assert!(
                breaker.snapshot().counters.failed_calls > 0,
                "calls were made"
            );
        });
    }
}
