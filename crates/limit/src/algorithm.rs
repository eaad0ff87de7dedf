//! The limit algorithms: each a small state machine that takes one sample
//! per window (the window's mean latency, its most calls in flight, whether
//! any call was dropped) and gives the new limit.
//!
//! The update rules and defaults are those of Netflix's
//! `concurrency-limits` library (`AIMDLimit`, `Gradient2Limit`,
//! `VegasLimit`); the crate docs state each rule.

use std::fmt;
use std::time::Duration;

use portcullis_core::config::check_range;
use portcullis_core::rng::SplitMix64;
use portcullis_core::{ConfigError, duration};
use serde::{Deserialize, Serialize};

/// Which algorithm moves the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmKind {
    /// Additive increase, multiplicative decrease on drops ([`AimdConfig`]).
    Aimd,
    /// The gradient of a long-term and a short-term latency
    /// ([`Gradient2Config`]).
    #[default]
    Gradient2,
    /// TCP Vegas' queue estimate against the no-load latency
    /// ([`VegasConfig`]).
    Vegas,
}

/// AIMD: loss-based. Defaults are Netflix's `AIMDLimit`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AimdConfig {
    /// The limit to start from (20).
    pub initial_limit: u32,
    /// The limit never goes below this (20).
    pub min_limit: u32,
    /// The limit never goes above this (200).
    pub max_limit: u32,
    /// On a drop the limit is multiplied by this, in [0.5, 1) (0.9).
    pub backoff_ratio: f64,
    /// A window whose mean latency is above this counts as a drop (5 s).
    #[serde(with = "duration::serde")]
    pub timeout: Duration,
}

/// Gradient2: latency-based, comparing a long-term exponential average of
/// the latency with the latest. Defaults are Netflix's `Gradient2Limit`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gradient2Config {
    /// The limit to start from (20).
    pub initial_limit: u32,
    /// The limit never goes below this (20).
    pub min_limit: u32,
    /// The limit never goes above this (200).
    pub max_limit: u32,
    /// How much of each new estimate is taken, in (0, 1] (0.2).
    pub smoothing: f64,
    /// How much the latency may grow over the long-term average before the
    /// limit shrinks, at least 1 (1.5).
    pub rtt_tolerance: f64,
    /// The long-term average's window, in samples (600).
    pub long_window: u32,
    /// How much the limit may grow per window while latency stays low (4).
    pub queue_size: u32,
}

/// Vegas: latency-based, estimating the queue from the no-load latency.
/// Defaults are Netflix's `VegasLimit`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VegasConfig {
    /// The limit to start from (20).
    pub initial_limit: u32,
    /// The limit never goes below this (1).
    pub min_limit: u32,
    /// The limit never goes above this (1000).
    pub max_limit: u32,
    /// How much of each new estimate is taken, in (0, 1] (1.0).
    pub smoothing: f64,
    /// The no-load latency is measured again after about this many times
    /// the limit in samples (30), with a jitter of [0.5, 1).
    pub probe_multiplier: u32,
}

/// One window's worth of calls, as the algorithms see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    /// The mean latency of the window's calls that were not dropped, in
    /// nanoseconds (0 when every call was dropped).
    pub(crate) rtt: u64,
    /// The most calls in flight when one of the window's calls was admitted.
    pub(crate) inflight: u64,
    /// Whether any of the window's calls was dropped (failed).
    pub(crate) dropped: bool,
}

/// The state of an algorithm.
pub(crate) enum Estimator {
    Aimd {
        config: AimdConfig,
        limit: u32,
    },
    Gradient2 {
        config: Gradient2Config,
        estimate: f64,
        long_rtt: ExpAverage,
        last_rtt: u64,
    },
    Vegas {
        config: VegasConfig,
        estimate: f64,
        rtt_noload: u64,
        probe_count: u64,
        probe_jitter: f64,
        rng: SplitMix64,
    },
}

/// An exponential moving average over `window` samples after a plain mean
/// of the first `warmup` (Netflix's `ExpAvgMeasurement`).
#[derive(Clone, Debug)]
pub(crate) struct ExpAverage {
    value: f64,
    sum: f64,
    count: u32,
    window: u32,
    warmup: u32,
}

impl Default for AimdConfig {
    fn default() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Default for Gradient2Config {
    fn default() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            long_window: 600,
            queue_size: 4,
        }
    }
}

impl Default for VegasConfig {
    fn default() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
        }
    }
}

/// The largest limit any algorithm may be given.
const MAX_LIMIT: u32 = 1_000_000;

fn check_limits(initial: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    check_range("min_limit", min, 1, MAX_LIMIT)?;
    check_range("max_limit", max, min, MAX_LIMIT).map_err(|e| {
        ConfigError::new("max_limit", format!("{} (at least min_limit)", e.message()))
    })?;
    check_range("initial_limit", initial, min, max).map_err(|e| {
        ConfigError::new(
            "initial_limit",
            format!("{} (between min_limit and max_limit)", e.message()),
        )
    })
}

fn check_fraction(field: &'static str, value: f64, low_open: bool) -> Result<(), ConfigError> {
    let ok = if low_open {
        value > 0.0 && value <= 1.0
    } else {
        (0.5..1.0).contains(&value)
    };
    if ok {
        Ok(())
    } else {
        let range = if low_open { "(0, 1]" } else { "[0.5, 1)" };
        Err(ConfigError::new(
            field,
            format!("must be in {range}, got {value}"),
        ))
    }
}

impl AimdConfig {
    /// Checks every field; the error names it and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.initial_limit, self.min_limit, self.max_limit)?;
        check_fraction("backoff_ratio", self.backoff_ratio, false)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be above 0s"));
        }
        Ok(())
    }
}

impl Gradient2Config {
    /// Checks every field; the error names it and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.initial_limit, self.min_limit, self.max_limit)?;
        check_fraction("smoothing", self.smoothing, true)?;
        if !(1.0..=100.0).contains(&self.rtt_tolerance) {
            return Err(ConfigError::new(
                "rtt_tolerance",
                format!("must be in [1, 100], got {}", self.rtt_tolerance),
            ));
        }
        check_range("long_window", self.long_window, 1, 1_000_000)?;
        check_range("queue_size", self.queue_size, 0, MAX_LIMIT)
    }
}

impl VegasConfig {
    /// Checks every field; the error names it and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.initial_limit, self.min_limit, self.max_limit)?;
        check_fraction("smoothing", self.smoothing, true)?;
        check_range("probe_multiplier", self.probe_multiplier, 1, 1_000_000)
    }
}

/// `max(1, floor(log10(n)))`: the scale of Vegas' thresholds (Netflix's
/// `Log10RootFunction`).
pub(crate) fn log10_root(n: u32) -> u32 {
    n.checked_ilog10().unwrap_or(0).max(1)
}

impl Estimator {
    pub(crate) fn aimd(config: AimdConfig) -> Self {
        Self::Aimd {
            limit: config.initial_limit,
            config,
        }
    }

    pub(crate) fn gradient2(config: Gradient2Config) -> Self {
        Self::Gradient2 {
            estimate: f64::from(config.initial_limit),
            long_rtt: ExpAverage::new(config.long_window, 10),
            last_rtt: 0,
            config,
        }
    }

    pub(crate) fn vegas(config: VegasConfig, seed: u64) -> Self {
        let rng = SplitMix64::new(seed);
        Self::Vegas {
            estimate: f64::from(config.initial_limit),
            rtt_noload: 0,
            probe_count: 0,
            probe_jitter: jitter(&rng),
            rng,
            config,
        }
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> u32 {
        match self {
            Self::Aimd { limit, .. } => *limit,
            // `estimate` stays within [min_limit, max_limit], both `u32`.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Self::Gradient2 { estimate, .. } | Self::Vegas { estimate, .. } => *estimate as u32,
        }
    }

    /// The smallest latency the algorithm knows of, in nanoseconds: Vegas'
    /// no-load latency, Gradient2's long-term average (0 for AIMD or before
    /// the first sample).
    pub(crate) fn base_rtt(&self) -> u64 {
        match self {
            Self::Aimd { .. } => 0,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Self::Gradient2 { long_rtt, .. } => long_rtt.value as u64,
            Self::Vegas { rtt_noload, .. } => *rtt_noload,
        }
    }

    /// Takes one window's sample and returns the new limit.
    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        match self {
            Self::Aimd { config, limit } => {
                let dropped = sample.dropped || sample.rtt > nanos(config.timeout);
                let mut next = *limit;
                if dropped {
                    // `as` truncates toward zero, as Java's `(int)` does.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    {
                        next = (f64::from(*limit) * config.backoff_ratio) as u32;
                    }
                } else if sample.inflight * 2 >= u64::from(*limit) {
                    next = limit.saturating_add(1);
                }
                *limit = next.clamp(config.min_limit, config.max_limit);
            }
            Self::Gradient2 {
                config,
                estimate,
                long_rtt,
                last_rtt,
            } => {
                if sample.rtt == 0 {
                    // Every call of the window failed: no latency to learn from.
                    return self.limit();
                }
                *last_rtt = sample.rtt;
                let short = sample.rtt as f64;
                let long = long_rtt.add(short);
                // After a long overload the average lags far above the
                // latency: pull it down faster than the average would.
                if long / short > 2.0 {
                    long_rtt.value *= 0.95;
                }
                // Application-limited: too few calls to judge the limit by.
                if (sample.inflight as f64) < *estimate / 2.0 {
                    return self.limit();
                }
                let gradient = (config.rtt_tolerance * long / short).clamp(0.5, 1.0);
                let target = *estimate * gradient + f64::from(config.queue_size);
                let smoothed = *estimate * (1.0 - config.smoothing) + target * config.smoothing;
                *estimate =
                    smoothed.clamp(f64::from(config.min_limit), f64::from(config.max_limit));
            }
            Self::Vegas {
                config,
                estimate,
                rtt_noload,
                probe_count,
                probe_jitter,
                rng,
            } => {
                if sample.rtt == 0 && !sample.dropped {
                    return self.limit();
                }
                *probe_count += 1;
                let probe_at = *probe_jitter * f64::from(config.probe_multiplier) * *estimate;
                if sample.rtt > 0 && probe_at <= *probe_count as f64 {
                    // Measure the no-load latency again: it may have grown
                    // for good (a slower dependency, a bigger payload).
                    *probe_jitter = jitter(rng);
                    *probe_count = 0;
                    *rtt_noload = sample.rtt;
                    return self.limit();
                }
                if sample.rtt > 0 && (*rtt_noload == 0 || sample.rtt < *rtt_noload) {
                    *rtt_noload = sample.rtt;
                    return self.limit();
                }
                let current = {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let current = *estimate as u32;
                    current
                };
                let log = f64::from(log10_root(current));
                let target = if sample.dropped {
                    *estimate - log
                } else if (sample.inflight as f64) * 2.0 < *estimate {
                    // Application-limited: no upward drift.
                    return self.limit();
                } else {
                    let queue = (*estimate * (1.0 - *rtt_noload as f64 / sample.rtt as f64)).ceil();
                    let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
                    if queue <= threshold {
                        *estimate + beta
                    } else if queue < alpha {
                        *estimate + log
                    } else if queue > beta {
                        *estimate - log
                    } else {
                        return self.limit();
                    }
                };
                let target = target.clamp(f64::from(config.min_limit), f64::from(config.max_limit));
                *estimate = (1.0 - config.smoothing) * *estimate + config.smoothing * target;
            }
        }
        self.limit()
    }
}

fn jitter(rng: &SplitMix64) -> f64 {
    0.5 + rng.next_f64() * 0.5
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl ExpAverage {
    fn new(window: u32, warmup: u32) -> Self {
        Self {
            value: 0.0,
            sum: 0.0,
            count: 0,
            window,
            warmup,
        }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(self.window) + 1.0);
            self.value = self.value * (1.0 - factor) + sample * factor;
        }
        self.value
    }
}

impl fmt::Debug for Estimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Aimd { .. } => "Aimd",
            Self::Gradient2 { .. } => "Gradient2",
            Self::Vegas { .. } => "Vegas",
        };
        f.debug_struct(name)
            .field("limit", &self.limit())
            .field("base_rtt", &Duration::from_nanos(self.base_rtt()))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn sample(rtt_ms: u64, inflight: u64, dropped: bool) -> Sample {
        Sample {
            rtt: rtt_ms * MS,
            inflight,
            dropped,
        }
    }

    fn run(estimator: &mut Estimator, samples: &[Sample]) -> Vec<u32> {
        samples.iter().map(|s| estimator.update(*s)).collect()
    }

    #[test]
    fn log10_root_is_at_least_one() {
        assert_eq!(
            [0, 1, 9, 10, 99, 100, 999, 1000].map(log10_root),
            [1, 1, 1, 1, 1, 2, 2, 3]
        );
    }

    #[test]
    fn aimd_adds_one_when_busy_and_backs_off_on_a_drop() {
        let config = AimdConfig {
            min_limit: 5,
            max_limit: 30,
            timeout: Duration::from_millis(100),
            ..AimdConfig::default()
        };
        let mut aimd = Estimator::aimd(config);
        let limits = run(
            &mut aimd,
            &[
                // 10·2 >= 20: busy enough, +1 → 21.
                sample(10, 10, false),
                // 10·2 < 21: application-limited, stays 21.
                sample(10, 10, false),
                // 11·2 >= 21 → 22.
                sample(10, 11, false),
                // A drop: floor(22·0.9) = floor(19.8) = 19.
                sample(10, 22, true),
                // A mean over the 100 ms timeout counts as a drop: floor(19·0.9) = 17.
                sample(150, 5, false),
                // floor(17·0.9)=15, floor(15·0.9)=13, floor(13·0.9)=11,
                // floor(11·0.9)=9, floor(9·0.9)=8, floor(8·0.9)=7,
                // floor(7·0.9)=6, floor(6·0.9)=5, then the floor 5 holds.
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
                sample(1, 1, true),
            ],
        );
        assert_eq!(limits, [21, 21, 22, 19, 17, 15, 13, 11, 9, 8, 7, 6, 5, 5]);
        // Growth stops at the maximum.
        for _ in 0..100 {
            aimd.update(sample(1, 1000, false));
        }
        assert_eq!(aimd.limit(), 30);
    }

    #[test]
    fn gradient2_follows_netflix_update_rule() {
        let mut gradient = Estimator::gradient2(Gradient2Config {
            min_limit: 10,
            ..Gradient2Config::default()
        });
        // 1. rtt 10 ms, inflight 20. long = mean(10) = 10; gradient =
        //    clamp(1.5·10/10, 0.5, 1) = 1; target = 20·1 + 4 = 24;
        //    smoothed = 20·0.8 + 24·0.2 = 20.8 → limit 20.
        // 2. rtt 10 ms, inflight 20: long 10; target = 20.8 + 4 = 24.8;
        //    20.8·0.8 + 24.8·0.2 = 21.6 → 21.
        // 3. rtt 30 ms, inflight 21: long = mean(10,10,30) = 16.667;
        //    gradient = 1.5·16.667/30 = 0.8333; target = 21.6·0.8333 + 4
        //    = 22.0; smoothed = 21.6·0.8 + 22.0·0.2 = 21.68 → 21.
        // 4. rtt 60 ms, inflight 21: long = mean(10,10,30,60) = 27.5;
        //    gradient = 1.5·27.5/60 = 0.6875; target = 21.68·0.6875 + 4 =
        //    18.905; smoothed = 21.68·0.8 + 18.905·0.2 = 21.125 → 21.
        // 5. rtt 10 ms, inflight 5 (< 21.125/2): application-limited; the
        //    long average (120/5 = 24) is over twice the short (10), so it
        //    drops to 24·0.95 = 22.8; the limit holds at 21.
        let limits = run(
            &mut gradient,
            &[
                sample(10, 20, false),
                sample(10, 20, false),
                sample(30, 21, false),
                sample(60, 21, false),
                sample(10, 5, false),
            ],
        );
        assert_eq!(limits, [20, 21, 21, 21, 21]);
        let Estimator::Gradient2 {
            estimate, long_rtt, ..
        } = &gradient
        else {
            unreachable!()
        };
        assert!((estimate - 21.125).abs() < 1e-3, "{estimate}");
        assert!(
            (long_rtt.value - 22.8 * MS as f64).abs() < 1.0,
            "{}",
            long_rtt.value
        );
    }

    #[test]
    fn gradient2_halves_at_most_and_keeps_its_floor() {
        let mut gradient = Estimator::gradient2(Gradient2Config {
            initial_limit: 100,
            min_limit: 20,
            smoothing: 1.0,
            queue_size: 0,
            ..Gradient2Config::default()
        });
        // long = 1 ms after one sample; then a latency of 100 ms: gradient
        // 1.5·mean(1,100)/100 = 0.7575 → 100·0.7575 = 75.75 → 75.
        let limits = run(
            &mut gradient,
            &[sample(1, 100, false), sample(100, 100, false)],
        );
        assert_eq!(limits, [100, 75]);
        // long = mean(1,100,1000) = 367; 1.5·367/1000 = 0.55 → 75.75·0.5505 = 41.7.
        // Then long = mean(1,100,1000,10000) = 2775.25, gradient clamps to 0.5:
        // 41.7·0.5 = 20.85 → 20; then the floor holds.
        let limits = run(
            &mut gradient,
            &[
                sample(1000, 100, false),
                sample(10000, 100, false),
                sample(100000, 100, false),
            ],
        );
        assert_eq!(limits, [41, 20, 20]);
    }

    #[test]
    fn gradient2_long_average_is_exponential_after_ten_samples() {
        let mut average = ExpAverage::new(600, 10);
        for _ in 0..10 {
            average.add(10.0);
        }
        // factor 2/601: 10·(1 − 2/601) + 611·2/601 = 12.0.
        assert!((average.add(611.0) - 12.0).abs() < 1e-9);
    }

    #[test]
    fn vegas_follows_netflix_update_rule() {
        let mut vegas = Estimator::vegas(
            VegasConfig {
                probe_multiplier: 1_000_000, // no probe in this test
                ..VegasConfig::default()
            },
            7,
        );
        // limit 20: log10_root(20) = 1, alpha 3, beta 6, threshold 1.
        // 1. rtt 10 ms: the first latency is the no-load latency; 20.
        // 2. rtt 10 ms, inflight 10: queue = ceil(20·(1 − 10/10)) = 0 <=
        //    threshold 1: aggressive increase by beta: 20 + 6 = 26.
        // 3. rtt 12 ms, inflight 13: queue = ceil(26·(1 − 10/12)) =
        //    ceil(4.33) = 5, in [alpha 3, beta 6]: the sweet spot, 26.
        // 4. rtt 11 ms, inflight 13: queue = ceil(26·(1/11)) = ceil(2.36)
        //    = 3: not below alpha (3), not above beta: 26.
        // 5. rtt 10.5 ms: queue = ceil(26·0.5/10.5) = ceil(1.24) = 2 <
        //    alpha: increase by log10 → 27.
        // 6. rtt 20 ms: queue = ceil(27·0.5) = 14 > beta: 27 − 1 = 26.
        // 7. a drop: 26 − 1 = 25.
        // 8. inflight 12 (·2 < 25): application-limited, 25.
        // 9. rtt 5 ms: a new no-load latency; 25.
        let limits = run(
            &mut vegas,
            &[
                sample(10, 20, false),
                sample(10, 10, false),
                sample(12, 13, false),
                sample(11, 13, false),
                Sample {
                    rtt: 10_500_000,
                    inflight: 14,
                    dropped: false,
                },
                sample(20, 14, false),
                sample(20, 14, true),
                sample(20, 12, false),
                sample(5, 25, false),
            ],
        );
        assert_eq!(limits, [20, 26, 26, 26, 27, 26, 25, 25, 25]);
        assert_eq!(vegas.base_rtt(), 5 * MS);
    }

    #[test]
    fn vegas_scales_with_log10_above_100() {
        let mut vegas = Estimator::vegas(
            VegasConfig {
                initial_limit: 200,
                smoothing: 0.5,
                probe_multiplier: 1_000_000,
                ..VegasConfig::default()
            },
            7,
        );
        // log10_root(200) = 2: alpha 6, beta 12, threshold 2.
        // No queue: 200 + beta 12 = 212, smoothed 0.5·200 + 0.5·212 = 206.
        // rtt 20 vs 10: queue = ceil(206·0.5) = 103 > 12: 206 − 2 = 204,
        // smoothed 205.
        let limits = run(
            &mut vegas,
            &[
                sample(10, 200, false),
                sample(10, 200, false),
                sample(20, 200, false),
            ],
        );
        assert_eq!(limits, [200, 206, 205]);
    }

    #[test]
    fn vegas_probes_the_no_load_latency_again() {
        let mut vegas = Estimator::vegas(
            VegasConfig {
                initial_limit: 10,
                probe_multiplier: 2,
                ..VegasConfig::default()
            },
            7,
        );
        vegas.update(sample(10, 10, false));
        assert_eq!(vegas.base_rtt(), 10 * MS);
        // The probe comes after jitter·2·limit samples, jitter in [0.5, 1):
        // between 10 and 20 samples (the limit moves, so allow up to 60).
        let mut samples = 1;
        while vegas.base_rtt() == 10 * MS {
            vegas.update(sample(30, 1, false));
            samples += 1;
            assert!(samples <= 60, "no probe after {samples} samples");
        }
        assert_eq!(vegas.base_rtt(), 30 * MS, "reset to the latency it saw");
        assert!(samples >= 10, "probed after only {samples} samples");
    }

    #[test]
    fn configs_name_their_fields() {
        let error = AimdConfig {
            backoff_ratio: 1.0,
            ..AimdConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "backoff_ratio: must be in [0.5, 1), got 1"
        );
        let error = Gradient2Config {
            initial_limit: 5,
            ..Gradient2Config::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "initial_limit: must be in [20, 200], got 5 (between min_limit and max_limit)"
        );
        let error = VegasConfig {
            smoothing: 0.0,
            ..VegasConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(error.to_string(), "smoothing: must be in (0, 1], got 0");
        AimdConfig::default().validate().unwrap();
        Gradient2Config::default().validate().unwrap();
        VegasConfig::default().validate().unwrap();
    }
}
