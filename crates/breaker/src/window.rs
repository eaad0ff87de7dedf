//! Sliding windows of call outcomes, lock-free, O(1) per call and O(window)
//! memory whatever the traffic.
//!
//! - [`CountWindow`] keeps the last `size` outcomes in a ring of three bits
//!   per slot (failed, slow, timed), 21 slots to a 64-bit word: 40 bytes for
//!   the default 100 calls. Recording claims the next slot with one
//!   `fetch_add`, swaps the new outcome into its three bits (a
//!   compare-and-swap of the word, which only the neighbours of the slot
//!   being written at that moment can make it try again; none is done when
//!   the slot already holds the same outcome, the common all-success case)
//!   and adjusts the failure and slow totals by the difference between the
//!   new outcome and the evicted one. The swap is of the slot's own bits,
//!   as exact as a swap of a byte: the window counts exactly its last
//!   `size` outcomes.
//! - [`TimeWindow`] keeps monotonic cumulative counters and, per bucket, a
//!   mark of the counters at the bucket's start. The calls in the window are
//!   the counters now minus the mark of the oldest bucket still in the window,
//!   so eviction happens at bucket granularity and recording is one
//!   `fetch_add` plus a comparison with the next bucket boundary. Rotating to
//!   a new bucket (once per bucket span, not per call) writes the marks of the
//!   buckets that saw no traffic.
//!
//! Both also keep the durations of the timed calls they hold (a sum and a
//! count, adjusted like the failure and slow totals), touched only by a
//! timed call or the eviction of one, and the cumulative number of calls
//! recorded since the window was made, which no reset clears.
//!
//! Totals are read after the recorder's own update with sequentially
//! consistent operations, so of two concurrent recorders the later one sees
//! both outcomes: a threshold crossing is never missed.

use std::sync::OnceLock;

use portcullis_core::sync::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// An outcome as stored in a window slot.
pub(crate) const RECORDED: u8 = 1;
/// The outcome was a failure.
pub(crate) const FAILED: u8 = 2;
/// The call took longer than the slow-call threshold.
pub(crate) const SLOW: u8 = 4;
/// The call was timed: its duration comes with it.
pub(crate) const TIMED: u8 = 8;

/// Totals of the calls in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// The durations of the timed calls in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Durations {
    /// Timed calls.
    pub(crate) calls: u64,
    /// The sum of their durations, in microseconds.
    pub(crate) micros: u64,
}

/// A count-based or time-based window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    /// Boxed: a breaker with a count window (the default, and what keyed
    /// breakers mostly have) does not pay for the larger time window.
    Time(Box<TimeWindow>),
}

/// The last `size` outcomes.
#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u32,
    /// `u64::MAX / size + 1`, for a division-free `index % size`.
    fastmod: u64,
    /// How many outcomes were recorded since the window was made.
    head: AtomicU64,
    /// `head` at the last reset.
    start: AtomicU64,
    /// The outcomes, [`SLOT_BITS`] per slot, [`PER_WORD`] slots per word.
    slots: Box<[AtomicU64]>,
    /// May dip below zero for an instant while two recorders race on one
    /// slot; readers clamp.
    failures: AtomicI64,
    slow: AtomicI64,
    /// The durations of the timed calls, made at the first timed call: a
    /// breaker that times nothing keeps three bits per slot.
    timing: OnceLock<Box<Timing>>,
}

/// What a count window keeps of the timed calls in it.
#[derive(Debug)]
struct Timing {
    /// Timed calls in the window and the sum of their durations (micros).
    timed: AtomicI64,
    micros: AtomicI64,
    /// Per slot, the duration of a timed call (micros, saturated); 0 for an
    /// untimed one.
    durations: Box<[AtomicU32]>,
}

/// Bits per slot of a count window: an outcome without `RECORDED` (which
/// every stored outcome has, and an empty slot needs not), shifted down.
const SLOT_BITS: u32 = 3;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Slots per word.
const PER_WORD: usize = (u64::BITS / SLOT_BITS) as usize;

/// The outcomes of the last `buckets` spans of `bucket_micros`.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_micros: u64,
    buckets: u64,
    /// Cumulative calls, failures and slow calls: each recorder adds to
    /// `calls` before `failures`, so a reader that loads `failures` first
    /// never sees more failures than calls.
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    /// Cumulative timed calls and the sum of their durations (micros).
    timed: AtomicU64,
    micros: AtomicU64,
    /// The last bucket the marks were brought up to, plus one (0: never).
    epoch: AtomicU64,
    /// The time (in micros) at which the current bucket ends.
    next_rotation: AtomicU64,
    /// Per bucket `j` (at `j % buckets`): the cumulative figures at its
    /// start.
    marks: Box<[Marks]>,
    /// The marks of the oldest bucket in the window.
    base: Marks,
}

/// A time window's cumulative figures at one moment.
#[derive(Debug, Default)]
struct Marks {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    timed: AtomicU64,
    micros: AtomicU64,
}

fn failed(outcome: u8) -> i64 {
    i64::from(outcome & FAILED != 0)
}

fn slow(outcome: u8) -> i64 {
    i64::from(outcome & SLOW != 0)
}

fn timed(outcome: u8) -> i64 {
    i64::from(outcome & TIMED != 0)
}

impl Window {
    /// Records an outcome (a combination of `RECORDED`, `FAILED`, `SLOW`,
    /// `TIMED`; with `TIMED`, `micros` is the call's duration) and returns
    /// the totals that include it, or `None` when the outcome cannot have
    /// made any rate cross a threshold: a plain success in a count window
    /// that does not bring the calls up to `minimum_calls` (it can only
    /// lower the rates). `now` is read only by time windows,
    /// where a success may also evict older failures' successes and so is
    /// always judged.
    #[inline]
    pub(crate) fn record(
        &self,
        outcome: u8,
        micros: u64,
        now: impl FnOnce() -> u64,
        minimum_calls: u64,
    ) -> Option<Counts> {
        match self {
            Self::Count(window) => window.record(outcome, micros, minimum_calls),
            Self::Time(window) => Some(window.record(outcome, micros, now())),
        }
    }

    /// The durations of the timed calls in the window now.
    pub(crate) fn durations(&self, now: impl FnOnce() -> u64) -> Durations {
        match self {
            Self::Count(window) => window.durations(),
            Self::Time(window) => window.durations(now()),
        }
    }

    /// The calls recorded since the window was made: never reset.
    #[inline]
    pub(crate) fn recorded(&self) -> u64 {
        match self {
            Self::Count(window) => window.head.load(Ordering::SeqCst),
            Self::Time(window) => window.calls.load(Ordering::SeqCst),
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
        let words = (size as usize).div_ceil(PER_WORD);
        Self {
            size,
            fastmod: (u64::MAX / u64::from(size)).wrapping_add(1),
            head: AtomicU64::new(0),
            start: AtomicU64::new(0),
            slots: (0..words).map(|_| AtomicU64::new(0)).collect(),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
            timing: OnceLock::new(),
        }
    }

    /// `index % size` without a division (Lemire's fastmod).
    #[inline]
    fn slot(&self, index: u64) -> usize {
        let low = self.fastmod.wrapping_mul(u64::from(index as u32));
        ((u128::from(low) * u128::from(self.size)) >> 64) as usize
    }

    /// Puts `outcome` in slot `at` and returns the outcome it held (with
    /// `FAILED`, `SLOW` and `TIMED` as they were; 0 for an empty slot).
    #[inline]
    fn swap(&self, at: usize, outcome: u8) -> u8 {
        let word = &self.slots[at / PER_WORD];
        let shift = (at % PER_WORD) as u32 * SLOT_BITS;
        let new = u64::from(outcome >> 1) & SLOT_MASK;
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let old = (current >> shift) & SLOT_MASK;
            if old == new {
                return (old as u8) << 1;
            }
            let next = current & !(SLOT_MASK << shift) | new << shift;
            match word.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (old as u8) << 1,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    fn record(&self, outcome: u8, micros: u64, minimum_calls: u64) -> Option<Counts> {
        let index = self.head.fetch_add(1, Ordering::SeqCst);
        let at = self.slot(index);
        let evicted = self.swap(at, outcome);
        let failures = failed(outcome) - failed(evicted);
        if failures != 0 {
            self.failures.fetch_add(failures, Ordering::SeqCst);
        }
        let slows = slow(outcome) - slow(evicted);
        if slows != 0 {
            self.slow.fetch_add(slows, Ordering::SeqCst);
        }
        if (outcome | evicted) & TIMED != 0 {
            self.time(at, outcome, evicted, micros);
        }
        if outcome & !TIMED == RECORDED
            && index.wrapping_sub(self.start.load(Ordering::Relaxed)) + 1 != minimum_calls
        {
            return None;
        }
        Some(self.counts())
    }

    /// Puts the duration of the call in slot `at` (0 for an untimed one) in
    /// place of the evicted call's.
    #[cold]
    #[inline(never)]
    fn time(&self, at: usize, outcome: u8, evicted: u8, micros: u64) {
        let new = if outcome & TIMED != 0 {
            u32::try_from(micros).unwrap_or(u32::MAX)
        } else {
            0
        };
        let timing = self.timing.get_or_init(|| {
            Box::new(Timing {
                timed: AtomicI64::new(0),
                micros: AtomicI64::new(0),
                durations: (0..self.size).map(|_| AtomicU32::new(0)).collect(),
            })
        });
        let old = timing.durations[at].swap(new, Ordering::Relaxed);
        let old = if evicted & TIMED != 0 { old } else { 0 };
        let timed = timed(outcome) - timed(evicted);
        if timed != 0 {
            timing.timed.fetch_add(timed, Ordering::Relaxed);
        }
        timing
            .micros
            .fetch_add(i64::from(new) - i64::from(old), Ordering::Relaxed);
    }

    fn durations(&self) -> Durations {
        let Some(timing) = self.timing.get() else {
            return Durations::default();
        };
        let calls = self.counts().calls;
        let timed = (timing.timed.load(Ordering::Relaxed).max(0) as u64).min(calls);
        Durations {
            calls: timed,
            micros: if timed == 0 {
                0
            } else {
                timing.micros.load(Ordering::Relaxed).max(0) as u64
            },
        }
    }

    #[inline]
    fn counts(&self) -> Counts {
        let start = self.start.load(Ordering::SeqCst);
        let calls = self
            .head
            .load(Ordering::SeqCst)
            .saturating_sub(start)
            .min(u64::from(self.size));
        let clamp = |value: i64| (value.max(0) as u64).min(calls);
        Counts {
            calls,
            failures: clamp(self.failures.load(Ordering::SeqCst)),
            slow: clamp(self.slow.load(Ordering::SeqCst)),
        }
    }

    fn reset(&self) {
        self.start
            .store(self.head.load(Ordering::SeqCst), Ordering::SeqCst);
        for word in self.slots.iter() {
            word.store(0, Ordering::Relaxed);
        }
        if let Some(timing) = self.timing.get() {
            for duration in timing.durations.iter() {
                duration.store(0, Ordering::Relaxed);
            }
            timing.timed.store(0, Ordering::Relaxed);
            timing.micros.store(0, Ordering::Relaxed);
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
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            timed: AtomicU64::new(0),
            micros: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            next_rotation: AtomicU64::new(0),
            marks: (0..buckets).map(|_| Marks::default()).collect(),
            base: Marks::default(),
        }
    }

    #[inline]
    fn record(&self, outcome: u8, micros: u64, now: u64) -> Counts {
        if now >= self.next_rotation.load(Ordering::Acquire) {
            self.rotate(now);
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        if outcome & (FAILED | SLOW | TIMED) != 0 {
            self.record_more(outcome, micros);
        }
        self.read()
    }

    /// The rest of a failed, slow or timed call's recording.
    #[inline(never)]
    fn record_more(&self, outcome: u8, micros: u64) {
        if outcome & FAILED != 0 {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        if outcome & SLOW != 0 {
            self.slow.fetch_add(1, Ordering::SeqCst);
        }
        if outcome & TIMED != 0 {
            // The duration first: a reader that sees the call sees it.
            self.micros.fetch_add(micros, Ordering::Relaxed);
            self.timed.fetch_add(1, Ordering::Release);
        }
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
        let failures = self.failures.load(Ordering::SeqCst);
        let calls = self.calls.load(Ordering::SeqCst);
        let slow = self.slow.load(Ordering::SeqCst);
        let base = &self.base;
        let calls = calls.wrapping_sub(base.calls.load(Ordering::SeqCst));
        Counts {
            calls,
            failures: failures
                .wrapping_sub(base.failures.load(Ordering::SeqCst))
                .min(calls),
            slow: slow
                .wrapping_sub(base.slow.load(Ordering::SeqCst))
                .min(calls),
        }
    }

    fn durations(&self, now: u64) -> Durations {
        let calls = self.counts(now).calls;
        let timed = self.timed.load(Ordering::Acquire);
        let micros = self.micros.load(Ordering::Relaxed);
        let base = &self.base;
        let timed = timed
            .wrapping_sub(base.timed.load(Ordering::SeqCst))
            .min(calls);
        Durations {
            calls: timed,
            micros: if timed == 0 {
                0
            } else {
                micros.wrapping_sub(base.micros.load(Ordering::SeqCst))
            },
        }
    }

    /// Brings `marks` up to the cumulative figures now.
    fn mark(&self, marks: &Marks) {
        let copy = |from: &AtomicU64, to: &AtomicU64| {
            to.store(from.load(Ordering::SeqCst), Ordering::SeqCst)
        };
        copy(&self.calls, &marks.calls);
        copy(&self.failures, &marks.failures);
        copy(&self.slow, &marks.slow);
        copy(&self.timed, &marks.timed);
        copy(&self.micros, &marks.micros);
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
        // now, so they all start at the current figures.
        let oldest = (bucket + 1).saturating_sub(self.buckets);
        for j in last.max(oldest)..=bucket {
            self.mark(&self.marks[(j % self.buckets) as usize]);
        }
        let mark = &self.marks[(oldest % self.buckets) as usize];
        let base = &self.base;
        for (to, from) in [
            (&base.calls, &mark.calls),
            (&base.failures, &mark.failures),
            (&base.slow, &mark.slow),
            (&base.timed, &mark.timed),
            (&base.micros, &mark.micros),
        ] {
            to.store(from.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        self.next_rotation.store(
            (bucket + 1).saturating_mul(self.bucket_micros),
            Ordering::Release,
        );
    }

    fn reset(&self) {
        // Everything recorded so far falls before the base.
        for mark in self.marks.iter() {
            self.mark(mark);
        }
        self.mark(&self.base);
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
            window.record(S, 0, 0);
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
            window.record(F, 0, 0);
        }
        assert_eq!(window.counts().failures, 5);
        for _ in 0..10 {
            window.record(S, 0, 0);
        }
        assert_eq!(window.counts().failures, 0);
    }

    #[test]
    fn count_window_fills_then_holds_size() {
        let window = CountWindow::new(3);
        assert_eq!(window.record(F, 0, 0).unwrap().calls, 1);
        assert_eq!(
            window.record(S, 0, 2).unwrap().calls,
            2,
            "reaching the minimum is judged"
        );
        assert_eq!(window.record(S | SLOW, 0, 0).unwrap().calls, 3);
        assert_eq!(
            window.record(S, 0, 0),
            None,
            "a plain success is not judged"
        );
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
            window.record(F, 0, 100 * second);
        }
        for _ in 0..6 {
            window.record(S, 0, 105 * second);
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
            window.record(F | SLOW, 0, 200 * second),
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
        window.record(F, 0, 10);
        window.reset();
        assert_eq!(window.counts(20), Counts::default());
        assert_eq!(window.record(S, 0, 30).calls, 1);
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
                prop_assert!(window.record(outcome, 0, 0).is_some() || outcome == RECORDED);
                let counts = window.counts();
                prop_assert_eq!(counts.calls, model.len() as u64);
                prop_assert_eq!(counts.failures, model.iter().filter(|o| *o & FAILED != 0).count() as u64);
                prop_assert_eq!(counts.slow, model.iter().filter(|o| *o & SLOW != 0).count() as u64);
            }
        }

        /// The durations of a count window are those of the timed calls
        /// among its last `size`.
        #[test]
        fn count_window_durations_match_a_model(size in 1u32..10, calls in proptest::collection::vec(proptest::option::of(0u64..1_000), 0..100)) {
            let window = CountWindow::new(size);
            let mut model = std::collections::VecDeque::new();
            for call in calls {
                model.push_back(call);
                if model.len() > size as usize {
                    model.pop_front();
                }
                let outcome = RECORDED | if call.is_some() { TIMED } else { 0 };
                window.record(outcome, call.unwrap_or(0), 0);
                let timed: Vec<u64> = model.iter().flatten().copied().collect();
                prop_assert_eq!(window.durations(), Durations {
                    calls: timed.len() as u64,
                    micros: timed.iter().sum(),
                });
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
                let counts = window.record(if failure { F } else { S }, 0, now);
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
                assert_eq!(window.slot(index), (index as u32 % window.size) as usize);
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const S: u8 = RECORDED;
    const F: u8 = RECORDED | FAILED;

    /// Records each of `outcomes` from a thread of its own, all at once.
    fn record_at_once(window: &Arc<CountWindow>, outcomes: [u8; 2]) {
        let handles: Vec<_> = outcomes
            .into_iter()
            .map(|outcome| {
                let window = window.clone();
                thread::spawn(move || {
                    window.record(outcome, 0, 0);
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }

    /// Two outcomes written at once into neighbouring slots of one word:
    /// neither write is lost, whatever the interleaving of their
    /// compare-and-swaps, and evicting them later takes exactly what they
    /// added.
    #[test]
    fn neighbouring_slots_keep_both_outcomes() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(4));
            record_at_once(&window, [F, F | SLOW]);
            let counts = window.counts();
            assert_eq!((counts.calls, counts.failures, counts.slow), (2, 2, 1));
            for _ in 0..4 {
                window.record(S, 0, 0);
            }
            assert_eq!(window.counts().failures, 0);
            assert_eq!(window.counts().slow, 0);
        });
    }

    /// Two recorders race on the one slot of a window of one: the slot
    /// ends up holding one of their outcomes and the failure count agrees
    /// with it, so that the next outcome evicts it exactly.
    #[test]
    fn racing_writers_of_one_slot_keep_the_count_exact() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(1));
            window.record(F, 0, 0);
            record_at_once(&window, [S, F | SLOW]);
            let counts = window.counts();
            assert!(
                (counts.failures, counts.slow) == (0, 0)
                    || (counts.failures, counts.slow) == (1, 1),
                "{counts:?}"
            );
            window.record(S, 0, 0);
            assert_eq!(window.counts().failures, 0);
            assert_eq!(window.counts().slow, 0);
        });
    }
}
