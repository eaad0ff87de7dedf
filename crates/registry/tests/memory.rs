//! What a keyed breaker costs when nobody subscribes to its events, with
//! the registry's own index and the hook that pushes its events: counted
//! with an instrumented global allocator, in a plain `main` so that no
//! other thread allocates meanwhile.
//!
//! A breaker keeps no event buffer until somebody subscribes, no duration
//! per slot until it times a call, and no transition counts until its
//! first transition; the bound below holds that line.
#![cfg(not(loom))]

use portcullis_registry::Registry;
use portcullis_testing::alloc::{Counting, Region};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

const KEYS: usize = 100_000;

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let registry = Registry::builder().max_keys(KEYS).build().unwrap();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("host-{i:06}.example")).collect();
    registry.breakers().get_keyed("upstream", &keys[0]).unwrap();

    let region = Region::new(&GLOBAL);
    for key in &keys[1..] {
        registry.breakers().get_keyed("upstream", key).unwrap();
    }
    let change = region.change();
    let held = change.net_bytes();
    let per_key = held / (KEYS as isize - 1);
    let allocations = change.allocations / (KEYS - 1);
    assert_eq!(registry.len(), KEYS);
    assert!(
        per_key <= BOUND,
        "a keyed breaker holds {per_key} bytes ({allocations} allocations), over {BOUND}"
    );
    println!("{per_key} bytes per keyed breaker, {allocations} allocations, with no subscriber");

    // A subscriber costs its buffer, on that breaker only.
    let breaker = registry.breakers().get_keyed("upstream", &keys[7]).unwrap();
    let region = Region::new(&GLOBAL);
    let stream = breaker.subscribe();
    let change = region.change();
    assert!(
        change.bytes_allocated > 4096,
        "the subscriber's buffer is made when it subscribes: {change:?}"
    );
    drop(stream);
}

/// Bytes per keyed breaker, as measured on x86_64 Linux (1,244 there).
const BOUND: isize = 1_400;
