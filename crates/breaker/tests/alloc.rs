//! The closed path allocates nothing: counted with an instrumented global
//! allocator. (A plain `main`, not the test harness, so that no other thread allocates
//! meanwhile.)
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let configs = [
        ("count", BreakerConfig::builder().count_window(100)),
        (
            "time",
            BreakerConfig::builder().time_window(Duration::from_secs(60), 60),
        ),
        (
            "count+slow",
            BreakerConfig::builder()
                .count_window(100)
                .slow_call_duration(Duration::from_secs(1)),
        ),
    ];
    for (name, config) in configs {
        let breaker = Breaker::from_config(name, config.build().unwrap()).unwrap();
        // A subscriber to every call that left: the next outcome stops the
        // timing, and the closed path is back to what it was.
        drop(breaker.subscribe_with_calls());
        let inner = service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)));
        let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(inner);
        assert_eq!(call(&mut service, 1), 1); // warm up (lazy statics, first rotation)

        let region = Region::new(&GLOBAL);
        let mut sum = 0;
        for i in 0..10_000 {
            sum += call(&mut service, i);
            breaker.try_acquire().expect("closed").success();
        }
        let change = region.change();
        assert_eq!(sum, (0..10_000).sum::<u64>());
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{name}: the closed path allocated"
        );
        let expected = if name == "time" { 20_001 } else { 100 };
        assert_eq!(
            breaker.snapshot().buffered_calls,
            expected,
            "{name}: every call was recorded"
        );
    }
    println!("closed path of count, time and slow-call breakers: no allocation per call");
}
