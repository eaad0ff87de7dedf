//! Helpers shared by the benchmarks in `benches/` and their examples: drive
//! a `tower` service through one call without an executor, so that a
//! benchmark measures the layer and not a runtime; the inner service every
//! contender wraps; the runtime the calls are made in; the breaker configs.
//! (The full stacks that `benches/stack.rs` and `tests/stack_alloc.rs`
//! share are in `stacks.rs`, included by both, so that the peers stay
//! dev-dependencies.)

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig};
pub use portcullis_testing::{PendingOnce, call, call_ready};
use tower::service_fn;
use tower::util::ServiceFn;

/// The service every contender wraps: answers with its request, at once.
pub fn inner() -> ServiceFn<impl Fn(u64) -> Ready<Result<u64, Infallible>> + Clone + Send + 'static>
{
    service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)))
}

pub use portcullis_testing::runtime;

/// The breaker benchmarks' count window: the last 100 calls.
pub fn count_config() -> BreakerConfig {
    BreakerConfig::builder()
        .count_window(100)
        .build()
        .expect("a valid count-window configuration")
}

/// The breaker benchmarks' time window: 60 s in 60 buckets, 20 calls at
/// least.
pub fn time_config() -> BreakerConfig {
    BreakerConfig::builder()
        .time_window(Duration::from_secs(60), 60)
        .minimum_calls(20)
        .build()
        .expect("a valid time-window configuration")
}

/// A breaker named `bench` with `config`.
pub fn breaker(config: BreakerConfig) -> Breaker {
    Breaker::from_config("bench", config).expect("a valid configuration")
}

/// The keyed workloads of `benches/keyed.rs` and the `keyed_calls`
/// example: a registry with one name of many keyed breakers, and texts of
/// keys to call them by, laid out one after the other and read in order,
/// as a server has its key at hand in the request it just parsed.
pub mod keys {
    use portcullis_registry::Registry;

    /// Keys in a text of picks; a power of two, so that the next pick is a
    /// mask away, and large enough that the text does not fit in the cache.
    pub const PICKS: usize = 1 << 20;

    /// The length of every key, so that the `i`-th pick of a text is at
    /// `i * NAME_LEN`; a power of two, as the offset wraps with a mask.
    pub const NAME_LEN: usize = 32;

    /// The `i`-th key, [`NAME_LEN`] bytes long.
    pub fn name(i: usize) -> String {
        format!("host-{i:06}.region-1.example.com")
    }

    /// The key at offset `at` of `text`, and the offset of the next one.
    pub fn next(text: &str, at: usize) -> (&str, usize) {
        (
            &text[at..at + NAME_LEN],
            (at + NAME_LEN) & (PICKS * NAME_LEN - 1),
        )
    }

    /// A registry whose breakers named `upstream` have `keys` keys, made
    /// in the order of their names: `max_keys` is `keys`.
    pub fn registry(keys: usize) -> Registry {
        let registry = Registry::builder()
            .max_keys(keys)
            .build()
            .expect("a valid registry");
        for i in 0..keys {
            registry
                .breakers()
                .get_keyed("upstream", &name(i))
                .expect("room");
        }
        registry
    }

    /// [`PICKS`] keys among `keys`, each picked uniformly at random: the
    /// worst case for the caches.
    pub fn uniform(keys: usize) -> String {
        let mut next = rng();
        text((0..PICKS).map(|_| (next() % keys as u64) as usize))
    }

    /// [`PICKS`] keys among `keys` picked with Zipf's law (exponent 1), as
    /// traffic spreads over hosts or tenants: a few keys take most calls.
    pub fn zipf(keys: usize) -> String {
        let mut cumulative = Vec::with_capacity(keys);
        let mut total = 0.0;
        for rank in 1..=keys {
            total += 1.0 / rank as f64;
            cumulative.push(total);
        }
        let mut next = rng();
        text((0..PICKS).map(|_| {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64 * total;
            cumulative.partition_point(|&c| c < u).min(keys - 1)
        }))
    }

    fn text(picks: impl Iterator<Item = usize>) -> String {
        let mut text = String::with_capacity(PICKS * NAME_LEN);
        for i in picks {
            text.push_str(&name(i));
        }
        text
    }

    /// A xorshift generator: the same sequence in every run.
    fn rng() -> impl FnMut() -> u64 {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
