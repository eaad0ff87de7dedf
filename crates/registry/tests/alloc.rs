//! Looking up a breaker that exists, by name or by `(name, key)`, allocates
//! nothing: counted with an instrumented global allocator. (A plain `main`,
//! not the test harness, so that no other thread allocates meanwhile.)
#![cfg(not(loom))]

use std::alloc::System;

use portcullis_breaker::State;
use portcullis_registry::Registry;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let registry = Registry::new();
    let keys: Vec<String> = (0..64).map(|i| format!("host-{i}")).collect();
    registry.breaker("payments");
    for key in &keys {
        registry.breaker_for("upstream", key).unwrap();
    }
    let before = registry.len();

    let region = Region::new(GLOBAL);
    let mut closed = 0;
    for i in 0..10_000 {
        if registry.breaker("payments").state() == State::Closed {
            closed += 1;
        }
        let keyed = registry
            .breaker_for("upstream", &keys[i % keys.len()])
            .unwrap();
        if keyed.state() == State::Closed {
            closed += 1;
        }
    }
    let change = region.change();
    assert_eq!(closed, 20_000);
    assert_eq!(registry.len(), before, "every lookup found its breaker");
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "looking up an existing breaker allocated"
    );
    // And making one does allocate: the counter is live.
    let region = Region::new(GLOBAL);
    registry.breaker("new");
    assert!(region.change().allocations > 0);
    println!("looking up existing breakers, plain and keyed: no allocation");
}
