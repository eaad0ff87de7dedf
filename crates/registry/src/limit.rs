//! Adaptive concurrency limiters in the registry.
//!
//! A live limiter has no live update: its algorithm, windows, partitions
//! and queue are fixed when it is made, and its limit is its own to move.
//! A config update that would change a live limiter is refused, naming
//! the field, and changes nothing (the limit it has found is kept); the
//! same config again is fine.

use std::convert::Infallible;

use portcullis_core::ConfigError;
use portcullis_core::duration;
use portcullis_limit::{LimitConfig, LimitSnapshot, Limiter};

use crate::figures::{Family, Value, counter, gauge};
use crate::hub::Hub;
use crate::kind::{Instance, InstanceKind, Source};

impl Instance for Limiter {
    type Config = LimitConfig;
    type Snapshot = LimitSnapshot;

    type Attachment = Infallible;

    const KIND: InstanceKind = InstanceKind::Limiter;

    fn validate(config: &LimitConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn build(name: &str, config: LimitConfig) -> Self {
        Limiter::from_config(name, config).expect("the registry validates every config it keeps")
    }

    fn name(&self) -> &str {
        Limiter::name(self)
    }

    fn check_update(&self, config: &LimitConfig) -> Result<(), ConfigError> {
        match changed_field(self.config(), config) {
            None => Ok(()),
            Some((field, from, to)) => Err(ConfigError::new(
                field,
                format!(
                    "a live concurrency limiter cannot be reconfigured yet (from {from} to {to}); remove it and let it be made again"
                ),
            )),
        }
    }

    fn reconfigure(&self, config: LimitConfig) -> Result<(), ConfigError> {
        self.check_update(&config)
    }

    fn snapshot(&self) -> LimitSnapshot {
        Limiter::snapshot(self)
    }

    /// A limiter with no call in flight or waiting; its limit is found
    /// again by a new one.
    fn evictable(&self) -> bool {
        let snapshot = Limiter::snapshot(self);
        snapshot.inflight == 0 && snapshot.queued == 0
    }

    fn families() -> &'static [Family<LimitSnapshot>] {
        &FAMILIES
    }

    fn attach(&self, _source: Source, _hub: Hub) -> Option<Infallible> {
        None
    }
}

/// A concurrency limiter's metric families.
static FAMILIES: [Family<LimitSnapshot>; 6] = [
    gauge(
        "portcullis_concurrency_limiter_limit",
        "The concurrency limit the limiter has found.",
        |figures, emit| emit(&[], Value::Gauge(figures.limit as f64)),
    ),
    gauge(
        "portcullis_concurrency_limiter_in_flight",
        "Calls in flight under the concurrency limit.",
        |figures, emit| emit(&[], Value::Gauge(figures.inflight as f64)),
    ),
    gauge(
        "portcullis_concurrency_limiter_queued",
        "Calls waiting for room under the concurrency limit.",
        |figures, emit| emit(&[], Value::Gauge(figures.queued as f64)),
    ),
    counter(
        "portcullis_concurrency_limiter_admitted_calls",
        "Calls the concurrency limiter admitted since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.admitted)),
    ),
    counter(
        "portcullis_concurrency_limiter_shed_calls",
        "Calls the concurrency limiter shed since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.shed)),
    ),
    counter(
        "portcullis_concurrency_limiter_dropped_calls",
        "Admitted calls that failed, backing the limit off, since the limiter was made.",
        |figures, emit| emit(&[], Value::Counter(figures.dropped)),
    ),
];

/// The first field that differs between `current` and `new`, with both
/// values as written in a config file.
fn changed_field(
    current: &LimitConfig,
    new: &LimitConfig,
) -> Option<(&'static str, String, String)> {
    if current.algorithm() != new.algorithm() {
        Some((
            "algorithm",
            json(&current.algorithm()),
            json(&new.algorithm()),
        ))
    } else if current.aimd() != new.aimd() {
        Some(("aimd", json(current.aimd()), json(new.aimd())))
    } else if current.gradient2() != new.gradient2() {
        Some((
            "gradient2",
            json(current.gradient2()),
            json(new.gradient2()),
        ))
    } else if current.vegas() != new.vegas() {
        Some(("vegas", json(current.vegas()), json(new.vegas())))
    } else if current.window() != new.window() {
        Some((
            "window",
            duration::format(current.window()),
            duration::format(new.window()),
        ))
    } else if current.min_samples() != new.min_samples() {
        Some((
            "min_samples",
            current.min_samples().to_string(),
            new.min_samples().to_string(),
        ))
    } else if current.partitions() != new.partitions() {
        Some((
            "partitions",
            json(&current.partitions()),
            json(&new.partitions()),
        ))
    } else if current.queue() != new.queue() {
        Some(("queue", json(&current.queue()), json(&new.queue())))
    } else if current != new {
        Some(("config", format!("{current:?}"), format!("{new:?}")))
    } else {
        None
    }
}

/// A value as JSON, for the messages of refused updates.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use portcullis_limit::{AimdConfig, AlgorithmKind};

    use super::*;

    #[test]
    fn an_identical_config_is_taken_and_a_changed_one_refused() {
        let config = LimitConfig::builder()
            .algorithm(AlgorithmKind::Aimd)
            .build()
            .unwrap();
        let limiter = <Limiter as Instance>::build("db", config.clone());
        assert!(Instance::reconfigure(&limiter, config.clone()).is_ok());
        let softer = LimitConfig::builder()
            .algorithm(AlgorithmKind::Aimd)
            .aimd(AimdConfig {
                backoff_ratio: 0.5,
                ..AimdConfig::default()
            })
            .build()
            .unwrap();
        let error = limiter.check_update(&softer).unwrap_err();
        assert_eq!(error.field(), "aimd");
        assert!(
            error.message().contains("cannot be reconfigured yet"),
            "{error}"
        );
        assert_eq!(
            Instance::reconfigure(&limiter, LimitConfig::default())
                .unwrap_err()
                .field(),
            "algorithm"
        );
        assert_eq!(limiter.config(), &config);
    }

    #[test]
    fn a_limiter_in_use_is_not_evictable() {
        let limiter = <Limiter as Instance>::build("db", LimitConfig::default());
        assert!(limiter.evictable());
        let permit = limiter.try_acquire(None).unwrap();
        assert!(!limiter.evictable());
        drop(permit);
        assert!(limiter.evictable());
    }
}
