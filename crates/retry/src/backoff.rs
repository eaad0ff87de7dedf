//! Backoff: how long to wait before each retry, before jitter.
//!
//! Each schedule is a small type behind the [`Backoff`] trait, usable on its
//! own: ask it for the delay before the n-th retry, or iterate its delays.
//!
//! ```
//! use portcullis_retry::{Backoff, ExponentialBackoff};
//! use std::time::Duration;
//!
//! let backoff = ExponentialBackoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));
//! let delays: Vec<Duration> = backoff.delays().take(6).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis));
//! ```

use std::time::Duration;

use portcullis_core::backoff::Exponential;
use serde::{Deserialize, Serialize};

/// A schedule of delays: the delay before the first retry, the second, ...
pub trait Backoff {
    /// The delay before retry number `retry` (1 for the first retry, made
    /// after the first attempt failed; 0 is read as 1).
    fn delay(&self, retry: u32) -> Duration;

    /// The longest delay the schedule gives: jitter never goes past it.
    fn max_delay(&self) -> Duration;

    /// The delays before the first, second, ... retry, without end (take
    /// as many as you need).
    fn delays(&self) -> Delays<'_, Self>
    where
        Self: Sized,
    {
        Delays {
            backoff: self,
            retry: 0,
        }
    }
}

/// The same delay before every retry.
///
/// As serde data: `{ type = "constant", delay = "200ms" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantBackoff {
    #[serde(with = "portcullis_core::duration::serde")]
    delay: Duration,
}

/// A delay that grows by a fixed step per retry, up to a cap:
/// `base + step × (n − 1)`.
///
/// As serde data: `{ type = "linear", base = "100ms", step = "100ms", max = "2s" }`
/// (`step` defaults to `base`, `max` to ten times `base`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearBackoff {
    #[serde(with = "portcullis_core::duration::serde")]
    base: Duration,
    #[serde(default, with = "portcullis_core::duration::serde::option")]
    step: Option<Duration>,
    #[serde(default, with = "portcullis_core::duration::serde::option")]
    max: Option<Duration>,
}

/// A delay that grows by a factor per retry, up to a cap:
/// `base × multiplier^(n − 1)`.
///
/// As serde data: `{ type = "exponential", base = "100ms", multiplier = 2.0, max = "5s" }`
/// (`multiplier` defaults to 2, `max` to a hundred times `base`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialBackoff {
    #[serde(with = "portcullis_core::duration::serde")]
    base: Duration,
    #[serde(default = "default_multiplier")]
    multiplier: f64,
    #[serde(default, with = "portcullis_core::duration::serde::option")]
    max: Option<Duration>,
}

/// One of the backoff schedules, as configuration data (tagged by `type`).
///
/// ```
/// use portcullis_retry::{Backoff, BackoffConfig};
/// use std::time::Duration;
///
/// let backoff: BackoffConfig = toml::from_str(
///     r#"type = "exponential"
///        base = "100ms"
///        multiplier = 3.0
///        max = "1s""#,
/// ).unwrap();
/// assert_eq!(backoff.delay(3), Duration::from_millis(900));
/// assert_eq!(backoff.delay(4), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackoffConfig {
    /// [`ConstantBackoff`].
    Constant(ConstantBackoff),
    /// [`LinearBackoff`].
    Linear(LinearBackoff),
    /// [`ExponentialBackoff`].
    Exponential(ExponentialBackoff),
}

/// The delays of a [`Backoff`], from the first retry on; see
/// [`Backoff::delays`].
#[derive(Clone, Debug)]
pub struct Delays<'a, B> {
    backoff: &'a B,
    retry: u32,
}

/// The longest delay any schedule may be configured with: one day.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

fn default_multiplier() -> f64 {
    2.0
}

impl ConstantBackoff {
    /// `delay` before every retry.
    pub const fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl LinearBackoff {
    /// `base`, then `base + step`, `base + 2 × step`, ..., at most `max`.
    pub const fn new(base: Duration, step: Duration, max: Duration) -> Self {
        Self {
            base,
            step: Some(step),
            max: Some(max),
        }
    }

    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth per retry (default: the base).
    pub fn step(&self) -> Duration {
        self.step.unwrap_or(self.base)
    }
}

impl ExponentialBackoff {
    /// `base`, then `base × multiplier`, `base × multiplier²`, ..., at most
    /// `max`.
    pub const fn new(base: Duration, multiplier: f64, max: Duration) -> Self {
        Self {
            base,
            multiplier,
            max: Some(max),
        }
    }

    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor per retry.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }
}

impl Backoff for ConstantBackoff {
    fn delay(&self, _retry: u32) -> Duration {
        self.delay
    }

    fn max_delay(&self) -> Duration {
        self.delay
    }
}

impl Backoff for LinearBackoff {
    fn delay(&self, retry: u32) -> Duration {
        let steps = retry.max(1) - 1;
        self.base
            .saturating_add(self.step().saturating_mul(steps))
            .min(self.max_delay())
    }

    fn max_delay(&self) -> Duration {
        self.max
            .unwrap_or_else(|| self.base.saturating_mul(10).min(MAX_DELAY))
            .max(self.base)
    }
}

impl Backoff for ExponentialBackoff {
    fn delay(&self, retry: u32) -> Duration {
        Exponential::new(self.base, self.multiplier, self.max_delay()).delay(retry.max(1) - 1)
    }

    fn max_delay(&self) -> Duration {
        self.max
            .unwrap_or_else(|| self.base.saturating_mul(100).min(MAX_DELAY))
            .max(self.base)
    }
}

impl Default for BackoffConfig {
    /// Exponential from 100 ms, doubling, at most 5 s.
    fn default() -> Self {
        Self::Exponential(ExponentialBackoff::new(
            Duration::from_millis(100),
            2.0,
            Duration::from_secs(5),
        ))
    }
}

impl Backoff for BackoffConfig {
    fn delay(&self, retry: u32) -> Duration {
        match self {
            Self::Constant(backoff) => backoff.delay(retry),
            Self::Linear(backoff) => backoff.delay(retry),
            Self::Exponential(backoff) => backoff.delay(retry),
        }
    }

    fn max_delay(&self) -> Duration {
        match self {
            Self::Constant(backoff) => backoff.max_delay(),
            Self::Linear(backoff) => backoff.max_delay(),
            Self::Exponential(backoff) => backoff.max_delay(),
        }
    }
}

impl From<ConstantBackoff> for BackoffConfig {
    fn from(backoff: ConstantBackoff) -> Self {
        Self::Constant(backoff)
    }
}

impl From<LinearBackoff> for BackoffConfig {
    fn from(backoff: LinearBackoff) -> Self {
        Self::Linear(backoff)
    }
}

impl From<ExponentialBackoff> for BackoffConfig {
    fn from(backoff: ExponentialBackoff) -> Self {
        Self::Exponential(backoff)
    }
}

impl BackoffConfig {
    /// Checks the schedule; errors name the field under `backoff.`.
    pub(crate) fn validate(&self) -> Result<(), portcullis_core::ConfigError> {
        use crate::config::{at_most, in_range_f64};
        match self {
            Self::Constant(backoff) => at_most("backoff.delay", backoff.delay, MAX_DELAY),
            Self::Linear(backoff) => {
                at_most("backoff.base", backoff.base, MAX_DELAY)?;
                at_most("backoff.step", backoff.step(), MAX_DELAY)?;
                if let Some(max) = backoff.max {
                    at_most("backoff.max", max, MAX_DELAY)?;
                    not_below_base(max, backoff.base)?;
                }
                Ok(())
            }
            Self::Exponential(backoff) => {
                at_most("backoff.base", backoff.base, MAX_DELAY)?;
                if backoff.base.is_zero() {
                    return Err(portcullis_core::ConfigError::new(
                        "backoff.base",
                        "must be greater than zero for an exponential backoff",
                    ));
                }
                in_range_f64("backoff.multiplier", backoff.multiplier, 1.0, 100.0)?;
                if let Some(max) = backoff.max {
                    at_most("backoff.max", max, MAX_DELAY)?;
                    not_below_base(max, backoff.base)?;
                }
                Ok(())
            }
        }
    }
}

fn not_below_base(max: Duration, base: Duration) -> Result<(), portcullis_core::ConfigError> {
    use portcullis_core::duration::format;
    if max < base {
        return Err(portcullis_core::ConfigError::new(
            "backoff.max",
            format!(
                "must be at least backoff.base ({}), got {}",
                format(base),
                format(max)
            ),
        ));
    }
    Ok(())
}

impl<B: Backoff> Iterator for Delays<'_, B> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        Some(self.backoff.delay(self.retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn schedules() {
        let constant = ConstantBackoff::new(ms(250));
        assert_eq!(constant.delays().take(3).collect::<Vec<_>>(), [ms(250); 3]);
        let linear = LinearBackoff::new(ms(100), ms(50), ms(220));
        assert_eq!(
            linear.delays().take(5).collect::<Vec<_>>(),
            [ms(100), ms(150), ms(200), ms(220), ms(220)]
        );
        let exponential = ExponentialBackoff::new(ms(10), 3.0, ms(500));
        assert_eq!(
            exponential.delays().take(6).collect::<Vec<_>>(),
            [ms(10), ms(30), ms(90), ms(270), ms(500), ms(500)]
        );
        assert_eq!(exponential.delay(0), ms(10), "0 is read as the first retry");
        assert_eq!(exponential.delay(u32::MAX), ms(500), "no overflow");
    }

    #[test]
    fn defaults_of_optional_fields() {
        let linear: BackoffConfig =
            serde_json::from_str(r#"{"type":"linear","base":"100ms"}"#).unwrap();
        assert_eq!(linear.delay(3), ms(300));
        assert_eq!(linear.max_delay(), Duration::from_secs(1));
        let exponential: BackoffConfig =
            serde_json::from_str(r#"{"type":"exponential","base":"1s"}"#).unwrap();
        assert_eq!(exponential.delay(2), Duration::from_secs(2));
        assert_eq!(exponential.max_delay(), Duration::from_secs(100));
    }

    #[test]
    fn serde_is_tagged_with_human_durations_and_strict() {
        let backoff = BackoffConfig::from(ExponentialBackoff::new(ms(100), 2.0, ms(5000)));
        let json = serde_json::to_value(backoff).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "exponential", "base": "100ms", "multiplier": 2.0, "max": "5s"})
        );
        assert_eq!(
            serde_json::from_value::<BackoffConfig>(json).unwrap(),
            backoff
        );
        let error = serde_json::from_str::<BackoffConfig>(
            r#"{"type":"constant","delay":"1s","jitter":true}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `jitter`"),
            "{error}"
        );
        let error = serde_json::from_str::<BackoffConfig>(r#"{"type":"fibonacci"}"#).unwrap_err();
        assert!(error.to_string().contains("fibonacci"), "{error}");
    }

    #[test]
    fn validation_names_the_field() {
        let field = |backoff: BackoffConfig| backoff.validate().unwrap_err().field().to_owned();
        assert_eq!(
            field(ExponentialBackoff::new(ms(100), 0.5, ms(1000)).into()),
            "backoff.multiplier"
        );
        assert_eq!(
            field(ExponentialBackoff::new(Duration::ZERO, 2.0, ms(1000)).into()),
            "backoff.base"
        );
        assert_eq!(
            field(LinearBackoff::new(ms(100), ms(10), ms(50)).into()),
            "backoff.max"
        );
        assert_eq!(
            field(ConstantBackoff::new(Duration::from_secs(100_000)).into()),
            "backoff.delay"
        );
        BackoffConfig::default().validate().unwrap();
    }

    proptest! {
        #[test]
        fn exponential_delays_grow_and_stay_within_base_and_max(
            base in 1_u64..10_000,
            multiplier in 1.0_f64..10.0,
            extra in 0_u64..1_000_000,
            retry in 1_u32..200,
        ) {
            let backoff = ExponentialBackoff::new(ms(base), multiplier, ms(base + extra));
            let delay = backoff.delay(retry);
            prop_assert!(delay >= ms(base) && delay <= ms(base + extra), "{delay:?}");
            prop_assert!(backoff.delay(retry + 1) >= delay, "never shrinks");
            prop_assert_eq!(backoff.max_delay(), ms(base + extra));
        }

        #[test]
        fn linear_delays_grow_by_the_step_up_to_max(
            base in 0_u64..10_000,
            step in 0_u64..10_000,
            extra in 0_u64..1_000_000,
            retry in 1_u32..1_000,
        ) {
            let backoff = LinearBackoff::new(ms(base), ms(step), ms(base + extra));
            let delay = backoff.delay(retry);
            let expected = (base + step * u64::from(retry - 1)).min(base + extra);
            prop_assert_eq!(delay, ms(expected));
        }

        #[test]
        fn constant_is_constant(delay in 0_u64..100_000, retry in 0_u32..u32::MAX) {
            prop_assert_eq!(ConstantBackoff::new(ms(delay)).delay(retry), ms(delay));
        }
    }
}
