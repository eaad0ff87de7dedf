//! Publishing the registry's figures to the `metrics` crate (feature
//! `metrics`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use metrics::Label;

use crate::figures::{self, MetricKind};
use crate::registry::Registry;

/// Publishes a registry's figures to the `metrics` crate's recorder: the
/// same names and labels as `GET /metrics`
/// (`portcullis_circuitbreaker_state{name,state}`, one gauge per state that
/// reads 1 for the state the breaker is in and 0 for the others,
/// `portcullis_circuitbreaker_calls{name,kind}`,
/// `portcullis_circuitbreaker_not_permitted_calls_total`,
/// `portcullis_circuitbreaker_failure_rate`, ...,
/// `portcullis_breaker_calls_total{name,outcome}`,
/// `portcullis_breaker_transitions_total{name,from,to}`, ...,
/// `portcullis_bulkhead_available_concurrent_calls{name}`,
/// `portcullis_bulkhead_in_flight{name}`, ...,
/// `portcullis_ratelimiter_available_permissions{name}`,
/// `portcullis_ratelimiter_rejected_calls_total{name}`, ...,
/// `portcullis_retry_budget_available_retries{name}`,
/// `portcullis_retry_budget_withdrawals_total{name}`, ...).
///
/// Figures are read when [`publish`](Self::publish) is called: call it
/// before each scrape, or let [`run`](Self::run) call it periodically.
/// Counters only go up: a breaker's rejections counted since a reset are
/// added to what was published before it. The gauges of an instance that
/// left the registry are set to 0 once.
///
/// ```
/// use portcullis_registry::{MetricsPublisher, Registry};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = Registry::new();
/// registry.breakers().get("payments").force_open();
/// let mut publisher = MetricsPublisher::new(registry);
/// publisher.publish(); // to whatever recorder is installed
/// # }
/// ```
pub struct MetricsPublisher {
    registry: Registry,
    /// The last value published of each counter series.
    counters: HashMap<Series, f64>,
    /// The gauge series published last time.
    gauges: HashSet<Series>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Series {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
}

impl MetricsPublisher {
    /// A publisher of `registry`'s figures; describes every metric to the
    /// installed recorder.
    pub fn new(registry: Registry) -> Self {
        for meta in figures::ALL {
            match meta.kind {
                MetricKind::Gauge => metrics::describe_gauge!(meta.name, meta.help),
                MetricKind::Counter => metrics::describe_counter!(meta.name, meta.help),
            }
        }
        Self {
            registry,
            counters: HashMap::new(),
            gauges: HashSet::new(),
        }
    }

    /// Publishes the figures now.
    pub fn publish(&mut self) {
        let mut gauges = HashSet::new();
        for family in figures::collect(&self.registry) {
            let name = family.meta.name;
            for sample in family.samples {
                let series = Series {
                    name,
                    labels: sample.labels,
                };
                let labels = labels(&series);
                match family.meta.kind {
                    MetricKind::Gauge => {
                        metrics::gauge!(name, labels).set(sample.value);
                        gauges.insert(series);
                    }
                    MetricKind::Counter => {
                        let last = self.counters.insert(series, sample.value).unwrap_or(0.0);
                        // A value below the last one means the count was
                        // reset: all of it is new.
                        let delta = if sample.value >= last {
                            sample.value - last
                        } else {
                            sample.value
                        };
                        if delta > 0.0 {
                            metrics::counter!(name, labels).increment(delta as u64);
                        }
                    }
                }
            }
        }
        for gone in self.gauges.difference(&gauges) {
            metrics::gauge!(gone.name, labels(gone)).set(0.0);
        }
        self.gauges = gauges;
    }

    /// Publishes every `period`, forever (spawn it).
    pub async fn run(mut self, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.publish();
        }
    }
}

fn labels(series: &Series) -> Vec<Label> {
    series
        .labels
        .iter()
        .map(|(key, value)| Label::new(*key, value.clone()))
        .collect()
}

impl fmt::Debug for MetricsPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsPublisher")
            .field("registry", &self.registry)
            .field("gauges", &self.gauges.len())
            .field("counters", &self.counters.len())
            .finish()
    }
}
