//! A first attempt that answers before the delay allocates nothing, for a
//! `Clone` request: counted with an instrumented global allocator. (A
//! plain `main`, not the test harness, so that no other thread allocates
//! meanwhile.)
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use portcullis_hedge::{DelayConfig, HedgeConfig, HedgeLayer};
use portcullis_retry::BudgetConfig;
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let configs = [
        (
            "fixed",
            HedgeConfig::builder().delay(DelayConfig::fixed(Duration::from_millis(10))),
        ),
        (
            "percentile+budget",
            HedgeConfig::builder()
                .max_hedges(2)
                .delay(DelayConfig::percentile(0.95, 10, Duration::from_millis(10)))
                .budget(BudgetConfig::default()),
        ),
    ];
    for (name, config) in configs {
        let layer = HedgeLayer::from_config(name, config.build().unwrap()).unwrap();
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
            (
                change.allocations,
                change.reallocations,
                change.bytes_allocated
            ),
            (0, 0, 0),
            "{name}: the no-hedge path allocated"
        );
        let metrics = layer.metrics();
        assert_eq!((metrics.calls, metrics.hedges), (10_001, 0), "{name}");
    }
    println!("hedge, first attempt answers (fixed, percentile + budget): no allocation per call");
}
