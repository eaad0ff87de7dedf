//! Chaos configuration: a builder, serde data, and validation that names the
//! field and the allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

/// The longest latency that can be injected: an hour.
pub(crate) const MAX_LATENCY: Duration = Duration::from_secs(60 * 60);

/// What a [`Chaos`](crate::Chaos) injects, and how often. Build it with
/// [`ChaosConfig::builder`] or read it with serde (every field is optional;
/// durations are written like `"250ms"`):
///
/// ```
/// use portcullis_chaos::ChaosConfig;
/// use std::time::Duration;
///
/// let config: ChaosConfig = toml::from_str(r#"
///     error_rate = 0.05
///     latency_rate = 0.2
///     latency = "100ms"
///     latency_max = "400ms"
///     seed = 7
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.latency(), (Duration::from_millis(100), Duration::from_millis(400)));
///
/// let error = toml::from_str::<ChaosConfig>("error_rate = 1.5").unwrap().validate().unwrap_err();
/// assert_eq!(error.to_string(), "error_rate: must be in [0, 1], got 1.5");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosConfig {
    enabled: bool,
    error_rate: f64,
    response_rate: f64,
    latency_rate: f64,
    #[serde(with = "duration::serde")]
    latency: Duration,
    #[serde(
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    latency_max: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

/// Builds a [`ChaosConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct ChaosConfigBuilder {
    config: ChaosConfig,
}

impl Default for ChaosConfig {
    /// Enabled, but every rate is 0: nothing is injected until a rate is
    /// set. The seed is random.
    fn default() -> Self {
        Self {
            enabled: true,
            error_rate: 0.0,
            response_rate: 0.0,
            latency_rate: 0.0,
            latency: Duration::ZERO,
            latency_max: None,
            seed: None,
        }
    }
}

impl ChaosConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ChaosConfigBuilder {
        ChaosConfigBuilder::default()
    }

    /// Whether injection starts switched on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The share of calls, in [0, 1], that fail with an injected error.
    pub fn error_rate(&self) -> f64 {
        self.error_rate
    }

    /// The share of the calls not failed with an error, in [0, 1], that are
    /// answered with an injected response.
    pub fn response_rate(&self) -> f64 {
        self.response_rate
    }

    /// The share of calls, in [0, 1], that are delayed.
    pub fn latency_rate(&self) -> f64 {
        self.latency_rate
    }

    /// The injected latency as `(min, max)`: uniform in that range, or
    /// fixed when both are equal.
    pub fn latency(&self) -> (Duration, Duration) {
        (self.latency, self.latency_max.unwrap_or(self.latency))
    }

    /// The seed of the random sequence, if one was set.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        rate("error_rate", self.error_rate)?;
        rate("response_rate", self.response_rate)?;
        rate("latency_rate", self.latency_rate)?;
        latency_range(self.latency, self.latency_max.unwrap_or(self.latency))
    }
}

pub(crate) fn rate(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in [0, 1], got {value}"),
        ))
    }
}

pub(crate) fn latency_range(min: Duration, max: Duration) -> Result<(), ConfigError> {
    for (field, value) in [("latency", min), ("latency_max", max)] {
        if value > MAX_LATENCY {
            return Err(ConfigError::new(
                field,
                format!("must be at most 1h, got {}", duration::format(value)),
            ));
        }
    }
    if max < min {
        return Err(ConfigError::new(
            "latency_max",
            format!(
                "must be at least latency ({}), got {}",
                duration::format(min),
                duration::format(max)
            ),
        ));
    }
    Ok(())
}

impl ChaosConfigBuilder {
    /// Start switched off; [`Chaos::enable`](crate::Chaos::enable) switches
    /// it on (default: on).
    pub fn disabled(mut self) -> Self {
        self.config.enabled = false;
        self
    }

    /// Fail this share of calls, in [0, 1], with an injected error
    /// (default: 0).
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.config.error_rate = rate;
        self
    }

    /// Answer this share, in [0, 1], of the calls not failed with an error
    /// with an injected response (default: 0).
    pub fn response_rate(mut self, rate: f64) -> Self {
        self.config.response_rate = rate;
        self
    }

    /// Delay this share of calls, in [0, 1], by `latency` (default: 0).
    pub fn latency(mut self, rate: f64, latency: Duration) -> Self {
        self.config.latency_rate = rate;
        self.config.latency = latency;
        self.config.latency_max = None;
        self
    }

    /// Delay this share of calls, in [0, 1], by a latency uniform in
    /// `[min, max]`.
    pub fn latency_range(mut self, rate: f64, min: Duration, max: Duration) -> Self {
        self.config.latency_rate = rate;
        self.config.latency = min;
        self.config.latency_max = Some(max);
        self
    }

    /// Seed the random sequence, for reproducible runs (default: random).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<ChaosConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn error_of(builder: ChaosConfigBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_inject_nothing() {
        let config = ChaosConfig::builder().build().unwrap();
        assert_eq!(config, ChaosConfig::default());
        assert!(config.enabled());
        assert_eq!(
            (
                config.error_rate(),
                config.response_rate(),
                config.latency_rate()
            ),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn errors_name_the_field_and_range() {
        assert_eq!(
            error_of(ChaosConfig::builder().error_rate(1.5)),
            "error_rate: must be in [0, 1], got 1.5"
        );
        assert_eq!(
            error_of(ChaosConfig::builder().response_rate(-0.1)),
            "response_rate: must be in [0, 1], got -0.1"
        );
        assert_eq!(
            error_of(ChaosConfig::builder().latency(f64::NAN, Duration::from_millis(1))),
            "latency_rate: must be in [0, 1], got NaN"
        );
        assert_eq!(
            error_of(ChaosConfig::builder().latency(0.5, Duration::from_secs(7200))),
            "latency: must be at most 1h, got 2h"
        );
        assert_eq!(
            error_of(ChaosConfig::builder().latency_range(
                0.5,
                Duration::from_millis(100),
                Duration::from_millis(50)
            )),
            "latency_max: must be at least latency (100ms), got 50ms"
        );
    }

    #[test]
    fn serde_round_trip_with_human_durations() {
        let config = ChaosConfig::builder()
            .error_rate(0.25)
            .latency_range(0.5, Duration::from_millis(10), Duration::from_millis(250))
            .seed(9)
            .disabled()
            .build()
            .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["latency"], "10ms");
        assert_eq!(json["latency_max"], "250ms");
        assert_eq!(json["enabled"], false);
        let back: ChaosConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let error = toml::from_str::<ChaosConfig>("error = 0.5").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `error`"),
            "{error}"
        );
    }
}
