//! The shared handle of a single (non-keyed) limit, and the parts it shares
//! with the keyed one.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_core::clock::Clock;
use portcullis_core::{ConfigError, RateLimited};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::RateLimitConfig;
use crate::gcra::{Cell, Decision, Gcra};

/// A rate limiter: a cheap, cloneable handle to one shared limit.
///
/// Every clone, every service built from it and every route that uses it
/// draws on the same budget; there is nothing to wrap in a `Mutex` and
/// nothing that must not be cloned. Use it with
/// [`RateLimitLayer::new`](crate::RateLimitLayer::new), or on its own around
/// any call:
///
/// ```
/// use portcullis_ratelimit::{RateLimitConfig, RateLimiter};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = RateLimitConfig::per_second(10).burst(2).build().unwrap();
/// let limiter = RateLimiter::from_config("search", config).unwrap();
/// assert!(limiter.try_acquire().is_ok());
/// assert!(limiter.clone().try_acquire().is_ok());
/// let rejected = limiter.try_acquire().unwrap_err();
/// assert_eq!(rejected.name(), "search");
/// assert!(rejected.retry_after().unwrap() <= Duration::from_millis(100));
/// assert_eq!(limiter.snapshot().rejected, 1);
/// # }
/// ```
///
/// The admission is one clock read and one compare-and-swap on a single
/// atomic word; no lock, no allocation.
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

/// A rate limiter's figures at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RateLimiterSnapshot {
    /// The limiter's name.
    pub name: String,
    /// Calls allowed per period, on average.
    pub limit: u32,
    /// The period.
    #[serde(with = "portcullis_core::duration::serde")]
    pub period: Duration,
    /// The most calls allowed at once.
    pub burst: u32,
    /// How many calls would be admitted now, one after the other.
    pub available: u64,
    /// Calls rejected since the limiter was made.
    pub rejected: u64,
}

/// What a single and a keyed limiter have in common.
pub(crate) struct Common {
    pub(crate) name: Arc<str>,
    /// The configuration as given; read by `config()` and replaced by
    /// `reconfigure()`, never on the call path (which reads `limit`).
    config: Mutex<RateLimitConfig>,
    limit: Limit,
    /// The time of the limiter's calls, in nanoseconds since it was made.
    clock: Clock,
    pub(crate) rejected: AtomicU64,
}

/// The numbers a call reads, in atomics so that a live limiter can be
/// reconfigured without a lock on the call path. Each is read on its own:
/// a call that races a reconfiguration may be decided with the new
/// interval and the old tolerance, which is a valid limit too.
struct Limit {
    interval: AtomicU64,
    tolerance: AtomicU64,
    max_wait: AtomicU64,
    burst: AtomicU32,
}

/// The decision about one call, with the instant it was made at.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP headers read them
pub(crate) struct Check {
    /// Nanoseconds since the limiter's epoch.
    pub(crate) now: u64,
    pub(crate) verdict: Verdict,
}

#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum Verdict {
    /// Admitted at once; `tat` is the new theoretical arrival time.
    Now { tat: u64 },
    /// Admitted at `at`: the slot is reserved, and given back by `refund`
    /// if the call is dropped before then.
    Later {
        at: Instant,
        tat: u64,
        refund: Refund,
    },
    /// Rejected; the whole burst is back `reset` nanoseconds from now.
    Rejected { error: RateLimited, reset: u64 },
}

/// Gives a reserved slot back when dropped, unless disarmed.
pub(crate) struct Refund(Option<Box<dyn FnOnce() + Send + Sync>>);

/// A limit that decides about a request: the single limiter (any request)
/// and the keyed one (by the request's key).
pub(crate) trait Admit<Req> {
    /// Reads the clock once and decides.
    fn check(&self, request: &Req) -> Check;

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    fn common(&self) -> &Common;
}

struct Shared {
    common: Common,
    cell: Cell,
}

impl RateLimiter {
    /// A limiter named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config))
    }

    pub(crate) fn build(name: Arc<str>, config: RateLimitConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                common: Common::new(name, config),
                cell: Cell::new(),
            }),
        }
    }

    /// A new limiter with the same name and configuration, and a fresh
    /// budget.
    pub(crate) fn fresh(&self) -> Self {
        let common = &self.shared.common;
        Self::build(common.name.clone(), common.config())
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.common.name
    }

    /// Its configuration.
    pub fn config(&self) -> RateLimitConfig {
        self.shared.common.config()
    }

    /// Changes the limit of this live limiter, keeping its state: the
    /// calls it admitted still count against the new limit, from the next
    /// call on. `max_keys` means nothing to a single limiter and is only
    /// kept.
    ///
    /// The state is the *theoretical arrival time*, the moment the whole
    /// burst is back. Its lead over now is a debt of calls, and the debt is
    /// kept in calls: at a new rate it is rescaled (rounded up), so that a
    /// limiter that had spent four calls has spent four calls of the new
    /// limit too, and earns them back at the new rate. A call that races
    /// the change is decided by the old limit or the new one. An invalid
    /// `config` changes nothing.
    ///
    /// ```
    /// use portcullis_ratelimit::{RateLimitConfig, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let limiter = RateLimiter::from_config("api", RateLimitConfig::per_second(2).build().unwrap()).unwrap();
    /// assert!(limiter.try_acquire().is_ok());
    /// assert!(limiter.try_acquire().is_ok());
    /// // A larger burst: the two calls made are still counted.
    /// limiter.reconfigure(RateLimitConfig::per_second(2).burst(3).build().unwrap()).unwrap();
    /// assert_eq!(limiter.remaining(), 1);
    /// assert_eq!(limiter.config().burst(), 3);
    /// // A slower rate: still two calls spent, of a burst of three.
    /// limiter.reconfigure(RateLimitConfig::per_minute(1).burst(3).build().unwrap()).unwrap();
    /// assert_eq!(limiter.remaining(), 1);
    /// # }
    /// ```
    pub fn reconfigure(&self, config: RateLimitConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let common = &self.shared.common;
        let from = common.gcra().interval();
        common.reconfigure(config);
        let to = common.gcra().interval();
        if from != to {
            self.shared.cell.rescale(common.now(), from, to);
        }
        Ok(())
    }

    /// Admits a call now, or rejects it with [`RateLimited`] carrying the
    /// exact time until it would be admitted. Never waits, whatever
    /// `max_wait` says.
    pub fn try_acquire(&self) -> Result<(), RateLimited> {
        let common = &self.shared.common;
        let now = common.now();
        match self.shared.cell.acquire(&common.gcra(), now, 0) {
            Decision::Admit { .. } => Ok(()),
            Decision::Reject { retry_after, .. } => Err(common.reject(retry_after)),
        }
    }

    /// Admits a call, waiting for its slot if it comes within the
    /// configured `max_wait`; otherwise rejects it at once. The slot is
    /// reserved when this is called; dropping the future before it resolves
    /// gives the slot back if no call was admitted since.
    pub fn acquire(&self) -> impl Future<Output = Result<(), RateLimited>> + Send + 'static {
        let check = self.check_now();
        async move {
            match check.verdict {
                Verdict::Now { .. } => Ok(()),
                Verdict::Later { at, refund, .. } => {
                    tokio::time::sleep_until(at).await;
                    refund.disarm();
                    Ok(())
                }
                Verdict::Rejected { error, .. } => Err(error),
            }
        }
    }

    /// How many calls would be admitted now, one after the other.
    pub fn remaining(&self) -> u64 {
        let common = &self.shared.common;
        common
            .gcra()
            .available(self.shared.cell.tat(), common.now())
    }

    /// The limiter's figures now.
    pub fn snapshot(&self) -> RateLimiterSnapshot {
        self.shared.common.snapshot(self.remaining())
    }

    fn check_now(&self) -> Check {
        let shared = &self.shared;
        let common = &shared.common;
        let now = common.now();
        let gcra = common.gcra();
        let verdict = match shared.cell.acquire(&gcra, now, common.max_wait()) {
            Decision::Admit { wait: 0, tat } => Verdict::Now { tat },
            Decision::Admit { wait, tat } => {
                let limiter = self.clone();
                Verdict::Later {
                    at: common.instant(now + wait),
                    tat,
                    refund: Refund::new(move || {
                        limiter
                            .shared
                            .cell
                            .refund(&limiter.shared.common.gcra(), tat);
                    }),
                }
            }
            Decision::Reject { retry_after, tat } => Verdict::Rejected {
                error: common.reject(retry_after),
                reset: gcra.reset(tat, now),
            },
        };
        Check { now, verdict }
    }
}

impl<Req> Admit<Req> for RateLimiter {
    #[inline]
    fn check(&self, _: &Req) -> Check {
        self.check_now()
    }

    fn common(&self) -> &Common {
        &self.shared.common
    }
}

impl Common {
    pub(crate) fn new(name: Arc<str>, config: RateLimitConfig) -> Self {
        let gcra = config.gcra();
        Self {
            limit: Limit {
                interval: AtomicU64::new(gcra.interval()),
                tolerance: AtomicU64::new(gcra.tolerance()),
                max_wait: AtomicU64::new(config.max_wait_nanos()),
                burst: AtomicU32::new(config.burst()),
            },
            name,
            config: Mutex::new(config),
            clock: Clock::new(),
            rejected: AtomicU64::new(0),
        }
    }

    /// The configuration as given.
    pub(crate) fn config(&self) -> RateLimitConfig {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes a validated `config` from the next call on.
    pub(crate) fn reconfigure(&self, config: RateLimitConfig) {
        let mut current = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let gcra = config.gcra();
        let limit = &self.limit;
        limit.interval.store(gcra.interval(), Ordering::Relaxed);
        limit.tolerance.store(gcra.tolerance(), Ordering::Relaxed);
        limit
            .max_wait
            .store(config.max_wait_nanos(), Ordering::Relaxed);
        limit.burst.store(config.burst(), Ordering::Relaxed);
        *current = config;
    }

    /// The limit now, in the units of the state machine.
    #[inline]
    pub(crate) fn gcra(&self) -> Gcra {
        Gcra::from_parts(
            self.limit.interval.load(Ordering::Relaxed),
            self.limit.tolerance.load(Ordering::Relaxed),
        )
    }

    /// The longest wait in nanoseconds (0: fail fast).
    #[inline]
    pub(crate) fn max_wait(&self) -> u64 {
        self.limit.max_wait.load(Ordering::Relaxed)
    }

    /// The most calls allowed at once.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    #[inline]
    pub(crate) fn burst(&self) -> u32 {
        self.limit.burst.load(Ordering::Relaxed)
    }

    /// Nanoseconds since the limiter was made: the one clock read of a
    /// call (the coarse time in a running runtime, see [`Clock`]).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.clock.instant(nanos)
    }

    /// Counts a rejection and makes its error.
    pub(crate) fn reject(&self, retry_after: u64) -> RateLimited {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let retry_after = Duration::from_nanos(retry_after);
        tracing::debug!(limiter = %self.name, ?retry_after, "call rate-limited");
        RateLimited::new(self.name.clone(), Some(retry_after))
    }

    pub(crate) fn snapshot(&self, available: u64) -> RateLimiterSnapshot {
        let config = self.config();
        RateLimiterSnapshot {
            name: self.name.to_string(),
            limit: config.rate(),
            period: config.period(),
            burst: config.burst(),
            available,
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

impl Refund {
    pub(crate) fn new(refund: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(refund)))
    }

    /// The call got its slot: nothing to give back.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Refund {
    fn drop(&mut self) {
        if let Some(refund) = self.0.take() {
            refund();
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.common.name)
            .field("config", &self.shared.common.config())
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl fmt::Debug for Refund {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refund")
            .field("armed", &self.0.is_some())
            .finish()
    }
}
