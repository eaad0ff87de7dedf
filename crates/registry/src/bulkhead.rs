//! Bulkheads in the registry.
//!
//! A live bulkhead has no live update: its permit count and wait are fixed
//! when it is made. A config update that would change a live bulkhead is
//! refused, naming the field; the same config again is fine.

use std::convert::Infallible;

use portcullis_bulkhead::{Bulkhead, BulkheadConfig, BulkheadSnapshot};
use portcullis_core::ConfigError;
use portcullis_core::duration;

use crate::figures::{Family, Value, counter, gauge};
use crate::hub::Hub;
use crate::kind::{Instance, InstanceKind, Source};

impl Instance for Bulkhead {
    type Config = BulkheadConfig;
    type Snapshot = BulkheadSnapshot;

    type Attachment = Infallible;

    const KIND: InstanceKind = InstanceKind::Bulkhead;

    fn validate(config: &BulkheadConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn build(name: &str, config: BulkheadConfig) -> Self {
        Bulkhead::from_config(name, config).expect("the registry validates every config it keeps")
    }

    fn name(&self) -> &str {
        Bulkhead::name(self)
    }

    fn check_update(&self, config: &BulkheadConfig) -> Result<(), ConfigError> {
        match changed_field(self.config(), config) {
            None => Ok(()),
            Some((field, from, to)) => Err(ConfigError::new(
                field,
                format!(
                    "a live bulkhead cannot be reconfigured yet (from {from} to {to}); remove it and let it be made again"
                ),
            )),
        }
    }

    fn reconfigure(&self, config: BulkheadConfig) -> Result<(), ConfigError> {
        self.check_update(&config)
    }

    fn snapshot(&self) -> BulkheadSnapshot {
        Bulkhead::snapshot(self)
    }

    fn evictable(&self) -> bool {
        self.in_flight() == 0 && self.queued() == 0
    }

    fn families() -> &'static [Family<BulkheadSnapshot>] {
        &FAMILIES
    }

    fn attach(&self, _source: Source, _hub: Hub) -> Option<Infallible> {
        None
    }
}

/// A bulkhead's metric families.
static FAMILIES: [Family<BulkheadSnapshot>; 5] = [
    gauge(
        "portcullis_bulkhead_available_concurrent_calls",
        "Free permits of the bulkhead.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.available))),
    ),
    gauge(
        "portcullis_bulkhead_max_allowed_concurrent_calls",
        "The configured number of concurrent calls of the bulkhead.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.max_concurrent_calls))),
    ),
    gauge(
        "portcullis_bulkhead_in_flight",
        "Calls holding a permit of the bulkhead.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.in_flight))),
    ),
    gauge(
        "portcullis_bulkhead_queued",
        "Calls waiting for a permit of the bulkhead.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.queued))),
    ),
    counter(
        "portcullis_bulkhead_rejected_calls",
        "Calls the bulkhead rejected since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.rejected)),
    ),
];

/// The first field that differs between `current` and `new`, with both
/// values as written in a config file.
fn changed_field(
    current: &BulkheadConfig,
    new: &BulkheadConfig,
) -> Option<(&'static str, String, String)> {
    fn queued(calls: Option<u32>) -> String {
        calls.map_or_else(|| "no bound".to_owned(), |calls| calls.to_string())
    }
    if current.max_concurrent_calls() != new.max_concurrent_calls() {
        Some((
            "max_concurrent_calls",
            current.max_concurrent_calls().to_string(),
            new.max_concurrent_calls().to_string(),
        ))
    } else if current.max_wait() != new.max_wait() {
        Some((
            "max_wait",
            duration::format(current.max_wait()),
            duration::format(new.max_wait()),
        ))
    } else if current.max_queued_calls() != new.max_queued_calls() {
        Some((
            "max_queued_calls",
            queued(current.max_queued_calls()),
            queued(new.max_queued_calls()),
        ))
    } else if current.max_keys() != new.max_keys() {
        Some((
            "max_keys",
            current.max_keys().to_string(),
            new.max_keys().to_string(),
        ))
    } else if current != new {
        Some(("config", format!("{current:?}"), format!("{new:?}")))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_identical_config_is_taken_and_a_changed_one_refused() {
        let config = BulkheadConfig::builder()
            .max_concurrent_calls(4)
            .build()
            .unwrap();
        let bulkhead = <Bulkhead as Instance>::build("db", config.clone());
        assert!(Instance::reconfigure(&bulkhead, config.clone()).is_ok());
        let wider = BulkheadConfig::builder()
            .max_concurrent_calls(8)
            .build()
            .unwrap();
        let error = bulkhead.check_update(&wider).unwrap_err();
        assert_eq!(error.field(), "max_concurrent_calls");
        assert!(
            error.message().contains("cannot be reconfigured yet"),
            "{error}"
        );
        let waiting = BulkheadConfig::builder()
            .max_concurrent_calls(4)
            .max_wait(Duration::from_millis(250))
            .build()
            .unwrap();
        assert_eq!(
            Instance::reconfigure(&bulkhead, waiting)
                .unwrap_err()
                .field(),
            "max_wait"
        );
        assert_eq!(bulkhead.max_concurrent_calls(), 4);
    }

    #[test]
    fn a_bulkhead_in_use_is_not_evictable() {
        let bulkhead = <Bulkhead as Instance>::build("db", BulkheadConfig::default());
        assert!(bulkhead.evictable());
        let permit = bulkhead.try_acquire().unwrap();
        assert!(!bulkhead.evictable());
        drop(permit);
        assert!(bulkhead.evictable());
    }
}
