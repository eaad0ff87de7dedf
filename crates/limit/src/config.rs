//! The configuration of a limiter: serde data, a builder, and validation
//! that names the field and the allowed range.

use std::time::Duration;

use portcullis_core::config::check_range;
use portcullis_core::{ConfigError, duration};
use serde::{Deserialize, Serialize};

use crate::{AimdConfig, AlgorithmKind, Gradient2Config, VegasConfig};

/// The configuration of a [`Limiter`](crate::Limiter). Build it with
/// [`LimitConfig::builder`] or read it with serde (every field is
/// optional):
///
/// ```
/// use portcullis_limit::{AlgorithmKind, LimitConfig};
///
/// let config: LimitConfig = toml::from_str(r#"
///     algorithm = "vegas"
///     window = "100ms"
///     vegas = { max_limit = 500 }
///     partitions = [{ name = "live", share = 0.9 }, { name = "batch", share = 0.1 }]
///     queue = { max_queued = 50, max_wait = "20ms" }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.algorithm(), AlgorithmKind::Vegas);
/// assert_eq!(config.vegas().max_limit, 500);
///
/// let bad: LimitConfig = toml::from_str(r#"gradient2 = { smoothing = 2.0 }"#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().to_string(), "gradient2.smoothing: must be in (0, 1], got 2");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    algorithm: AlgorithmKind,
    aimd: AimdConfig,
    gradient2: Gradient2Config,
    vegas: VegasConfig,
    #[serde(with = "duration::serde")]
    window: Duration,
    min_samples: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    partitions: Vec<PartitionConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueConfig>,
}

/// A named partition and its guaranteed share of the limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// Its name, as a [`Limiter::partition`](crate::Limiter::partition)
    /// looks it up.
    pub name: String,
    /// Its fraction of the limit, in (0, 1]; the shares add up to at most 1.
    pub share: f64,
}

/// The bounded, newest-first wait for room under the limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// How many calls may wait at once; when full, the oldest is shed.
    pub max_queued: u32,
    /// How long a call may wait before it is shed.
    #[serde(with = "duration::serde")]
    pub max_wait: Duration,
}

/// Builds a [`LimitConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct LimitConfigBuilder {
    config: LimitConfig,
}

impl Default for LimitConfig {
    /// Gradient2 with Netflix's defaults, sampled over windows of at least
    /// one second and ten calls (Netflix's `WindowedLimit` defaults); no
    /// partitions; no queue.
    fn default() -> Self {
        Self {
            algorithm: AlgorithmKind::default(),
            aimd: AimdConfig::default(),
            gradient2: Gradient2Config::default(),
            vegas: VegasConfig::default(),
            window: Duration::from_secs(1),
            min_samples: 10,
            partitions: Vec::new(),
            queue: None,
        }
    }
}

impl LimitConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> LimitConfigBuilder {
        LimitConfigBuilder::default()
    }

    /// The algorithm that moves the limit.
    pub fn algorithm(&self) -> AlgorithmKind {
        self.algorithm
    }

    /// AIMD's parameters (used when `algorithm` is `aimd`).
    pub fn aimd(&self) -> &AimdConfig {
        &self.aimd
    }

    /// Gradient2's parameters (used when `algorithm` is `gradient2`).
    pub fn gradient2(&self) -> &Gradient2Config {
        &self.gradient2
    }

    /// Vegas' parameters (used when `algorithm` is `vegas`).
    pub fn vegas(&self) -> &VegasConfig {
        &self.vegas
    }

    /// The shortest sample window: the limit moves at most once per window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The fewest calls a window needs before the limit moves.
    pub fn min_samples(&self) -> u32 {
        self.min_samples
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> &[PartitionConfig] {
        &self.partitions
    }

    /// The wait for room, if any.
    pub fn queue(&self) -> Option<&QueueConfig> {
        self.queue.as_ref()
    }

    /// The configured algorithm's initial limit.
    pub(crate) fn initial_limit(&self) -> u32 {
        match self.algorithm {
            AlgorithmKind::Aimd => self.aimd.initial_limit,
            AlgorithmKind::Gradient2 => self.gradient2.initial_limit,
            AlgorithmKind::Vegas => self.vegas.initial_limit,
        }
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.aimd.validate().map_err(|e| e.within("aimd"))?;
        self.gradient2
            .validate()
            .map_err(|e| e.within("gradient2"))?;
        self.vegas.validate().map_err(|e| e.within("vegas"))?;
        if self.window > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "window",
                format!("must be at most 1m, got {}", duration::format(self.window)),
            ));
        }
        check_range("min_samples", self.min_samples, 1, 1_000_000)?;
        let mut total = 0.0;
        for (i, partition) in self.partitions.iter().enumerate() {
            if partition.name.is_empty() {
                return Err(ConfigError::new(
                    format!("partitions[{i}].name"),
                    "must not be empty",
                ));
            }
            if self.partitions[..i]
                .iter()
                .any(|p| p.name == partition.name)
            {
                return Err(ConfigError::new(
                    format!("partitions[{i}].name"),
                    format!("'{}' is named twice", partition.name),
                ));
            }
            if !(partition.share > 0.0 && partition.share <= 1.0) {
                return Err(ConfigError::new(
                    format!("partitions[{i}].share"),
                    format!("must be in (0, 1], got {}", partition.share),
                ));
            }
            total += partition.share;
        }
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "partitions",
                format!("the shares must add up to at most 1, got {total}"),
            ));
        }
        if let Some(queue) = &self.queue {
            check_range("queue.max_queued", queue.max_queued, 1, 100_000)?;
            if queue.max_wait.is_zero() || queue.max_wait > Duration::from_secs(60) {
                return Err(ConfigError::new(
                    "queue.max_wait",
                    format!(
                        "must be in (0s, 1m], got {}",
                        duration::format(queue.max_wait)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl LimitConfigBuilder {
    /// The algorithm (default Gradient2).
    pub fn algorithm(mut self, algorithm: AlgorithmKind) -> Self {
        self.config.algorithm = algorithm;
        self
    }

    /// AIMD, with `config`.
    pub fn aimd(mut self, config: AimdConfig) -> Self {
        self.config.algorithm = AlgorithmKind::Aimd;
        self.config.aimd = config;
        self
    }

    /// Gradient2, with `config`.
    pub fn gradient2(mut self, config: Gradient2Config) -> Self {
        self.config.algorithm = AlgorithmKind::Gradient2;
        self.config.gradient2 = config;
        self
    }

    /// Vegas, with `config`.
    pub fn vegas(mut self, config: VegasConfig) -> Self {
        self.config.algorithm = AlgorithmKind::Vegas;
        self.config.vegas = config;
        self
    }

    /// The shortest sample window, at most a minute (default 1 s; zero
    /// moves the limit after every `min_samples` calls).
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// The fewest calls per window, in [1, 1000000] (default 10).
    pub fn min_samples(mut self, min_samples: u32) -> Self {
        self.config.min_samples = min_samples;
        self
    }

    /// Adds a partition `name` guaranteed `share` of the limit.
    pub fn partition(mut self, name: impl Into<String>, share: f64) -> Self {
        self.config.partitions.push(PartitionConfig {
            name: name.into(),
            share,
        });
        self
    }

    /// Lets up to `max_queued` calls wait up to `max_wait` for room,
    /// newest first (default: no wait).
    pub fn queue(mut self, max_queued: u32, max_wait: Duration) -> Self {
        self.config.queue = Some(QueueConfig {
            max_queued,
            max_wait,
        });
        self
    }

    /// The configuration, validated.
    pub fn build(self) -> Result<LimitConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let error = |builder: LimitConfigBuilder| builder.build().unwrap_err().to_string();
        assert_eq!(
            error(LimitConfig::builder().aimd(AimdConfig {
                min_limit: 0,
                ..AimdConfig::default()
            })),
            "aimd.min_limit: must be in [1, 1000000], got 0"
        );
        assert_eq!(
            error(LimitConfig::builder().min_samples(0)),
            "min_samples: must be in [1, 1000000], got 0"
        );
        assert_eq!(
            error(
                LimitConfig::builder()
                    .partition("live", 0.9)
                    .partition("batch", 0.2)
            ),
            "partitions: the shares must add up to at most 1, got 1.1"
        );
        assert_eq!(
            error(
                LimitConfig::builder()
                    .partition("live", 0.5)
                    .partition("live", 0.5)
            ),
            "partitions[1].name: 'live' is named twice"
        );
        assert_eq!(
            error(LimitConfig::builder().partition("live", 0.0)),
            "partitions[0].share: must be in (0, 1], got 0"
        );
        assert_eq!(
            error(LimitConfig::builder().queue(0, Duration::from_millis(5))),
            "queue.max_queued: must be in [1, 100000], got 0"
        );
        assert_eq!(
            error(LimitConfig::builder().queue(5, Duration::ZERO)),
            "queue.max_wait: must be in (0s, 1m], got 0s"
        );
        LimitConfig::default().validate().unwrap();
    }

    #[test]
    fn toml_round_trip() {
        let config = LimitConfig::builder()
            .vegas(VegasConfig {
                max_limit: 300,
                ..VegasConfig::default()
            })
            .window(Duration::from_millis(250))
            .min_samples(5)
            .partition("live", 0.9)
            .partition("batch", 0.1)
            .queue(20, Duration::from_millis(50))
            .build()
            .unwrap();
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("algorithm = \"vegas\""), "{text}");
        let back: LimitConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        let unknown = toml::from_str::<LimitConfig>("algorithm = \"bbr\"").unwrap_err();
        assert!(unknown.to_string().contains("bbr"), "{unknown}");
        let unknown = toml::from_str::<LimitConfig>("windw = \"1s\"").unwrap_err();
        assert!(unknown.to_string().contains("windw"), "{unknown}");
    }
}
