//! The admission protocol: calls in flight against a limit that moves, on
//! atomics only.
//!
//! - `limit` is the algorithm's current limit, stored by the one caller
//!   that updates it at the end of a window; `inflight` counts the calls
//!   admitted and not yet released.
//! - Without partitions, a call is admitted by one compare-and-swap that
//!   raises `inflight` only while it is below the limit read just before.
//!   With the limit unchanged, no more than `limit` calls are ever in at
//!   once. When the limit shrinks, the calls already in stay in; new ones
//!   are refused until `inflight` has fallen below the new limit.
//! - With partitions, each partition has a guaranteed share,
//!   `max(1, ceil(limit · share))`, counted by its own `inflight`. A call of
//!   a partition below its share is admitted whatever the total (the total
//!   then counts it too); a call of a partition at or over its share is
//!   admitted only while the total is below the limit: it borrows capacity
//!   that the others do not use. So the total may exceed the limit by what
//!   was borrowed before the others came back, never a partition its share
//!   while another waits for room (Netflix's partitioned limiter). The
//!   guarantees are rounded up (and at least one each), so together they
//!   may exceed the limit by up to one call per partition (three shares of
//!   a third of 10 guarantee 4 each).
//! - A release lowers the counters that the admission raised, always.
//!
//! The `loom` models below check these claims (run them with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p portcullis-limit --lib loom`).

use portcullis_core::sync::{AtomicU64, Ordering};

/// The counters of one partition.
#[derive(Debug)]
pub(crate) struct Share {
    /// Its fraction of the limit, in (0, 1].
    pub(crate) fraction: f64,
    pub(crate) inflight: AtomicU64,
}

/// The limit and the calls in flight against it.
#[derive(Debug)]
pub(crate) struct Gate {
    limit: AtomicU64,
    inflight: AtomicU64,
    shares: Box<[Share]>,
}

impl Share {
    pub(crate) fn new(fraction: f64) -> Self {
        Self {
            fraction,
            inflight: AtomicU64::new(0),
        }
    }

    /// Its guaranteed number of calls under `limit`.
    #[inline]
    pub(crate) fn guaranteed(&self, limit: u64) -> u64 {
        // Both are small: `limit` at most a million.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        // Less a hair before rounding up: 0.07 × 100 is 7.000000000000001
        // in floating point, which must stay 7.
        let share = (limit as f64 * self.fraction - 1e-9).ceil() as u64;
        share.max(1)
    }
}

/// Raises `counter` by one if it is below `bound`.
#[inline]
fn raise_below(counter: &AtomicU64, bound: u64) -> Option<u64> {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < bound).then_some(n + 1)
        })
        .ok()
        .map(|n| n + 1)
}

impl Gate {
    pub(crate) fn new(limit: u64, shares: Box<[Share]>) -> Self {
        Self {
            limit: AtomicU64::new(limit),
            inflight: AtomicU64::new(0),
            shares,
        }
    }

    /// Admits a call of `partition` (an index into the shares, `None` for
    /// none) if there is room; returns the calls in flight with it.
    #[inline]
    pub(crate) fn try_acquire(&self, partition: Option<usize>) -> Option<u64> {
        let limit = self.limit.load(Ordering::Acquire);
        let Some(share) = partition.and_then(|i| self.shares.get(i)) else {
            return raise_below(&self.inflight, limit);
        };
        if raise_below(&share.inflight, share.guaranteed(limit)).is_some() {
            return Some(self.inflight.fetch_add(1, Ordering::SeqCst) + 1);
        }
        let total = raise_below(&self.inflight, limit)?;
        share.inflight.fetch_add(1, Ordering::SeqCst);
        Some(total)
    }

    /// Gives back what [`try_acquire`](Self::try_acquire) took for `partition`.
    #[inline]
    pub(crate) fn release(&self, partition: Option<usize>) {
        if let Some(share) = partition.and_then(|i| self.shares.get(i)) {
            share.inflight.fetch_sub(1, Ordering::SeqCst);
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Release);
    }

    pub(crate) fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Acquire)
    }

    pub(crate) fn shares(&self) -> &[Share] {
        &self.shares
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_follows_it() {
        let gate = Gate::new(2, Box::new([]));
        assert_eq!(gate.try_acquire(None), Some(1));
        assert_eq!(gate.try_acquire(None), Some(2));
        assert_eq!(gate.try_acquire(None), None);
        gate.set_limit(1);
        gate.release(None);
        assert_eq!(gate.try_acquire(None), None, "1 in flight, limit 1");
        gate.set_limit(3);
        assert_eq!(gate.try_acquire(None), Some(2));
        assert_eq!(gate.try_acquire(None), Some(3));
        assert_eq!(gate.inflight(), 3);
    }

    #[test]
    fn a_partition_keeps_its_share_and_borrows_what_is_free() {
        // Limit 10: live is guaranteed 9, batch 1.
        let gate = Gate::new(10, Box::new([Share::new(0.9), Share::new(0.1)]));
        let (live, batch) = (Some(0), Some(1));
        // Live borrows batch's unused slot: 10 calls.
        for _ in 0..10 {
            assert!(gate.try_acquire(live).is_some());
        }
        assert_eq!(gate.try_acquire(live), None, "the total is at the limit");
        // Batch still gets its guaranteed one, over the total.
        assert_eq!(gate.try_acquire(batch), Some(11));
        assert_eq!(gate.try_acquire(batch), None, "over its share, and no room");
        // Two live calls end: room under the limit again for one borrower.
        gate.release(live);
        gate.release(live);
        assert_eq!(gate.try_acquire(batch), Some(10), "batch borrows");
        assert_eq!(gate.try_acquire(batch), None);
        assert_eq!(gate.try_acquire(live), Some(11), "live is below its 9");
        assert_eq!(gate.shares()[0].inflight.load(Ordering::SeqCst), 9);
        assert_eq!(gate.shares()[1].inflight.load(Ordering::SeqCst), 2);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use ::loom::sync::Arc;
    use ::loom::thread;

    use super::*;
    use portcullis_core::sync::AtomicU64 as Counter;

    /// Three callers against a limit of two: never three in at once, and
    /// every release gives back.
    #[test]
    fn never_more_than_the_limit_when_it_does_not_change() {
        ::loom::model(|| {
            let gate = Arc::new(Gate::new(2, Box::new([])));
            let concurrent = Arc::new(Counter::new(0));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let (gate, concurrent) = (gate.clone(), concurrent.clone());
                    thread::spawn(move || {
                        if gate.try_acquire(None).is_some() {
                            let now = concurrent.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 2, "{now} calls in at once");
                            concurrent.fetch_sub(1, Ordering::SeqCst);
                            gate.release(None);
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            let admitted = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|a| *a)
                .count();
            assert!(admitted >= 2, "at most one refusal with two slots");
            assert_eq!(gate.inflight(), 0);
        });
    }

    /// The limit moves while calls come and go: whatever the interleaving,
    /// every admitted call is released and the count returns to zero; a
    /// call admitted after the limit fell to one is alone.
    #[test]
    fn release_always_gives_back_under_a_changing_limit() {
        ::loom::model(|| {
            let gate = Arc::new(Gate::new(2, Box::new([])));
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let gate = gate.clone();
                    thread::spawn(move || {
                        if gate.try_acquire(None).is_some() {
                            gate.release(None);
                        }
                    })
                })
                .collect();
            let mover = {
                let gate = gate.clone();
                thread::spawn(move || {
                    gate.set_limit(1);
                    gate.set_limit(3);
                })
            };
            for caller in callers {
                caller.join().unwrap();
            }
            mover.join().unwrap();
            assert_eq!(gate.inflight(), 0);
            assert_eq!(gate.limit(), 3);
            // Afterwards the new limit holds exactly.
            for n in 1..=3 {
                assert_eq!(gate.try_acquire(None), Some(n));
            }
            assert_eq!(gate.try_acquire(None), None);
        });
    }

    /// A partition under its share gets in even when a borrower filled the
    /// total, and the counters balance.
    #[test]
    fn a_partition_below_its_share_is_admitted_against_borrowers() {
        ::loom::model(|| {
            let gate = Arc::new(Gate::new(2, Box::new([Share::new(0.5), Share::new(0.5)])));
            let borrower = {
                let gate = gate.clone();
                thread::spawn(move || {
                    let first = gate.try_acquire(Some(0)).is_some();
                    let second = gate.try_acquire(Some(0)).is_some();
                    (first, second)
                })
            };
            let owner = {
                let gate = gate.clone();
                thread::spawn(move || gate.try_acquire(Some(1)).is_some())
            };
            let (first, second) = borrower.join().unwrap();
            assert!(first, "its own share");
            assert!(owner.join().unwrap(), "partition 1 is below its share of 1");
            let admitted = 1 + u64::from(second) + 1;
            assert_eq!(gate.inflight(), admitted);
            gate.release(Some(0));
            if second {
                gate.release(Some(0));
            }
            gate.release(Some(1));
            assert_eq!(gate.inflight(), 0);
            assert_eq!(gate.shares()[0].inflight.load(Ordering::SeqCst), 0);
        });
    }
}
