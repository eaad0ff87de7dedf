//! Rate-limit configuration: a builder, serde data, and validation that
//! names the field and the allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::config::check_range as in_range;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

use crate::gcra::Gcra;

/// The configuration of a rate limiter: `rate` calls per `period`, up to
/// `burst` of them at once, an optional bounded wait, and (for keyed
/// limiters) the most keys tracked at once.
///
/// Build it with [`RateLimitConfig::builder`] (or the
/// [`per_second`](RateLimitConfig::per_second) and
/// [`per_minute`](RateLimitConfig::per_minute) shortcuts), or read it with
/// serde: `rate` is required, every other field has a default, durations
/// are written like `"1s"` and unknown fields are errors.
///
/// ```
/// use portcullis_ratelimit::RateLimitConfig;
/// use std::time::Duration;
///
/// let config: RateLimitConfig = toml::from_str(r#"
///     rate = 100
///     period = "1m"
///     burst = 20
///     max_wait = "250ms"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.emission_interval(), Duration::from_millis(600));
/// assert_eq!(config.burst(), 20);
///
/// let error = RateLimitConfig::per_second(0).build().unwrap_err();
/// assert_eq!(error.to_string(), "rate: must be in [1, 1000000000], got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    rate: u32,
    #[serde(default = "one_second", with = "duration::serde")]
    period: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(
        default,
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait: Option<Duration>,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

/// Builds a [`RateLimitConfig`]. The rate has no default; every other
/// setter has one (see each).
#[derive(Clone, Debug)]
pub struct RateLimitConfigBuilder {
    config: RateLimitConfig,
}

/// The most calls per period, and the largest burst.
pub(crate) const MAX_RATE: u32 = 1_000_000_000;
/// The longest period and the longest wait: a year.
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The longest span a burst may stand for (`burst * period / rate`): a
/// hundred years, so that no time in nanoseconds can overflow.
const MAX_BURST_SPAN: u64 = 100 * 365 * 24 * 60 * 60 * 1_000_000_000;
/// The most keys a keyed limiter may track.
const MAX_KEYS: usize = 100_000_000;

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn default_max_keys() -> usize {
    100_000
}

impl Default for RateLimitConfig {
    /// 100 calls per second with a burst of 100, no waiting, at most
    /// 100,000 keys.
    ///
    /// A builder asks for its rate, and a config read on its own must give
    /// one; this default is for what inherits from a default, such as the
    /// named rate limiters of a registry that sets no rate of its own. It is
    /// in the spirit of Resilience4j's default (50 calls per refresh
    /// period, one call waiting at most), at a rate that a service notices
    /// only under real load.
    fn default() -> Self {
        Self {
            rate: 100,
            period: one_second(),
            burst: None,
            max_wait: None,
            max_keys: default_max_keys(),
        }
    }
}

impl RateLimitConfig {
    /// A builder with no rate yet, a period of one second, a burst equal to
    /// the rate, no waiting, and at most 100,000 keys.
    pub fn builder() -> RateLimitConfigBuilder {
        RateLimitConfigBuilder {
            config: Self {
                rate: 0,
                period: one_second(),
                burst: None,
                max_wait: None,
                max_keys: default_max_keys(),
            },
        }
    }

    /// A builder for `rate` calls per second.
    pub fn per_second(rate: u32) -> RateLimitConfigBuilder {
        Self::builder().rate(rate)
    }

    /// A builder for `rate` calls per minute.
    pub fn per_minute(rate: u32) -> RateLimitConfigBuilder {
        Self::builder().rate(rate).period(Duration::from_secs(60))
    }

    /// Calls allowed per period, on average.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The period the rate is counted over.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The most calls allowed at once, after a quiet spell (default: the
    /// rate).
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// How long a call may wait for its slot; `None` (the default): a call
    /// that does not conform at once is rejected at once.
    pub fn max_wait(&self) -> Option<Duration> {
        self.max_wait
    }

    /// The most keys a keyed limiter tracks at once (default: 100,000).
    /// Unused by a single limiter.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// What one call costs: `period / rate`, rounded up to a whole
    /// nanosecond so that the rate is never exceeded.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("rate", self.rate as u64, 1, MAX_RATE as u64)?;
        if self.period.is_zero() {
            return Err(ConfigError::new("period", "must be greater than zero"));
        }
        if self.period > MAX_PERIOD {
            return Err(ConfigError::new(
                "period",
                format!(
                    "must be at most 365d, got {}",
                    duration::format(self.period)
                ),
            ));
        }
        if self.period.as_nanos() < u128::from(self.rate) {
            return Err(ConfigError::new(
                "period",
                format!(
                    "must be at least 1ns per call ({} for a rate of {}), got {}",
                    duration::format(Duration::from_nanos(self.rate.into())),
                    self.rate,
                    duration::format(self.period)
                ),
            ));
        }
        let max_burst = (MAX_BURST_SPAN / self.interval_nanos()).min(MAX_RATE.into());
        in_range("burst", self.burst().into(), 1, max_burst)?;
        if let Some(wait) = self.max_wait
            && wait > MAX_PERIOD
        {
            return Err(ConfigError::new(
                "max_wait",
                format!("must be at most 365d, got {}", duration::format(wait)),
            ));
        }
        in_range("max_keys", self.max_keys as u64, 1, MAX_KEYS as u64)
    }

    fn interval_nanos(&self) -> u64 {
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        period.div_ceil(u64::from(self.rate.max(1))).max(1)
    }

    /// The limit in the units of the state machine (valid configurations
    /// only).
    pub(crate) fn gcra(&self) -> Gcra {
        Gcra::new(self.interval_nanos(), self.burst())
    }

    /// The longest wait in nanoseconds (0: fail fast).
    pub(crate) fn max_wait_nanos(&self) -> u64 {
        self.max_wait.map_or(0, nanos)
    }
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl RateLimitConfigBuilder {
    /// Calls allowed per period, in [1, 1,000,000,000] (no default).
    pub fn rate(mut self, rate: u32) -> Self {
        self.config.rate = rate;
        self
    }

    /// The period the rate is counted over, up to a year and at least a
    /// nanosecond per call (default: 1 s).
    pub fn period(mut self, period: Duration) -> Self {
        self.config.period = period;
        self
    }

    /// The most calls allowed at once, at least 1 (default: the rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.burst = Some(burst);
        self
    }

    /// Let a call wait up to `wait` for its slot instead of rejecting it
    /// (default: reject at once).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = Some(wait);
        self
    }

    /// The most keys a keyed limiter tracks at once, in [1, 100,000,000]
    /// (default: 100,000).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.config.max_keys = keys;
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<RateLimitConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn error_of(builder: RateLimitConfigBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_and_range() {
        assert_eq!(
            error_of(RateLimitConfig::builder()),
            "rate: must be in [1, 1000000000], got 0"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(2_000_000_000)),
            "rate: must be in [1, 1000000000], got 2000000000"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(1).period(Duration::ZERO)),
            "period: must be greater than zero"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(1).period(Duration::from_secs(400 * 86_400))),
            "period: must be at most 365d, got 400d"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(1_000).period(Duration::from_nanos(10))),
            "period: must be at least 1ns per call (1us for a rate of 1000), got 10ns"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(10).burst(0)),
            "burst: must be in [1, 1000000000], got 0"
        );
        assert_eq!(
            error_of(
                RateLimitConfig::per_second(1)
                    .period(Duration::from_secs(86_400))
                    .burst(40_000)
            ),
            "burst: must be in [1, 36500], got 40000"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(1).max_wait(Duration::from_secs(400 * 86_400))),
            "max_wait: must be at most 365d, got 400d"
        );
        assert_eq!(
            error_of(RateLimitConfig::per_second(1).max_keys(0)),
            "max_keys: must be in [1, 100000000], got 0"
        );
    }

    #[test]
    fn the_default_is_valid_and_documented() {
        let config = RateLimitConfig::default();
        config.validate().unwrap();
        assert_eq!(config, RateLimitConfig::per_second(100).build().unwrap());
        assert_eq!(config.burst(), 100);
        assert_eq!(config.max_wait(), None);
    }

    #[test]
    fn defaults_and_the_emission_interval() {
        let config = RateLimitConfig::per_second(3).build().unwrap();
        assert_eq!(config.burst(), 3, "the burst defaults to the rate");
        assert_eq!(config.max_wait(), None);
        assert_eq!(config.max_keys(), 100_000);
        assert_eq!(
            config.emission_interval(),
            Duration::from_nanos(333_333_334),
            "rounded up: three calls never take less than a second"
        );
        let config = RateLimitConfig::per_minute(120).burst(1).build().unwrap();
        assert_eq!(config.emission_interval(), Duration::from_millis(500));
        assert_eq!(config.gcra(), Gcra::new(500_000_000, 1));
    }

    #[test]
    fn serde_round_trip_with_human_durations() {
        let config = RateLimitConfig::per_minute(100)
            .burst(20)
            .max_wait(Duration::from_millis(250))
            .max_keys(5_000)
            .build()
            .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["period"], "1m");
        assert_eq!(json["max_wait"], "250ms");
        let back: RateLimitConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);

        let minimal: RateLimitConfig = toml::from_str("rate = 5").unwrap();
        assert_eq!(minimal, RateLimitConfig::per_second(5).build().unwrap());
    }

    #[test]
    fn unknown_and_missing_fields_are_errors() {
        let error = toml::from_str::<RateLimitConfig>("rate = 5\nburts = 2").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `burts`"),
            "{error}"
        );
        let error = toml::from_str::<RateLimitConfig>("period = \"1s\"").unwrap_err();
        assert!(
            error.to_string().contains("missing field `rate`"),
            "{error}"
        );
        let error = toml::from_str::<RateLimitConfig>("rate = 5\nperiod = \"soon\"").unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
    }
}
