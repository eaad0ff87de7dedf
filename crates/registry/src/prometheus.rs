//! The registry's figures through `prometheus-client`: a [`Collector`] that
//! reads every instance at each scrape, and `GET /metrics` in the
//! Prometheus text format or OpenMetrics, as the scraper asks.

use std::fmt;

use http::HeaderMap;
use http::header::ACCEPT;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::figures::{self, Labels, MetricKind, Value};
use crate::registry::Registry;

/// The Prometheus text format's content type (version 0.0.4).
const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// OpenMetrics' content type.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry's figures as a `prometheus-client` [`Collector`]: register
/// it once in an application's own `prometheus_client::registry::Registry`
/// to serve Portcullis's families beside the application's.
///
/// Each scrape reads every instance's figures then (a snapshot per
/// instance): the families are the ones `GET /metrics` serves, named
/// `portcullis_*` whatever prefix the registry it is registered in has
/// (register it at the root to keep the names).
///
/// ```
/// use portcullis_registry::{PrometheusCollector, Registry};
/// use prometheus_client::encoding::text::encode;
///
/// let registry = Registry::new();
/// registry.breakers().get("payments").force_open();
/// let mut metrics = prometheus_client::registry::Registry::default();
/// metrics.register_collector(Box::new(PrometheusCollector::new(registry)));
/// let mut text = String::new();
/// encode(&mut text, &metrics).unwrap();
/// assert!(text.contains(r#"portcullis_circuitbreaker_state{name="payments",state="forced_open"} 1"#));
/// ```
#[derive(Clone, Debug)]
pub struct PrometheusCollector {
    registry: Registry,
}

impl PrometheusCollector {
    /// A collector of `registry`'s figures.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

impl Collector for PrometheusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        figures::visit(&self.registry, |meta, series| {
            let kind = match meta.kind {
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(meta.name, meta.help, None, kind)?;
            let mut result = Ok(());
            series(&mut |labels, value| {
                if result.is_ok() {
                    result = sample(&mut metric, labels, value);
                }
            });
            result
        })
    }
}

fn sample(metric: &mut MetricEncoder<'_>, labels: &Labels<'_>, value: Value<'_>) -> fmt::Result {
    let labels = (labels.instance, labels.extra);
    let mut series = metric.encode_family(&labels)?;
    match value {
        Value::Gauge(value) => series.encode_gauge(&value),
        Value::Counter(value) => series.encode_counter::<NoLabelSet, u64, f64>(&value, None),
        Value::Histogram {
            sum,
            count,
            buckets,
        } => series.encode_histogram::<NoLabelSet>(sum, count, buckets, None),
    }
}

/// The exposition `GET /metrics` serves: one `prometheus-client` registry
/// with the registry's collector in it, made once.
pub(crate) struct Exposition {
    metrics: prometheus_client::registry::Registry,
}

impl Exposition {
    pub(crate) fn new(registry: &Registry) -> Self {
        let mut metrics = prometheus_client::registry::Registry::default();
        metrics.register_collector(Box::new(PrometheusCollector::new(registry.clone())));
        Self { metrics }
    }

    /// The figures now, and their content type: OpenMetrics when the
    /// request's `Accept` asks for it (as Prometheus does), else the
    /// Prometheus text format.
    pub(crate) fn render(&self, headers: &HeaderMap) -> (String, &'static str) {
        let openmetrics = headers.get_all(ACCEPT).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|value| value.contains("application/openmetrics-text"))
        });
        let mut text = String::with_capacity(4096);
        let written = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.metrics)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.metrics)
        };
        // Writing to a `String` does not fail, and no figure refuses to be
        // written.
        debug_assert!(written.is_ok());
        let content_type = if openmetrics {
            OPENMETRICS_TEXT
        } else {
            PROMETHEUS_TEXT
        };
        (text, content_type)
    }
}

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposition").finish_non_exhaustive()
    }
}
