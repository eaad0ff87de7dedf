//! The `metrics` feature: the registry's figures published to a recorder.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use portcullis_breaker::{BreakerConfig, State};
use portcullis_core::Outcome;
use portcullis_registry::{MetricsPublisher, Registry};

/// A recorder that keeps every value as last set, so that a gauge reads
/// 0 only if it was set to 0.
#[derive(Debug, Default)]
struct Keep {
    gauges: Mutex<HashMap<Key, Arc<AtomicU64>>>,
    counters: Mutex<HashMap<Key, Arc<AtomicU64>>>,
    described: Mutex<Vec<String>>,
}

impl Keep {
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let gauges = self.gauges.lock().unwrap();
        let (_, value) = gauges.iter().find(|(key, _)| matches(key, name, labels))?;
        Some(f64::from_bits(value.load(Ordering::SeqCst)))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let counters = self.counters.lock().unwrap();
        let (_, value) = counters
            .iter()
            .find(|(key, _)| matches(key, name, labels))?;
        Some(value.load(Ordering::SeqCst))
    }

    fn states(&self, name: &str) -> Vec<(String, f64)> {
        [
            "closed",
            "open",
            "half_open",
            "disabled",
            "forced_open",
            "metrics_only",
        ]
        .into_iter()
        .map(|state| {
            let value = self
                .gauge(
                    "portcullis_circuitbreaker_state",
                    &[("name", name), ("state", state)],
                )
                .unwrap_or_else(|| panic!("no state gauge {state}"));
            (state.to_owned(), value)
        })
        .collect()
    }

    fn only(&self, name: &str, state: &str) {
        for (label, value) in self.states(name) {
            let expected = if label == state { 1.0 } else { 0.0 };
            assert_eq!(value, expected, "{name}: gauge of {label} while {state}");
        }
    }
}

fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    let mut have: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    let mut want = labels.to_vec();
    have.sort();
    want.sort();
    key.name() == name && have == want
}

impl Recorder for Keep {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(
            self.counters
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .clone(),
        )
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(
            self.gauges
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .clone(),
        )
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn registry() -> Registry {
    Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(2)
                .minimum_calls(2)
                .permitted_calls_in_half_open(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_state_gauge_reads_1_only_for_the_state_the_breaker_is_in() {
    let recorder = Keep::default();
    let registry = registry();
    let db = registry.breakers().get("db");
    let mut publisher =
        metrics::with_local_recorder(&recorder, || MetricsPublisher::new(registry.clone()));
    assert!(
        recorder
            .described
            .lock()
            .unwrap()
            .contains(&"portcullis_circuitbreaker_state".to_owned())
    );
    let publish = |publisher: &mut MetricsPublisher| {
        metrics::with_local_recorder(&recorder, || publisher.publish());
    };

    publish(&mut publisher);
    recorder.only("db", "closed");

    for _ in 0..2 {
        db.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(db.state(), State::Open);
    publish(&mut publisher);
    recorder.only("db", "open");

    db.half_open().unwrap();
    publish(&mut publisher);
    recorder.only("db", "half_open");

    db.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(db.state(), State::Closed);
    publish(&mut publisher);
    recorder.only("db", "closed");
    assert_eq!(
        recorder.states("db").iter().map(|(_, v)| v).sum::<f64>(),
        1.0,
        "after Closed -> Open -> HalfOpen -> Closed, only Closed reads 1"
    );
}

#[tokio::test]
async fn figures_counters_and_removed_instances() {
    let recorder = Keep::default();
    let registry = registry();
    let db = registry.breakers().get("db");
    let eu = registry.breakers().get_keyed("upstream", "eu").unwrap();
    let mut publisher =
        metrics::with_local_recorder(&recorder, || MetricsPublisher::new(registry.clone()));
    let publish = |publisher: &mut MetricsPublisher| {
        metrics::with_local_recorder(&recorder, || publisher.publish());
    };
    let db_labels = [("name", "db")];

    db.try_acquire().unwrap().record(Outcome::Success);
    db.try_acquire().unwrap().record(Outcome::Failure);
    publish(&mut publisher);
    assert_eq!(
        recorder.gauge("portcullis_circuitbreaker_failure_rate", &db_labels),
        Some(50.0)
    );
    assert_eq!(
        recorder.gauge(
            "portcullis_circuitbreaker_buffered_calls",
            &[("name", "db"), ("kind", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        recorder.gauge(
            "portcullis_circuitbreaker_buffered_calls",
            &[("name", "db"), ("kind", "successful")]
        ),
        Some(1.0)
    );
    assert_eq!(
        recorder.gauge(
            "portcullis_circuitbreaker_failure_rate",
            &[("name", "upstream"), ("key", "eu")]
        ),
        None,
        "no rate below the minimum number of calls"
    );
    assert_eq!(db.state(), State::Open);

    // Rejections: the counter is the breaker's own cumulative count, which
    // a reset does not take back.
    let not_permitted = "portcullis_circuitbreaker_not_permitted_calls_total";
    for _ in 0..3 {
        assert!(db.try_acquire().is_err());
    }
    publish(&mut publisher);
    assert_eq!(recorder.counter(not_permitted, &db_labels), Some(3));
    publish(&mut publisher);
    assert_eq!(
        recorder.counter(not_permitted, &db_labels),
        Some(3),
        "nothing new"
    );
    db.reset();
    db.force_open();
    for _ in 0..2 {
        assert!(db.try_acquire().is_err());
    }
    publish(&mut publisher);
    assert_eq!(recorder.counter(not_permitted, &db_labels), Some(5));

    // An instance that leaves has its gauges set to 0 once.
    eu.force_open();
    publish(&mut publisher);
    recorder.only_keyed("upstream", "eu", "forced_open");
    registry.breakers().remove("upstream", Some("eu")).unwrap();
    publish(&mut publisher);
    assert_eq!(
        recorder.gauge(
            "portcullis_circuitbreaker_state",
            &[
                ("name", "upstream"),
                ("key", "eu"),
                ("state", "forced_open")
            ]
        ),
        Some(0.0)
    );
}

impl Keep {
    fn only_keyed(&self, name: &str, key: &str, state: &str) {
        let value = self
            .gauge(
                "portcullis_circuitbreaker_state",
                &[("name", name), ("key", key), ("state", state)],
            )
            .unwrap();
        assert_eq!(value, 1.0);
    }
}

#[tokio::test]
async fn bulkhead_figures_are_published_and_a_removed_one_goes_to_zero() {
    let recorder = Keep::default();
    let registry = Registry::builder()
        .bulkhead_config(
            "db",
            portcullis_registry::Overrides::new().set("max_concurrent_calls", 1),
        )
        .build()
        .unwrap();
    let db = registry.bulkheads().get("db");
    let mut publisher =
        metrics::with_local_recorder(&recorder, || MetricsPublisher::new(registry.clone()));
    let described = recorder.described.lock().unwrap().clone();
    for family in [
        "portcullis_bulkhead_available_concurrent_calls",
        "portcullis_bulkhead_max_allowed_concurrent_calls",
        "portcullis_bulkhead_in_flight",
        "portcullis_bulkhead_queued",
        "portcullis_bulkhead_rejected_calls_total",
    ] {
        assert!(described.contains(&family.to_owned()), "{family}");
    }
    let publish = |publisher: &mut MetricsPublisher| {
        metrics::with_local_recorder(&recorder, || publisher.publish());
    };
    let labels = [("name", "db")];

    let permit = db.try_acquire().unwrap();
    for _ in 0..2 {
        assert!(db.try_acquire().is_err());
    }
    publish(&mut publisher);
    assert_eq!(
        recorder.gauge("portcullis_bulkhead_in_flight", &labels),
        Some(1.0)
    );
    assert_eq!(
        recorder.gauge("portcullis_bulkhead_available_concurrent_calls", &labels),
        Some(0.0)
    );
    assert_eq!(
        recorder.gauge("portcullis_bulkhead_max_allowed_concurrent_calls", &labels),
        Some(1.0)
    );
    assert_eq!(
        recorder.counter("portcullis_bulkhead_rejected_calls_total", &labels),
        Some(2)
    );

    drop(permit);
    assert!(db.try_acquire().is_ok());
    publish(&mut publisher);
    assert_eq!(
        recorder.gauge("portcullis_bulkhead_in_flight", &labels),
        Some(0.0)
    );
    assert_eq!(
        recorder.gauge("portcullis_bulkhead_available_concurrent_calls", &labels),
        Some(1.0)
    );
    assert_eq!(
        recorder.counter("portcullis_bulkhead_rejected_calls_total", &labels),
        Some(2),
        "nothing new"
    );

    registry.bulkheads().remove("db", None).unwrap();
    publish(&mut publisher);
    assert_eq!(
        recorder.gauge("portcullis_bulkhead_max_allowed_concurrent_calls", &labels),
        Some(0.0),
        "a bulkhead that leaves has its gauges set to 0"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_and_budget_figures_are_published() {
    let recorder = Keep::default();
    let registry = Registry::builder()
        .rate_limiter_config(
            "api",
            portcullis_registry::Overrides::new()
                .set("rate", 2)
                .set("burst", 2),
        )
        .build()
        .unwrap();
    let api = registry.rate_limiters().get("api");
    let budget = registry.budgets().get("db");
    let mut publisher =
        metrics::with_local_recorder(&recorder, || MetricsPublisher::new(registry.clone()));
    let described = recorder.described.lock().unwrap().clone();
    for family in [
        "portcullis_ratelimiter_available_permissions",
        "portcullis_ratelimiter_rejected_calls_total",
        "portcullis_retry_budget_available_retries",
        "portcullis_retry_budget_withdrawals_total",
        "portcullis_retry_budget_refused_total",
    ] {
        assert!(described.contains(&family.to_owned()), "{family}");
    }
    api.try_acquire().unwrap();
    api.try_acquire().unwrap();
    assert!(api.try_acquire().is_err());
    assert!(budget.try_withdraw(), "the floor of the default budget");
    metrics::with_local_recorder(&recorder, || publisher.publish());
    let api_labels = [("name", "api")];
    let db_labels = [("name", "db")];
    assert_eq!(
        recorder.gauge("portcullis_ratelimiter_available_permissions", &api_labels),
        Some(0.0)
    );
    assert_eq!(
        recorder.counter("portcullis_ratelimiter_rejected_calls_total", &api_labels),
        Some(1)
    );
    assert_eq!(
        recorder.gauge("portcullis_retry_budget_available_retries", &db_labels),
        Some(99.0),
        "10 a second over 10 s, less the one taken"
    );
    assert_eq!(
        recorder.counter("portcullis_retry_budget_withdrawals_total", &db_labels),
        Some(1)
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    metrics::with_local_recorder(&recorder, || publisher.publish());
    assert_eq!(
        recorder.gauge("portcullis_ratelimiter_available_permissions", &api_labels),
        Some(2.0),
        "the burst is back"
    );
}

/// The publisher and `GET /metrics` read the same families: every family
/// the collector serves is described to the recorder under the name its
/// series have, and nothing else is.
#[tokio::test]
async fn the_publisher_and_the_collector_share_their_families() {
    let recorder = Keep::default();
    let registry = registry();
    registry.breakers().get("db");
    metrics::with_local_recorder(&recorder, || MetricsPublisher::new(registry.clone()));
    let mut described = recorder.described.lock().unwrap().clone();
    described.sort();

    let mut exposition = prometheus_client::registry::Registry::default();
    exposition.register_collector(Box::new(portcullis_registry::PrometheusCollector::new(
        registry,
    )));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &exposition).unwrap();
    // Histograms are served by /metrics only: the `metrics` crate records
    // observations, not buckets.
    let mut served: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter(|line| !line.ends_with(" histogram"))
        .map(|line| line.split(' ').next().unwrap().to_owned())
        .collect();
    served.sort();
    assert!(served.contains(&"portcullis_circuitbreaker_calls_total".to_owned()));
    assert_eq!(described, served);
}
