//! Keyed breakers at scale: a lookup by `(name, key)` in the registry and
//! a call through the breaker found, with 10, 10,000 and 100,000 keys of
//! one name, and the bytes each key holds.
//!
//! - `keyed/uniform/<keys>`: every call picks its key uniformly at random
//!   from all of them: the worst case for the caches, where the 100,000
//!   keys' state is far larger than the last-level cache and most calls
//!   miss it.
//! - `keyed/zipf/<keys>`: keys picked with Zipf's law (exponent 1), as
//!   traffic spreads over hosts or tenants: a few keys take most calls.
//!
//! The keys called are read in order from a precomputed text (see
//! `portcullis_benches::keys`), so that picking one costs no cache miss.
//! The bytes per key (with the registry's index and hooks, no event
//! subscriber) are counted by the global allocator while the keys are
//! made, and printed before each size's rows.
//!
//! Run with `cargo bench -p portcullis-benches --bench keyed`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{keys, runtime};
use portcullis_core::Outcome;
use portcullis_testing::alloc::{Counting, Region};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn keyed(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("keyed");
    for count in [10, 10_000, 100_000] {
        let region = Region::new(&GLOBAL);
        let registry = keys::registry(count);
        let change = region.change();
        println!(
            "keyed/{count}: {} bytes per key, {} allocations per key (with the registry's own)",
            change.net_bytes() / count as isize,
            change.allocations / count
        );
        for (law, text) in [
            ("uniform", keys::uniform(count)),
            ("zipf", keys::zipf(count)),
        ] {
            let mut at = 0;
            group.bench_function(format!("{law}/{count}"), |b| {
                b.iter(|| {
                    let (key, next) = keys::next(&text, at);
                    at = next;
                    let breaker = registry
                        .breakers()
                        .get_keyed("upstream", key)
                        .expect("found");
                    let permit = breaker.try_acquire().expect("closed");
                    permit.record(black_box(Outcome::Success));
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, keyed);
criterion_main!(benches);
