//! Retry configuration: a builder, serde data, and validation that names the
//! field and the allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

use crate::backoff::MAX_DELAY;
use crate::{BackoffConfig, BudgetConfig, JitterConfig};

/// The configuration of a retry. Build it with [`RetryConfig::builder`] or
/// read it with serde (every field is optional; durations are written like
/// `"30s"`):
///
/// ```
/// use portcullis_retry::{Backoff, RetryConfig};
/// use std::time::Duration;
///
/// let config: RetryConfig = toml::from_str(r#"
///     max_attempts = 4
///     total_deadline = "10s"
///     backoff = { type = "exponential", base = "100ms", multiplier = 2.0, max = "5s" }
///     jitter = { type = "full" }
///     max_retry_after = "30s"
///     budget = { ratio = 0.2, min_per_second = 10, ttl = "10s" }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.max_attempts(), 4);
/// assert_eq!(config.backoff().delay(2), Duration::from_millis(200));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    max_attempts: u32,
    #[serde(
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    total_deadline: Option<Duration>,
    backoff: BackoffConfig,
    jitter: JitterConfig,
    #[serde(with = "duration::serde")]
    max_retry_after: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetConfig>,
    fail_after_max_attempts: bool,
    body_limit: u64,
    retry_non_idempotent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter_seed: Option<u64>,
}

/// Builds a [`RetryConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

/// The largest request body that may be buffered for replay: 64 MiB.
const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

impl Default for RetryConfig {
    /// 3 attempts; exponential backoff from 100 ms, doubling, at most 5 s,
    /// with equal jitter; a server may ask for a wait of up to 30 s; no
    /// total deadline, no budget; the last outcome is returned as it came;
    /// request bodies of up to 64 KiB are replayed; non-idempotent HTTP
    /// requests are retried only with an `Idempotency-Key`.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            total_deadline: None,
            backoff: BackoffConfig::default(),
            jitter: JitterConfig::default(),
            max_retry_after: Duration::from_secs(30),
            budget: None,
            fail_after_max_attempts: false,
            body_limit: 64 * 1024,
            retry_non_idempotent: false,
            jitter_seed: None,
        }
    }
}

impl RetryConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder::default()
    }

    /// Attempts per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// No retry starts, and no delay is waited, past this time after the
    /// call; an attempt in flight is not cut short.
    pub fn total_deadline(&self) -> Option<Duration> {
        self.total_deadline
    }

    /// The delays between attempts, before jitter.
    pub fn backoff(&self) -> &BackoffConfig {
        &self.backoff
    }

    /// How the delays are spread.
    pub fn jitter(&self) -> &JitterConfig {
        &self.jitter
    }

    /// The longest server-directed wait (`Retry-After`,
    /// `grpc-retry-pushback-ms`) that is obeyed; a response asking for more
    /// is returned to the caller, not retried.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The retry budget made for the layer, if any.
    pub fn budget(&self) -> Option<&BudgetConfig> {
        self.budget.as_ref()
    }

    /// When set, an error that is still retryable when the retry gives up
    /// (attempts, deadline or budget spent) comes back wrapped in
    /// [`RetriesExhausted`](crate::RetriesExhausted); otherwise the last
    /// error comes back as it is. Responses always come back as they are.
    pub fn fail_after_max_attempts(&self) -> bool {
        self.fail_after_max_attempts
    }

    /// HTTP: the largest request body, in bytes, that is buffered to be
    /// replayed; a larger body is sent once.
    pub fn body_limit(&self) -> u64 {
        self.body_limit
    }

    /// HTTP: retry POST, PATCH and CONNECT requests even without an
    /// `Idempotency-Key` header.
    pub fn retry_non_idempotent(&self) -> bool {
        self.retry_non_idempotent
    }

    /// The seed of the jitter's randomness, if fixed.
    pub fn jitter_seed(&self) -> Option<u64> {
        self.jitter_seed
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be in [1, 100], got {}", self.max_attempts),
            ));
        }
        if let Some(deadline) = self.total_deadline {
            positive("total_deadline", deadline)?;
        }
        self.backoff.validate()?;
        self.jitter.validate()?;
        at_most("max_retry_after", self.max_retry_after, MAX_DELAY)?;
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|error| error.within("budget"))?;
        }
        if self.body_limit > MAX_BODY_LIMIT {
            return Err(ConfigError::new(
                "body_limit",
                format!(
                    "must be in [0, {MAX_BODY_LIMIT}] bytes, got {}",
                    self.body_limit
                ),
            ));
        }
        Ok(())
    }
}

impl RetryConfigBuilder {
    /// Attempts per request, the first included, in [1, 100] (default: 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// Stop retrying `deadline` after the call (default: no deadline).
    pub fn total_deadline(mut self, deadline: Duration) -> Self {
        self.config.total_deadline = Some(deadline);
        self
    }

    /// The delays between attempts (default: exponential, 100 ms × 2, at
    /// most 5 s).
    pub fn backoff(mut self, backoff: impl Into<BackoffConfig>) -> Self {
        self.config.backoff = backoff.into();
        self
    }

    /// How the delays are spread (default: equal jitter).
    pub fn jitter(mut self, jitter: impl Into<JitterConfig>) -> Self {
        self.config.jitter = jitter.into();
        self
    }

    /// The longest server-directed wait that is obeyed (default: 30 s).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Make a retry budget with the layer (default: none). To share one
    /// budget between layers, give them the same
    /// [`RetryBudget`](crate::RetryBudget) with
    /// [`RetryLayer::with_budget`](crate::RetryLayer::with_budget) instead.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// Wrap a still-retryable last error in
    /// [`RetriesExhausted`](crate::RetriesExhausted) (default: false).
    pub fn fail_after_max_attempts(mut self, fail: bool) -> Self {
        self.config.fail_after_max_attempts = fail;
        self
    }

    /// HTTP: the largest body buffered for replay, in bytes (default:
    /// 65,536; at most 64 MiB).
    pub fn body_limit(mut self, bytes: u64) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// HTTP: retry non-idempotent requests without an `Idempotency-Key`
    /// (default: false).
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.config.retry_non_idempotent = retry;
        self
    }

    /// Seed the jitter's randomness, for reproducible runs.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = Some(seed);
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<RetryConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

pub(crate) fn at_most(
    field: &'static str,
    value: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::new(
            field,
            format!(
                "must be at most {}, got {}",
                duration::format(max),
                duration::format(value)
            ),
        ));
    }
    Ok(())
}

fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(field, "must be greater than zero"));
    }
    at_most(field, value, MAX_DELAY)
}

pub(crate) fn in_range_f64(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<(), ConfigError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in [{min}, {max}], got {value}"),
        ))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{ConstantBackoff, ExponentialBackoff, ProportionalJitter};

    fn error(builder: RetryConfigBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            RetryConfig::builder().build().unwrap(),
            RetryConfig::default()
        );
    }

    #[test]
    fn errors_name_the_field_and_range() {
        assert_eq!(
            error(RetryConfig::builder().max_attempts(0)),
            "max_attempts: must be in [1, 100], got 0"
        );
        assert_eq!(
            error(RetryConfig::builder().max_attempts(101)),
            "max_attempts: must be in [1, 100], got 101"
        );
        assert_eq!(
            error(RetryConfig::builder().total_deadline(Duration::ZERO)),
            "total_deadline: must be greater than zero"
        );
        assert_eq!(
            error(RetryConfig::builder().backoff(ExponentialBackoff::new(
                Duration::from_millis(1),
                200.0,
                Duration::from_secs(1)
            ))),
            "backoff.multiplier: must be in [1, 100], got 200"
        );
        assert_eq!(
            error(RetryConfig::builder().jitter(ProportionalJitter::new(-1.0))),
            "jitter.factor: must be in [0, 1], got -1"
        );
        assert_eq!(
            error(RetryConfig::builder().max_retry_after(Duration::from_secs(100_000))),
            "max_retry_after: must be at most 1d, got 1d3h46m40s"
        );
        assert_eq!(
            error(RetryConfig::builder().budget(BudgetConfig::new(
                2000.0,
                0,
                Duration::from_secs(1)
            ))),
            "budget.ratio: must be in [0, 1000], got 2000"
        );
        assert_eq!(
            error(RetryConfig::builder().body_limit(u64::MAX)),
            format!(
                "body_limit: must be in [0, 67108864] bytes, got {}",
                u64::MAX
            )
        );
    }

    #[test]
    fn serde_round_trip_with_human_durations() {
        let config = RetryConfig::builder()
            .max_attempts(5)
            .total_deadline(Duration::from_secs(3))
            .backoff(ConstantBackoff::new(Duration::from_millis(250)))
            .jitter(crate::FullJitter)
            .budget(BudgetConfig::default())
            .jitter_seed(9)
            .build()
            .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["total_deadline"], "3s");
        assert_eq!(
            json["backoff"],
            serde_json::json!({"type": "constant", "delay": "250ms"})
        );
        assert_eq!(json["jitter"], serde_json::json!({"type": "full"}));
        assert_eq!(json["budget"]["ttl"], "10s");
        let back: RetryConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let error = toml::from_str::<RetryConfig>("attempts = 3").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `attempts`"),
            "{error}"
        );
        let error = toml::from_str::<RetryConfig>("budget = { percent = 20 }").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `percent`"),
            "{error}"
        );
    }
}
