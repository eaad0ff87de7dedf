//! Switched off, the layer allocates nothing per call; switched on with
//! every rate at 0, neither. Counted with an instrumented global allocator.
//! (One test in this binary, so nothing else allocates meanwhile.)
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;

use portcullis_chaos::{Chaos, ChaosConfig, ChaosLayer};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

#[test]
fn no_allocation_per_call_when_off_or_at_rate_zero() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let off = ChaosConfig::builder()
        .error_rate(1.0)
        .latency(1.0, std::time::Duration::from_secs(1))
        .disabled();
    let zero = ChaosConfig::builder().seed(3);
    for (name, config) in [("off", off), ("rate 0", zero)] {
        let chaos = Chaos::from_config(name, config.build().unwrap()).unwrap();
        let inner = service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)));
        let mut service = ChaosLayer::new(chaos.clone()).layer(inner);
        assert_eq!(call(&mut service, 1), 1); // warm up

        // The region counts the allocations of every thread, and the test
        // harness's own thread may allocate once while this one runs:
        // measure a few rounds and require one to be clean. A call path that
        // allocated would show in every round, 10,000 times.
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let region = Region::new(&GLOBAL);
            let mut sum = 0;
            for i in 0..10_000 {
                sum += call(&mut service, i);
            }
            let change = region.change();
            assert_eq!(sum, (0..10_000).sum::<u64>(), "{name}: every call passed");
            rounds.push(change.allocations + change.reallocations);
        }
        assert_eq!(
            rounds.iter().min(),
            Some(&0),
            "{name}: the call path allocated: {rounds:?}"
        );
        let expected = if name == "off" { 0 } else { 1 + 3 * 10_000 };
        assert_eq!(chaos.stats().calls, expected, "{name}");
    }
}
