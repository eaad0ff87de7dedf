//! A call through the full Portcullis stack (rate limit, timeout, retry,
//! circuit breaker, bulkhead) that succeeds at its first attempt allocates
//! nothing: counted with an instrumented global allocator. tower-resilience's
//! stack is counted too, and its figure printed. (A plain `main`, not the
//! test harness, so that no other thread allocates meanwhile.)
#![cfg(not(loom))]

use std::fmt::Debug;

use portcullis_benches::call_ready;
use portcullis_testing::alloc::{Counting, Region};
use stacks::{portcullis, tower_resilience, tower_resilience_concurrency_limit};
use tower::Service;

// The stacks, shared by `benches/stack.rs` and `tests/stack_alloc.rs`;
// each uses only part of them.
#[allow(dead_code)]
#[path = "../stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: Counting = Counting::new();

const WARM_UP: u64 = 1_000;
const CALLS: u64 = 10_000;

/// Allocations and reallocations per call, over `CALLS` calls made after
/// `WARM_UP` others.
fn allocations_per_call<S>(mut service: S) -> (f64, usize)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    for i in 0..WARM_UP {
        assert_eq!(call_ready(&mut service, i), i);
    }
    let region = Region::new(&GLOBAL);
    for i in 0..CALLS {
        assert_eq!(call_ready(&mut service, i), i);
    }
    let change = region.change();
    let total = change.allocations + change.reallocations;
    (total as f64 / CALLS as f64, total)
}

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();

    let (per_call, total) = allocations_per_call(portcullis());
    assert_eq!(
        total, 0,
        "the Portcullis stack allocated {per_call} times per call"
    );
    println!("Portcullis stack: 0 allocations per call");

    let (per_call, _) = allocations_per_call(tower_resilience());
    assert!(per_call > 0.0, "the counter is live");
    println!("tower-resilience stack: {per_call} allocations per call");
    let (per_call, _) = allocations_per_call(tower_resilience_concurrency_limit());
    println!(
        "tower-resilience stack with tower's ConcurrencyLimit: {per_call} allocations per call"
    );
}
