//! The admission protocol: a counter of free permits, taken and given back
//! with one compare-and-swap each, and a FIFO queue of waiters behind a
//! mutex that only the slow paths touch.
//!
//! The state is one word: the number of free permits shifted left by one,
//! and in bit 0 the flag [`QUEUED`], set while waiters are queued. The
//! protocol keeps one invariant, on which the fairness rests:
//!
//! > `QUEUED` is set only while no permit is free, and it is set (and
//! > cleared) only under the queue's lock, exactly when the queue is not
//! > empty.
//!
//! - **Admission** (`try_acquire`) takes a free permit with one CAS on the
//!   counter. It never looks at the queue: when waiters are queued no permit
//!   is free, so a newcomer cannot overtake them.
//! - **Release** with no waiter is one CAS that adds a free permit. With
//!   waiters (`QUEUED` seen), it takes the lock and hands its permit directly
//!   to the waiter at the head, which leaves the queue; the counter does not
//!   move. The head is woken after the lock is dropped.
//! - **Enqueueing** takes the lock and looks at the counter again: a permit
//!   freed since the fast path failed is taken at once; otherwise `QUEUED` is
//!   set by a CAS from `0`, so that a concurrent release either lands before
//!   (and the CAS fails, and the loop takes that permit) or sees the flag
//!   (and comes to the lock, behind this waiter's entry). No wakeup is lost.
//! - **Waiters** are named by increasing ids, so the queue is sorted and a
//!   waiter finds its entry by binary search. A waiter whose entry has left
//!   the queue holds a permit: it was handed one.
//! - **Cancellation** takes the lock: a waiter still queued removes its entry
//!   (clearing `QUEUED` if it was the last one); one that was handed a permit
//!   at that moment passes it on to the next waiter, or back to the counter.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use portcullis_core::sync::{AtomicUsize, Ordering};

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// Bit 0 of the state: waiters are queued (and no permit is free).
const QUEUED: usize = 1;
/// One free permit, as counted in the state.
const ONE: usize = 2;

/// A counting semaphore with a FIFO queue of waiters.
pub(crate) struct Semaphore {
    state: AtomicUsize,
    permits: usize,
    queue: Mutex<Queue>,
    /// The queue's length, for lock-free metrics; written under the lock.
    queued: AtomicUsize,
}

/// What [`Semaphore::enqueue`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// A permit was free after all: the caller holds it.
    Acquired,
    /// The caller waits as the waiter with this id.
    Queued(u64),
    /// The queue is at its bound.
    Full,
}

struct Queue {
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

impl Semaphore {
    /// A semaphore with `permits` free permits (at most `usize::MAX / 2`).
    pub(crate) fn new(permits: usize) -> Self {
        assert!(permits <= usize::MAX / ONE, "too many permits");
        Self {
            state: AtomicUsize::new(permits * ONE),
            permits,
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                next_id: 0,
            }),
            queued: AtomicUsize::new(0),
        }
    }

    /// Takes a free permit, if one is: the fast path, one CAS, no lock.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state < ONE {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state - ONE,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Gives a permit back: to the first waiter if there is one, else to the
    /// counter (one CAS, no lock).
    #[inline]
    pub(crate) fn release(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & QUEUED == 0 {
            match self.state.compare_exchange_weak(
                state,
                state + ONE,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
        self.release_to_queue();
    }

    #[cold]
    fn release_to_queue(&self) {
        let waker = {
            let mut queue = self.lock();
            self.hand_over(&mut queue)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Under the lock: gives one permit to the head of the queue, or to the
    /// counter if the queue is empty. Returns the waker to call once the lock
    /// is dropped.
    fn hand_over(&self, queue: &mut Queue) -> Option<Waker> {
        match queue.waiters.pop_front() {
            Some(head) => {
                if queue.waiters.is_empty() {
                    self.state.fetch_and(!QUEUED, Ordering::Release);
                }
                self.queued.store(queue.waiters.len(), Ordering::Relaxed);
                head.waker
            }
            None => {
                // An empty queue means `QUEUED` is clear: fast releases and
                // admissions may race with this, and the addition commutes.
                self.state.fetch_add(ONE, Ordering::Release);
                None
            }
        }
    }

    /// Joins the queue, unless a permit has become free (then it is taken)
    /// or `max_queued` waiters are queued already.
    pub(crate) fn enqueue(&self, max_queued: Option<usize>) -> Enqueued {
        let mut queue = self.lock();
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state >= ONE {
                // Freed since the caller's fast path failed. (With a free
                // permit the queue is empty, so this does not overtake.)
                match self.state.compare_exchange(
                    state,
                    state - ONE,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Enqueued::Acquired,
                    Err(actual) => state = actual,
                }
            } else if state == QUEUED {
                break;
            } else {
                if max_queued == Some(0) {
                    return Enqueued::Full;
                }
                // From here on, a release that finds no free permit to add
                // to comes to the lock, and finds this waiter.
                match self
                    .state
                    .compare_exchange(0, QUEUED, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
        }
        if max_queued.is_some_and(|max| queue.waiters.len() >= max) {
            // Only reached with waiters queued: `QUEUED` stays as it is.
            return Enqueued::Full;
        }
        let id = queue.next_id;
        queue.next_id += 1;
        queue.waiters.push_back(Waiter { id, waker: None });
        self.queued.store(queue.waiters.len(), Ordering::Relaxed);
        Enqueued::Queued(id)
    }

    /// Whether waiter `id` has been handed a permit; if not, `cx`'s waker is
    /// the one to wake when it is.
    pub(crate) fn poll_queued(&self, id: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut queue = self.lock();
        match queue.find(id) {
            Some(index) => {
                let slot = &mut queue.waiters[index].waker;
                match slot {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }

    /// Waiter `id` stops waiting (its deadline passed). Returns whether it
    /// had been handed a permit already, which it then holds.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        let mut queue = self.lock();
        match queue.find(id) {
            Some(index) => {
                self.remove(&mut queue, index);
                false
            }
            None => true,
        }
    }

    /// Waiter `id` is gone (its future was dropped). A permit it had been
    /// handed goes on to the next waiter, or back to the counter.
    pub(crate) fn abandon(&self, id: u64) {
        let waker = {
            let mut queue = self.lock();
            match queue.find(id) {
                Some(index) => {
                    self.remove(&mut queue, index);
                    None
                }
                None => self.hand_over(&mut queue),
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn remove(&self, queue: &mut Queue, index: usize) {
        queue.waiters.remove(index);
        if queue.waiters.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::Release);
        }
        self.queued.store(queue.waiters.len(), Ordering::Relaxed);
    }

    /// The number of permits.
    pub(crate) fn permits(&self) -> usize {
        self.permits
    }

    /// Free permits right now.
    pub(crate) fn available(&self) -> usize {
        self.state.load(Ordering::Acquire) / ONE
    }

    /// Waiters queued right now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while the lock is held, except a waker's `clone`;
        // the queue is consistent at that point, so poisoning is ignored.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Queue {
    fn find(&self, id: u64) -> Option<usize> {
        self.waiters.binary_search_by_key(&id, |w| w.id).ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn poll(semaphore: &Semaphore, id: u64) -> Poll<()> {
        semaphore.poll_queued(id, &mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn counts_permits_and_rejects_when_none_is_free() {
        let semaphore = Semaphore::new(2);
        assert!(semaphore.try_acquire());
        assert!(semaphore.try_acquire());
        assert!(!semaphore.try_acquire());
        assert_eq!(semaphore.available(), 0);
        semaphore.release();
        assert_eq!(semaphore.available(), 1);
        assert!(semaphore.try_acquire());
    }

    #[test]
    fn releases_go_to_waiters_in_order_and_newcomers_do_not_overtake() {
        let semaphore = Semaphore::new(1);
        assert!(semaphore.try_acquire());
        let Enqueued::Queued(first) = semaphore.enqueue(None) else {
            panic!("no permit is free")
        };
        let Enqueued::Queued(second) = semaphore.enqueue(None) else {
            panic!("no permit is free")
        };
        assert_eq!(semaphore.queued(), 2);
        assert!(poll(&semaphore, first).is_pending());

        semaphore.release();
        assert!(poll(&semaphore, first).is_ready(), "the head got it");
        assert!(poll(&semaphore, second).is_pending());
        assert!(!semaphore.try_acquire(), "handed over, never freed");
        assert_eq!(semaphore.available(), 0);

        semaphore.release();
        assert!(poll(&semaphore, second).is_ready());
        assert_eq!(semaphore.queued(), 0);
        semaphore.release();
        assert_eq!(semaphore.available(), 1, "no waiter left: back to the pool");
    }

    #[test]
    fn enqueue_takes_a_permit_freed_meanwhile() {
        let semaphore = Semaphore::new(1);
        assert_eq!(semaphore.enqueue(None), Enqueued::Acquired);
        assert_eq!(semaphore.available(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let semaphore = Semaphore::new(1);
        assert!(semaphore.try_acquire());
        assert_eq!(semaphore.enqueue(Some(0)), Enqueued::Full);
        assert!(matches!(semaphore.enqueue(Some(1)), Enqueued::Queued(_)));
        assert_eq!(semaphore.enqueue(Some(1)), Enqueued::Full);
        assert_eq!(semaphore.queued(), 1);
    }

    #[test]
    fn cancelled_waiters_leave_and_a_granted_one_passes_its_permit_on() {
        let semaphore = Semaphore::new(1);
        assert!(semaphore.try_acquire());
        let ids: Vec<u64> = (0..3)
            .map(|_| match semaphore.enqueue(None) {
                Enqueued::Queued(id) => id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(!semaphore.cancel(ids[1]), "still queued: it leaves");
        assert_eq!(semaphore.queued(), 2);

        semaphore.release(); // to ids[0]
        semaphore.abandon(ids[0]); // dropped at that moment: on to ids[2]
        assert!(poll(&semaphore, ids[2]).is_ready());
        assert_eq!(semaphore.queued(), 0);
        assert!(semaphore.cancel(ids[2]), "granted: it keeps the permit");
        semaphore.release();
        assert_eq!(semaphore.available(), 1);
        assert!(semaphore.try_acquire(), "QUEUED was cleared with the queue");
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use std::future::poll_fn;

    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    /// Counts the holders of a permit and fails the model if they are ever
    /// more than `limit`.
    struct Holders {
        now: AtomicUsize,
        limit: usize,
    }

    impl Holders {
        fn new(limit: usize) -> Self {
            Self {
                now: AtomicUsize::new(0),
                limit,
            }
        }

        /// A call was admitted: count it in, failing if too many are in.
        fn enter(&self) {
            let before = self.now.fetch_add(1, Ordering::SeqCst);
            assert!(before < self.limit, "{} calls admitted", before + 1);
        }

        /// The call is done: count it out, give the permit back.
        fn leave(&self, semaphore: &Semaphore) {
            self.now.fetch_sub(1, Ordering::SeqCst);
            semaphore.release();
        }

        /// One admitted call, start to end.
        fn run(&self, semaphore: &Semaphore) {
            self.enter();
            self.leave(semaphore);
        }
    }

    /// Takes a permit, waiting in the queue as long as it takes. A wakeup
    /// that never comes is a deadlock, which loom reports.
    fn acquire(semaphore: &Semaphore) {
        if semaphore.try_acquire() {
            return;
        }
        match semaphore.enqueue(None) {
            Enqueued::Acquired => {}
            Enqueued::Queued(id) => {
                loom::future::block_on(poll_fn(|cx| semaphore.poll_queued(id, cx)));
            }
            Enqueued::Full => unreachable!("the queue is unbounded"),
        }
    }

    fn assert_at_rest(semaphore: &Semaphore) {
        assert_eq!(
            semaphore.available(),
            semaphore.permits(),
            "a permit was lost"
        );
        assert_eq!(semaphore.queued(), 0, "a waiter was left behind");
        assert_eq!(semaphore.state.load(Ordering::SeqCst) & QUEUED, 0);
    }

    /// `callers` threads (the model's own included) each make one call
    /// through a semaphore of `permits`.
    fn contend(permits: usize, callers: usize) {
        loom::model(move || {
            let semaphore = Arc::new(Semaphore::new(permits));
            let holders = Arc::new(Holders::new(permits));
            let threads: Vec<_> = (1..callers)
                .map(|_| {
                    let (semaphore, holders) = (semaphore.clone(), holders.clone());
                    thread::spawn(move || {
                        acquire(&semaphore);
                        holders.run(&semaphore);
                    })
                })
                .collect();
            acquire(&semaphore);
            holders.run(&semaphore);
            for thread in threads {
                thread.join().unwrap();
            }
            assert_at_rest(&semaphore);
        });
    }

    #[test]
    fn admitted_calls_never_exceed_the_limit() {
        contend(1, 3);
    }

    #[test]
    fn admitted_calls_never_exceed_a_limit_of_two() {
        contend(2, 3);
    }

    #[test]
    fn a_dropped_waiter_passes_a_permit_it_was_handed_on() {
        loom::model(|| {
            let semaphore = Arc::new(Semaphore::new(1));
            let holders = Arc::new(Holders::new(1));
            assert!(semaphore.try_acquire());
            holders.enter();

            let dropped = {
                let (semaphore, holders) = (semaphore.clone(), holders.clone());
                thread::spawn(move || match semaphore.enqueue(None) {
                    Enqueued::Queued(id) => semaphore.abandon(id),
                    Enqueued::Acquired => holders.run(&semaphore),
                    Enqueued::Full => unreachable!(),
                })
            };
            let waiting = {
                let (semaphore, holders) = (semaphore.clone(), holders.clone());
                thread::spawn(move || {
                    acquire(&semaphore);
                    holders.run(&semaphore);
                })
            };
            holders.leave(&semaphore);
            dropped.join().unwrap();
            waiting.join().unwrap();
            assert_at_rest(&semaphore);
        });
    }

    #[test]
    fn a_waiter_whose_deadline_passes_leaves_or_keeps_what_it_was_handed() {
        loom::model(|| {
            let semaphore = Arc::new(Semaphore::new(1));
            let holders = Arc::new(Holders::new(1));
            assert!(semaphore.try_acquire());
            holders.enter();

            let timed_out = {
                let (semaphore, holders) = (semaphore.clone(), holders.clone());
                thread::spawn(move || match semaphore.enqueue(None) {
                    Enqueued::Queued(id) => {
                        if semaphore.cancel(id) {
                            holders.run(&semaphore);
                        }
                    }
                    Enqueued::Acquired => holders.run(&semaphore),
                    Enqueued::Full => unreachable!(),
                })
            };
            let newcomer = {
                let (semaphore, holders) = (semaphore.clone(), holders.clone());
                thread::spawn(move || {
                    if semaphore.try_acquire() {
                        holders.run(&semaphore);
                    }
                })
            };
            holders.leave(&semaphore);
            timed_out.join().unwrap();
            newcomer.join().unwrap();
            assert_at_rest(&semaphore);
        });
    }
}
