//! Randomness for jitter: a small trait, so that tests can inject a seeded
//! or scripted source, and a lock-free SplitMix64 that implements it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A source of uniform random `u64`s, shared by every call of a retry.
///
/// Implemented by [`SplitMix64`] (the default, seeded from
/// [`RetryConfigBuilder::jitter_seed`](crate::RetryConfigBuilder::jitter_seed)
/// or at random) and by closures `Fn() -> u64`, so a test can script the
/// draws:
///
/// ```
/// use portcullis_retry::{FullJitter, Jitter, Rng, Step};
/// use std::time::Duration;
///
/// let always_max = || u64::MAX;
/// let step = Step::new(1, Duration::from_secs(1), Duration::ZERO, Duration::from_secs(1), Duration::from_secs(1));
/// assert_eq!(FullJitter.jitter(step, always_max.next_u64()), Duration::from_secs(1));
/// ```
pub trait Rng: Send + Sync {
    /// The next uniform draw.
    fn next_u64(&self) -> u64;
}

/// SplitMix64 (Steele, Lea and Flood) on one atomic: advancing is one
/// `fetch_add`, so concurrent callers each get a distinct output of the same
/// sequence, and a single caller gets exactly the sequence of its seed.
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    /// The sequence of `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the process's random hasher keys.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self::new(RandomState::new().hash_one(0x5EED_u32))
    }
}

impl Rng for SplitMix64 {
    fn next_u64(&self) -> u64 {
        let z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(z)
    }
}

impl<F> Rng for F
where
    F: Fn() -> u64 + Send + Sync,
{
    fn next_u64(&self) -> u64 {
        self()
    }
}

impl fmt::Debug for SplitMix64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitMix64").finish_non_exhaustive()
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        let rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn a_seed_gives_its_sequence_and_closures_are_sources() {
        let a: Vec<u64> = {
            let rng = SplitMix64::new(7);
            (0..4).map(|_| rng.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let rng = SplitMix64::new(7);
            (0..4).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(SplitMix64::new(8).next_u64(), a[0]);
        let fixed = || 42_u64;
        assert_eq!(Rng::next_u64(&fixed), 42);
    }
}
