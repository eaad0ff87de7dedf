//! A splitmix64 generator on one atomic: lock-free, seedable, reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 (Steele, Lea and Flood): the state advances by a constant and
/// each output is a mix of the new state. Advancing is one `fetch_add`, so
/// concurrent callers each get a distinct output of the same sequence, and a
/// single caller gets exactly the sequence of its seed.
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// Starts the sequence of `seed` again.
    pub(crate) fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(z)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether a 32-bit uniform draw falls under `rate` (in [0, 1]): a rate of 0
/// never hits, a rate of 1 always does.
pub(crate) fn hits(draw: u32, rate: f64) -> bool {
    f64::from(draw) < rate * 4_294_967_296.0
}

/// A point of `[min, max]` picked by a 32-bit uniform draw.
pub(crate) fn pick(draw: u32, min: u64, max: u64) -> u64 {
    let span = u128::from(max - min) + 1;
    min + ((span * u128::from(draw)) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        // The first outputs of SplitMix64 seeded with 0 (reference values).
        let rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn reseeding_replays_the_sequence() {
        let rng = Rng::new(42);
        let first: Vec<u64> = (0..8).map(|_| rng.next_u64()).collect();
        rng.reseed(42);
        let again: Vec<u64> = (0..8).map(|_| rng.next_u64()).collect();
        assert_eq!(first, again);
        rng.reseed(43);
        assert_ne!(rng.next_u64(), first[0]);
    }

    #[test]
    fn rates_at_the_edges() {
        for draw in [0, 1, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
            assert!(!hits(draw, 0.0), "rate 0 never hits ({draw})");
            assert!(hits(draw, 1.0), "rate 1 always hits ({draw})");
        }
        assert!(hits(0, 0.5) && !hits(u32::MAX, 0.5));
    }

    #[test]
    fn picks_stay_in_the_range_and_reach_both_ends() {
        assert_eq!(pick(0, 10, 20), 10);
        assert_eq!(pick(u32::MAX, 10, 20), 20);
        assert_eq!(pick(u32::MAX, 7, 7), 7);
        assert_eq!(pick(u32::MAX, 0, u64::MAX), u64::MAX - u64::from(u32::MAX));
        let rng = Rng::new(1);
        for _ in 0..1_000 {
            let value = pick(rng.next_u64() as u32, 100, 200);
            assert!((100..=200).contains(&value), "{value}");
        }
    }
}
