//! Circuit breakers in the registry.

use std::sync::Arc;

use portcullis_breaker::{
    Breaker, BreakerConfig, BreakerEvent, BreakerSnapshot, EventHook, State, Threshold,
};
use portcullis_core::{ConfigError, percent};

use crate::event::EventKind;
use crate::figures::{Family, Value, counter, gauge, optional};
use crate::hub::{Hub, Reporter};
use crate::kind::{Instance, InstanceKind, Source};

impl Instance for Breaker {
    type Config = BreakerConfig;
    type Snapshot = BreakerSnapshot;

    type Attachment = EventHook;

    const KIND: InstanceKind = InstanceKind::Breaker;

    fn validate(config: &BreakerConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn build(name: &str, config: BreakerConfig) -> Self {
        Breaker::from_config(name, config).expect("the registry validates every config it keeps")
    }

    /// The keyed breakers of a name are siblings: one configuration for
    /// all of them, however many keys there are.
    /// (A sibling takes the configuration its siblings share, which the
    /// registry keeps up to date; it is checked all the same, in case a
    /// handle was given another one.)
    fn build_keyed(name: &Arc<str>, config: BreakerConfig, like: Option<&Self>) -> Self {
        if let Some(sibling) = like.map(Breaker::sibling)
            && sibling.config() == config
        {
            return sibling;
        }
        Breaker::from_config(name.clone(), config)
            .expect("the registry validates every config it keeps")
    }

    fn name(&self) -> &str {
        Breaker::name(self)
    }

    fn check_update(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        let current = self.config().sliding_window();
        if config.sliding_window() != current {
            return Err(ConfigError::new(
                "sliding_window",
                format!(
                    "cannot change on a live breaker (from {current:?} to {:?}); remove it and let it be made again",
                    config.sliding_window()
                ),
            ));
        }
        Ok(())
    }

    /// The registry reconfigures every keyed breaker of a name with it:
    /// the siblings' shared configuration is written once, and each later
    /// call finds it up to date.
    fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        Breaker::reconfigure_siblings(self, config)
    }

    fn snapshot(&self) -> BreakerSnapshot {
        Breaker::snapshot(self)
    }

    /// Only a closed breaker with nothing against its callee: a failure or
    /// slow call in its window, or a run of consecutive failures, is the
    /// beginning of a trip that a flood of new keys must not erase.
    fn evictable(&self) -> bool {
        if self.state() != State::Closed {
            return false;
        }
        let snapshot = Breaker::snapshot(self);
        snapshot.failed_calls == 0 && snapshot.slow_calls == 0 && snapshot.consecutive_failures == 0
    }

    fn families() -> &'static [Family<BreakerSnapshot>] {
        &FAMILIES
    }

    fn attach(&self, source: Source, hub: Hub) -> Option<EventHook> {
        let breaker = self.downgrade();
        // The reporter is made when a rejection first waits for the ticker:
        // a breaker that never rejects costs no allocation for it.
        let reporter = move || -> Reporter {
            let breaker = breaker.clone();
            Arc::new(move || {
                if let Some(breaker) = breaker.upgrade() {
                    breaker.report_rejections();
                }
            })
        };
        let hook = self.on_event(move |event| match event {
            BreakerEvent::Rejected {
                retry_after, count, ..
            } => hub.rejected(&source, *count, *retry_after, &reporter),
            event => {
                if let Some(what) = translate(event) {
                    hub.publish(&source, what);
                }
            }
        });
        Some(hook)
    }
}

/// A circuit breaker's metric families. The window's figures are gauges
/// (`buffered_calls` by `kind`, as Resilience4j's); what the breaker counted
/// since it was made are counters that no reset clears: calls by `outcome`
/// (`success`, `failure`, `ignored`: every call whose outcome was recorded
/// or ignored is in exactly one; a slow one is counted again in
/// `slow_calls_total`), rejections, and transitions by `from` and `to`
/// state. The transitions the breaker makes by itself (closed to open, open
/// to half-open, half-open to open or closed) have a series from the
/// start; a manual one gets its series once it happened. The rates have no
/// series while the window holds fewer calls than the minimum.
static FAMILIES: [Family<BreakerSnapshot>; 12] = [
    gauge(
        "portcullis_circuitbreaker_state",
        "1 for the state the circuit breaker is in, 0 for each other state.",
        |figures, emit| {
            for (state, label) in STATES {
                emit(
                    &[("state", label)],
                    Value::Gauge(f64::from(u8::from(figures.state == state))),
                );
            }
        },
    ),
    gauge(
        "portcullis_circuitbreaker_buffered_calls",
        "Calls in the circuit breaker's sliding window, by kind (successful or failed).",
        |figures, emit| {
            let failed = figures.failed_calls;
            let successful = figures.buffered_calls.saturating_sub(failed);
            emit(&[("kind", "successful")], Value::Gauge(successful as f64));
            emit(&[("kind", "failed")], Value::Gauge(failed as f64));
        },
    ),
    gauge(
        "portcullis_circuitbreaker_buffered_slow_calls",
        "Slow calls in the circuit breaker's sliding window.",
        |figures, emit| emit(&[], Value::Gauge(figures.slow_calls as f64)),
    ),
    gauge(
        "portcullis_circuitbreaker_failure_rate",
        "Failure rate over the sliding window, in percent; no series below the minimum number of calls.",
        |figures, emit| optional(figures.failure_rate.map(percent::round), emit),
    ),
    gauge(
        "portcullis_circuitbreaker_slow_call_rate",
        "Slow-call rate over the sliding window, in percent; no series below the minimum number of calls.",
        |figures, emit| optional(figures.slow_call_rate.map(percent::round), emit),
    ),
    gauge(
        "portcullis_circuitbreaker_consecutive_failures",
        "Failures in a row, now.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.consecutive_failures))),
    ),
    gauge(
        "portcullis_circuitbreaker_failure_rate_threshold",
        "The failure rate, in percent, at which the circuit breaker opens.",
        |figures, emit| emit(&[], Value::Gauge(figures.failure_rate_threshold)),
    ),
    gauge(
        "portcullis_circuitbreaker_slow_call_rate_threshold",
        "The slow-call rate, in percent, at which the circuit breaker opens.",
        |figures, emit| emit(&[], Value::Gauge(figures.slow_call_rate_threshold)),
    ),
    counter(
        "portcullis_circuitbreaker_calls",
        "Calls whose outcome the circuit breaker recorded or ignored, by outcome (success, failure or ignored).",
        |figures, emit| {
            let counters = &figures.counters;
            emit(
                &[("outcome", "success")],
                Value::Counter(counters.successful_calls),
            );
            emit(
                &[("outcome", "failure")],
                Value::Counter(counters.failed_calls),
            );
            emit(
                &[("outcome", "ignored")],
                Value::Counter(counters.ignored_calls),
            );
        },
    ),
    counter(
        "portcullis_circuitbreaker_slow_calls",
        "Recorded calls slower than the slow-call duration; each is also in portcullis_circuitbreaker_calls_total.",
        |figures, emit| emit(&[], Value::Counter(figures.counters.slow_calls)),
    ),
    counter(
        "portcullis_circuitbreaker_not_permitted_calls",
        "Calls the circuit breaker rejected; a reset does not clear it.",
        |figures, emit| emit(&[], Value::Counter(figures.counters.not_permitted_calls)),
    ),
    counter(
        "portcullis_circuitbreaker_transitions",
        "State transitions of the circuit breaker, by state left and state entered.",
        |figures, emit| {
            for (from, to, count) in figures.counters.all_transitions() {
                if count > 0 || AUTOMATIC.contains(&(from, to)) {
                    emit(
                        &[("from", label(from)), ("to", label(to))],
                        Value::Counter(count),
                    );
                }
            }
        },
    ),
];

/// Every state, with its label value.
const STATES: [(State, &str); 6] = [
    (State::Closed, "closed"),
    (State::Open, "open"),
    (State::HalfOpen, "half_open"),
    (State::Disabled, "disabled"),
    (State::ForcedOpen, "forced_open"),
    (State::MetricsOnly, "metrics_only"),
];

/// The transitions a breaker makes by itself.
const AUTOMATIC: [(State, State); 4] = [
    (State::Closed, State::Open),
    (State::Open, State::HalfOpen),
    (State::HalfOpen, State::Open),
    (State::HalfOpen, State::Closed),
];

fn label(state: State) -> &'static str {
    STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map_or("unknown", |(_, label)| *label)
}

fn translate(event: &BreakerEvent) -> Option<EventKind> {
    Some(match event {
        BreakerEvent::Transition {
            from, to, reason, ..
        } => EventKind::Transition {
            from: *from,
            to: *to,
            reason: reason.to_string(),
        },
        BreakerEvent::ThresholdCrossed { threshold, .. } => {
            let (threshold, value) = match threshold {
                Threshold::FailureRate { rate } => ("failure_rate", percent::round(*rate)),
                Threshold::SlowCallRate { rate } => ("slow_call_rate", percent::round(*rate)),
                Threshold::ConsecutiveFailures { count } => {
                    ("consecutive_failures", f64::from(*count))
                }
                _ => return None,
            };
            EventKind::ThresholdCrossed { threshold, value }
        }
        BreakerEvent::Reset { .. } => EventKind::Reset,
        _ => return None,
    })
}
