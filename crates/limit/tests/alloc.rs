//! The admitted path allocates nothing: 10,000 calls through the layer,
//! counted with an instrumented global allocator, for a limiter without
//! partitions and one with partitions and a queue (that never waits). A
//! plain `main`, not the test harness, so that no other thread allocates
//! meanwhile.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use portcullis_limit::{LimitConfig, LimitLayer, Limiter};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let configs = [
        ("gradient2", LimitConfig::builder()),
        (
            "vegas, partitions, queue",
            LimitConfig::builder()
                .algorithm(portcullis_limit::AlgorithmKind::Vegas)
                .window(Duration::ZERO)
                .partition("live", 0.9)
                .partition("batch", 0.1)
                .queue(10, Duration::from_millis(10)),
        ),
        (
            "aimd, a window per 10 calls",
            LimitConfig::builder()
                .algorithm(portcullis_limit::AlgorithmKind::Aimd)
                .window(Duration::ZERO),
        ),
    ];
    for (name, config) in configs {
        let limiter = Limiter::from_config(name, config.build().unwrap()).unwrap();
        let live = limiter.partition("live");
        let layer = LimitLayer::new(limiter.clone()).partition_by(move |_: &u64| live);
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
            "{name}: the admitted path allocated"
        );
        let snapshot = limiter.snapshot();
        assert_eq!((snapshot.admitted, snapshot.shed), (10_001, 0), "{name}");
        assert_eq!(snapshot.inflight, 0, "{name}");
    }

    // A shed is refused without allocating either (with the `metrics`
    // feature too: its counter is registered once, at the first shed).
    let limiter = Limiter::from_config("shed", LimitConfig::builder().build().unwrap()).unwrap();
    let held: Vec<_> = (0..limiter.limit())
        .map(|_| limiter.try_acquire(None).unwrap())
        .collect();
    assert!(limiter.try_acquire(None).is_err()); // warm up
    let region = Region::new(&GLOBAL);
    let shed = (0..10_000)
        .filter(|_| limiter.try_acquire(None).is_err())
        .count();
    let change = region.change();
    assert_eq!(shed, 10_000);
    assert_eq!(
        (change.allocations, change.bytes_allocated),
        (0, 0),
        "the shed path allocated"
    );
    assert_eq!(limiter.snapshot().shed, 10_001);
    drop(held);
    println!(
        "limit, admitted path (gradient2; vegas with partitions and a queue; aimd) and shed path: no allocation per call"
    );
}
