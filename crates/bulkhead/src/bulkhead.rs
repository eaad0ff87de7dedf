//! The shared handle that owns a bulkhead's permits, and the permit itself.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use portcullis_core::{BulkheadFull, ConfigError};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, Sleep};

use crate::config::BulkheadConfig;
use crate::semaphore::{Enqueued, Semaphore};

/// A bulkhead: a cheap, cloneable handle to one shared pool of permits.
///
/// Every clone, every service built from it and every route that uses it
/// draws from the same pool. Use it with
/// [`BulkheadLayer::new`](crate::BulkheadLayer::new), or on its own around
/// any piece of work:
///
/// ```
/// use portcullis_bulkhead::{Bulkhead, BulkheadConfig};
///
/// let config = BulkheadConfig::builder().max_concurrent_calls(2).build().unwrap();
/// let bulkhead = Bulkhead::from_config("db", config).unwrap();
/// let a = bulkhead.try_acquire().unwrap();
/// let _b = bulkhead.try_acquire().unwrap();
/// assert_eq!(bulkhead.in_flight(), 2);
///
/// let full = bulkhead.try_acquire().unwrap_err();
/// assert_eq!(full.name(), "db");
/// assert_eq!(bulkhead.rejected(), 1);
///
/// drop(a); // a permit is given back when it is dropped
/// assert!(bulkhead.try_acquire().is_ok());
/// ```
#[derive(Clone)]
pub struct Bulkhead {
    shared: Arc<Shared>,
}

/// The right to make one call, handed out by a [`Bulkhead`]; dropping it
/// gives the permit back (to the first waiter, if one is queued).
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct BulkheadPermit {
    bulkhead: Bulkhead,
}

/// Waits for a permit, for at most the configured `max_wait`, first come,
/// first served; returned by [`Bulkhead::acquire`].
///
/// The place in the queue is taken when `acquire` is called, not when the
/// future is first polled. Dropping the future leaves the queue; a permit it
/// was handed at that moment goes to the next waiter. Waiting needs a tokio
/// runtime with its time driver enabled.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire {
    state: AcquireState,
}

/// A bulkhead's figures at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// The bulkhead's name.
    pub name: String,
    /// The configured number of concurrent calls.
    pub max_concurrent_calls: u32,
    /// Free permits.
    pub available: u32,
    /// Calls holding a permit (admitted and not yet done).
    pub in_flight: u32,
    /// Calls waiting for a permit.
    pub queued: u32,
    /// Calls rejected since the bulkhead was made: turned away at once, or
    /// after waiting `max_wait` in vain.
    pub rejected: u64,
    /// The configured wait for a permit.
    #[serde(with = "portcullis_core::duration::serde")]
    pub max_wait: Duration,
}

/// How a call is let in: at once, after a wait, or not at all.
pub(crate) enum Admission {
    Acquired(BulkheadPermit),
    Wait(Acquire),
    Rejected(BulkheadFull),
}

struct Shared {
    name: Arc<str>,
    config: BulkheadConfig,
    semaphore: Semaphore,
    rejected: AtomicU64,
}

enum AcquireState {
    Done(Option<Result<BulkheadPermit, BulkheadFull>>),
    // Boxed: the slow path's state stays out of every response future.
    Queued(Pin<Box<Queued>>),
}

pin_project! {
    struct Queued {
        bulkhead: Bulkhead,
        id: u64,
        deadline: Instant,
        // Made on the first poll, so that `call` needs no runtime.
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Bulkhead {
    /// A bulkhead named `name` with the default configuration (25
    /// concurrent calls, no wait).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), BulkheadConfig::default())
    }

    /// A bulkhead named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: BulkheadConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config))
    }

    pub(crate) fn build(name: Arc<str>, config: BulkheadConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                semaphore: Semaphore::new(config.max_concurrent_calls() as usize),
                name,
                config,
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.shared.config
    }

    /// Takes a permit if one is free, or rejects with [`BulkheadFull`].
    ///
    /// Never waits, whatever `max_wait` says: one compare-and-swap, no lock,
    /// no allocation. While calls are queued no permit is free, so this
    /// never overtakes a waiter.
    #[inline]
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        if self.shared.semaphore.try_acquire() {
            Ok(self.permit())
        } else {
            Err(self.reject())
        }
    }

    /// Takes a permit, waiting for one for at most `max_wait` (in a FIFO
    /// queue bounded by `max_queued_calls`); resolves to [`BulkheadFull`]
    /// when there is none in time. With `max_wait` zero it is
    /// [`try_acquire`](Self::try_acquire).
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_bulkhead::{Bulkhead, BulkheadConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config = BulkheadConfig::builder()
    ///     .max_concurrent_calls(1)
    ///     .max_wait(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let bulkhead = Bulkhead::from_config("api", config).unwrap();
    /// let held = bulkhead.acquire().await.unwrap();
    ///
    /// let waiting = bulkhead.acquire(); // queued from here on
    /// assert_eq!(bulkhead.queued(), 1);
    /// drop(held);
    /// assert!(waiting.await.is_ok(), "handed the permit that was given back");
    ///
    /// let _held = bulkhead.acquire().await.unwrap();
    /// assert!(bulkhead.acquire().await.is_err(), "nothing came back within 1s");
    /// # }
    /// ```
    pub fn acquire(&self) -> Acquire {
        match self.admit() {
            Admission::Acquired(permit) => Acquire::done(Ok(permit)),
            Admission::Wait(acquire) => acquire,
            Admission::Rejected(full) => Acquire::done(Err(full)),
        }
    }

    /// The first step of every call: a permit at once, a place in the queue,
    /// or a rejection.
    #[inline]
    pub(crate) fn admit(&self) -> Admission {
        let shared = &*self.shared;
        if shared.semaphore.try_acquire() {
            return Admission::Acquired(self.permit());
        }
        self.admit_slow()
    }

    #[cold]
    fn admit_slow(&self) -> Admission {
        let shared = &*self.shared;
        let wait = shared.config.max_wait();
        if wait.is_zero() {
            return Admission::Rejected(self.reject());
        }
        let max_queued = shared.config.max_queued_calls().map(|max| max as usize);
        match shared.semaphore.enqueue(max_queued) {
            Enqueued::Acquired => Admission::Acquired(self.permit()),
            Enqueued::Queued(id) => Admission::Wait(Acquire {
                state: AcquireState::Queued(Box::pin(Queued {
                    bulkhead: self.clone(),
                    id,
                    deadline: Instant::now() + wait,
                    sleep: None,
                })),
            }),
            Enqueued::Full => Admission::Rejected(self.reject()),
        }
    }

    /// Calls holding a permit now.
    pub fn in_flight(&self) -> u32 {
        let semaphore = &self.shared.semaphore;
        (semaphore.permits() - semaphore.available()) as u32
    }

    /// Calls waiting for a permit now.
    pub fn queued(&self) -> u32 {
        self.shared.semaphore.queued() as u32
    }

    /// Free permits now.
    pub fn available(&self) -> u32 {
        self.shared.semaphore.available() as u32
    }

    /// The configured number of concurrent calls.
    pub fn max_concurrent_calls(&self) -> u32 {
        self.shared.config.max_concurrent_calls()
    }

    /// Calls rejected since the bulkhead was made.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// The bulkhead's figures now.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let shared = &*self.shared;
        let available = self.available();
        BulkheadSnapshot {
            name: shared.name.to_string(),
            max_concurrent_calls: shared.config.max_concurrent_calls(),
            available,
            in_flight: shared.config.max_concurrent_calls() - available,
            queued: self.queued(),
            rejected: self.rejected(),
            max_wait: shared.config.max_wait(),
        }
    }

    /// Whether nothing but its owner refers to this pool: no permit, no
    /// waiter, no other handle. (Only the keyed table asks, under its lock.)
    pub(crate) fn is_unshared(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    #[inline]
    fn permit(&self) -> BulkheadPermit {
        BulkheadPermit {
            bulkhead: self.clone(),
        }
    }

    #[cold]
    pub(crate) fn reject(&self) -> BulkheadFull {
        let shared = &*self.shared;
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(bulkhead = %shared.name, "call rejected: bulkhead full");
        BulkheadFull::new(shared.name.clone())
    }
}

impl BulkheadPermit {
    /// The bulkhead the permit belongs to.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

impl Drop for BulkheadPermit {
    #[inline]
    fn drop(&mut self) {
        self.bulkhead.shared.semaphore.release();
    }
}

impl Acquire {
    pub(crate) fn done(result: Result<BulkheadPermit, BulkheadFull>) -> Self {
        Self {
            state: AcquireState::Done(Some(result)),
        }
    }
}

impl Future for Acquire {
    type Output = Result<BulkheadPermit, BulkheadFull>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &mut self.state {
            AcquireState::Done(result) => {
                return Poll::Ready(result.take().expect("polled after completion"));
            }
            AcquireState::Queued(queued) => {
                let mut queued = queued.as_mut().project();
                let bulkhead = &*queued.bulkhead;
                let semaphore = &bulkhead.shared.semaphore;
                if semaphore.poll_queued(*queued.id, cx).is_ready() {
                    Ok(bulkhead.permit())
                } else {
                    if queued.sleep.is_none() {
                        let sleep = tokio::time::sleep_until(*queued.deadline);
                        queued.sleep.set(Some(sleep));
                    }
                    let sleep = queued.sleep.as_pin_mut().expect("set above");
                    if sleep.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if semaphore.cancel(*queued.id) {
                        // Handed a permit as the deadline passed: keep it.
                        Ok(bulkhead.permit())
                    } else {
                        Err(bulkhead.reject())
                    }
                }
            }
        };
        // The waiter's entry is settled: nothing for `drop` to do.
        self.state = AcquireState::Done(None);
        Poll::Ready(result)
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let AcquireState::Queued(queued) = &self.state {
            queued.bulkhead.shared.semaphore.abandon(queued.id);
        }
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.shared.name)
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .field("config", &self.shared.config)
            .finish()
    }
}

impl fmt::Debug for BulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.bulkhead.shared.name)
            .finish()
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            AcquireState::Done(result) => f
                .debug_struct("Acquire::Done")
                .field("result", result)
                .finish(),
            AcquireState::Queued(queued) => f
                .debug_struct("Acquire::Queued")
                .field("bulkhead", &queued.bulkhead.shared.name)
                .field("id", &queued.id)
                .field("deadline", &queued.deadline)
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn bulkhead(calls: u32, wait: Duration) -> Bulkhead {
        let config = BulkheadConfig::builder()
            .max_concurrent_calls(calls)
            .max_wait(wait)
            .build()
            .unwrap();
        Bulkhead::from_config("unit", config).unwrap()
    }

    #[test]
    fn permits_are_counted_and_given_back_on_drop() {
        let b = bulkhead(2, Duration::ZERO);
        let one = b.try_acquire().unwrap();
        assert_eq!((b.in_flight(), b.available()), (1, 1));
        let two = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(one);
        drop(two);
        assert_eq!((b.in_flight(), b.available(), b.rejected()), (0, 2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_handed_a_permit_at_its_deadline_keeps_it() {
        let b = bulkhead(1, Duration::from_millis(10));
        let held = b.try_acquire().unwrap();
        let mut waiting = std::pin::pin!(b.acquire());
        assert!(futures_poll(waiting.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(10)).await;
        drop(held); // handed over before the waiter sees its deadline
        let permit = futures_poll(waiting.as_mut());
        assert!(matches!(permit, Poll::Ready(Ok(_))), "{permit:?}");
        assert_eq!(b.rejected(), 0);
    }

    fn futures_poll<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn the_snapshot_is_plain_data() {
        let b = bulkhead(3, Duration::from_millis(250));
        let _p = b.try_acquire().unwrap();
        let json = serde_json::to_value(b.snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "unit",
                "max_concurrent_calls": 3,
                "available": 2,
                "in_flight": 1,
                "queued": 0,
                "rejected": 0,
                "max_wait": "250ms",
            })
        );
        let back: BulkheadSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, b.snapshot());
    }
}
