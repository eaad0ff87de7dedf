//! The optional wait for room under the limit: a bounded stack, newest
//! first.
//!
//! Under overload a first-come, first-served queue serves the calls that
//! have waited longest, whose callers are the likeliest to have given up;
//! every call then waits about as long as the queue is deep. Served last
//! in, first out, the calls that just arrived go first and finish fast,
//! and the oldest ones are shed: when the queue is full, the oldest waiter
//! is rejected to make room; a waiter whose `max_wait` passes is rejected
//! too. (Facebook's "adaptive LIFO", and Netflix's `LifoBlockingLimiter`.)
//!
//! The protocol, with `len` the number of waiters:
//!
//! - A call that found no room takes the queue's lock, raises `len`, and
//!   only then tries the gate once more; if that fails it pushes itself.
//! - A release lowers the gate's count first and then reads `len`; if
//!   anyone waits it takes the lock and hands room to the newest waiters
//!   that the gate admits.
//!
//! The releaser reads `len` with a read-modify-write, so its read and the
//! joiner's raise are ordered: either the releaser sees the waiter, or the
//! joiner's raise comes after the read and synchronizes with it, and its
//! last try sees the released room. No wakeup is lost (a `loom` model
//! below checks it).

use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;

use std::sync::{Arc, PoisonError};

use portcullis_core::sync::{AtomicU8, AtomicUsize, Ordering};

use crate::gate::Gate;
use crate::sync::Mutex;

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const SHED: u8 = 2;

/// The waiters, newest at the back.
pub(crate) struct Queue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    len: AtomicUsize,
    max_len: usize,
}

/// One waiting call: its partition, its state and its waker.
pub(crate) struct Waiter {
    pub(crate) partition: Option<usize>,
    state: AtomicU8,
    /// The calls in flight when it was admitted, once granted.
    inflight: portcullis_core::sync::AtomicU64,
    waker: Mutex<Option<Waker>>,
}

/// What a waiter's poll finds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    Waiting,
    /// Admitted, with this many calls in flight.
    Granted(u64),
    Shed,
}

/// What joining found.
pub(crate) enum Joined {
    /// Room under the limit after all, with this many calls in flight.
    Admitted(u64),
    /// In the queue.
    Queued(Arc<Waiter>),
}

impl Queue {
    pub(crate) fn new(max_len: usize) -> Self {
        Self {
            waiters: Mutex::new(VecDeque::with_capacity(max_len.min(1024))),
            len: AtomicUsize::new(0),
            max_len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Joins the queue, or finds room; the oldest waiter is shed when it
    /// is full.
    pub(crate) fn join(&self, gate: &Gate, partition: Option<usize>) -> Joined {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        self.len.fetch_add(1, Ordering::SeqCst);
        if let Some(inflight) = gate.try_acquire(partition) {
            self.len.fetch_sub(1, Ordering::SeqCst);
            return Joined::Admitted(inflight);
        }
        let mut shed = None;
        if waiters.len() >= self.max_len {
            if let Some(oldest) = waiters.pop_front() {
                self.len.fetch_sub(1, Ordering::SeqCst);
                oldest.state.store(SHED, Ordering::SeqCst);
                shed = Some(oldest);
            }
        }
        let waiter = Arc::new(Waiter {
            partition,
            state: AtomicU8::new(WAITING),
            inflight: portcullis_core::sync::AtomicU64::new(0),
            waker: Mutex::new(None),
        });
        waiters.push_back(waiter.clone());
        drop(waiters);
        // Woken once the lock is released, as in `hand_over`.
        if let Some(oldest) = shed {
            oldest.wake();
        }
        Joined::Queued(waiter)
    }

    /// Hands room to the newest waiters that the gate admits. Called after
    /// a release or a higher limit.
    pub(crate) fn hand_over(&self, gate: &Gate) {
        // A read-modify-write, not a load: if it reads `len` before a
        // joiner raises it, the joiner's raise reads from it and so sees
        // the release that came before it (no reliance on sequential
        // consistency between two locations, which loom does not model).
        if self.len.fetch_add(0, Ordering::AcqRel) == 0 {
            return;
        }
        // One waiter at a time: each is woken after the queue's lock is
        // released (a waker may poll and drop its future at once, which
        // takes the lock to leave), and nothing is gathered, so a hand-over
        // allocates nothing.
        let partitioned = !gate.shares().is_empty();
        let mut from = usize::MAX;
        loop {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            let mut i = waiters.len().min(from);
            let mut granted = None;
            while i > 0 {
                i -= 1;
                let partition = waiters[i].partition;
                match gate.try_acquire(partition) {
                    Some(inflight) => {
                        let waiter = waiters.remove(i).expect("an index in range");
                        self.len.fetch_sub(1, Ordering::SeqCst);
                        waiter.inflight.store(inflight, Ordering::SeqCst);
                        // Granted under the lock, so that `leave` sees it.
                        waiter.state.store(GRANTED, Ordering::SeqCst);
                        granted = Some(waiter);
                        break;
                    }
                    // Without partitions every waiter wants the same room;
                    // with them, a waiter of another partition may fit.
                    None if !partitioned => break,
                    None => {}
                }
            }
            drop(waiters);
            let Some(waiter) = granted else {
                return;
            };
            waiter.wake();
            // The waiters older than the one granted are the ones left to
            // look at (the queue only grew at its newest end meanwhile).
            from = i;
        }
    }

    /// Takes `waiter` out of the queue if it is still waiting (its wait
    /// expired, or its future was dropped); returns what it had become.
    pub(crate) fn leave(&self, waiter: &Arc<Waiter>) -> Wait {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if waiter.state.load(Ordering::SeqCst) == WAITING {
            if let Some(i) = waiters.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                waiters.remove(i);
                self.len.fetch_sub(1, Ordering::SeqCst);
            }
            waiter.state.store(SHED, Ordering::SeqCst);
            return Wait::Shed;
        }
        drop(waiters);
        waiter.poll_state()
    }
}

impl Waiter {
    /// Wakes the task waiting for this waiter, if one registered.
    fn wake(&self) {
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_state(&self) -> Wait {
        match self.state.load(Ordering::SeqCst) {
            WAITING => Wait::Waiting,
            GRANTED => Wait::Granted(self.inflight.load(Ordering::SeqCst)),
            _ => Wait::Shed,
        }
    }

    /// Registers `waker`, then reads the state (so a grant made meanwhile
    /// is seen, or wakes the new waker).
    pub(crate) fn poll(&self, waker: &Waker) -> Wait {
        {
            let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(old) if old.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        self.poll_state()
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("partition", &self.partition)
            .field("state", &self.poll_state())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::gate::Share;

    fn queued(joined: Joined) -> Arc<Waiter> {
        match joined {
            Joined::Queued(waiter) => waiter,
            Joined::Admitted(_) => panic!("admitted at once"),
        }
    }

    /// A waiter of no partition that does not fit does not stop the room
    /// freed in a partition from reaching that partition's older waiter.
    #[test]
    fn a_partition_waiter_behind_one_that_does_not_fit_is_granted() {
        // Limit 2, each of two partitions guaranteed 1. The first holds
        // its own and borrows the free one; the second takes its own over
        // the total: 3 in flight.
        let gate = Gate::new(2, Box::new([Share::new(0.5), Share::new(0.5)]));
        let (first, second) = (Some(0), Some(1));
        assert!(gate.try_acquire(first).is_some());
        assert!(gate.try_acquire(first).is_some());
        assert_eq!(gate.try_acquire(second), Some(3));
        let queue = Queue::new(10);
        let older = queued(queue.join(&gate, second));
        let newer = queued(queue.join(&gate, None));
        // The second's call ends: 2 in flight, the total at the limit, the
        // second below its share.
        gate.release(second);
        queue.hand_over(&gate);
        assert_eq!(
            older.poll_state(),
            Wait::Granted(3),
            "its partition had room"
        );
        assert_eq!(newer.poll_state(), Wait::Waiting, "no room under the total");
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_share_is_rounded_up_without_floating_point_dust() {
        assert_eq!(Share::new(0.07).guaranteed(100), 7);
        assert_eq!(Share::new(1.0 / 3.0).guaranteed(10), 4);
        assert_eq!(Share::new(0.001).guaranteed(10), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use ::loom::thread;

    use super::*;
    use crate::gate::Gate;

    /// A release races a call joining the queue: the joiner either finds
    /// the room itself or is handed it; no wakeup is lost.
    #[test]
    fn a_release_and_a_join_never_lose_the_room() {
        ::loom::model(|| {
            let gate = Arc::new(Gate::new(1, Box::new([])));
            let queue = Arc::new(Queue::new(2));
            assert_eq!(gate.try_acquire(None), Some(1));
            let releaser = {
                let (gate, queue) = (gate.clone(), queue.clone());
                thread::spawn(move || {
                    gate.release(None);
                    queue.hand_over(&gate);
                })
            };
            let joined = queue.join(&gate, None);
            releaser.join().unwrap();
            match joined {
                Joined::Admitted(inflight) => assert_eq!(inflight, 1),
                Joined::Queued(waiter) => {
                    assert_eq!(
                        waiter.poll_state(),
                        Wait::Granted(1),
                        "the room was handed over"
                    );
                }
            }
            assert_eq!(gate.inflight(), 1);
            assert_eq!(queue.len(), 0);
        });
    }
}
