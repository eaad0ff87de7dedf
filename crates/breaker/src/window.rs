//! Sliding windows of call outcomes, lock-free, O(1) per call and O(window)
//! memory whatever the traffic.
//!
//! - [`CountWindow`] keeps the last `size` outcomes in a ring of one byte per
//!   slot. Recording claims the next slot with one `fetch_add`, swaps the new
//!   outcome in (or skips the write when the slot already holds the same
//!   outcome, the common all-success case) and adjusts the failure and slow
//!   totals by the difference between the new outcome and the evicted one.
//! - [`TimeWindow`] keeps monotonic cumulative counters and, per bucket, a
//!   mark of the counters at the bucket's start. The calls in the window are
//!   the counters now minus the mark of the oldest bucket still in the window,
//!   so eviction happens at bucket granularity and recording is one
//!   `fetch_add` plus a comparison with the next bucket boundary. Rotating to
//!   a new bucket (once per bucket span, not per call) writes the marks of the
//!   buckets that saw no traffic.
//!
//! Totals are read after the recorder's own update with sequentially
//! consistent operations, so of two concurrent recorders the later one sees
//! both outcomes: a threshold crossing is never missed.

use portcullis_core::sync::{AtomicI64, AtomicU8, AtomicU64, Ordering};

/// An outcome as stored in a window slot.
pub(crate) const RECORDED: u8 = 1;
/// The outcome was a failure.
pub(crate) const FAILED: u8 = 2;
/// The call took longer than the slow-call threshold.
pub(crate) const SLOW: u8 = 4;

/// Totals of the calls in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// A count-based or time-based window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

/// The last `size` outcomes.
#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u32,
    /// `u64::MAX / size + 1`, for a division-free `index % size`.
    fastmod: u64,
    /// How many outcomes were recorded since the last reset.
    head: AtomicU64,
    slots: Box<[AtomicU8]>,
    /// May dip below zero for an instant while two recorders race on one
    /// slot; readers clamp.
    failures: AtomicI64,
    slow: AtomicI64,
}

/// The outcomes of the last `buckets` spans of `bucket_micros`.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_micros: u64,
    buckets: u64,
    /// Cumulative calls (low 32 bits) and failures (high 32 bits), wrapping.
    /// Differences of two readings are exact while the window holds fewer
    /// than 2^32 calls.
    totals: AtomicU64,
    /// Cumulative slow calls.
    slow: AtomicU64,
    /// The last bucket the marks were brought up to, plus one (0: never).
    epoch: AtomicU64,
    /// The time (in micros) at which the current bucket ends.
    next_rotation: AtomicU64,
    /// Per bucket `j` (at `j % buckets`): `totals` and `slow` at its start.
    marks: Box<[(AtomicU64, AtomicU64)]>,
    /// The marks of the oldest bucket in the window.
    base: (AtomicU64, AtomicU64),
}

/// The contribution of an outcome to a time window's packed totals.
fn packed(outcome: u8) -> u64 {
    1 | (u64::from(outcome & FAILED != 0) << 32)
}

fn failed(outcome: u8) -> i64 {
    i64::from(outcome & FAILED != 0)
}

fn slow(outcome: u8) -> i64 {
    i64::from(outcome & SLOW != 0)
}

impl Window {
    /// Records an outcome (a combination of `RECORDED`, `FAILED`, `SLOW`)
    /// and returns the totals that include it, or `None` when the outcome
    /// cannot have made any rate cross a threshold: a plain success in a
    /// count window that does not bring the calls up to `minimum_calls`
    /// (it can only lower the rates). `now` is read only by time windows,
    /// where a success may also evict older failures' successes and so is
    /// always judged.
    #[inline]
    pub(crate) fn record(
        &self,
        outcome: u8,
        now: impl FnOnce() -> u64,
        minimum_calls: u64,
    ) -> Option<Counts> {
        match self {
            Self::Count(window) => window.record(outcome, minimum_calls),
            Self::Time(window) => Some(window.record(outcome, now())),
        }
    }

    /// The totals now, without recording.
    pub(crate) fn counts(&self, now: impl FnOnce() -> u64) -> Counts {
        match self {
            Self::Count(window) => window.counts(),
            Self::Time(window) => window.counts(now()),
        }
    }

    /// Forgets every outcome.
    pub(crate) fn reset(&self) {
        match self {
            Self::Count(window) => window.reset(),
            Self::Time(window) => window.reset(),
        }
    }

    /// Whether recording reads the clock.
    #[inline]
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Self::Time(_))
    }
}

impl CountWindow {
    /// A window of the last `size` outcomes (`size >= 1`).
    pub(crate) fn new(size: u32) -> Self {
        assert!(size > 0, "a count window holds at least one call");
        Self {
            size,
            fastmod: (u64::MAX / u64::from(size)).wrapping_add(1),
            head: AtomicU64::new(0),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    /// `index % size` without a division (Lemire's fastmod).
    #[inline]
    fn slot(&self, index: u64) -> &AtomicU8 {
        let low = self.fastmod.wrapping_mul(u64::from(index as u32));
        let slot = ((u128::from(low) * u128::from(self.size)) >> 64) as usize;
        &self.slots[slot]
    }

    #[inline]
    fn record(&self, outcome: u8, minimum_calls: u64) -> Option<Counts> {
        let index = self.head.fetch_add(1, Ordering::SeqCst);
        let slot = self.slot(index);
        let evicted = if slot.load(Ordering::Relaxed) == outcome {
            outcome
        } else {
            slot.swap(outcome, Ordering::Relaxed)
        };
        let failures = failed(outcome) - failed(evicted);
        if failures != 0 {
            self.failures.fetch_add(failures, Ordering::SeqCst);
        }
        let slows = slow(outcome) - slow(evicted);
        if slows != 0 {
            self.slow.fetch_add(slows, Ordering::SeqCst);
        }
        if outcome == RECORDED && index + 1 != minimum_calls {
            return None;
        }
        Some(self.counts())
    }

    #[inline]
    fn counts(&self) -> Counts {
        let calls = self.head.load(Ordering::SeqCst).min(u64::from(self.size));
        let clamp = |value: i64| (value.max(0) as u64).min(calls);
        Counts {
            calls,
            failures: clamp(self.failures.load(Ordering::SeqCst)),
            slow: clamp(self.slow.load(Ordering::SeqCst)),
        }
    }

    fn reset(&self) {
        self.head.store(0, Ordering::SeqCst);
        for slot in self.slots.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::SeqCst);
        self.slow.store(0, Ordering::SeqCst);
    }
}

impl TimeWindow {
    /// A window of `buckets` spans of `bucket_micros` each (both `>= 1`).
    pub(crate) fn new(bucket_micros: u64, buckets: u32) -> Self {
        assert!(
            bucket_micros > 0 && buckets > 0,
            "a time window has at least one bucket"
        );
        Self {
            bucket_micros,
            buckets: u64::from(buckets),
            totals: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            next_rotation: AtomicU64::new(0),
            marks: (0..buckets)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            base: (AtomicU64::new(0), AtomicU64::new(0)),
        }
    }

    #[inline]
    fn record(&self, outcome: u8, now: u64) -> Counts {
        if now >= self.next_rotation.load(Ordering::Acquire) {
            self.rotate(now);
        }
        self.totals.fetch_add(packed(outcome), Ordering::SeqCst);
        if outcome & SLOW != 0 {
            self.slow.fetch_add(1, Ordering::SeqCst);
        }
        self.read()
    }

    #[inline]
    fn counts(&self, now: u64) -> Counts {
        if now >= self.next_rotation.load(Ordering::Acquire) {
            self.rotate(now);
        }
        self.read()
    }

    #[inline]
    fn read(&self) -> Counts {
        let totals = self.totals.load(Ordering::SeqCst);
        let slow = self.slow.load(Ordering::SeqCst);
        let in_window = totals.wrapping_sub(self.base.0.load(Ordering::SeqCst));
        let calls = in_window & 0xFFFF_FFFF;
        Counts {
            calls,
            failures: (in_window >> 32).min(calls),
            slow: slow
                .wrapping_sub(self.base.1.load(Ordering::SeqCst))
                .min(calls),
        }
    }

    /// Moves the window to the bucket that contains `now`. One caller per
    /// bucket boundary wins and writes the marks; the others go on.
    #[cold]
    #[inline(never)]
    fn rotate(&self, now: u64) {
        let bucket = now / self.bucket_micros;
        let last = self.epoch.load(Ordering::Acquire);
        if bucket < last
            || self
                .epoch
                .compare_exchange(last, bucket + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        // No call was recorded in the buckets from `last` to `bucket` before
        // now, so they all start at the current totals.
        let totals = self.totals.load(Ordering::SeqCst);
        let slow = self.slow.load(Ordering::SeqCst);
        let oldest = (bucket + 1).saturating_sub(self.buckets);
        for j in last.max(oldest)..=bucket {
            let mark = &self.marks[(j % self.buckets) as usize];
            mark.0.store(totals, Ordering::SeqCst);
            mark.1.store(slow, Ordering::SeqCst);
        }
        let mark = &self.marks[(oldest % self.buckets) as usize];
        self.base
            .0
            .store(mark.0.load(Ordering::SeqCst), Ordering::SeqCst);
        self.base
            .1
            .store(mark.1.load(Ordering::SeqCst), Ordering::SeqCst);
        self.next_rotation.store(
            (bucket + 1).saturating_mul(self.bucket_micros),
            Ordering::Release,
        );
    }

    fn reset(&self) {
        // Everything recorded so far falls before the base.
        let totals = self.totals.load(Ordering::SeqCst);
        let slow = self.slow.load(Ordering::SeqCst);
        for mark in self.marks.iter() {
            mark.0.store(totals, Ordering::SeqCst);
            mark.1.store(slow, Ordering::SeqCst);
        }
        self.base.0.store(totals, Ordering::SeqCst);
        self.base.1.store(slow, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u8 = RECORDED;
    const F: u8 = RECORDED | FAILED;

    #[test]
    fn count_window_slides() {
        let window = CountWindow::new(10);
        for _ in 0..1_000 {
            window.record(S, 0);
        }
        assert_eq!(
            window.counts(),
            Counts {
                calls: 10,
                failures: 0,
                slow: 0
            }
        );
        for _ in 0..5 {
            window.record(F, 0);
        }
        assert_eq!(window.counts().failures, 5);
        for _ in 0..10 {
            window.record(S, 0);
        }
        assert_eq!(window.counts().failures, 0);
    }

    #[test]
    fn count_window_fills_then_holds_size() {
        let window = CountWindow::new(3);
        assert_eq!(window.record(F, 0).unwrap().calls, 1);
        assert_eq!(
            window.record(S, 2).unwrap().calls,
            2,
            "reaching the minimum is judged"
        );
        assert_eq!(window.record(S | SLOW, 0).unwrap().calls, 3);
        assert_eq!(window.record(S, 0), None, "a plain success is not judged");
        assert_eq!(
            window.counts(),
            Counts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
        window.reset();
        assert_eq!(window.counts(), Counts::default());
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        // 10 buckets of 1s.
        let window = TimeWindow::new(1_000_000, 10);
        let second = 1_000_000;
        for _ in 0..4 {
            window.record(F, 100 * second);
        }
        for _ in 0..6 {
            window.record(S, 105 * second);
        }
        assert_eq!(
            window.counts(109 * second + 999_999),
            Counts {
                calls: 10,
                failures: 4,
                slow: 0
            }
        );
        // At 110s the bucket of 100s leaves the window.
        assert_eq!(
            window.counts(110 * second),
            Counts {
                calls: 6,
                failures: 0,
                slow: 0
            }
        );
        // At 115s everything is gone.
        assert_eq!(window.counts(115 * second), Counts::default());
        assert_eq!(
            window.record(F | SLOW, 200 * second),
            Counts {
                calls: 1,
                failures: 1,
                slow: 1
            }
        );
    }

    #[test]
    fn time_window_reset_forgets_everything() {
        let window = TimeWindow::new(1_000, 5);
        window.record(F, 10);
        window.reset();
        assert_eq!(window.counts(20), Counts::default());
        assert_eq!(window.record(S, 30).calls, 1);
    }

    proptest! {
        /// The count window always agrees with a naive model of its last
        /// `size` outcomes.
        #[test]
        fn count_window_matches_a_model(size in 1u32..20, outcomes in proptest::collection::vec(0u8..4, 0..200)) {
            let window = CountWindow::new(size);
            let mut model = std::collections::VecDeque::new();
            for o in outcomes {
                let outcome = RECORDED | if o & 1 != 0 { FAILED } else { 0 } | if o & 2 != 0 { SLOW } else { 0 };
                model.push_back(outcome);
                if model.len() > size as usize {
                    model.pop_front();
                }
                prop_assert!(window.record(outcome, 0).is_some() || outcome == RECORDED);
                let counts = window.counts();
                prop_assert_eq!(counts.calls, model.len() as u64);
                prop_assert_eq!(counts.failures, model.iter().filter(|o| *o & FAILED != 0).count() as u64);
                prop_assert_eq!(counts.slow, model.iter().filter(|o| *o & SLOW != 0).count() as u64);
            }
        }

        /// The time window counts exactly the calls of the buckets that
        /// overlap the last `buckets` bucket spans.
        #[test]
        fn time_window_matches_a_model(buckets in 1u32..8, steps in proptest::collection::vec((0u64..3_000, any::<bool>()), 0..100)) {
            let window = TimeWindow::new(1_000, buckets);
            let mut now = 0;
            let mut model: Vec<(u64, bool)> = Vec::new();
            for (advance, failure) in steps {
                now += advance;
                model.push((now / 1_000, failure));
                let counts = window.record(if failure { F } else { S }, now);
                let oldest = (now / 1_000 + 1).saturating_sub(u64::from(buckets));
                let live: Vec<_> = model.iter().filter(|(b, _)| *b >= oldest).collect();
                prop_assert_eq!(counts.calls, live.len() as u64);
                prop_assert_eq!(counts.failures, live.iter().filter(|(_, f)| *f).count() as u64);
            }
        }
    }

    #[test]
    fn fastmod_is_modulo() {
        for size in [1u32, 2, 3, 7, 10, 100, 1_000_000] {
            let window = CountWindow::new(size.min(1000));
            for index in [
                0u64,
                1,
                5,
                99,
                1_000,
                u64::from(u32::MAX),
                u64::from(u32::MAX) + 1,
            ] {
                let slot = window.slot(index) as *const AtomicU8 as usize;
                let base = window.slots.as_ptr() as usize;
                assert_eq!(slot - base, (index as u32 % window.size) as usize);
            }
        }
    }
}
