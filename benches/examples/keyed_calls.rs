//! Makes `N` calls through keyed breakers, each a lookup by `(name, key)`
//! in a registry of `KEYS` keys and a call through the breaker found, as
//! `benches/keyed.rs` does, for instruction and cache-miss counts:
//!
//! ```text
//! cargo build --release -p portcullis-benches --example keyed_calls
//! valgrind --tool=cachegrind --cache-sim=yes \
//!     target/release/examples/keyed_calls uniform 100000 200000
//! ```
//!
//! Run it twice with two values of `N` and divide the difference of the
//! counts by the difference of `N`: what is left is the cost of one call,
//! without the set-up. The law is `uniform` or `zipf`.

use std::hint::black_box;

use portcullis_benches::keys;
use portcullis_core::Outcome;

fn main() {
    let mut args = std::env::args().skip(1);
    let law = args.next().unwrap_or_else(|| "uniform".into());
    let mut number = |default: usize| {
        args.next()
            .map_or(default, |n| n.parse().expect("a number"))
    };
    let count = number(100_000);
    let calls = number(100_000);
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let registry = keys::registry(count);
    let text = match law.as_str() {
        "uniform" => keys::uniform(count),
        "zipf" => keys::zipf(count),
        other => panic!("unknown law {other:?}: uniform or zipf"),
    };
    let mut at = 0;
    for _ in 0..calls {
        let (key, next) = keys::next(&text, at);
        at = next;
        let breaker = registry
            .breakers()
            .get_keyed("upstream", key)
            .expect("found");
        let permit = breaker.try_acquire().expect("closed");
        permit.record(black_box(Outcome::Success));
    }
}
