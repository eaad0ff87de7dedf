//! Jitter: spreading the delays of a [`Backoff`] so that the clients that
//! failed together do not all retry at the same instant.
//!
//! Each kind is a small type behind the [`Jitter`] trait. A jitter turns the
//! backoff's delay for one retry (a [`Step`]) and one uniform random draw
//! into the delay to wait; it never goes past the backoff's
//! [`max_delay`](Backoff::max_delay).
//!
//! ```
//! use portcullis_retry::{Backoff, ExponentialBackoff, EqualJitter, Jitter, SplitMix64};
//! use std::time::Duration;
//!
//! let backoff = ExponentialBackoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(5));
//! let rng = SplitMix64::new(7);
//! for (retry, delay) in (1..).zip(EqualJitter.delays(&backoff, &rng).take(5)) {
//!     let nominal = backoff.delay(retry);
//!     assert!(delay >= nominal / 2 && delay <= nominal);
//! }
//! ```

use std::time::Duration;

use portcullis_core::backoff::JitterKind;
use serde::{Deserialize, Serialize};

use crate::{Backoff, Rng};

/// What a [`Jitter`] knows about the retry whose delay it spreads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The retry's number: 1 for the first retry.
    pub retry: u32,
    /// The backoff's delay for this retry.
    pub delay: Duration,
    /// The delay actually waited before the previous retry (zero before the
    /// first).
    pub previous: Duration,
    /// The backoff's first delay.
    pub base: Duration,
    /// The backoff's longest delay: the jittered delay never exceeds it.
    pub max: Duration,
}

/// Turns a backoff delay and a uniform random draw into the delay to wait.
pub trait Jitter {
    /// The delay to wait for `step`, given a uniform random `draw`.
    fn jitter(&self, step: Step, draw: u64) -> Duration;

    /// The jittered delays of `backoff`, drawing from `rng`, without end.
    fn delays<'a, B, R>(&'a self, backoff: &'a B, rng: &'a R) -> JitteredDelays<'a, B, Self, R>
    where
        Self: Sized,
        B: Backoff,
        R: Rng,
    {
        JitteredDelays {
            backoff,
            jitter: self,
            rng,
            retry: 0,
            previous: Duration::ZERO,
        }
    }
}

/// The backoff's delay as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoJitter;

/// Uniform in `[0, delay]` ("full jitter"): the most spread, and the fewest
/// collisions, but a retry may come at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullJitter;

/// Uniform in `[delay / 2, delay]` ("equal jitter"): spread, and never
/// sooner than half the backoff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EqualJitter;

/// "Decorrelated jitter": uniform in `[base, 3 × previous]`, at most the
/// backoff's max. Each delay grows from the one actually waited before, not
/// from the backoff's schedule; only the backoff's base and max are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecorrelatedJitter;

/// Uniform in `[delay × (1 − factor), delay × (1 + factor)]`, at most the
/// backoff's max.
///
/// As serde data: `{ type = "proportional", factor = 0.2 }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProportionalJitter {
    factor: f64,
}

/// One of the jitters, as configuration data (tagged by `type`):
/// `{ type = "none" }`, `"full"`, `"equal"`, `"decorrelated"`, or
/// `{ type = "proportional", factor = 0.2 }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JitterConfig {
    /// [`NoJitter`].
    None(NoJitter),
    /// [`FullJitter`].
    Full(FullJitter),
    /// [`EqualJitter`] (the default).
    Equal(EqualJitter),
    /// [`DecorrelatedJitter`].
    Decorrelated(DecorrelatedJitter),
    /// [`ProportionalJitter`].
    Proportional(ProportionalJitter),
}

/// The jittered delays of a backoff; see [`Jitter::delays`].
#[derive(Debug)]
pub struct JitteredDelays<'a, B, J, R> {
    backoff: &'a B,
    jitter: &'a J,
    rng: &'a R,
    retry: u32,
    previous: Duration,
}

impl Step {
    /// The step of retry `retry` of `backoff`, the previous retry having
    /// waited `previous`.
    pub fn of<B: Backoff + ?Sized>(backoff: &B, retry: u32, previous: Duration) -> Self {
        Self {
            retry,
            delay: backoff.delay(retry),
            previous,
            base: backoff.delay(1),
            max: backoff.max_delay(),
        }
    }

    /// A step from its parts (for a jitter used without a [`Backoff`]).
    pub const fn new(
        retry: u32,
        delay: Duration,
        previous: Duration,
        base: Duration,
        max: Duration,
    ) -> Self {
        Self {
            retry,
            delay,
            previous,
            base,
            max,
        }
    }

    /// The shared computation of `kind` for this step.
    fn apply(self, kind: JitterKind, draw: u64) -> Duration {
        kind.apply(self.delay, self.previous, self.base, self.max, draw)
    }
}

impl ProportionalJitter {
    /// `delay × (1 ± factor)`; `factor` in `[0, 1]` (checked when a retry
    /// configuration is built).
    pub const fn new(factor: f64) -> Self {
        Self { factor }
    }

    /// The factor.
    pub fn factor(&self) -> f64 {
        self.factor
    }
}

impl Jitter for NoJitter {
    fn jitter(&self, step: Step, draw: u64) -> Duration {
        step.apply(JitterKind::None, draw)
    }
}

impl Jitter for FullJitter {
    fn jitter(&self, step: Step, draw: u64) -> Duration {
        step.apply(JitterKind::Full, draw)
    }
}

impl Jitter for EqualJitter {
    fn jitter(&self, step: Step, draw: u64) -> Duration {
        step.apply(JitterKind::Equal, draw)
    }
}

impl Jitter for DecorrelatedJitter {
    fn jitter(&self, step: Step, draw: u64) -> Duration {
        step.apply(JitterKind::Decorrelated, draw)
    }
}

impl Jitter for ProportionalJitter {
    fn jitter(&self, step: Step, draw: u64) -> Duration {
        step.apply(JitterKind::Proportional(self.factor), draw)
    }
}

impl Jitter for JitterConfig {
    fn jitter(&self, step: Step, draw: u64) -> Duration {
        match self {
            Self::None(jitter) => jitter.jitter(step, draw),
            Self::Full(jitter) => jitter.jitter(step, draw),
            Self::Equal(jitter) => jitter.jitter(step, draw),
            Self::Decorrelated(jitter) => jitter.jitter(step, draw),
            Self::Proportional(jitter) => jitter.jitter(step, draw),
        }
    }
}

impl JitterConfig {
    /// Whether the jitter draws at all (`None` does not).
    pub(crate) fn draws(&self) -> bool {
        !matches!(self, Self::None(_))
    }

    pub(crate) fn validate(&self) -> Result<(), portcullis_core::ConfigError> {
        match self {
            Self::Proportional(jitter) => {
                crate::config::in_range_f64("jitter.factor", jitter.factor, 0.0, 1.0)
            }
            _ => Ok(()),
        }
    }
}

impl Default for JitterConfig {
    /// Equal jitter: spread, and never sooner than half the backoff.
    fn default() -> Self {
        Self::Equal(EqualJitter)
    }
}

macro_rules! from_jitter {
    ($($variant:ident($jitter:ty)),*) => {$(
        impl From<$jitter> for JitterConfig {
            fn from(jitter: $jitter) -> Self {
                Self::$variant(jitter)
            }
        }
    )*};
}

from_jitter!(
    None(NoJitter),
    Full(FullJitter),
    Equal(EqualJitter),
    Decorrelated(DecorrelatedJitter),
    Proportional(ProportionalJitter)
);

impl<B: Backoff, J: Jitter, R: Rng> Iterator for JitteredDelays<'_, B, J, R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let step = Step::of(self.backoff, self.retry, self.previous);
        let delay = self.jitter.jitter(step, self.rng.next_u64());
        self.previous = delay;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConstantBackoff, ExponentialBackoff, SplitMix64};
    use proptest::prelude::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn step(delay: u64, previous: u64, base: u64, max: u64) -> Step {
        Step::new(1, ms(delay), ms(previous), ms(base), ms(max))
    }

    #[test]
    fn draws_at_the_ends_reach_the_ends() {
        let s = step(1000, 0, 100, 5000);
        assert_eq!(FullJitter.jitter(s, 0), Duration::ZERO);
        assert_eq!(FullJitter.jitter(s, u64::MAX), ms(1000));
        assert_eq!(EqualJitter.jitter(s, 0), ms(500));
        assert_eq!(EqualJitter.jitter(s, u64::MAX), ms(1000));
        assert_eq!(ProportionalJitter::new(0.2).jitter(s, 0), ms(800));
        assert_eq!(ProportionalJitter::new(0.2).jitter(s, u64::MAX), ms(1200));
        assert_eq!(NoJitter.jitter(s, 12345), ms(1000));
        // Decorrelated: the first retry is in [base, 3 × base].
        assert_eq!(DecorrelatedJitter.jitter(s, 0), ms(100));
        assert_eq!(DecorrelatedJitter.jitter(s, u64::MAX), ms(300));
        assert_eq!(
            DecorrelatedJitter.jitter(step(1000, 4000, 100, 5000), u64::MAX),
            ms(5000),
            "capped at the backoff's max"
        );
    }

    #[test]
    fn proportional_never_passes_the_max() {
        let s = step(1000, 0, 1000, 1100);
        assert_eq!(ProportionalJitter::new(0.5).jitter(s, u64::MAX), ms(1100));
    }

    #[test]
    fn seeded_delays_are_reproducible() {
        let backoff = ExponentialBackoff::new(ms(100), 2.0, ms(10_000));
        let a: Vec<_> = FullJitter
            .delays(&backoff, &SplitMix64::new(3))
            .take(8)
            .collect();
        let b: Vec<_> = FullJitter
            .delays(&backoff, &SplitMix64::new(3))
            .take(8)
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).any(|w| w[0] != w[1]), "{a:?}");
    }

    #[test]
    fn serde_is_tagged() {
        let jitter: JitterConfig = toml::from_str("type = \"full\"").unwrap();
        assert_eq!(jitter, JitterConfig::Full(FullJitter));
        let jitter: JitterConfig =
            toml::from_str("type = \"proportional\"\nfactor = 0.25").unwrap();
        assert_eq!(jitter, JitterConfig::from(ProportionalJitter::new(0.25)));
        assert_eq!(
            serde_json::to_value(jitter).unwrap(),
            serde_json::json!({"type": "proportional", "factor": 0.25})
        );
        assert!(toml::from_str::<JitterConfig>("type = \"full\"\nfactor = 1.0").is_err());
        assert_eq!(
            JitterConfig::from(ProportionalJitter::new(1.5))
                .validate()
                .unwrap_err()
                .to_string(),
            "jitter.factor: must be in [0, 1], got 1.5"
        );
    }

    proptest! {
        #[test]
        fn full_is_within_zero_and_the_delay(delay in 0_u64..100_000, draw: u64) {
            let d = FullJitter.jitter(step(delay, 0, 1, 100_000), draw);
            prop_assert!(d <= ms(delay));
        }

        #[test]
        fn equal_is_within_half_and_the_delay(delay in 0_u64..100_000, draw: u64) {
            let d = EqualJitter.jitter(step(delay, 0, 1, 100_000), draw);
            prop_assert!(d >= ms(delay) / 2 && d <= ms(delay), "{d:?}");
        }

        #[test]
        fn proportional_is_within_the_factor(
            delay in 0_u64..100_000,
            factor in 0.0_f64..=1.0,
            draw: u64,
        ) {
            let d = ProportionalJitter::new(factor).jitter(step(delay, 0, 1, 200_000), draw);
            let nominal = ms(delay).as_secs_f64();
            let secs = d.as_secs_f64();
            prop_assert!(secs >= nominal * (1.0 - factor) - 1e-9, "{d:?}");
            prop_assert!(secs <= nominal * (1.0 + factor) + 1e-9, "{d:?}");
        }

        #[test]
        fn decorrelated_is_within_base_and_three_times_the_previous_and_max(
            base in 1_u64..1_000,
            previous in 0_u64..100_000,
            extra in 0_u64..100_000,
            draw: u64,
        ) {
            let max = base + extra;
            let d = DecorrelatedJitter.jitter(step(base, previous, base, max), draw);
            prop_assert!(d >= ms(base), "{d:?}");
            prop_assert!(d <= ms(max), "{d:?}");
            prop_assert!(d <= ms(previous.max(base) * 3), "{d:?}");
        }

        #[test]
        fn jittered_schedules_stay_under_the_backoff_max(seed: u64, delay in 0_u64..10_000) {
            let rng = SplitMix64::new(seed);
            let backoff = ConstantBackoff::new(ms(delay));
            for jitter in [NoJitter.into(), FullJitter.into(), EqualJitter.into(), DecorrelatedJitter.into(), JitterConfig::from(ProportionalJitter::new(0.3))] {
                for d in jitter.delays(&backoff, &rng).take(10) {
                    prop_assert!(d <= ms(delay), "{jitter:?}: {d:?}");
                }
            }
        }
    }
}
