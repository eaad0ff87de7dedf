//! The shared handle that owns a limit, its samples and its waiters; the
//! permit of an admitted call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use std::sync::Arc;

use portcullis_core::sync::{AtomicBool, AtomicU64, Ordering};
use portcullis_core::{ConfigError, LimitExceeded, Outcome};
use serde::Serialize;
use tokio::time::{Instant, Sleep};

use crate::algorithm::{Estimator, Sample, nanos};
use crate::config::LimitConfig;
use crate::gate::{Gate, Share};
use crate::queue::{Joined, Queue, Wait, Waiter};
use crate::sync::Mutex;
use crate::{AlgorithmKind, metrics};

/// An adaptive concurrency limit: a cheap, cloneable handle to one shared
/// limit, the calls in flight against it, and the algorithm that moves it.
///
/// Every clone, every service built from it and every route that uses it
/// share the limit. Use it with [`LimitLayer::new`](crate::LimitLayer::new),
/// or on its own around any piece of work:
///
/// ```
/// use portcullis_core::Outcome;
/// use portcullis_limit::{AimdConfig, LimitConfig, Limiter};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = LimitConfig::builder()
///     .aimd(AimdConfig { initial_limit: 2, min_limit: 1, ..AimdConfig::default() })
///     .build()
///     .unwrap();
/// let limiter = Limiter::from_config("db", config).unwrap();
/// let a = limiter.try_acquire(None).unwrap();
/// let _b = limiter.try_acquire(None).unwrap();
/// let shed = limiter.try_acquire(None).unwrap_err();
/// assert_eq!(shed.name(), "db");
///
/// a.record(Outcome::Success); // a sample for the algorithm; room again
/// assert_eq!(limiter.snapshot().inflight, 1);
/// assert!(limiter.try_acquire(None).is_ok());
/// # }
/// ```
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// A partition of a [`Limiter`], found by name with
/// [`Limiter::partition`]: a call of it is guaranteed its share of the
/// limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partition(pub(crate) usize);

/// An admitted call's hold on the limit. Give it back with
/// [`record`](Self::record) and the call's [`Outcome`]; dropping it without
/// (a cancelled call) gives the room back and records nothing.
#[must_use = "the permit is given back when dropped"]
pub struct LimitPermit {
    limiter: Limiter,
    partition: Option<usize>,
    started: Instant,
    inflight: u64,
    recorded: bool,
}

pin_project! {
    /// Waits in the limiter's queue for room ([`Limiter::acquire`]):
    /// resolves to a permit, or to [`LimitExceeded`] when the call is shed
    /// (the queue overflowed while it was the oldest, or `max_wait`
    /// passed). Dropping it leaves the queue, or gives back the room it was
    /// handed.
    pub struct Acquire {
        limiter: Limiter,
        state: AcquireState,
        #[pin]
        sleep: Option<Sleep>,
    }

    impl PinnedDrop for Acquire {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let AcquireState::Queued(waiter) = &this.state {
                this.limiter.abandon(waiter);
            }
        }
    }
}

enum AcquireState {
    Ready(Result<LimitPermit, LimitExceeded>),
    Queued(Arc<Waiter>),
    Done,
}

/// The state of a limiter, as plain data.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LimitSnapshot {
    /// The limiter's name.
    pub name: String,
    /// Its algorithm.
    pub algorithm: AlgorithmKind,
    /// The limit now.
    pub limit: u64,
    /// Calls in flight now.
    pub inflight: u64,
    /// Calls waiting for room now.
    pub queued: u64,
    /// Calls admitted, at once or after a wait.
    pub admitted: u64,
    /// Calls shed with [`LimitExceeded`].
    pub shed: u64,
    /// Admitted calls whose outcome was a failure (a drop to the algorithm).
    pub dropped: u64,
    /// Admitted calls whose outcome was ignored (not sampled).
    pub ignored: u64,
    /// Admitted calls cancelled before they answered (not sampled).
    pub cancelled: u64,
    /// How many times the algorithm has taken a window's sample.
    pub updates: u64,
    /// The mean latency of the last window.
    pub last_rtt: Duration,
    /// The algorithm's base latency: Vegas' no-load latency, Gradient2's
    /// long-term average; zero for AIMD.
    pub base_rtt: Duration,
    /// Each partition, in order.
    pub partitions: Vec<PartitionSnapshot>,
}

/// A partition's state, as plain data.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PartitionSnapshot {
    /// Its name.
    pub name: String,
    /// Its fraction of the limit.
    pub share: f64,
    /// Its guaranteed calls under the current limit.
    pub guaranteed: u64,
    /// Its calls in flight now (borrowed ones included).
    pub inflight: u64,
}

struct Inner {
    name: Arc<str>,
    config: LimitConfig,
    gate: Gate,
    partition_names: Box<[Arc<str>]>,
    queue: Option<Queue>,
    window: Window,
    estimator: Mutex<Estimator>,
    epoch: Instant,
    counts: Counts,
    reporter: metrics::Reporter,
}

/// The current window's samples, on atomics.
#[derive(Debug, Default)]
struct Window {
    /// When it began, in nanoseconds since the epoch.
    start: AtomicU64,
    rtt_sum: AtomicU64,
    rtt_count: AtomicU64,
    drops: AtomicU64,
    max_inflight: AtomicU64,
    /// Held by the one caller that closes the window.
    closing: AtomicBool,
    /// The mean latency of the last closed window with one.
    last_rtt: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    admitted: AtomicU64,
    shed: AtomicU64,
    dropped: AtomicU64,
    ignored: AtomicU64,
    cancelled: AtomicU64,
    updates: AtomicU64,
}

/// What admission found, for the service.
pub(crate) enum Admission {
    Acquired(LimitPermit),
    Rejected(LimitExceeded),
    Wait(Acquire),
}

impl Limiter {
    /// A limiter named `name` with the default configuration (Gradient2).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), LimitConfig::default())
    }

    /// A limiter named `name` with `config`, validated.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: LimitConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config))
    }

    /// `config` must be valid.
    pub(crate) fn build(name: Arc<str>, config: LimitConfig) -> Self {
        let estimator = match config.algorithm() {
            AlgorithmKind::Aimd => Estimator::aimd(config.aimd().clone()),
            AlgorithmKind::Gradient2 => Estimator::gradient2(config.gradient2().clone()),
            AlgorithmKind::Vegas => Estimator::vegas(
                config.vegas().clone(),
                portcullis_core::rng::SplitMix64::from_entropy().next_u64(),
            ),
        };
        let shares = config
            .partitions()
            .iter()
            .map(|p| Share::new(p.share))
            .collect();
        let partition_names = config
            .partitions()
            .iter()
            .map(|p| Arc::<str>::from(p.name.as_str()))
            .collect();
        let queue = config
            .queue()
            .map(|q| Queue::new(usize::try_from(q.max_queued).unwrap_or(usize::MAX)));
        let limit = u64::from(config.initial_limit());
        let reporter = metrics::Reporter::new();
        reporter.limit_changed(&name, limit);
        Self {
            inner: Arc::new(Inner {
                gate: Gate::new(limit, shares),
                partition_names,
                queue,
                window: Window::default(),
                estimator: Mutex::new(estimator),
                epoch: Instant::now(),
                counts: Counts::default(),
                reporter,
                name,
                config,
            }),
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its configuration.
    pub fn config(&self) -> &LimitConfig {
        &self.inner.config
    }

    /// The limit now.
    pub fn limit(&self) -> u64 {
        self.inner.gate.limit()
    }

    /// The calls in flight now.
    pub fn inflight(&self) -> u64 {
        self.inner.gate.inflight()
    }

    /// The partition named `name`, if configured.
    pub fn partition(&self, name: &str) -> Option<Partition> {
        self.inner
            .partition_names
            .iter()
            .position(|n| &**n == name)
            .map(Partition)
    }

    /// Admits a call of `partition` (`None`: no partition, only the room
    /// the partitions leave) if there is room now, without waiting.
    pub fn try_acquire(&self, partition: Option<Partition>) -> Result<LimitPermit, LimitExceeded> {
        let partition = partition.map(|p| p.0);
        match self.inner.gate.try_acquire(partition) {
            Some(inflight) => Ok(self.permit(partition, inflight)),
            None => Err(self.shed()),
        }
    }

    /// Admits a call of `partition`, waiting in the queue (newest first,
    /// at most `max_wait`) if one is configured and there is no room now.
    pub fn acquire(&self, partition: Option<Partition>) -> Acquire {
        match self.admit(partition.map(|p| p.0)) {
            Admission::Acquired(permit) => self.ready(Ok(permit)),
            Admission::Rejected(error) => self.ready(Err(error)),
            Admission::Wait(acquire) => acquire,
        }
    }

    fn ready(&self, result: Result<LimitPermit, LimitExceeded>) -> Acquire {
        Acquire {
            limiter: self.clone(),
            state: AcquireState::Ready(result),
            sleep: None,
        }
    }

    /// The service's admission: a permit, a rejection, or a wait.
    #[inline]
    pub(crate) fn admit(&self, partition: Option<usize>) -> Admission {
        if let Some(inflight) = self.inner.gate.try_acquire(partition) {
            return Admission::Acquired(self.permit(partition, inflight));
        }
        let (Some(queue), Some(config)) = (&self.inner.queue, self.inner.config.queue()) else {
            return Admission::Rejected(self.shed());
        };
        // The timer first: made outside a runtime with time it panics, and
        // a waiter already queued would then hold room it never gives back.
        let sleep = tokio::time::sleep(config.max_wait);
        match queue.join(&self.inner.gate, partition) {
            Joined::Admitted(inflight) => Admission::Acquired(self.permit(partition, inflight)),
            Joined::Queued(waiter) => Admission::Wait(Acquire {
                limiter: self.clone(),
                state: AcquireState::Queued(waiter),
                sleep: Some(sleep),
            }),
        }
    }

    #[inline]
    fn permit(&self, partition: Option<usize>, inflight: u64) -> LimitPermit {
        self.inner.counts.admitted.fetch_add(1, Ordering::Relaxed);
        LimitPermit {
            limiter: self.clone(),
            partition,
            started: Instant::now(),
            inflight,
            recorded: false,
        }
    }

    /// The rejection, with about one call's latency as the hint to retry.
    fn shed(&self) -> LimitExceeded {
        self.inner.counts.shed.fetch_add(1, Ordering::Relaxed);
        self.inner.reporter.shed(&self.inner.name);
        let rtt = self.inner.window.last_rtt.load(Ordering::Relaxed);
        let retry_after = (rtt > 0).then(|| Duration::from_nanos(rtt));
        LimitExceeded::new(self.inner.name.clone(), retry_after)
    }

    /// A waiter's future was dropped: leave the queue, or pass on the room
    /// it was handed.
    fn abandon(&self, waiter: &Arc<Waiter>) {
        if let Some(queue) = &self.inner.queue {
            if let Wait::Granted(_) = queue.leave(waiter) {
                self.release(waiter.partition);
            }
        }
    }

    #[inline]
    fn release(&self, partition: Option<usize>) {
        self.inner.gate.release(partition);
        if let Some(queue) = &self.inner.queue {
            queue.hand_over(&self.inner.gate);
        }
    }

    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.inner.epoch))
    }

    /// Counts a finished call into the window, and closes the window if it
    /// is due.
    #[inline]
    fn sample(&self, rtt: Option<u64>, inflight: u64, now: u64) {
        let window = &self.inner.window;
        let count = match rtt {
            Some(rtt) => {
                window.rtt_sum.fetch_add(rtt, Ordering::Relaxed);
                window.rtt_count.fetch_add(1, Ordering::Relaxed)
                    + window.drops.load(Ordering::Relaxed)
            }
            None => {
                window.drops.fetch_add(1, Ordering::Relaxed)
                    + window.rtt_count.load(Ordering::Relaxed)
            }
        } + 1;
        window.max_inflight.fetch_max(inflight, Ordering::Relaxed);
        let config = &self.inner.config;
        if count < u64::from(config.min_samples())
            || now.saturating_sub(window.start.load(Ordering::Relaxed)) < nanos(config.window())
        {
            return;
        }
        if window.closing.swap(true, Ordering::Acquire) {
            return; // another caller closes it
        }
        // Cleared however the closing ends, a panic of a `tracing`
        // subscriber or `metrics` recorder included: a flag left set would
        // freeze the limit.
        let _closing = ClearOnDrop(&window.closing);
        // Looked at again now that this caller holds the flag: another may
        // have closed the window between the checks above and the flag.
        let count = window.rtt_count.load(Ordering::Relaxed) + window.drops.load(Ordering::Relaxed);
        if count < u64::from(config.min_samples())
            || now.saturating_sub(window.start.load(Ordering::Relaxed)) < nanos(config.window())
        {
            return;
        }
        self.close_window(now);
    }

    /// Takes the window's sample to the algorithm and stores the new limit.
    /// Only the caller that set `closing` gets here, so the estimator's
    /// lock is never contended by another closer (only, rarely, by a
    /// [`snapshot`](Self::snapshot)).
    #[cold]
    fn close_window(&self, now: u64) {
        let window = &self.inner.window;
        window.start.store(now, Ordering::Relaxed);
        let sum = window.rtt_sum.swap(0, Ordering::Relaxed);
        let count = window.rtt_count.swap(0, Ordering::Relaxed);
        let drops = window.drops.swap(0, Ordering::Relaxed);
        let inflight = window.max_inflight.swap(0, Ordering::Relaxed);
        let rtt = sum.checked_div(count).unwrap_or(0);
        if rtt > 0 {
            window.last_rtt.store(rtt, Ordering::Relaxed);
        }
        let sample = Sample {
            rtt,
            inflight,
            dropped: drops > 0,
        };
        let (before, after, base) = {
            let mut estimator = self
                .inner
                .estimator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = estimator.limit();
            let after = estimator.update(sample);
            (before, after, estimator.base_rtt())
        };
        self.inner.counts.updates.fetch_add(1, Ordering::Relaxed);
        if before != after {
            self.inner.gate.set_limit(u64::from(after));
            self.inner
                .reporter
                .limit_changed(&self.inner.name, u64::from(after));
            tracing::debug!(
                limit.name = %self.inner.name,
                limit.before = before,
                limit.after = after,
                window.rtt_us = rtt / 1000,
                window.base_rtt_us = base / 1000,
                window.inflight = inflight,
                window.samples = count,
                window.drops = drops,
                "concurrency limit changed"
            );
            if after > before {
                if let Some(queue) = &self.inner.queue {
                    queue.hand_over(&self.inner.gate);
                }
            }
        }
    }

    /// The state now, as plain data.
    pub fn snapshot(&self) -> LimitSnapshot {
        let inner = &self.inner;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let limit = inner.gate.limit();
        let base = inner
            .estimator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .base_rtt();
        LimitSnapshot {
            name: inner.name.to_string(),
            algorithm: inner.config.algorithm(),
            limit,
            inflight: inner.gate.inflight(),
            queued: inner
                .queue
                .as_ref()
                .map_or(0, |q| u64::try_from(q.len()).unwrap_or(u64::MAX)),
            admitted: read(&inner.counts.admitted),
            shed: read(&inner.counts.shed),
            dropped: read(&inner.counts.dropped),
            ignored: read(&inner.counts.ignored),
            cancelled: read(&inner.counts.cancelled),
            updates: read(&inner.counts.updates),
            last_rtt: Duration::from_nanos(read(&inner.window.last_rtt)),
            base_rtt: Duration::from_nanos(base),
            partitions: inner
                .partition_names
                .iter()
                .zip(inner.gate.shares())
                .map(|(name, share)| PartitionSnapshot {
                    name: name.to_string(),
                    share: share.fraction,
                    guaranteed: share.guaranteed(limit),
                    inflight: share.inflight.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

impl LimitPermit {
    /// Gives the room back, with the call's outcome: a success is a latency
    /// sample, a failure a drop, and an ignored outcome is not sampled.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        let limiter = &self.limiter;
        match outcome {
            Outcome::Success => {
                let now = limiter.now();
                let started = nanos(self.started.saturating_duration_since(limiter.inner.epoch));
                // A zero latency (paused time) still counts, as 1 ns.
                let rtt = now.saturating_sub(started).max(1);
                limiter.sample(Some(rtt), self.inflight, now);
            }
            Outcome::Failure => {
                limiter.inner.counts.dropped.fetch_add(1, Ordering::Relaxed);
                limiter.sample(None, self.inflight, limiter.now());
            }
            Outcome::Ignored => {
                limiter.inner.counts.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.recorded = true;
        // Dropping it gives the room back.
    }

    /// The calls in flight when this one was admitted, itself included.
    pub fn inflight(&self) -> u64 {
        self.inflight
    }
}

impl Drop for LimitPermit {
    #[inline]
    fn drop(&mut self) {
        if !self.recorded {
            let counts = &self.limiter.inner.counts;
            counts.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        self.limiter.release(self.partition);
    }
}

impl Future for Acquire {
    type Output = Result<LimitPermit, LimitExceeded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let waiter = match &*this.state {
            AcquireState::Queued(waiter) => waiter.clone(),
            AcquireState::Done => panic!("`Acquire` polled after completion"),
            AcquireState::Ready(_) => match std::mem::replace(this.state, AcquireState::Done) {
                AcquireState::Ready(result) => return Poll::Ready(result),
                _ => unreachable!("matched as ready"),
            },
        };
        // The waiter stays in the state until the future resolves: if the
        // timer's poll panics, dropping the future still leaves the queue
        // (or gives back a grant).
        let mut done = |result| {
            *this.state = AcquireState::Done;
            Poll::Ready(result)
        };
        match waiter.poll(cx.waker()) {
            Wait::Granted(inflight) => {
                return done(Ok(this.limiter.permit(waiter.partition, inflight)));
            }
            Wait::Shed => return done(Err(this.limiter.shed())),
            Wait::Waiting => {}
        }
        let expired = this
            .sleep
            .as_mut()
            .as_pin_mut()
            .is_some_and(|sleep| sleep.poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        let queue = this.limiter.inner.queue.as_ref().expect("a queue");
        match queue.leave(&waiter) {
            Wait::Granted(inflight) => done(Ok(this.limiter.permit(waiter.partition, inflight))),
            _ => done(Err(this.limiter.shed())),
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.inner.name)
            .field("algorithm", &self.inner.config.algorithm())
            .field("limit", &self.limit())
            .field("inflight", &self.inflight())
            .field("queue", &self.inner.queue)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LimitPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitPermit")
            .field("limiter", &self.limiter.name())
            .field("partition", &self.partition)
            .field("inflight", &self.inflight)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            AcquireState::Ready(Ok(_)) => "admitted",
            AcquireState::Ready(Err(_)) => "shed",
            AcquireState::Queued(_) => "queued",
            AcquireState::Done => "done",
        };
        f.debug_struct("Acquire")
            .field("limiter", &self.limiter.name())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// Clears a flag when dropped.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
