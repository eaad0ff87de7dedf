//! The generic cell rate algorithm (GCRA), as a pure function of time and
//! as one atomic word.
//!
//! A limit of `rate` calls per `period` with a `burst` is two numbers: the
//! *emission interval* `T = period / rate` (rounded up to a whole
//! nanosecond, so the rate is never exceeded) and the *tolerance*
//! `tau = (burst - 1) * T`. The whole state is the *theoretical arrival time*
//! `tat`: when the next call would be due if calls came exactly every `T`.
//! A call at `now` conforms when `max(tat, now) <= now + tau`, and then moves
//! `tat` to `max(tat, now) + T`. A call that does not conform would at
//! `max(tat, now) - tau`; that is its exact `retry_after`.
//!
//! **The bound.** Take the admitted calls of any interval of length `L`, the
//! first at `t1` and the `k`-th at `tk <= t1 + L`. Each admission moves `tat`
//! by at least `T` past the previous one, and the first leaves it at least
//! `t1 + T`, so before the `k`-th, `tat >= t1 + (k - 1) T`; the `k`-th
//! conforms, so `tat <= tk + tau <= t1 + L + tau`. Hence
//! `k <= floor((L + tau) / T) + 1`. Over one period (`L = period`, both ends
//! included) that is `floor(period / T) + burst <= rate + burst`. The
//! property tests below check it over random arrivals.
//!
//! A `tat` in the past means the same as no `tat` at all: the cell has its
//! whole burst. So a keyed limiter may forget such a key without changing
//! any decision.
//!
//! Time is a `u64` of nanoseconds since the limiter's epoch, passed in by
//! the caller: this module never reads a clock.

use portcullis_core::sync::{AtomicU64, Ordering};

/// The two numbers of a limit, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// `T`: the time one call costs; at least 1.
    interval: u64,
    /// `tau = (burst - 1) * T`: how far ahead of `now` the `tat` may run.
    tolerance: u64,
}

/// What [`Gcra::decide`] says about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The call is admitted; it conforms `wait` nanoseconds from now (0: at
    /// once). `tat` is the new theoretical arrival time.
    Admit { wait: u64, tat: u64 },
    /// The call is rejected: it would conform `retry_after` nanoseconds from
    /// now, later than the caller is willing to wait. `tat` is unchanged.
    Reject { retry_after: u64, tat: u64 },
}

/// One limit's state: the theoretical arrival time, updated with a
/// compare-and-swap loop. Starts at 0 (the epoch): the whole burst is
/// available.
#[derive(Debug)]
pub(crate) struct Cell {
    tat: AtomicU64,
}

impl Gcra {
    /// A limit whose calls cost `interval` nanoseconds each (at least 1),
    /// with `burst` of them (at least 1) allowed at once.
    pub(crate) fn new(interval: u64, burst: u32) -> Self {
        debug_assert!(interval >= 1 && burst >= 1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst) - 1),
        }
    }

    /// A limit from its two numbers, as [`Self::interval`] and
    /// [`Self::tolerance`] give them.
    #[inline]
    pub(crate) fn from_parts(interval: u64, tolerance: u64) -> Self {
        Self {
            interval: interval.max(1),
            tolerance,
        }
    }

    /// The tolerance `tau`.
    pub(crate) fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// The emission interval `T`.
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// The decision for a call at `now` against `tat`, for a caller that
    /// accepts to wait up to `max_wait` for its slot.
    #[inline]
    pub(crate) fn decide(&self, tat: u64, now: u64, max_wait: u64) -> Decision {
        let start = tat.max(now);
        // The call conforms at `start - tau`, i.e. `wait` from now.
        let wait = start.saturating_sub(now.saturating_add(self.tolerance));
        if wait > max_wait {
            Decision::Reject {
                retry_after: wait,
                tat,
            }
        } else {
            Decision::Admit {
                wait,
                tat: start.saturating_add(self.interval),
            }
        }
    }

    /// How many calls would conform, one after the other, at `now`.
    pub(crate) fn available(&self, tat: u64, now: u64) -> u64 {
        let limit = now.saturating_add(self.tolerance);
        let start = tat.max(now);
        if start > limit {
            0
        } else {
            (limit - start) / self.interval + 1
        }
    }

    /// How long until the whole burst is available again.
    pub(crate) fn reset(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_sub(now)
    }
}

impl Cell {
    pub(crate) fn new() -> Self {
        Self {
            tat: AtomicU64::new(0),
        }
    }

    /// Keeps the debt of calls across a change of the emission interval
    /// from `from` to `to`: the lead of `tat` over `now` is scaled by
    /// `to / from`, rounded up.
    pub(crate) fn rescale(&self, now: u64, from: u64, to: u64) {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let debt = tat.saturating_sub(now);
            if debt == 0 {
                return;
            }
            let scaled = (u128::from(debt) * u128::from(to)).div_ceil(u128::from(from.max(1)));
            let next = now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Decides a call at `now` and, if it is admitted, records it.
    ///
    /// The `tat` is the whole state and publishes no other memory, so
    /// `Relaxed` is enough: the compare-and-swap alone makes every admission
    /// see the one before it (all of them act on one modification order).
    #[inline]
    pub(crate) fn acquire(&self, gcra: &Gcra, now: u64, max_wait: u64) -> Decision {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            match gcra.decide(tat, now, max_wait) {
                Decision::Admit { wait, tat: next } => {
                    match self.tat.compare_exchange_weak(
                        tat,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Decision::Admit { wait, tat: next },
                        Err(actual) => tat = actual,
                    }
                }
                reject => return reject,
            }
        }
    }

    /// Gives back the slot of an admission that left `tat` at `reserved`,
    /// if no call was admitted since (otherwise the later calls were placed
    /// after this one, and giving its slot back could put two of them in
    /// one slot). Returns whether it did.
    pub(crate) fn refund(&self, gcra: &Gcra, reserved: u64) -> bool {
        self.tat
            .compare_exchange(
                reserved,
                reserved.saturating_sub(gcra.interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The current theoretical arrival time.
    pub(crate) fn tat(&self) -> u64 {
        self.tat.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 10 calls per 1000 ns, burst 3: T = 100, tau = 200.
    fn gcra() -> Gcra {
        Gcra::new(100, 3)
    }

    #[test]
    fn a_fresh_cell_admits_the_burst_then_says_when_to_come_back() {
        let (g, cell) = (gcra(), Cell::new());
        for expected_tat in [100, 200, 300] {
            assert_eq!(
                cell.acquire(&g, 0, 0),
                Decision::Admit {
                    wait: 0,
                    tat: expected_tat
                }
            );
        }
        assert_eq!(
            cell.acquire(&g, 0, 0),
            Decision::Reject {
                retry_after: 100,
                tat: 300
            }
        );
        assert_eq!(
            cell.acquire(&g, 99, 0),
            Decision::Reject {
                retry_after: 1,
                tat: 300
            }
        );
        assert!(matches!(
            cell.acquire(&g, 100, 0),
            Decision::Admit { wait: 0, tat: 400 }
        ));
    }

    #[test]
    fn a_wait_within_the_bound_reserves_the_slot() {
        let (g, cell) = (gcra(), Cell::new());
        for _ in 0..3 {
            cell.acquire(&g, 0, 0);
        }
        assert_eq!(
            cell.acquire(&g, 0, 150),
            Decision::Admit {
                wait: 100,
                tat: 400
            }
        );
        assert_eq!(
            cell.acquire(&g, 0, 150),
            Decision::Reject {
                retry_after: 200,
                tat: 400
            },
            "the reserved slot moved the next one"
        );
        assert!(cell.refund(&g, 400), "nothing was admitted since");
        assert_eq!(cell.tat(), 300);
        assert!(matches!(cell.acquire(&g, 0, 150), Decision::Admit { .. }));
        assert!(!cell.refund(&g, 300), "a stale reservation is not refunded");
    }

    #[test]
    fn available_and_reset() {
        let g = gcra();
        assert_eq!(g.available(0, 0), 3);
        assert_eq!(g.available(100, 0), 2);
        assert_eq!(g.available(300, 0), 0);
        assert_eq!(g.available(300, 100), 1);
        assert_eq!(g.available(0, 1_000_000), 3, "idle: the whole burst");
        assert_eq!(g.reset(300, 50), 250);
        assert_eq!(g.reset(300, 500), 0);
    }

    /// A limit and a sequence of non-decreasing arrival times (with the
    /// longest wait each caller accepts).
    fn scenario() -> impl Strategy<Value = (u64, u64, u32, Vec<(u64, u64)>)> {
        (1u64..50, 1u64..5_000, 0u64..5_000, 1u32..20).prop_flat_map(
            |(rate, interval, extra, burst)| {
                // Not always a multiple of the rate: T is then rounded up.
                let period = rate * interval + extra % interval;
                let arrivals = prop::collection::vec(
                    (
                        prop_oneof![3 => Just(0u64), 2 => 0..interval, 1 => 0..period * 2],
                        prop_oneof![3 => Just(0u64), 1 => 0..period],
                    ),
                    1..300,
                );
                (Just(rate), Just(period), Just(burst), arrivals)
            },
        )
    }

    /// The times at which the admitted calls run (arrival plus wait).
    fn run(gcra: &Gcra, arrivals: &[(u64, u64)]) -> Vec<u64> {
        let cell = Cell::new();
        let mut now = 0;
        let mut admitted = Vec::new();
        for &(gap, max_wait) in arrivals {
            now += gap;
            if let Decision::Admit { wait, .. } = cell.acquire(gcra, now, max_wait) {
                admitted.push(now + wait);
            }
        }
        admitted
    }

    proptest! {
        /// In any interval of length L, at most floor((L + tau) / T) + 1
        /// calls are admitted; over one period, at most rate + burst.
        #[test]
        fn admitted_calls_never_exceed_the_bound((rate, period, burst, arrivals) in scenario()) {
            let gcra = Gcra::new(period.div_ceil(rate), burst);
            let (t, tau) = (gcra.interval, gcra.tolerance);
            let admitted = run(&gcra, &arrivals);
            prop_assert!(admitted.windows(2).all(|w| w[0] <= w[1]), "run times are ordered");
            for (i, &first) in admitted.iter().enumerate() {
                for (j, &last) in admitted.iter().enumerate().skip(i) {
                    let calls = (j - i + 1) as u64;
                    prop_assert!(calls <= (last - first + tau) / t + 1,
                        "{calls} calls in {} ns (T = {t}, tau = {tau})", last - first);
                }
                let in_period = admitted[i..].iter().take_while(|&&x| x <= first + period).count();
                prop_assert!(in_period as u64 <= rate + u64::from(burst),
                    "{in_period} calls in one period of {period} ns, rate {rate}, burst {burst}");
            }
        }

        /// A rejection's retry_after is exact: one nanosecond earlier the call
        /// is still rejected, at retry_after it conforms.
        #[test]
        fn retry_after_is_exact((rate, period, burst, arrivals) in scenario()) {
            let gcra = Gcra::new(period.div_ceil(rate), burst);
            let cell = Cell::new();
            let mut now = 0;
            for (gap, _) in arrivals {
                now += gap;
                if let Decision::Reject { retry_after, tat } = cell.acquire(&gcra, now, 0) {
                    prop_assert!(retry_after > 0);
                    let early = gcra.decide(tat, now + retry_after - 1, 0);
                    let still_early = matches!(early, Decision::Reject { retry_after: 1, .. });
                    prop_assert!(still_early, "{:?}", early);
                    let due = gcra.decide(tat, now + retry_after, 0);
                    let conforms = matches!(due, Decision::Admit { wait: 0, .. });
                    prop_assert!(conforms, "{:?}", due);
                    prop_assert_eq!(gcra.available(tat, now), 0);
                }
            }
        }

        /// The limiter is not stricter than it says: calls spaced by T or
        /// more are all admitted, and a fresh cell admits exactly its burst
        /// at one instant.
        #[test]
        fn calls_spaced_by_the_interval_all_conform(interval in 1u64..10_000, burst in 1u32..50, start in 0u64..1 << 40, gaps in prop::collection::vec(0u64..3, 1..100)) {
            let gcra = Gcra::new(interval, burst);
            let cell = Cell::new();
            let mut now = start;
            for extra in gaps {
                now += interval + extra;
                let admitted = matches!(cell.acquire(&gcra, now, 0), Decision::Admit { wait: 0, .. });
                prop_assert!(admitted, "a call {} ns after the previous one", interval + extra);
            }
            let fresh = Cell::new();
            let admitted = (0..burst + 5)
                .filter(|_| matches!(fresh.acquire(&gcra, start, 0), Decision::Admit { .. }))
                .count();
            prop_assert_eq!(admitted, burst as usize);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Three callers race at the same instant for a burst of two: exactly
    /// two are admitted, whatever the interleaving, and the `tat` moved by
    /// exactly two intervals.
    #[test]
    fn racing_callers_never_admit_more_than_the_burst() {
        loom::model(|| {
            let gcra = Gcra::new(10, 2);
            let cell = Arc::new(Cell::new());
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let cell = cell.clone();
                    thread::spawn(move || {
                        matches!(cell.acquire(&gcra, 5, 0), Decision::Admit { .. })
                    })
                })
                .collect();
            let admitted = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&admitted| admitted)
                .count();
            assert_eq!(admitted, 2);
            assert_eq!(cell.tat(), 25);
        });
    }

    /// A waiting caller cancels and gives its slot back while another asks
    /// for one: the `tat` always accounts for exactly the slots still held,
    /// and no later call is given a slot that is still held.
    #[test]
    fn a_refund_races_an_admission() {
        loom::model(|| {
            let gcra = Gcra::new(10, 1);
            let cell = Arc::new(Cell::new());
            assert!(matches!(cell.acquire(&gcra, 0, 0), Decision::Admit { .. }));
            let waiter = {
                let cell = cell.clone();
                thread::spawn(move || match cell.acquire(&gcra, 0, 10) {
                    Decision::Admit { wait, tat } => (!cell.refund(&gcra, tat)).then_some(wait),
                    Decision::Reject { .. } => None,
                })
            };
            // This one accepts to wait two intervals: it may be placed after
            // the waiter, whose slot then cannot be given back.
            let other = match cell.acquire(&gcra, 0, 20) {
                Decision::Admit { wait, .. } => Some(wait),
                Decision::Reject { .. } => None,
            };
            let waiter = waiter.join().unwrap();
            let held: Vec<u64> = [Some(0), other, waiter].into_iter().flatten().collect();
            assert_eq!(cell.tat(), 10 * held.len() as u64);
            assert!(
                waiter.is_none() || other.is_some(),
                "a refund fails only behind a later admission"
            );
            let Decision::Admit { wait: next, .. } = cell.acquire(&gcra, 0, 100) else {
                panic!("a long enough wait is always admitted");
            };
            assert!(
                held.iter().all(|&slot| next >= slot + 10),
                "slot {next} overlaps {held:?}"
            );
        });
    }
}
