//! Looking up a breaker that exists, by name or by `(name, key)`, allocates
//! nothing, and neither does a call through a rate limiter or a retry
//! budget from the registry: counted with an instrumented global allocator. (A plain `main`,
//! not the test harness, so that no other thread allocates meanwhile.)
#![cfg(not(loom))]

use portcullis_breaker::State;
use portcullis_registry::Registry;
use portcullis_testing::alloc::{Counting, Region};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let registry = Registry::new();
    let keys: Vec<String> = (0..64).map(|i| format!("host-{i}")).collect();
    registry.breakers().get("payments");
    for key in &keys {
        registry.breakers().get_keyed("upstream", key).unwrap();
    }
    let before = registry.len();

    let region = Region::new(&GLOBAL);
    let mut closed = 0;
    for i in 0..10_000 {
        if registry.breakers().get("payments").state() == State::Closed {
            closed += 1;
        }
        let keyed = registry
            .breakers()
            .get_keyed("upstream", &keys[i % keys.len()])
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
    let region = Region::new(&GLOBAL);
    registry.breakers().get("new");
    assert!(region.change().allocations > 0);
    println!("looking up existing breakers, plain and keyed: no allocation");

    // A rate limiter and a budget from the registry are the crates' own
    // handles: a call costs no allocation (nor lock), as when made directly.
    let limiter = registry.rate_limiters().get("api");
    let keyed = registry.rate_limiters().get_keyed("api", "acme").unwrap();
    let budget = registry.budgets().get("db");
    let region = Region::new(&GLOBAL);
    let mut admitted = 0;
    for _ in 0..10_000 {
        admitted += usize::from(limiter.try_acquire().is_ok());
        admitted += usize::from(keyed.try_acquire().is_ok());
        budget.deposit();
        admitted += usize::from(budget.try_withdraw());
    }
    let change = region.change();
    assert!(admitted >= 200, "calls were admitted: {admitted}");
    assert!(limiter.snapshot().rejected > 0, "and some were rejected");
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "a call through a registry rate limiter or budget allocated"
    );
    println!("calls through registry rate limiters and budgets: no allocation");
}
