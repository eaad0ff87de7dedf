//! The registry's figures as metric families: one list, rendered as
//! Prometheus text by `GET /metrics` and published to the `metrics` crate
//! by the `metrics` feature, so both speak the same names.
//!
//! Names follow Resilience4j's (`resilience4j_circuitbreaker_state` becomes
//! `portcullis_circuitbreaker_state`, `resilience4j_bulkhead_available_concurrent_calls`
//! becomes `portcullis_bulkhead_available_concurrent_calls`,
//! `resilience4j_ratelimiter_available_permissions` becomes
//! `portcullis_ratelimiter_available_permissions`); retry budgets, which
//! Resilience4j does not have, are `portcullis_retry_budget_*`. Every
//! instance's series has the labels `name` and, for a keyed instance,
//! `key`.
//!
//! A breaker's cumulative counters, which never reset (not even on a
//! breaker's reset), are `portcullis_breaker_*_total`: calls by `outcome`
//! (`success`, `failure`, `ignored`: every call is in exactly one, so their
//! sum is every call; a slow call is counted again in
//! `portcullis_breaker_slow_calls_total`), rejections, and transitions by
//! `from` and `to` state. The transitions the breaker makes by itself
//! (closed to open, open to half-open, half-open to open or closed) have a
//! series from the start; a manual one gets its series once it happened.
//!
//! A rate limiter has no `waiting_threads` gauge: a call that waits for its
//! slot holds no thread and no counter, only its reserved slot, which
//! `available_permissions` already shows.

use portcullis_breaker::{BreakerCounters, State};
use portcullis_core::percent;

use crate::registry::Registry;

/// Whether a family goes up and down or only up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Gauge,
    Counter,
}

/// A metric's name, help and kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: MetricKind,
}

/// A metric and its series.
#[derive(Clone, Debug)]
pub(crate) struct Family {
    pub(crate) meta: Meta,
    pub(crate) samples: Vec<Sample>,
}

/// One series: its labels and its value now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) value: f64,
}

const fn gauge(name: &'static str, help: &'static str) -> Meta {
    Meta {
        name,
        help,
        kind: MetricKind::Gauge,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Meta {
    Meta {
        name,
        help,
        kind: MetricKind::Counter,
    }
}

pub(crate) const BREAKER_STATE: Meta = gauge(
    "portcullis_circuitbreaker_state",
    "1 for the state the circuit breaker is in, 0 for each other state.",
);
pub(crate) const BREAKER_BUFFERED: Meta = gauge(
    "portcullis_circuitbreaker_buffered_calls",
    "Calls in the circuit breaker's sliding window.",
);
pub(crate) const BREAKER_CALLS: Meta = gauge(
    "portcullis_circuitbreaker_calls",
    "Calls in the circuit breaker's sliding window, by outcome (successful or failed).",
);
pub(crate) const BREAKER_SLOW: Meta = gauge(
    "portcullis_circuitbreaker_slow_calls",
    "Slow calls in the circuit breaker's sliding window.",
);
pub(crate) const BREAKER_NOT_PERMITTED: Meta = counter(
    "portcullis_circuitbreaker_not_permitted_calls_total",
    "Calls the circuit breaker rejected since it was made or reset.",
);
pub(crate) const BREAKER_FAILURE_RATE: Meta = gauge(
    "portcullis_circuitbreaker_failure_rate",
    "Failure rate over the sliding window, in percent; -1 below the minimum number of calls.",
);
pub(crate) const BREAKER_SLOW_RATE: Meta = gauge(
    "portcullis_circuitbreaker_slow_call_rate",
    "Slow-call rate over the sliding window, in percent; -1 below the minimum number of calls.",
);
pub(crate) const BREAKER_CONSECUTIVE: Meta = gauge(
    "portcullis_circuitbreaker_consecutive_failures",
    "Failures in a row, now.",
);
pub(crate) const BREAKER_FAILURE_THRESHOLD: Meta = gauge(
    "portcullis_circuitbreaker_failure_rate_threshold",
    "The failure rate, in percent, at which the circuit breaker opens.",
);
pub(crate) const BREAKER_SLOW_THRESHOLD: Meta = gauge(
    "portcullis_circuitbreaker_slow_call_rate_threshold",
    "The slow-call rate, in percent, at which the circuit breaker opens.",
);
pub(crate) const BREAKER_CALLS_TOTAL: Meta = counter(
    "portcullis_breaker_calls_total",
    "Calls whose outcome the circuit breaker recorded or ignored since it was made, by outcome (success, failure or ignored).",
);
pub(crate) const BREAKER_SLOW_TOTAL: Meta = counter(
    "portcullis_breaker_slow_calls_total",
    "Recorded calls slower than the slow-call duration since the circuit breaker was made; each is also in portcullis_breaker_calls_total.",
);
pub(crate) const BREAKER_NOT_PERMITTED_TOTAL: Meta = counter(
    "portcullis_breaker_not_permitted_total",
    "Calls the circuit breaker rejected since it was made; a reset does not clear it.",
);
pub(crate) const BREAKER_TRANSITIONS_TOTAL: Meta = counter(
    "portcullis_breaker_transitions_total",
    "State transitions of the circuit breaker since it was made, by state left and state entered.",
);
pub(crate) const BULKHEAD_AVAILABLE: Meta = gauge(
    "portcullis_bulkhead_available_concurrent_calls",
    "Free permits of the bulkhead.",
);
pub(crate) const BULKHEAD_MAX: Meta = gauge(
    "portcullis_bulkhead_max_allowed_concurrent_calls",
    "The configured number of concurrent calls of the bulkhead.",
);
pub(crate) const BULKHEAD_IN_FLIGHT: Meta = gauge(
    "portcullis_bulkhead_in_flight",
    "Calls holding a permit of the bulkhead.",
);
pub(crate) const BULKHEAD_QUEUED: Meta = gauge(
    "portcullis_bulkhead_queued",
    "Calls waiting for a permit of the bulkhead.",
);
pub(crate) const BULKHEAD_REJECTED: Meta = counter(
    "portcullis_bulkhead_rejected_calls_total",
    "Calls the bulkhead rejected since it was made.",
);
pub(crate) const RATELIMITER_AVAILABLE: Meta = gauge(
    "portcullis_ratelimiter_available_permissions",
    "Calls the rate limiter would admit now, one after the other.",
);
pub(crate) const RATELIMITER_LIMIT: Meta = gauge(
    "portcullis_ratelimiter_limit",
    "Calls the rate limiter allows per period, on average.",
);
pub(crate) const RATELIMITER_PERIOD: Meta = gauge(
    "portcullis_ratelimiter_period_seconds",
    "The period the rate limiter's limit is counted over.",
);
pub(crate) const RATELIMITER_BURST: Meta = gauge(
    "portcullis_ratelimiter_burst",
    "The most calls the rate limiter admits at once.",
);
pub(crate) const RATELIMITER_REJECTED: Meta = counter(
    "portcullis_ratelimiter_rejected_calls_total",
    "Calls the rate limiter rejected since it was made.",
);
pub(crate) const BUDGET_AVAILABLE: Meta = gauge(
    "portcullis_retry_budget_available_retries",
    "Whole retries the budget's balance holds now.",
);
pub(crate) const BUDGET_RATIO: Meta = gauge(
    "portcullis_retry_budget_ratio",
    "Retries the budget allows per request.",
);
pub(crate) const BUDGET_DEPOSITS: Meta = counter(
    "portcullis_retry_budget_deposits_total",
    "Requests recorded by the budget since it was made.",
);
pub(crate) const BUDGET_WITHDRAWALS: Meta = counter(
    "portcullis_retry_budget_withdrawals_total",
    "Retries taken from the budget since it was made.",
);
pub(crate) const BUDGET_REFUSED: Meta = counter(
    "portcullis_retry_budget_refused_total",
    "Retries the budget refused for want of balance since it was made.",
);
pub(crate) const EVENT_SUBSCRIBERS: Meta = gauge(
    "portcullis_registry_event_subscribers",
    "Subscribers to the registry's events, including GET /events clients.",
);
pub(crate) const EVENT_DROPPED: Meta = counter(
    "portcullis_registry_event_subscribers_dropped_total",
    "Event subscribers dropped for falling behind.",
);
pub(crate) const EVENT_LAGGED: Meta = counter(
    "portcullis_registry_events_lagged_total",
    "Instance events the registry fell behind on and missed.",
);

/// Every family, in the order they are rendered.
pub(crate) const ALL: [Meta; 32] = [
    BREAKER_STATE,
    BREAKER_BUFFERED,
    BREAKER_CALLS,
    BREAKER_SLOW,
    BREAKER_NOT_PERMITTED,
    BREAKER_FAILURE_RATE,
    BREAKER_SLOW_RATE,
    BREAKER_CONSECUTIVE,
    BREAKER_FAILURE_THRESHOLD,
    BREAKER_SLOW_THRESHOLD,
    BREAKER_CALLS_TOTAL,
    BREAKER_SLOW_TOTAL,
    BREAKER_NOT_PERMITTED_TOTAL,
    BREAKER_TRANSITIONS_TOTAL,
    BULKHEAD_AVAILABLE,
    BULKHEAD_MAX,
    BULKHEAD_IN_FLIGHT,
    BULKHEAD_QUEUED,
    BULKHEAD_REJECTED,
    RATELIMITER_AVAILABLE,
    RATELIMITER_LIMIT,
    RATELIMITER_PERIOD,
    RATELIMITER_BURST,
    RATELIMITER_REJECTED,
    BUDGET_AVAILABLE,
    BUDGET_RATIO,
    BUDGET_DEPOSITS,
    BUDGET_WITHDRAWALS,
    BUDGET_REFUSED,
    EVENT_SUBSCRIBERS,
    EVENT_DROPPED,
    EVENT_LAGGED,
];

/// Every state, with its label value.
pub(crate) const STATES: [(State, &str); 6] = [
    (State::Closed, "closed"),
    (State::Open, "open"),
    (State::HalfOpen, "half_open"),
    (State::Disabled, "disabled"),
    (State::ForcedOpen, "forced_open"),
    (State::MetricsOnly, "metrics_only"),
];

/// The registry's figures now.
pub(crate) fn collect(registry: &Registry) -> Vec<Family> {
    let mut families: Vec<Family> = ALL
        .iter()
        .map(|&meta| Family {
            meta,
            samples: Vec::new(),
        })
        .collect();
    let mut push = |meta: Meta, labels: Vec<(&'static str, String)>, value: f64| {
        let family = families
            .iter_mut()
            .find(|family| family.meta.name == meta.name)
            .expect("every family is listed");
        family.samples.push(Sample { labels, value });
    };
    for keyed in registry.breakers().list() {
        let figures = &keyed.snapshot;
        let mut labels = vec![("name", figures.name.clone())];
        if let Some(key) = &keyed.key {
            labels.push(("key", key.clone()));
        }
        let with = |extra: (&'static str, &str)| {
            let mut labels = labels.clone();
            labels.push((extra.0, extra.1.to_owned()));
            labels
        };
        for (state, label) in STATES {
            push(
                BREAKER_STATE,
                with(("state", label)),
                f64::from(u8::from(figures.state == state)),
            );
        }
        push(
            BREAKER_BUFFERED,
            labels.clone(),
            figures.buffered_calls as f64,
        );
        push(
            BREAKER_CALLS,
            with(("kind", "successful")),
            figures.buffered_calls.saturating_sub(figures.failed_calls) as f64,
        );
        push(
            BREAKER_CALLS,
            with(("kind", "failed")),
            figures.failed_calls as f64,
        );
        push(BREAKER_SLOW, labels.clone(), figures.slow_calls as f64);
        push(
            BREAKER_NOT_PERMITTED,
            labels.clone(),
            figures.not_permitted_calls as f64,
        );
        push(
            BREAKER_FAILURE_RATE,
            labels.clone(),
            figures.failure_rate.map_or(-1.0, percent::round),
        );
        push(
            BREAKER_SLOW_RATE,
            labels.clone(),
            figures.slow_call_rate.map_or(-1.0, percent::round),
        );
        push(
            BREAKER_CONSECUTIVE,
            labels.clone(),
            f64::from(figures.consecutive_failures),
        );
        push(
            BREAKER_FAILURE_THRESHOLD,
            labels.clone(),
            figures.failure_rate_threshold,
        );
        push(
            BREAKER_SLOW_THRESHOLD,
            labels.clone(),
            figures.slow_call_rate_threshold,
        );
        let counters = &figures.counters;
        for (outcome, value) in [
            ("success", counters.successful_calls),
            ("failure", counters.failed_calls),
            ("ignored", counters.ignored_calls),
        ] {
            push(
                BREAKER_CALLS_TOTAL,
                with(("outcome", outcome)),
                value as f64,
            );
        }
        push(
            BREAKER_SLOW_TOTAL,
            labels.clone(),
            counters.slow_calls as f64,
        );
        push(
            BREAKER_NOT_PERMITTED_TOTAL,
            labels.clone(),
            counters.not_permitted_calls as f64,
        );
        for (from, to, count) in transitions(counters) {
            let mut labels = labels.clone();
            labels.push(("from", from.to_owned()));
            labels.push(("to", to.to_owned()));
            push(BREAKER_TRANSITIONS_TOTAL, labels, count as f64);
        }
    }
    for keyed in registry.bulkheads().list() {
        let figures = &keyed.snapshot;
        let mut labels = vec![("name", figures.name.clone())];
        if let Some(key) = &keyed.key {
            labels.push(("key", key.clone()));
        }
        push(
            BULKHEAD_AVAILABLE,
            labels.clone(),
            f64::from(figures.available),
        );
        push(
            BULKHEAD_MAX,
            labels.clone(),
            f64::from(figures.max_concurrent_calls),
        );
        push(
            BULKHEAD_IN_FLIGHT,
            labels.clone(),
            f64::from(figures.in_flight),
        );
        push(BULKHEAD_QUEUED, labels.clone(), f64::from(figures.queued));
        push(BULKHEAD_REJECTED, labels, figures.rejected as f64);
    }
    for keyed in registry.rate_limiters().list() {
        let figures = &keyed.snapshot;
        let labels = labels_of(&figures.name, keyed.key.as_deref());
        push(
            RATELIMITER_AVAILABLE,
            labels.clone(),
            figures.available as f64,
        );
        push(RATELIMITER_LIMIT, labels.clone(), f64::from(figures.limit));
        push(
            RATELIMITER_PERIOD,
            labels.clone(),
            figures.period.as_secs_f64(),
        );
        push(RATELIMITER_BURST, labels.clone(), f64::from(figures.burst));
        push(RATELIMITER_REJECTED, labels, figures.rejected as f64);
    }
    for keyed in registry.budgets().list() {
        let figures = &keyed.snapshot;
        let labels = labels_of(&figures.name, keyed.key.as_deref());
        push(BUDGET_AVAILABLE, labels.clone(), figures.available as f64);
        push(BUDGET_RATIO, labels.clone(), figures.ratio);
        push(BUDGET_DEPOSITS, labels.clone(), figures.deposits as f64);
        push(
            BUDGET_WITHDRAWALS,
            labels.clone(),
            figures.withdrawals as f64,
        );
        push(BUDGET_REFUSED, labels, figures.refused as f64);
    }
    let stats = registry.event_stats();
    push(EVENT_SUBSCRIBERS, Vec::new(), stats.subscribers as f64);
    push(EVENT_DROPPED, Vec::new(), stats.dropped as f64);
    push(EVENT_LAGGED, Vec::new(), stats.lagged as f64);
    families
}

/// The transitions a breaker makes by itself.
const AUTOMATIC: [(State, State); 4] = [
    (State::Closed, State::Open),
    (State::Open, State::HalfOpen),
    (State::HalfOpen, State::Open),
    (State::HalfOpen, State::Closed),
];

/// The transition series of a breaker, with their state labels: the
/// automatic ones always, the others once they happened.
fn transitions(
    counters: &BreakerCounters,
) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
    let label = |state: State| {
        STATES
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, label)| *label)
            .expect("every state has a label")
    };
    counters
        .all_transitions()
        .filter(|&(from, to, count)| count > 0 || AUTOMATIC.contains(&(from, to)))
        .map(move |(from, to, count)| (label(from), label(to), count))
}

/// The labels of an instance's series: `name`, and `key` for a keyed one.
fn labels_of(name: &str, key: Option<&str>) -> Vec<(&'static str, String)> {
    let mut labels = vec![("name", name.to_owned())];
    if let Some(key) = key {
        labels.push(("key", key.to_owned()));
    }
    labels
}
