//! A lock-free latency histogram over a rotating window, for the
//! percentile delay.
//!
//! Latencies are counted in microseconds, in log-linear buckets: exact
//! below 16 µs, then 16 buckets per power of two, so a bucket is at most
//! 1/16 (6.25 %) wider than its lower edge; 384 buckets reach 2²⁷ µs
//! (about 134 s), and anything longer counts in the last one. A
//! percentile is read as the **upper edge** of the bucket it falls in: it
//! is never below the true percentile of the counted latencies, and at
//! most 6.25 % (or 1 µs) above it.
//!
//! The window is two generations of buckets, each a `period` long and
//! chosen by the clock (`now / period`): latencies count into the current
//! one, a percentile reads both, so it covers between one and two periods
//! of calls. Recording is a load of the generation and one `fetch_add`. The
//! first recording in a new period rotates: it clears the generation about
//! to be reused (the one before the previous period) and then publishes
//! the new period, so that no latency of the new period lands in a
//! generation that is still being cleared. One caller rotates; the others
//! go on counting into the previous generation meanwhile, which is read
//! too. A caller held off the CPU for a whole period between reading the
//! generation and counting may count one latency into a generation being
//! cleared: it is then lost, never counted twice. Checked with `loom`.

use portcullis_core::sync::{AtomicBool, AtomicU64, Ordering};

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets per generation.
pub(crate) const BUCKETS: usize = 384;

/// The rotating histogram; time comes in as nanoseconds of a clock.
pub(crate) struct Histogram {
    period_nanos: u64,
    /// The current period (`now / period_nanos`).
    epoch: AtomicU64,
    rotating: AtomicBool,
    /// Generation `g` counts the periods `p` with `p % 2 == g`.
    generations: [Box<[AtomicU64]>; 2],
}

impl Histogram {
    pub(crate) fn new(period_nanos: u64) -> Self {
        Self::with_buckets(period_nanos, BUCKETS)
    }

    pub(crate) fn with_buckets(period_nanos: u64, buckets: usize) -> Self {
        let generation = || (0..buckets).map(|_| AtomicU64::new(0)).collect();
        Self {
            period_nanos: period_nanos.max(1),
            epoch: AtomicU64::new(0),
            rotating: AtomicBool::new(false),
            generations: [generation(), generation()],
        }
    }

    /// Counts one latency of `micros` at time `now`.
    #[inline]
    pub(crate) fn record(&self, now: u64, micros: u64) {
        self.rotate(now);
        let generation = &self.generations[(self.epoch.load(Ordering::Acquire) % 2) as usize];
        let index = bucket(micros).min(generation.len() - 1);
        generation[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The latency (in microseconds) at or below which a fraction `p` of
    /// the counted ones fall, as the upper edge of its bucket; `None` with
    /// fewer than `min_count` latencies in the window.
    pub(crate) fn percentile(&self, now: u64, p: f64, min_count: u64) -> Option<u64> {
        self.rotate(now);
        let [a, b] = &self.generations;
        let count = |i: usize| a[i].load(Ordering::Relaxed) + b[i].load(Ordering::Relaxed);
        let total: u64 = (0..a.len()).map(count).sum();
        if total == 0 || total < min_count {
            return None;
        }
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for i in 0..a.len() {
            seen += count(i);
            if seen >= rank {
                return Some(upper_edge(i));
            }
        }
        Some(upper_edge(a.len() - 1))
    }

    /// How many latencies the window holds.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.generations
            .iter()
            .flat_map(|generation| generation.iter())
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .sum()
    }

    /// Moves to the period of `now`, clearing what falls out of the window.
    #[inline]
    fn rotate(&self, now: u64) {
        let epoch = now / self.period_nanos;
        if epoch <= self.epoch.load(Ordering::Acquire) {
            return;
        }
        self.rotate_slow(epoch);
    }

    #[cold]
    fn rotate_slow(&self, epoch: u64) {
        if self.rotating.swap(true, Ordering::Acquire) {
            return;
        }
        let current = self.epoch.load(Ordering::Acquire);
        if epoch > current {
            // The generation of `epoch` held the period before `current`;
            // after a gap of two periods or more, `current`'s is stale too.
            let stale: &[usize] = if epoch == current + 1 {
                &[(epoch % 2) as usize]
            } else {
                &[0, 1]
            };
            for &generation in stale {
                for bucket in self.generations[generation].iter() {
                    bucket.store(0, Ordering::Relaxed);
                }
            }
            self.epoch.store(epoch, Ordering::Release);
        }
        self.rotating.store(false, Ordering::Release);
    }
}

/// The bucket of a latency of `micros`.
#[inline]
pub(crate) fn bucket(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    let mantissa = (micros >> (exponent - SUB_BITS)) & (SUB - 1);
    ((u64::from(exponent - SUB_BITS + 1) << SUB_BITS) + mantissa) as usize
}

/// The smallest latency, in microseconds, that falls past bucket `index`.
pub(crate) fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index + 1;
    }
    let exponent = (index >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let mantissa = index & (SUB - 1);
    (SUB + mantissa + 1) << (exponent - u64::from(SUB_BITS))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn buckets_are_exact_then_within_a_sixteenth() {
        for micros in 0..16 {
            assert_eq!(bucket(micros), micros as usize);
            assert_eq!(upper_edge(bucket(micros)), micros + 1);
        }
        let mut previous = 0;
        for micros in (16..2_000_000).step_by(7) {
            let index = bucket(micros);
            assert!(index >= previous, "buckets grow with the latency");
            previous = index;
            let edge = upper_edge(index);
            assert!(
                edge > micros,
                "{micros} is below its bucket's upper edge {edge}"
            );
            assert!(
                (edge - micros) as f64 <= micros as f64 / 16.0 + 1.0,
                "{micros}: edge {edge} is within a sixteenth"
            );
            if index > 0 {
                assert!(
                    upper_edge(index - 1) <= micros,
                    "{micros} is past the bucket before"
                );
            }
        }
        assert_eq!(bucket(16), 16);
        assert_eq!(bucket(31), 31);
        assert_eq!(bucket(32), 32);
        assert!(bucket(1 << 27) >= BUCKETS, "past 2^27 µs: the last bucket");
        assert!(bucket((1 << 27) - 1) < BUCKETS);
    }

    #[test]
    fn percentiles_of_known_data() {
        let histogram = Histogram::new(10 * SEC);
        assert_eq!(histogram.percentile(0, 0.5, 1), None, "no data");
        // 1..=100 ms, one each.
        for ms in 1..=100 {
            histogram.record(0, ms * 1000);
        }
        assert_eq!(histogram.percentile(0, 0.5, 101), None, "below the minimum");
        let p50 = histogram.percentile(0, 0.5, 100).unwrap();
        assert!((50_000..=53_125).contains(&p50), "p50 {p50}");
        let p95 = histogram.percentile(0, 0.95, 100).unwrap();
        assert!((95_000..=100_938).contains(&p95), "p95 {p95}");
        let p100 = histogram.percentile(0, 1.0, 1).unwrap();
        assert!((100_000..=106_250).contains(&p100), "max {p100}");
    }

    #[test]
    fn the_window_is_this_period_and_the_one_before() {
        let histogram = Histogram::new(SEC);
        histogram.record(0, 1000);
        histogram.record(SEC, 2000);
        assert_eq!(histogram.count(), 2, "period 0 is the previous one");
        histogram.record(2 * SEC, 3000);
        assert_eq!(histogram.count(), 2, "period 0 left the window");
        assert_eq!(histogram.percentile(2 * SEC, 0.01, 1), Some(2048));
        // A gap of two periods forgets everything.
        assert_eq!(histogram.percentile(4 * SEC, 0.5, 1), None);
        assert_eq!(histogram.count(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two callers count the first latencies of a new period while one of
    /// them rotates: the previous period's latency and both new ones are in
    /// the window afterwards, whatever the interleaving.
    #[test]
    fn a_rotation_loses_no_latency() {
        loom::model(|| {
            let histogram = Arc::new(Histogram::with_buckets(10, 2));
            histogram.record(5, 0);
            let other = {
                let histogram = histogram.clone();
                thread::spawn(move || histogram.record(15, 1))
            };
            histogram.record(15, 0);
            other.join().unwrap();
            let count: u64 = histogram
                .generations
                .iter()
                .flat_map(|generation| generation.iter())
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .sum();
            assert_eq!(count, 3);
            assert_eq!(histogram.epoch.load(Ordering::Relaxed), 1);
        });
    }
}
