//! Hedge configuration: a builder, serde data, and validation that names
//! the field and the allowed range.

use portcullis_core::ConfigError;
use portcullis_core::config::check_range;
use portcullis_retry::{BudgetConfig, ThrottleConfig};
use serde::{Deserialize, Serialize};

use crate::DelayConfig;

/// The configuration of a hedge. Build it with [`HedgeConfig::builder`] or
/// read it with serde (every field is optional):
///
/// ```
/// use portcullis_hedge::{DelayConfig, HedgeConfig};
/// use std::time::Duration;
///
/// let config: HedgeConfig = toml::from_str(r#"
///     max_hedges = 2
///     delay = { type = "percentile", p = 0.95, min_data_points = 100, fallback = "30ms" }
///     budget = { ratio = 0.1, min_per_second = 5, ttl = "10s" }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.max_hedges(), 2);
///
/// let bad: HedgeConfig = toml::from_str(r#"delay = { type = "percentile", p = 1.5, fallback = "30ms" }"#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().to_string(), "delay.p: must be in (0, 1), got 1.5");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    max_hedges: u32,
    delay: DelayConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<ThrottleConfig>,
    body_limit: u64,
    hedge_non_idempotent: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    non_fatal_status_codes: Vec<u32>,
}

/// Builds a [`HedgeConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct HedgeConfigBuilder {
    config: HedgeConfig,
}

/// The largest request body that may be buffered for replay: 64 MiB.
const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

impl Default for HedgeConfig {
    /// One hedge, after the 95th percentile of recent latencies (50 ms
    /// until 100 are in); no budget; request bodies of up to 64 KiB are
    /// replayed; non-idempotent HTTP requests are not hedged; no gRPC code
    /// is non-fatal.
    fn default() -> Self {
        Self {
            max_hedges: 1,
            delay: DelayConfig::default(),
            budget: None,
            throttle: None,
            body_limit: 64 * 1024,
            hedge_non_idempotent: false,
            non_fatal_status_codes: Vec::new(),
        }
    }
}

impl HedgeConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> HedgeConfigBuilder {
        HedgeConfigBuilder::default()
    }

    /// Extra attempts per call at most (0 turns hedging off).
    pub fn max_hedges(&self) -> u32 {
        self.max_hedges
    }

    /// The delay before each hedge.
    pub fn delay(&self) -> &DelayConfig {
        &self.delay
    }

    /// The windowed budget made for the layer, if any.
    pub fn budget(&self) -> Option<&BudgetConfig> {
        self.budget.as_ref()
    }

    /// The throttling budget (gRPC `retryThrottling`) made for the layer,
    /// if any.
    pub fn throttle(&self) -> Option<&ThrottleConfig> {
        self.throttle.as_ref()
    }

    /// HTTP: the largest request body, in bytes, buffered to be sent again;
    /// a request with a larger body is not hedged.
    pub fn body_limit(&self) -> u64 {
        self.body_limit
    }

    /// HTTP: hedge POST, PATCH and CONNECT requests even without an
    /// `Idempotency-Key` header.
    pub fn hedge_non_idempotent(&self) -> bool {
        self.hedge_non_idempotent
    }

    /// gRPC: the `grpc-status` codes after which the next hedge is sent at
    /// once (`hedgingPolicy.nonFatalStatusCodes`).
    pub fn non_fatal_status_codes(&self) -> &[u32] {
        &self.non_fatal_status_codes
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_hedges", self.max_hedges, 0, 10)?;
        self.delay
            .validate()
            .map_err(|error| error.within("delay"))?;
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|error| error.within("budget"))?;
        }
        if let Some(throttle) = &self.throttle {
            if self.budget.is_some() {
                return Err(ConfigError::new(
                    "throttle",
                    "cannot be set with `budget`: a hedge draws from one budget",
                ));
            }
            throttle
                .validate()
                .map_err(|error| error.within("throttle"))?;
        }
        check_range("body_limit", self.body_limit, 0, MAX_BODY_LIMIT)?;
        for (i, &code) in self.non_fatal_status_codes.iter().enumerate() {
            check_range("non_fatal_status_codes", code, 1, 16).map_err(|error| {
                ConfigError::new(format!("non_fatal_status_codes[{i}]"), error.message())
            })?;
        }
        Ok(())
    }
}

impl HedgeConfigBuilder {
    /// Extra attempts per call at most, in [0, 10] (default 1).
    pub fn max_hedges(mut self, max_hedges: u32) -> Self {
        self.config.max_hedges = max_hedges;
        self
    }

    /// The delay before each hedge (default: the 95th percentile).
    pub fn delay(mut self, delay: DelayConfig) -> Self {
        self.config.delay = delay;
        self
    }

    /// Draw hedges from a windowed budget made for the layer (default none).
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// Draw hedges from a throttling budget made for the layer (default none).
    pub fn throttle(mut self, throttle: ThrottleConfig) -> Self {
        self.config.throttle = Some(throttle);
        self
    }

    /// HTTP: buffer at most `bytes` of a request body (default 64 KiB).
    pub fn body_limit(mut self, bytes: u64) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// HTTP: hedge non-idempotent requests too (default false).
    pub fn hedge_non_idempotent(mut self, hedge: bool) -> Self {
        self.config.hedge_non_idempotent = hedge;
        self
    }

    /// gRPC: codes after which the next hedge is sent at once (default none).
    pub fn non_fatal_status_codes(mut self, codes: impl IntoIterator<Item = u32>) -> Self {
        self.config.non_fatal_status_codes = codes.into_iter().collect();
        self
    }

    /// The configuration, validated.
    pub fn build(self) -> Result<HedgeConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn errors_name_the_field() {
        let error = |builder: HedgeConfigBuilder| builder.build().unwrap_err().to_string();
        assert_eq!(
            error(HedgeConfig::builder().max_hedges(11)),
            "max_hedges: must be in [0, 10], got 11"
        );
        assert_eq!(
            error(HedgeConfig::builder().delay(DelayConfig::fixed(Duration::from_secs(61)))),
            "delay.delay: must be at most 1m, got 1m1s"
        );
        assert_eq!(
            error(HedgeConfig::builder().delay(DelayConfig::percentile(
                0.9,
                0,
                Duration::from_millis(5)
            ))),
            "delay.min_data_points: must be in [1, 1000000], got 0"
        );
        assert_eq!(
            error(
                HedgeConfig::builder()
                    .budget(BudgetConfig::default())
                    .throttle(ThrottleConfig::new(10, 0.1))
            ),
            "throttle: cannot be set with `budget`: a hedge draws from one budget"
        );
        assert_eq!(
            error(HedgeConfig::builder().throttle(ThrottleConfig::new(0, 0.1))),
            "throttle.max_tokens: must be in [1, 1000], got 0"
        );
        assert_eq!(
            error(HedgeConfig::builder().non_fatal_status_codes([14, 17])),
            "non_fatal_status_codes[1]: must be in [1, 16], got 17"
        );
        HedgeConfig::default().validate().unwrap();
    }

    #[test]
    fn serde_round_trip() {
        let config = HedgeConfig::builder()
            .max_hedges(2)
            .delay(DelayConfig::fixed(Duration::from_millis(20)))
            .throttle(ThrottleConfig::new(10, 0.1))
            .non_fatal_status_codes([14])
            .build()
            .unwrap();
        let text = serde_json::to_string(&config).unwrap();
        let back: HedgeConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config);
        let unknown = toml::from_str::<HedgeConfig>("max_hedge = 1").unwrap_err();
        assert!(unknown.to_string().contains("max_hedge"), "{unknown}");
    }
}
