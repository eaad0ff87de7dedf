//! Events and counters: each retry, each success after retries and each
//! give-up, to `tracing` and to subscribers; and Resilience4j's four
//! counters.
//!
//! Subscribers get a bounded broadcast stream ([`RetryLayer::subscribe`]);
//! a subscriber that falls behind loses the oldest events (and is told how
//! many), it never slows a call down. With no subscriber no event value is
//! built: the retry path checks one counter, and the path of a first attempt
//! that succeeds builds no event at all.
//!
//! [`RetryLayer::subscribe`]: crate::RetryLayer::subscribe

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use portcullis_core::events::RecvError;
use serde::Serialize;

/// Why a retry returned a failure instead of trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GiveUpReason {
    /// Every attempt allowed by `max_attempts` was made.
    MaxAttempts,
    /// The next delay would end past the total deadline.
    Deadline,
    /// The retry budget had no retry left.
    Budget,
    /// The callee asked for a wait (`Retry-After`) longer than
    /// `max_retry_after`.
    RetryAfterTooLong {
        /// The wait asked for.
        wait: Duration,
    },
    /// The callee said not to retry: a negative or malformed
    /// `grpc-retry-pushback-ms` (gRFC A6), or a custom
    /// [`Pushback::Stop`](portcullis_core::Pushback::Stop).
    ServerRefused,
    /// The request could not be sent again: a non-idempotent HTTP request
    /// without an `Idempotency-Key`, or a body larger than the replay limit.
    NotReplayable,
}

/// Something that happened to a call under a retry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// An attempt failed and another one will be made after `delay`.
    Retry {
        /// The retry layer's name.
        name: Arc<str>,
        /// The number of the attempt about to be made (2 for the first
        /// retry).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// Whether the callee set the delay: its `Retry-After` was longer
        /// than the backoff.
        server_directed: bool,
    },
    /// A call succeeded after at least one retry.
    Succeeded {
        /// The retry layer's name.
        name: Arc<str>,
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// A retryable failure was returned without a further attempt.
    GaveUp {
        /// The retry layer's name.
        name: Arc<str>,
        /// Attempts made.
        attempts: u32,
        /// Why no further attempt was made.
        reason: GiveUpReason,
    },
}

/// The counters of a retry layer, as plain data (Resilience4j's four, and
/// the retries made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Calls whose first attempt succeeded.
    pub successful_without_retry: u64,
    /// Calls that succeeded after one or more retries.
    pub successful_with_retry: u64,
    /// Calls that failed and were not retried (not retryable, or not
    /// replayable, or out of budget at once).
    pub failed_without_retry: u64,
    /// Calls that failed after one or more retries.
    pub failed_with_retry: u64,
    /// Retries made, over all calls.
    pub retries: u64,
}

/// A subscription to a retry layer's events; see
/// [`RetryLayer::subscribe`](crate::RetryLayer::subscribe).
pub type EventStream = portcullis_core::events::EventStream<RetryEvent>;

/// The sending side.
pub(crate) type Events = portcullis_core::events::Events<RetryEvent>;

/// The counters behind [`RetryMetrics`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) successful_without_retry: AtomicU64,
    pub(crate) successful_with_retry: AtomicU64,
    pub(crate) failed_without_retry: AtomicU64,
    pub(crate) failed_with_retry: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// How many events a slow subscriber may fall behind by.
pub(crate) const CAPACITY: usize = 256;

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaxAttempts => f.write_str("max attempts reached"),
            Self::Deadline => f.write_str("total deadline reached"),
            Self::Budget => f.write_str("retry budget spent"),
            Self::RetryAfterTooLong { wait } => {
                write!(f, "the callee asked for a wait of {wait:?}, too long")
            }
            Self::ServerRefused => f.write_str("the callee said not to retry"),
            Self::NotReplayable => f.write_str("the request cannot be sent again"),
        }
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RetryMetrics {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RetryMetrics {
            successful_without_retry: read(&self.successful_without_retry),
            successful_with_retry: read(&self.successful_with_retry),
            failed_without_retry: read(&self.failed_without_retry),
            failed_with_retry: read(&self.failed_with_retry),
            retries: read(&self.retries),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
