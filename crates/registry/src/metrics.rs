//! Publishing the registry's figures to the `metrics` crate (feature
//! `metrics`).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use metrics::Label;

use crate::figures::{self, Labels, MetricKind, Value};
use crate::registry::Registry;

/// Publishes a registry's figures to the `metrics` crate's recorder: the
/// same families, names and labels as `GET /metrics`
/// (`portcullis_circuitbreaker_state{name,state}`, one gauge per state that
/// reads 1 for the state the breaker is in and 0 for the others,
/// `portcullis_circuitbreaker_buffered_calls{name,kind}`,
/// `portcullis_circuitbreaker_failure_rate`, ...,
/// `portcullis_circuitbreaker_calls_total{name,outcome}`,
/// `portcullis_circuitbreaker_not_permitted_calls_total`,
/// `portcullis_circuitbreaker_transitions_total{name,from,to}`, ...,
/// `portcullis_bulkhead_available_concurrent_calls{name}`,
/// `portcullis_bulkhead_in_flight{name}`, ...,
/// `portcullis_ratelimiter_available_permissions{name}`,
/// `portcullis_ratelimiter_rejected_calls_total{name}`, ...,
/// `portcullis_concurrency_limiter_limit{name}`,
/// `portcullis_concurrency_limiter_shed_calls_total{name}`, ...,
/// `portcullis_retry_budget_available_retries{name}`,
/// `portcullis_retry_budget_withdrawals_total{name}`, ...).
///
/// Figures are read when [`publish`](Self::publish) is called: call it
/// before each scrape, or let [`run`](Self::run) call it periodically.
/// Counters are set to the instance's own count
/// ([`absolute`](metrics::Counter::absolute)), which only goes up. The
/// gauges of an instance that left the registry are set to 0 once.
/// Histograms are not published: the `metrics` crate records single
/// observations, not bucket counts; `GET /metrics` serves them.
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
        let _ = figures::visit(&registry, |meta, _| {
            match meta.kind {
                MetricKind::Gauge => metrics::describe_gauge!(meta.name, meta.help),
                MetricKind::Counter => metrics::describe_counter!(total(meta.name), meta.help),
                MetricKind::Histogram => {}
            }
            Ok(())
        });
        Self {
            registry,
            gauges: HashSet::new(),
        }
    }

    /// Publishes the figures now.
    pub fn publish(&mut self) {
        let mut gauges = HashSet::new();
        let _ = figures::visit(&self.registry, |meta, series| {
            series(&mut |labels, value| match value {
                Value::Gauge(value) => {
                    metrics::gauge!(meta.name, to_labels(labels)).set(value);
                    gauges.insert(Series {
                        name: meta.name,
                        labels: labels.iter().map(|(k, v)| (k, v.to_owned())).collect(),
                    });
                }
                Value::Counter(value) => {
                    metrics::counter!(total(meta.name), to_labels(labels)).absolute(value);
                }
                Value::Histogram { .. } => {}
            });
            Ok(())
        });
        for gone in self.gauges.difference(&gauges) {
            let labels: Vec<Label> = gone
                .labels
                .iter()
                .map(|(key, value)| Label::new(*key, value.clone()))
                .collect();
            metrics::gauge!(gone.name, labels).set(0.0);
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

/// A counter's series name: its family's, with `_total`.
fn total(name: &'static str) -> String {
    format!("{name}_total")
}

fn to_labels(labels: &Labels<'_>) -> Vec<Label> {
    labels
        .iter()
        .map(|(key, value)| Label::new(key, value.to_owned()))
        .collect()
}

impl fmt::Debug for MetricsPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsPublisher")
            .field("registry", &self.registry)
            .field("gauges", &self.gauges.len())
            .finish()
    }
}
