//! A seeded random generator for jitter and fault injection: SplitMix64 on
//! one atomic word, lock-free, reproducible.
//!
//! The layers that need randomness (retry and breaker jitter, chaos faults)
//! share one generator between every clone of a service and every thread
//! that calls it. [`SplitMix64`] advances with one relaxed `fetch_add`, so
//! concurrent callers never wait for each other and each gets a distinct
//! output of the same sequence, while a single caller gets exactly the
//! sequence of its seed — which is what makes a seeded test reproducible.
//!
//! [`unit()`] and [`pick()`] turn a draw into a number in a range. They are free
//! functions of the draw, not methods, so that one 64-bit draw can be split
//! (two 32-bit halves for two decisions) and so that code handed a draw (a
//! jitter) maps it the same way as code holding the generator.
//!
//! ```
//! use portcullis_core::rng::{self, SplitMix64};
//!
//! let rng = SplitMix64::new(7);
//! let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
//! rng.reseed(7);
//! let again: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
//! assert_eq!(first, again, "a seed gives its sequence");
//!
//! let roll = rng::pick(rng.next_u64(), 1, 6);
//! assert!((1..=6).contains(&roll));
//! let chance = rng.next_f64();
//! assert!((0.0..1.0).contains(&chance));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014): the state advances by a constant and each output is a
/// mix of the new state.
///
/// Not for secrets: it is fast and well spread, not unpredictable.
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

    /// A generator seeded from the process's random hasher keys, different
    /// in every process.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self::new(RandomState::new().hash_one(0x5EED_u32))
    }

    /// Starts the sequence of `seed` again.
    pub fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    /// The next uniform draw.
    pub fn next_u64(&self) -> u64 {
        let z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(z)
    }

    /// The next uniform `f64` in `[0, 1)`: [`unit()`] of the next draw.
    pub fn next_f64(&self) -> f64 {
        unit(self.next_u64())
    }
}

impl fmt::Debug for SplitMix64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitMix64").finish_non_exhaustive()
    }
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits of `draw`: every value
/// is a multiple of 2⁻⁵³, 0 is reached and 1 is not.
///
/// A draw whose low 32 bits are zero maps to its high half over 2³², so
/// `unit(u64::from(half) << 32) < rate` decides a 32-bit half against a
/// rate exactly.
pub fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1_u64 << 53) as f64
}

/// A point of `[low, high]` picked by a uniform `draw`; `low` if the range
/// is empty (`high < low`).
///
/// Multiply-and-shift (`low + span × draw / 2⁶⁴`): no division and no loop,
/// both ends reachable (`0` gives `low`, `u64::MAX` gives `high`), and a
/// bias of at most one part in 2⁶⁴ / span. The high bits of `draw` decide,
/// so a 32-bit draw `d` can be passed as `u64::from(d) << 32`.
pub fn pick(draw: u64, low: u64, high: u64) -> u64 {
    if high <= low {
        return low;
    }
    // At most 2^64 × (2^64 − 1): fits in a u128.
    let span = u128::from(high - low) + 1;
    low + ((span * u128::from(draw)) >> 64) as u64
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        // The first outputs of SplitMix64 seeded with 0 (reference values).
        let rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn reseeding_replays_the_sequence() {
        let rng = SplitMix64::new(42);
        let first: Vec<u64> = (0..8).map(|_| rng.next_u64()).collect();
        rng.reseed(42);
        let again: Vec<u64> = (0..8).map(|_| rng.next_u64()).collect();
        assert_eq!(first, again);
        rng.reseed(43);
        assert_ne!(rng.next_u64(), first[0]);
    }

    #[test]
    fn concurrent_callers_share_one_sequence() {
        let rng = SplitMix64::new(9);
        let mut drawn: Vec<u64> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..250).map(|_| rng.next_u64()).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|thread| thread.join().unwrap())
                .collect()
        });
        let alone = SplitMix64::new(9);
        let mut expected: Vec<u64> = (0..1_000).map(|_| alone.next_u64()).collect();
        drawn.sort_unstable();
        expected.sort_unstable();
        assert_eq!(drawn, expected, "each output once, none lost");
    }

    #[test]
    fn the_ends_of_the_ranges() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
        assert_eq!(unit(1 << 63), 0.5);
        assert_eq!(pick(0, 10, 20), 10);
        assert_eq!(pick(u64::MAX, 10, 20), 20);
        assert_eq!(pick(u64::MAX, 7, 7), 7);
        assert_eq!(pick(u64::MAX, 9, 3), 9, "an empty range gives its low end");
        assert_eq!(
            pick(12_345, 0, u64::MAX),
            12_345,
            "the whole range is the draw"
        );
        assert_eq!(pick(u64::MAX, 0, u64::MAX), u64::MAX);
    }

    proptest! {
        #[test]
        fn a_seed_always_gives_the_same_sequence(seed: u64) {
            let (a, b) = (SplitMix64::new(seed), SplitMix64::new(seed));
            for _ in 0..16 {
                prop_assert_eq!(a.next_u64(), b.next_u64());
            }
        }

        #[test]
        fn picks_stay_in_their_range(draw: u64, low: u64, width in 0_u64..1_000_000) {
            let high = low.saturating_add(width);
            let value = pick(draw, low, high);
            prop_assert!((low..=high).contains(&value), "{value} not in [{low}, {high}]");
        }

        #[test]
        fn picks_grow_with_the_draw(a: u64, b: u64, low in 0_u64..1_000, width in 0_u64..1_000) {
            let (small, large) = (a.min(b), a.max(b));
            prop_assert!(pick(small, low, low + width) <= pick(large, low, low + width));
        }

        #[test]
        fn units_are_in_zero_one(draw: u64) {
            let value = unit(draw);
            prop_assert!((0.0..1.0).contains(&value), "{value}");
        }
    }
}
