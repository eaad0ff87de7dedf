//! Events: transitions with their reasons, rejections and threshold
//! crossings, to `tracing` and to subscribers.
//!
//! Subscribers get a bounded broadcast stream ([`Breaker::subscribe`]); a
//! subscriber that falls behind loses the oldest events (and is told how
//! many), it never slows a call down. With no subscriber no event value is
//! even built: the hot path checks one counter.
//!
//! Rejections are counted, not sent one by one: a subscriber gets one
//! [`BreakerEvent::Rejected`] with the count at most every 10 ms (the first
//! rejection after a quiet spell at once), and the ones still pending
//! before the next other event, or when it asks with
//! [`Breaker::report_rejections`]. The buffer of 256 events is then taken
//! by transitions, not by a flood of rejected calls.
//!
//! Per-call events ([`BreakerEvent::Call`]: each outcome with its
//! duration) are for those who ask: [`Breaker::subscribe_with_calls`]
//! gives a stream of every event and those. While nobody holds such a
//! stream, a call costs what it did without them: the breaker checks a flag
//! it reads anyway, times nothing and builds nothing.
//!
//! Hooks ([`Breaker::on_event`]) get the same events but the per-call ones,
//! synchronously, on the thread of the call that caused them: no task, no
//! buffer, nothing allocated until a subscriber or a hook comes. A registry
//! keeps the state of thousands of breakers this way.
//!
//! [`Breaker::on_event`]: crate::Breaker::on_event
//! [`Breaker::report_rejections`]: crate::Breaker::report_rejections
//! [`Breaker::subscribe_with_calls`]: crate::Breaker::subscribe_with_calls
//!
//! [`Breaker::subscribe`]: crate::Breaker::subscribe

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Outcome;
pub use portcullis_core::events::RecvError;

use crate::State;

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate reached its threshold.
    FailureRate {
        /// The failure rate, in percent.
        rate: f32,
    },
    /// The slow-call rate reached its threshold.
    SlowCallRate {
        /// The slow-call rate, in percent.
        rate: f32,
    },
    /// The configured number of failures came in a row.
    ConsecutiveFailures {
        /// How many.
        count: u32,
    },
    /// A failed response asked for a wait (e.g. `Retry-After` on a 503).
    RetryAfter {
        /// The wait, capped by the configuration.
        wait: Duration,
    },
    /// The open wait is over: the next call is a probe.
    OpenWaitElapsed,
    /// The half-open probes did well enough.
    ProbesSucceeded,
    /// The half-open probes did badly.
    ProbesFailed {
        /// Failure rate over the probes, in percent.
        failure_rate: f32,
        /// Slow-call rate over the probes, in percent.
        slow_call_rate: f32,
    },
    /// The probes did not finish within `max_wait_in_half_open`.
    HalfOpenTimeout,
    /// A manual transition through the handle.
    Manual,
}

/// A threshold that the window's figures reached.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Threshold {
    /// The failure rate, in percent.
    FailureRate {
        /// The rate.
        rate: f32,
    },
    /// The slow-call rate, in percent.
    SlowCallRate {
        /// The rate.
        rate: f32,
    },
    /// Failures in a row.
    ConsecutiveFailures {
        /// How many.
        count: u32,
    },
}

/// Something that happened to a breaker.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The breaker changed state.
    Transition {
        /// The breaker's name.
        name: Arc<str>,
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
    /// Calls were rejected: `count` of them since the previous report.
    ///
    /// Rejections are reported in batches, at most one report per 10 ms
    /// (the first rejection after a quiet spell at once); the rejections
    /// still pending are reported before the next other event, so that
    /// the order of events holds. A flood of rejected calls thus costs a
    /// subscriber at most a hundred events a second, and cannot push the
    /// transitions out of its buffer.
    Rejected {
        /// The breaker's name.
        name: Arc<str>,
        /// When a probe may pass, if known, as of the last of these calls.
        retry_after: Option<Duration>,
        /// How many calls were rejected (at least 1).
        count: u64,
    },
    /// A threshold was reached. In `Closed` the breaker opens at the same
    /// moment. In `MetricsOnly` each threshold (failure rate, slow-call rate,
    /// failures in a row) is reported once per episode of its own: from the
    /// outcome that reaches it until its figure is below it again (or the
    /// rate undefined, below `minimum_calls`), whatever the other
    /// thresholds do.
    ThresholdCrossed {
        /// The breaker's name.
        name: Arc<str>,
        /// Which threshold, and the figure.
        threshold: Threshold,
    },
    /// A call's outcome, with how long it took. Sent only to the
    /// subscribers of [`Breaker::subscribe_with_calls`]; while there are
    /// none, calls are not even timed for it.
    ///
    /// [`Breaker::subscribe_with_calls`]: crate::Breaker::subscribe_with_calls
    Call {
        /// The breaker's name.
        name: Arc<str>,
        /// The outcome as classified; an `Ignored` one counted nowhere.
        outcome: Outcome,
        /// From admission to the outcome.
        duration: Duration,
        /// Whether the call was slow (only with a slow-call rule).
        slow: bool,
    },
    /// The breaker was reset: closed, with every count cleared.
    Reset {
        /// The breaker's name.
        name: Arc<str>,
    },
}

/// A subscription to a breaker's events; see [`Breaker::subscribe`].
///
/// [`Breaker::subscribe`]: crate::Breaker::subscribe
pub type EventStream = portcullis_core::events::EventStream<BreakerEvent>;

/// The sending side, kept by the breaker.
pub(crate) type Events = portcullis_core::events::Events<BreakerEvent>;

/// The hooks of a breaker, see [`Breaker::on_event`].
///
/// [`Breaker::on_event`]: crate::Breaker::on_event
pub(crate) type Hooks = portcullis_core::events::Hooks<BreakerEvent>;

/// A hook attached with [`Breaker::on_event`]; dropping it detaches the
/// hook. [`keep`](Self::keep) leaves it attached for as long as the
/// breaker lives.
///
/// It holds no strong reference: a breaker whose every handle is gone is
/// freed, hook and all.
///
/// [`Breaker::on_event`]: crate::Breaker::on_event
#[must_use = "dropping the guard detaches the hook at once"]
pub struct EventHook {
    breaker: std::sync::Weak<crate::breaker::Shared>,
    id: portcullis_core::events::HookId,
}

impl EventHook {
    pub(crate) fn new(
        breaker: std::sync::Weak<crate::breaker::Shared>,
        id: portcullis_core::events::HookId,
    ) -> Self {
        Self { breaker, id }
    }

    /// Leaves the hook attached for the rest of the breaker's life.
    pub fn keep(mut self) {
        self.breaker = std::sync::Weak::new();
    }
}

impl Drop for EventHook {
    fn drop(&mut self) {
        crate::breaker::detach(&self.breaker, self.id);
    }
}

impl fmt::Debug for EventHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHook")
            .field("attached", &(self.breaker.strong_count() > 0))
            .finish()
    }
}

/// How many events a slow subscriber may fall behind by.
pub(crate) const CAPACITY: usize = 256;

/// The same, for subscribers of every call's outcome.
pub(crate) const CALLS_CAPACITY: usize = 1024;

impl From<Threshold> for TransitionReason {
    fn from(threshold: Threshold) -> Self {
        match threshold {
            Threshold::FailureRate { rate } => Self::FailureRate { rate },
            Threshold::SlowCallRate { rate } => Self::SlowCallRate { rate },
            Threshold::ConsecutiveFailures { count } => Self::ConsecutiveFailures { count },
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailureRate { rate } => {
                write!(f, "failure rate {rate:.1}% reached the threshold")
            }
            Self::SlowCallRate { rate } => {
                write!(f, "slow-call rate {rate:.1}% reached the threshold")
            }
            Self::ConsecutiveFailures { count } => write!(f, "{count} failures in a row"),
            Self::RetryAfter { wait } => write!(f, "the callee asked for a wait of {wait:?}"),
            Self::OpenWaitElapsed => f.write_str("the open wait is over"),
            Self::ProbesSucceeded => f.write_str("the half-open probes succeeded"),
            Self::ProbesFailed {
                failure_rate,
                slow_call_rate,
            } => write!(
                f,
                "the half-open probes failed (failure rate {failure_rate:.1}%, slow-call rate {slow_call_rate:.1}%)"
            ),
            Self::HalfOpenTimeout => f.write_str("the half-open probes took too long"),
            Self::Manual => f.write_str("manual transition"),
        }
    }
}
