//! The success path of a value fallback allocates nothing, and neither does
//! a fallback to a value: counted with an instrumented global allocator.
//! (One test in this binary, so nothing else allocates meanwhile.)
#![cfg(not(loom))]

use std::future::ready;

use portcullis_fallback::{Cause, FallbackLayer, OnRejection};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

/// An error that needs no allocation: a unit struct boxes for free.
#[derive(Debug)]
struct Odd;

impl std::fmt::Display for Odd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("odd")
    }
}

impl std::error::Error for Odd {}

#[test]
fn no_allocation_per_call_on_success_or_on_a_value_fallback() {
    let inner = service_fn(|x: u64| {
        ready(if x % 2 == 0 {
            Ok(x)
        } else {
            Err::<u64, Odd>(Odd)
        })
    });
    let layer = FallbackLayer::value(0u64);
    let counters = layer.counters().clone();
    let mut service = layer.layer(inner);
    assert_eq!(call(&mut service, 2), 2); // warm up
    assert_eq!(call(&mut service, 3), 0);

    // The region counts the allocations of every thread, and the test
    // harness's own thread may allocate once while this one runs: measure a
    // few rounds and require one to be clean. A call path that allocated
    // would show in every round, 5,000 times at least.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let region = Region::new(&GLOBAL);
        let mut sum = 0;
        for i in 0..10_000 {
            sum += call(&mut service, i);
        }
        let change = region.change();
        assert_eq!(
            sum,
            (0..10_000).step_by(2).sum::<u64>(),
            "odd calls got the value 0"
        );
        rounds.push(change.allocations + change.reallocations);
    }
    assert_eq!(
        rounds.iter().min(),
        Some(&0),
        "the fallback allocated: {rounds:?}"
    );
    assert_eq!(counters.get(Cause::Error), 1 + 3 * 5_000);

    // A trigger that lets errors through is allocation-free on success too.
    let passing = FallbackLayer::value(0u64)
        .on(OnRejection::all())
        .layer(service_fn(|x: u64| ready(Ok::<u64, Odd>(x))));
    let mut passing = passing;
    let rounds: Vec<usize> = (0..3)
        .map(|_| {
            let region = Region::new(&GLOBAL);
            for i in 0..1_000 {
                assert_eq!(call(&mut passing, i), i);
            }
            region.change().allocations
        })
        .collect();
    assert_eq!(rounds.iter().min(), Some(&0), "{rounds:?}");
}
