//! Bulkhead configuration: a builder, serde data, and validation that names
//! the field and the allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

/// The configuration of a bulkhead. Build it with [`BulkheadConfig::builder`]
/// or read it with serde (every field is optional; durations are written
/// like `"250ms"`):
///
/// ```
/// use portcullis_bulkhead::BulkheadConfig;
/// use std::time::Duration;
///
/// let config: BulkheadConfig = toml::from_str(r#"
///     max_concurrent_calls = 8
///     max_wait = "250ms"
///     max_queued_calls = 100
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.max_concurrent_calls(), 8);
/// assert_eq!(config.max_wait(), Duration::from_millis(250));
///
/// let error = BulkheadConfig::builder().max_concurrent_calls(0).build().unwrap_err();
/// assert_eq!(error.to_string(), "max_concurrent_calls: must be in [1, 1000000], got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    max_concurrent_calls: u32,
    #[serde(with = "duration::serde")]
    max_wait: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_queued_calls: Option<u32>,
    max_keys: u32,
}

/// Builds a [`BulkheadConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct BulkheadConfigBuilder {
    config: BulkheadConfig,
}

/// The most permits (and waiters, and keys) a bulkhead accepts.
const MAX_COUNT: u32 = 1_000_000;

/// The longest wait a bulkhead accepts: a day.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for BulkheadConfig {
    /// 25 concurrent calls, failing fast (no wait), and for a keyed
    /// bulkhead at most 1,024 keys.
    fn default() -> Self {
        Self {
            max_concurrent_calls: 25,
            max_wait: Duration::ZERO,
            max_queued_calls: None,
            max_keys: 1024,
        }
    }
}

impl BulkheadConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfigBuilder::default()
    }

    /// How many calls may be in flight at once.
    pub fn max_concurrent_calls(&self) -> u32 {
        self.max_concurrent_calls
    }

    /// How long a call waits for a permit; zero: it is rejected at once.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// How many calls may wait at once; `None`: as many as come within
    /// [`max_wait`](Self::max_wait). Has no effect when `max_wait` is zero.
    pub fn max_queued_calls(&self) -> Option<u32> {
        self.max_queued_calls
    }

    /// For a [`KeyedBulkhead`](crate::KeyedBulkhead): how many keys (pools)
    /// it keeps at once. Ignored by a plain [`Bulkhead`](crate::Bulkhead).
    pub fn max_keys(&self) -> u32 {
        self.max_keys
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("max_concurrent_calls", self.max_concurrent_calls)?;
        if self.max_wait > MAX_WAIT {
            return Err(ConfigError::new(
                "max_wait",
                format!(
                    "must be at most {}, got {}",
                    duration::format(MAX_WAIT),
                    duration::format(self.max_wait)
                ),
            ));
        }
        if let Some(queued) = self.max_queued_calls {
            in_range("max_queued_calls", queued)?;
        }
        in_range("max_keys", self.max_keys)?;
        Ok(())
    }
}

fn in_range(field: &'static str, value: u32) -> Result<(), ConfigError> {
    portcullis_core::config::check_range(field, value, 1, MAX_COUNT)
}

impl BulkheadConfigBuilder {
    /// Calls in flight at once, in [1, 1,000,000] (default: 25).
    pub fn max_concurrent_calls(mut self, calls: u32) -> Self {
        self.config.max_concurrent_calls = calls;
        self
    }

    /// How long a call may wait for a permit, at most a day (default: zero,
    /// reject at once). Waiters are served first come, first served.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// Calls waiting at once, in [1, 1,000,000] (default: no bound but
    /// `max_wait`); a call that finds the queue full is rejected at once.
    pub fn max_queued_calls(mut self, calls: u32) -> Self {
        self.config.max_queued_calls = Some(calls);
        self
    }

    /// Keys a keyed bulkhead keeps at once, in [1, 1,000,000] (default:
    /// 1,024).
    pub fn max_keys(mut self, keys: u32) -> Self {
        self.config.max_keys = keys;
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<BulkheadConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn error_of(builder: BulkheadConfigBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_fail_fast() {
        let config = BulkheadConfig::builder().build().unwrap();
        assert_eq!(config.max_concurrent_calls(), 25);
        assert_eq!(config.max_wait(), Duration::ZERO);
        assert_eq!(config.max_queued_calls(), None);
        assert_eq!(config.max_keys(), 1024);
    }

    #[test]
    fn errors_name_the_field_and_the_range() {
        assert_eq!(
            error_of(BulkheadConfig::builder().max_concurrent_calls(0)),
            "max_concurrent_calls: must be in [1, 1000000], got 0"
        );
        assert_eq!(
            error_of(BulkheadConfig::builder().max_concurrent_calls(1_000_001)),
            "max_concurrent_calls: must be in [1, 1000000], got 1000001"
        );
        assert_eq!(
            error_of(BulkheadConfig::builder().max_wait(Duration::from_secs(90_000))),
            "max_wait: must be at most 1d, got 1d1h"
        );
        assert_eq!(
            error_of(BulkheadConfig::builder().max_queued_calls(0)),
            "max_queued_calls: must be in [1, 1000000], got 0"
        );
        assert_eq!(
            error_of(BulkheadConfig::builder().max_keys(0)),
            "max_keys: must be in [1, 1000000], got 0"
        );
        assert!(
            BulkheadConfig::builder()
                .max_concurrent_calls(1_000_000)
                .max_wait(Duration::from_secs(86_400))
                .max_queued_calls(1)
                .max_keys(1_000_000)
                .build()
                .is_ok(),
            "the bounds are inclusive"
        );
    }

    #[test]
    fn serde_round_trip_with_human_durations() {
        let config = BulkheadConfig::builder()
            .max_concurrent_calls(4)
            .max_wait(Duration::from_millis(1500))
            .max_queued_calls(16)
            .build()
            .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["max_wait"], "1s500ms");
        assert_eq!(json["max_queued_calls"], 16);
        let back: BulkheadConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_errors() {
        let error = toml::from_str::<BulkheadConfig>("max_calls = 5").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `max_calls`"),
            "{error}"
        );
        let error = toml::from_str::<BulkheadConfig>("max_wait = \"soon\"").unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
        let parsed: BulkheadConfig = toml::from_str("max_concurrent_calls = 0").unwrap();
        assert_eq!(
            parsed.validate().unwrap_err().field(),
            "max_concurrent_calls",
            "parsed data is validated when a bulkhead is built from it"
        );
    }
}
