//! A first attempt that succeeds allocates nothing, for a `Clone` request:
//! counted with an instrumented global allocator. (A plain `main`, not the
//! test harness, so that no other thread allocates meanwhile.)
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use portcullis_retry::{BudgetConfig, RetryConfig, RetryLayer};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let configs = [
        ("default", RetryConfig::builder()),
        (
            "budget+deadline",
            RetryConfig::builder()
                .max_attempts(5)
                .budget(BudgetConfig::new(0.2, 10, Duration::from_secs(10)))
                .total_deadline(Duration::from_secs(5)),
        ),
    ];
    for (name, config) in configs {
        let layer = RetryLayer::from_config(name, config.build().unwrap()).unwrap();
        let inner = service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)));
        let mut service = layer.layer(inner);
        assert_eq!(call(&mut service, 1), 1); // warm up

        let region = Region::new(&GLOBAL);
        let mut sum = 0;
        for i in 0..10_000 {
            sum += call(&mut service, i);
        }
        let change = region.change();
        assert_eq!(sum, (0..10_000).sum::<u64>());
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{name}: the success path allocated"
        );
        assert_eq!(
            layer.metrics().successful_without_retry,
            10_001,
            "{name}: every call was counted"
        );
    }
    println!("retry, first attempt succeeds (default, budget + deadline): no allocation per call");
}
