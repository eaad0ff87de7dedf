//! The admission path allocates nothing: counted with an instrumented global
//! allocator. (A plain `main`, not the test harness, so that no other
//! thread allocates meanwhile.)
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use portcullis_bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadLayer, KeyedBulkhead, KeyedBulkheadLayer,
};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

/// Makes 10,000 calls through `service` and returns the allocations made.
fn allocations<S: Service<u64, Response = u64>>(
    service: &mut S,
    bulkhead: &Bulkhead,
) -> (usize, usize)
where
    S::Error: std::fmt::Debug,
{
    assert_eq!(call(service, 1), 1); // warm up (lazy statics)
    let region = Region::new(&GLOBAL);
    let mut sum = 0;
    for i in 0..10_000 {
        sum += call(service, i);
        drop(bulkhead.try_acquire().expect("a free permit"));
    }
    let change = region.change();
    assert_eq!(sum, (0..10_000).sum::<u64>());
    (change.allocations, change.reallocations)
}

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let inner = || service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)));
    let configs = [
        (
            "fail fast",
            BulkheadConfig::builder().max_concurrent_calls(4),
        ),
        (
            "waiting",
            BulkheadConfig::builder()
                .max_concurrent_calls(4)
                .max_wait(Duration::from_secs(1)),
        ),
    ];
    for (name, config) in configs {
        let bulkhead = Bulkhead::from_config(name, config.build().unwrap()).unwrap();
        let mut service = BulkheadLayer::new(bulkhead.clone()).layer(inner());
        assert_eq!(
            allocations(&mut service, &bulkhead),
            (0, 0),
            "{name}: allocated"
        );
        assert_eq!(bulkhead.in_flight(), 0);
        assert_eq!(bulkhead.rejected(), 0);
    }

    // A keyed bulkhead allocates a key's pool once, then nothing per call.
    let keyed = KeyedBulkhead::<u64>::from_config(
        "keyed",
        BulkheadConfig::builder()
            .max_concurrent_calls(4)
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut service = KeyedBulkheadLayer::new(keyed.clone(), |_: &u64| 7).layer(inner());
    assert_eq!(call(&mut service, 1), 1);
    let pool = keyed.get(&7).expect("key 7 has its pool");
    assert_eq!(allocations(&mut service, &pool), (0, 0), "keyed: allocated");
    assert_eq!(keyed.len(), 1);
    println!("bulkhead admission (fail fast, waiting, keyed): no allocation per call");
}
