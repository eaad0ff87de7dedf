//! What a keyed breaker costs when nobody subscribes to its events, with
//! the registry's own index and the hook that pushes its events: counted
//! with an instrumented global allocator, in a plain `main` so that no
//! other thread allocates meanwhile.
//!
//! A breaker keeps no event buffer until somebody subscribes, no duration
//! per slot until it times a call, and no transition counts or open and
//! half-open bookkeeping until its first transition; the keyed breakers of
//! one name share one configuration; the bound below holds that line. The
//! breakdown printed splits the bytes between the breaker itself (as a
//! sibling made outside the registry) and the registry's index, slot and
//! hook. Then waves of as many new keys evict the idle ones one by one,
//! and the bytes held stop growing.
#![cfg(not(loom))]

use portcullis_breaker::Breaker;
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

    // The breaker's own share: as many siblings, made outside the registry.
    let first = registry.breakers().get_keyed("upstream", &keys[0]).unwrap();
    let mut siblings: Vec<Breaker> = Vec::with_capacity(KEYS - 1);
    let region = Region::new(&GLOBAL);
    siblings.extend((1..KEYS).map(|_| first.sibling()));
    let change = region.change();
    let breaker = change.net_bytes() / (KEYS as isize - 1);
    let breaker_allocations = change.allocations / (KEYS - 1);
    assert!(breaker > 0 && breaker < per_key, "{breaker} of {per_key}");
    println!(
        "of which the breaker {breaker} bytes ({breaker_allocations} allocations), \
         the registry's index, slot and hook {} bytes ({} allocations)",
        per_key - breaker,
        allocations.saturating_sub(breaker_allocations)
    );
    drop(siblings);

    // Idle keys make room: each wave of as many new keys evicts the keys
    // before it (closed, nothing in their windows, not looked up since) one
    // by one. The first such wave may double the index's table once (a hash
    // table that sees as many removals as inserts grows to twice its size
    // before it cleans up in place); after that, the bytes held stay put.
    drop(first);
    let mut growth = Vec::new();
    for wave in ["next", "last"] {
        let newcomers: Vec<String> = (0..KEYS)
            .map(|i| format!("{wave}-{i:06}.example"))
            .collect();
        let region = Region::new(&GLOBAL);
        for key in &newcomers {
            registry.breakers().get_keyed("upstream", key).unwrap();
        }
        let change = region.change();
        assert_eq!(registry.len(), KEYS, "still at most max_keys keys");
        let breakers = registry.breakers();
        assert!(breakers.find("upstream", Some(&keys[KEYS / 2])).is_none());
        assert!(
            breakers
                .find("upstream", Some(&newcomers[KEYS - 1]))
                .is_some()
        );
        growth.push(change.net_bytes() / KEYS as isize);
    }
    println!(
        "two waves of {KEYS} new keys evicted the idle ones: {growth:?} bytes per key of growth"
    );
    assert!(
        growth[0] <= 40,
        "at most the index's table doubled: {growth:?}"
    );
    assert!(
        growth[1].abs() < 4,
        "the evicted breakers are freed: {growth:?}"
    );

    // A subscriber costs its buffer, on that breaker only.
    let breaker = registry
        .breakers()
        .get_keyed("upstream", "last-000007.example")
        .unwrap();
    let region = Region::new(&GLOBAL);
    let stream = breaker.subscribe();
    let change = region.change();
    assert!(
        change.bytes_allocated > 4096,
        "the subscriber's buffer is made when it subscribes: {change:?}"
    );
    drop(stream);
}

/// Bytes per keyed breaker, as measured on x86_64 Linux (496 there, 1,244
/// before the keyed breakers of a name shared their configuration).
const BOUND: isize = 512;
