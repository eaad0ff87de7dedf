//! The fleet breaker's configuration: how often an instance syncs, the
//! fleet's window, threshold and quorum, the election's TTL and the Redis
//! timeout; serde data, and validation that names the field.

use std::time::Duration;

use portcullis_breaker::BreakerConfig;
use portcullis_core::ConfigError;
use portcullis_core::config::check_range;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

use crate::client::{check_duration, check_sync};
use crate::config::default_breaker;

/// How many of the live instances must see the failure rate over the
/// threshold, on their own calls, for the fleet to open.
///
/// As serde data: `quorum = { instances = 2 }` or `quorum = { fraction = 0.5 }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Quorum {
    /// At least this many instances (at least 1).
    Instances(u32),
    /// At least this fraction of the live instances (those that synced
    /// within the last three periods), rounded up, and at least one: with
    /// 0.5, 2 of 3 and 2 of 4.
    Fraction(f64),
}

/// The configuration of a [`FleetBreaker`](crate::FleetBreaker).
///
/// As serde data (every field optional, with these defaults):
///
/// ```
/// use std::time::Duration;
/// use portcullis_redis::{FleetBreakerConfig, Quorum};
///
/// let config: FleetBreakerConfig = serde_json::from_str(r#"{
///     "period": "1s", "window": "10s", "quorum": { "fraction": 0.5 },
///     "failure_rate_threshold": 50.0, "minimum_calls": 20, "instance_minimum_calls": 5,
///     "key_prefix": "portcullis:cb:", "prober_ttl": "5s", "timeout": "100ms"
/// }"#).unwrap();
/// assert_eq!(config, FleetBreakerConfig::default());
///
/// let error = FleetBreakerConfig::builder().quorum(Quorum::Instances(0)).build().unwrap_err();
/// assert_eq!(error.to_string(), "quorum.instances: must be in [1, 10000], got 0");
/// let error = FleetBreakerConfig::builder()
///     .period(Duration::from_secs(2))
///     .prober_ttl(Duration::from_secs(3))
///     .build()
///     .unwrap_err();
/// assert_eq!(error.to_string(), "prober_ttl: must be in [4s, 10m] (two periods at least), got 3s");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetBreakerConfig {
    #[serde(with = "duration::serde")]
    period: Duration,
    #[serde(with = "duration::serde")]
    window: Duration,
    quorum: Quorum,
    failure_rate_threshold: f64,
    minimum_calls: u32,
    instance_minimum_calls: u32,
    key_prefix: String,
    #[serde(with = "duration::serde")]
    prober_ttl: Duration,
    #[serde(with = "duration::serde")]
    timeout: Duration,
    redis_breaker: BreakerConfig,
}

/// Builds a [`FleetBreakerConfig`]; every setter has a default (see each).
#[derive(Clone, Debug)]
pub struct FleetBreakerConfigBuilder {
    config: FleetBreakerConfig,
}

impl Default for FleetBreakerConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(1),
            window: Duration::from_secs(10),
            quorum: Quorum::Fraction(0.5),
            failure_rate_threshold: 50.0,
            minimum_calls: 20,
            instance_minimum_calls: 5,
            key_prefix: "portcullis:cb:".to_owned(),
            prober_ttl: Duration::from_secs(5),
            timeout: Duration::from_millis(100),
            redis_breaker: default_breaker(),
        }
    }
}

impl FleetBreakerConfig {
    /// A builder, from the defaults.
    pub fn builder() -> FleetBreakerConfigBuilder {
        FleetBreakerConfigBuilder {
            config: Self::default(),
        }
    }

    /// How often an instance syncs with Redis (default: 1 s).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The span the fleet's failure rate is taken over, in whole seconds,
    /// at most 5 min (default: 10 s).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The instances that must see the rate over the threshold (default:
    /// half of the live ones).
    pub fn quorum(&self) -> Quorum {
        self.quorum
    }

    /// The fleet's failure-rate threshold, in percent (default: 50).
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }

    /// The fewest calls of the fleet over the window for its rate to count
    /// (default: 20).
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The fewest calls of one instance over the window for it to see the
    /// rate (default: 5).
    pub fn instance_minimum_calls(&self) -> u32 {
        self.instance_minimum_calls
    }

    /// The prefix of the Redis keys (default: `portcullis:cb:`).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// How long an elected prober holds the role after its last sync
    /// while half-open (default: 5 s): a prober that stops syncing loses it
    /// then, and another instance is elected.
    pub fn prober_ttl(&self) -> Duration {
        self.prober_ttl
    }

    /// The longest a sync waits for Redis (default: 100 ms).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The breaker around the Redis client (default: the fleet limiter's,
    /// see [`FleetConfig::breaker`](crate::FleetConfig::breaker)).
    pub fn redis_breaker(&self) -> &BreakerConfig {
        &self.redis_breaker
    }

    /// The threshold in hundredths of a percent, as the script takes it.
    pub(crate) fn threshold_bp(&self) -> u32 {
        (self.failure_rate_threshold * 100.0).round() as u32
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ms = Duration::from_millis;
        check_duration("period", self.period, ms(10), ms(60_000), "")?;
        check_duration(
            "window",
            self.window,
            self.period.max(ms(1_000)),
            ms(300_000),
            " (a period at least)",
        )?;
        if self.window.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "window",
                format!(
                    "must be whole seconds, got {}",
                    duration::format(self.window)
                ),
            ));
        }
        match self.quorum {
            Quorum::Instances(count) => {
                check_range("instances", count, 1, 10_000).map_err(|e| e.within("quorum"))?;
            }
            Quorum::Fraction(fraction) => {
                if !(fraction > 0.0 && fraction <= 1.0) {
                    return Err(ConfigError::new(
                        "quorum.fraction",
                        format!("must be in (0, 1], got {fraction}"),
                    ));
                }
            }
        }
        let threshold = self.failure_rate_threshold;
        if !(threshold > 0.0 && threshold <= 100.0) {
            return Err(ConfigError::new(
                "failure_rate_threshold",
                format!("must be in (0, 100], got {threshold}"),
            ));
        }
        check_range("minimum_calls", self.minimum_calls, 1, u32::MAX)?;
        check_range(
            "instance_minimum_calls",
            self.instance_minimum_calls,
            1,
            u32::MAX,
        )?;
        check_duration(
            "prober_ttl",
            self.prober_ttl,
            self.period * 2,
            ms(600_000),
            " (two periods at least)",
        )?;
        check_sync(
            &self.key_prefix,
            self.period,
            self.timeout,
            &self.redis_breaker,
        )
    }
}

impl FleetBreakerConfigBuilder {
    /// How often an instance syncs, in [10 ms, 60 s] (default: 1 s). An
    /// instance also syncs soon after its breaker changes state, no sooner
    /// than a twentieth of the period after its last sync started.
    pub fn period(mut self, period: Duration) -> Self {
        self.config.period = period;
        self
    }

    /// The fleet's window, whole seconds in [max(1 s, period), 5 min]
    /// (default: 10 s). Every sync reads one bucket per second of it
    /// inside Redis, hence the cap.
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// The quorum (default: `Fraction(0.5)`).
    pub fn quorum(mut self, quorum: Quorum) -> Self {
        self.config.quorum = quorum;
        self
    }

    /// The fleet's failure-rate threshold in percent, in (0, 100]
    /// (default: 50); an instance sees the rate when its own calls reach
    /// it too.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// The fewest fleet calls over the window for the rate to count, at
    /// least 1 (default: 20).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// The fewest calls of one instance over the window for it to see the
    /// rate, at least 1 (default: 5).
    pub fn instance_minimum_calls(mut self, calls: u32) -> Self {
        self.config.instance_minimum_calls = calls;
        self
    }

    /// The prefix of the Redis keys, not empty (default: `portcullis:cb:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// The elected prober's TTL, in [2 periods, 10 min] (default: 5 s).
    pub fn prober_ttl(mut self, ttl: Duration) -> Self {
        self.config.prober_ttl = ttl;
        self
    }

    /// The longest a sync waits for Redis, in [1 ms, the period] (default:
    /// 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The breaker around the Redis client.
    pub fn redis_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.config.redis_breaker = breaker;
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<FleetBreakerConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(builder: FleetBreakerConfigBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_and_range() {
        let b = FleetBreakerConfig::builder;
        assert_eq!(
            error_of(b().period(Duration::from_millis(5))),
            "period: must be in [10ms, 1m], got 5ms"
        );
        assert_eq!(
            error_of(b().window(Duration::from_millis(1_500))),
            "window: must be whole seconds, got 1s500ms"
        );
        assert_eq!(
            error_of(b().window(Duration::from_secs(301))),
            "window: must be in [1s, 5m] (a period at least), got 5m1s"
        );
        assert_eq!(
            error_of(b().quorum(Quorum::Fraction(1.5))),
            "quorum.fraction: must be in (0, 1], got 1.5"
        );
        assert_eq!(
            error_of(b().failure_rate_threshold(0.0)),
            "failure_rate_threshold: must be in (0, 100], got 0"
        );
        assert_eq!(
            error_of(b().minimum_calls(0)),
            "minimum_calls: must be in [1, 4294967295], got 0"
        );
        assert_eq!(
            error_of(b().key_prefix("")),
            "key_prefix: must not be empty"
        );
        assert_eq!(
            error_of(b().timeout(Duration::from_secs(2))),
            "timeout: must be in [1ms, 1s] (a period at most), got 2s"
        );
    }

    #[test]
    fn serde_round_trip_and_path_named_errors() {
        let config = FleetBreakerConfig::builder()
            .quorum(Quorum::Instances(2))
            .period(Duration::from_millis(250))
            .build()
            .unwrap();
        let json = serde_json::to_string(&config).unwrap();
        let back: FleetBreakerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let bad: FleetBreakerConfig =
            serde_json::from_str(r#"{ "redis_breaker": { "minimum_calls": 0 } }"#).unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .field()
                .starts_with("redis_breaker.")
        );
        assert!(serde_json::from_str::<FleetBreakerConfig>(r#"{ "quorums": 1 }"#).is_err());
    }
}
