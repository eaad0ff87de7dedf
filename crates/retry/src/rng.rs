//! Randomness for jitter: a small trait, so that tests can inject a seeded
//! or scripted source, implemented by the lock-free [`SplitMix64`] of
//! `portcullis-core`.

pub use portcullis_core::rng::SplitMix64;

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

impl Rng for SplitMix64 {
    fn next_u64(&self) -> u64 {
        SplitMix64::next_u64(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trait_draws_the_reference_splitmix64() {
        let rng = SplitMix64::new(0);
        assert_eq!(Rng::next_u64(&rng), 0xE220_A839_7B1D_CDAF);
        assert_eq!(Rng::next_u64(&rng), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(Rng::next_u64(&rng), 0x06C4_5D18_8009_454F);
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
