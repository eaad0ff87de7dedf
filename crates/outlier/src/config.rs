//! Outlier detection configuration: serde data with Envoy's defaults, a
//! builder, and validation that names the field and the allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::config::check_range;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

/// When an endpoint is ejected, for how long, and how many may be out at
/// once. Every field is optional in a config file; the defaults are
/// Envoy's (`outlier_detection` of a cluster):
///
/// | field | default | meaning |
/// |---|---|---|
/// | `consecutive_failures` | 5 | failures in a row that eject an endpoint (0: never) |
/// | `interval` | `"10s"` | how often success rates are compared |
/// | `base_ejection_time` | `"30s"` | the first ejection's length; the n-th lasts n times as long |
/// | `max_ejection_time` | `"300s"` | the longest an ejection lasts |
/// | `max_ejection_percent` | 10 | the most endpoints ejected at once, as a percentage (at least one may always be) |
/// | `success_rate_minimum_hosts` | 5 | endpoints with enough calls needed to compare success rates |
/// | `success_rate_request_volume` | 100 | calls an endpoint needs in an interval to be compared |
/// | `success_rate_stdev_factor` | 1.9 | how many standard deviations below the mean success rate ejects |
/// | `enforcing_success_rate` | true | eject the success-rate outliers (false: only count them) |
///
/// ```
/// use portcullis_outlier::OutlierConfig;
/// use std::time::Duration;
///
/// let config: OutlierConfig = toml::from_str(r#"
///     consecutive_failures = 3
///     base_ejection_time = "10s"
///     max_ejection_percent = 50
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.consecutive_failures(), 3);
/// assert_eq!(config.interval(), Duration::from_secs(10));
///
/// let bad: OutlierConfig = toml::from_str("max_ejection_percent = 120").unwrap();
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "max_ejection_percent: must be in [0, 100], got 120"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    consecutive_failures: u32,
    #[serde(with = "duration::serde")]
    interval: Duration,
    #[serde(with = "duration::serde")]
    base_ejection_time: Duration,
    #[serde(with = "duration::serde")]
    max_ejection_time: Duration,
    max_ejection_percent: u32,
    success_rate_minimum_hosts: u32,
    success_rate_request_volume: u32,
    success_rate_stdev_factor: f64,
    enforcing_success_rate: bool,
}

impl Default for OutlierConfig {
    /// Envoy's defaults (see the table above).
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1.9,
            enforcing_success_rate: true,
        }
    }
}

impl OutlierConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> OutlierConfigBuilder {
        OutlierConfigBuilder::default()
    }

    /// Failures in a row that eject an endpoint; 0 turns this rule off.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// How often the success rates of the endpoints are compared (and the
    /// ejection multipliers of healthy endpoints wound down).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long an endpoint's first ejection lasts; its n-th lasts n times
    /// as long, up to [`max_ejection_time`](Self::max_ejection_time).
    pub fn base_ejection_time(&self) -> Duration {
        self.base_ejection_time
    }

    /// The longest an ejection lasts.
    pub fn max_ejection_time(&self) -> Duration {
        self.max_ejection_time
    }

    /// The largest share of the endpoints ejected at once, in percent. At
    /// least one endpoint may always be ejected, whatever the share.
    pub fn max_ejection_percent(&self) -> u32 {
        self.max_ejection_percent
    }

    /// How many endpoints must have had
    /// [`success_rate_request_volume`](Self::success_rate_request_volume)
    /// calls in an interval for their success rates to be compared.
    pub fn success_rate_minimum_hosts(&self) -> u32 {
        self.success_rate_minimum_hosts
    }

    /// Calls an endpoint needs in an interval to take part in the
    /// success-rate comparison.
    pub fn success_rate_request_volume(&self) -> u32 {
        self.success_rate_request_volume
    }

    /// An endpoint whose success rate is below the mean by more than this
    /// many standard deviations is an outlier (Envoy writes 1900 for 1.9).
    pub fn success_rate_stdev_factor(&self) -> f64 {
        self.success_rate_stdev_factor
    }

    /// Whether success-rate outliers are ejected, or only counted.
    pub fn enforcing_success_rate(&self) -> bool {
        self.enforcing_success_rate
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "consecutive_failures",
            self.consecutive_failures,
            0,
            1_000_000,
        )?;
        check_duration("interval", self.interval)?;
        check_duration("base_ejection_time", self.base_ejection_time)?;
        check_duration("max_ejection_time", self.max_ejection_time)?;
        if self.max_ejection_time < self.base_ejection_time {
            return Err(ConfigError::new(
                "max_ejection_time",
                format!(
                    "must be at least base_ejection_time ({}), got {}",
                    duration::format(self.base_ejection_time),
                    duration::format(self.max_ejection_time)
                ),
            ));
        }
        check_range("max_ejection_percent", self.max_ejection_percent, 0, 100)?;
        check_range(
            "success_rate_minimum_hosts",
            self.success_rate_minimum_hosts,
            1,
            1_000_000,
        )?;
        check_range(
            "success_rate_request_volume",
            self.success_rate_request_volume,
            1,
            u32::MAX,
        )?;
        let factor = self.success_rate_stdev_factor;
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(ConfigError::new(
                "success_rate_stdev_factor",
                format!("must be a finite number of at least 0, got {factor}"),
            ));
        }
        Ok(())
    }
}

/// An ejection time or interval: more than nothing, at most a day.
fn check_duration(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    if value.is_zero() || value > DAY {
        return Err(ConfigError::new(
            field,
            format!(
                "must be more than 0s and at most 1d, got {}",
                duration::format(value)
            ),
        ));
    }
    Ok(())
}

/// Builds an [`OutlierConfig`]; every setter has a default (see
/// [`OutlierConfig`]).
#[derive(Clone, Debug, Default)]
pub struct OutlierConfigBuilder {
    config: OutlierConfig,
}

impl OutlierConfigBuilder {
    /// Failures in a row that eject an endpoint (0: never). Default 5.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.config.consecutive_failures = n;
        self
    }

    /// How often success rates are compared. Default 10 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// The first ejection's length. Default 30 s.
    pub fn base_ejection_time(mut self, time: Duration) -> Self {
        self.config.base_ejection_time = time;
        self
    }

    /// The longest ejection. Default 300 s.
    pub fn max_ejection_time(mut self, time: Duration) -> Self {
        self.config.max_ejection_time = time;
        self
    }

    /// The largest share of endpoints ejected at once, in percent (at least
    /// one may always be). Default 10.
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.config.max_ejection_percent = percent;
        self
    }

    /// Endpoints with enough calls needed to compare success rates.
    /// Default 5.
    pub fn success_rate_minimum_hosts(mut self, hosts: u32) -> Self {
        self.config.success_rate_minimum_hosts = hosts;
        self
    }

    /// Calls an endpoint needs in an interval to be compared. Default 100.
    pub fn success_rate_request_volume(mut self, calls: u32) -> Self {
        self.config.success_rate_request_volume = calls;
        self
    }

    /// Standard deviations below the mean that make an outlier. Default 1.9.
    pub fn success_rate_stdev_factor(mut self, factor: f64) -> Self {
        self.config.success_rate_stdev_factor = factor;
        self
    }

    /// Eject success-rate outliers (true, the default) or only count them.
    pub fn enforcing_success_rate(mut self, enforcing: bool) -> Self {
        self.config.enforcing_success_rate = enforcing;
        self
    }

    /// The configuration, validated.
    pub fn build(self) -> Result<OutlierConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_envoys_and_valid() {
        let config = OutlierConfig::default();
        config.validate().unwrap();
        assert_eq!(config.consecutive_failures(), 5);
        assert_eq!(config.base_ejection_time(), Duration::from_secs(30));
        assert_eq!(config.max_ejection_percent(), 10);
        assert_eq!(config.success_rate_stdev_factor(), 1.9);
    }

    #[test]
    fn round_trips_through_toml() {
        let config = OutlierConfig::builder()
            .consecutive_failures(3)
            .base_ejection_time(Duration::from_millis(250))
            .max_ejection_percent(50)
            .build()
            .unwrap();
        let text = toml::to_string(&config).unwrap();
        let back: OutlierConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn errors_name_the_field() {
        let error = |text: &str| {
            let config: OutlierConfig = toml::from_str(text).unwrap();
            config.validate().unwrap_err().to_string()
        };
        assert_eq!(
            error(r#"interval = "0s""#),
            "interval: must be more than 0s and at most 1d, got 0s"
        );
        assert_eq!(
            error(
                r#"base_ejection_time = "1m"
max_ejection_time = "30s""#
            ),
            "max_ejection_time: must be at least base_ejection_time (1m), got 30s"
        );
        assert_eq!(
            error("success_rate_stdev_factor = -1.0"),
            "success_rate_stdev_factor: must be a finite number of at least 0, got -1"
        );
        assert!(
            toml::from_str::<OutlierConfig>("consecutive_5xx = 3")
                .unwrap_err()
                .to_string()
                .contains("unknown field `consecutive_5xx`")
        );
    }
}
