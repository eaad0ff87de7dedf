//! Makes `N` closed-path calls through one contender of
//! `benches/benches/breaker.rs`, for instruction counts:
//!
//! ```text
//! cargo build --release -p portcullis-benches --example breaker_calls
//! valgrind --tool=callgrind target/release/examples/breaker_calls portcullis_count 100000
//! ```
//!
//! Run it twice with two values of `N` and divide the difference of the
//! instruction counts by the difference of `N`: what is left is the cost of
//! one call, without the set-up.
//!
//! Contenders: `bare`, `tower_resilience`, `portcullis_count`,
//! `portcullis_time`, `time_fill_1k` and `time_fill_1m` (`portcullis_time`
//! with a thousand or a million successes in the window first),
//! `acquire_record_count`, `acquire_record_time`.

use std::hint::black_box;

use portcullis_benches::{breaker, call_ready, count_config, inner, time_config};
use portcullis_breaker::CircuitBreakerLayer;
use tower::{Layer, Service};

fn run<S>(mut service: S, calls: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..calls {
        black_box(call_ready(&mut service, black_box(1)));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let contender = args.next().unwrap_or_else(|| "portcullis_count".into());
    let calls: u64 = args
        .next()
        .map_or(100_000, |n| n.parse().expect("a number of calls"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let _guard = runtime.enter();
    match contender.as_str() {
        "bare" => run(inner(), calls),
        "tower_resilience" => run(
            tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
                .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::CountBased)
                .sliding_window_size(100)
                .build()
                .expect("a valid tower-resilience configuration")
                .layer(inner()),
            calls,
        ),
        "portcullis_count" => run(
            CircuitBreakerLayer::new(breaker(count_config())).layer(inner()),
            calls,
        ),
        "portcullis_time" => run(
            CircuitBreakerLayer::new(breaker(time_config())).layer(inner()),
            calls,
        ),
        "time_fill_1k" | "time_fill_1m" => {
            let breaker = breaker(time_config());
            let fill = if contender.ends_with("1k") {
                1_000
            } else {
                1_000_000
            };
            for _ in 0..fill {
                breaker
                    .try_acquire()
                    .expect("the breaker is closed")
                    .success();
            }
            run(CircuitBreakerLayer::new(breaker).layer(inner()), calls);
        }
        "acquire_record_count" | "acquire_record_time" => {
            let config = if contender.ends_with("count") {
                count_config()
            } else {
                time_config()
            };
            let breaker = breaker(config);
            for _ in 0..calls {
                black_box(&breaker)
                    .try_acquire()
                    .expect("the breaker is closed")
                    .success();
            }
        }
        other => panic!("unknown contender {other}"),
    }
}
