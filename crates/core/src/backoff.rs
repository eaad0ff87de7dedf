//! Exponential backoff with jitter, as a pure computation: the delay after
//! `n` growths of a base by a multiplier, capped, spread by a jitter kind
//! with one uniform random draw.
//!
//! The retry layer's backoff and the circuit breaker's growing open wait are
//! the same arithmetic; it lives here once so that both round, cap and
//! spread alike. Nothing here reads a clock or holds a generator: the caller
//! passes the draw (from [`rng`], seeded in tests), so every
//! result can be checked exactly.
//!
//! ```
//! use portcullis_core::backoff::{Exponential, JitterKind};
//! use std::time::Duration;
//!
//! let backoff = Exponential::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));
//! let delays: Vec<Duration> = (0..5).map(|n| backoff.delay(n)).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000].map(Duration::from_millis));
//!
//! // Equal jitter: uniform in [delay / 2, delay]; the draw picks the point.
//! let equal = JitterKind::Equal;
//! assert_eq!(backoff.jittered(2, equal, Duration::ZERO, 0), Duration::from_millis(200));
//! assert_eq!(backoff.jittered(2, equal, Duration::ZERO, u64::MAX), Duration::from_millis(400));
//! ```

use std::time::Duration;

use crate::rng;

/// A delay that grows by a factor per step, up to a cap:
/// `base × multiplier^n`, rounded to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exponential {
    base: Duration,
    multiplier: f64,
    max: Duration,
}

/// How a delay is spread by a uniform random draw. No kind gives more than
/// the cap it is given.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum JitterKind {
    /// The delay as it is; no draw is needed.
    None,
    /// Uniform in `[0, delay]` ("full jitter").
    Full,
    /// Uniform in `[delay / 2, delay]` ("equal jitter").
    Equal,
    /// Uniform in `[base, 3 × previous]` ("decorrelated jitter"): grows
    /// from the delay actually waited before, not from the schedule.
    Decorrelated,
    /// Uniform in `[delay × (1 − factor), delay × (1 + factor)]`, `factor`
    /// in `[0, 1]` (clamped; not a number counts as 0).
    Proportional(f64),
}

impl Exponential {
    /// `base`, then `base × multiplier`, `base × multiplier²`, ..., at most
    /// `max`.
    pub const fn new(base: Duration, multiplier: f64, max: Duration) -> Self {
        Self {
            base,
            multiplier,
            max,
        }
    }

    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor per step.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay after `growths` growths: `base × multiplier^growths`,
    /// rounded to the nanosecond, at least `base` and at most `max` (`max`
    /// wins if it is below `base`). Overflow and a multiplier that is not a
    /// number give `max`.
    pub fn delay(&self, growths: u32) -> Duration {
        let exponent = i32::try_from(growths).unwrap_or(i32::MAX);
        let nanos = (self.base.as_nanos() as f64 * self.multiplier.powi(exponent)).round();
        if nanos.is_finite() && nanos < self.max.as_nanos() as f64 {
            from_nanos(nanos as u128).clamp(self.base.min(self.max), self.max)
        } else {
            self.max
        }
    }

    /// [`delay`](Self::delay) after `growths` growths, spread by `jitter`
    /// with `draw`; `previous` is the delay waited before (for
    /// [`JitterKind::Decorrelated`]; zero before the first).
    pub fn jittered(
        &self,
        growths: u32,
        jitter: JitterKind,
        previous: Duration,
        draw: u64,
    ) -> Duration {
        jitter.apply(self.delay(growths), previous, self.delay(0), self.max, draw)
    }
}

impl JitterKind {
    /// Whether this kind uses its draw (all but [`None`](Self::None)): a
    /// caller can skip drawing when it does not.
    pub fn draws(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// Spreads `delay` with `draw`, never past `max`. `base` is the first
    /// delay of the schedule and `previous` the delay waited before (both
    /// for [`Decorrelated`](Self::Decorrelated) only). `draw = 0` gives the
    /// low end of the range and `u64::MAX` the high end.
    pub fn apply(
        &self,
        delay: Duration,
        previous: Duration,
        base: Duration,
        max: Duration,
        draw: u64,
    ) -> Duration {
        match *self {
            Self::None => delay,
            Self::Full => uniform(Duration::ZERO, delay.min(max), draw),
            Self::Equal => {
                let delay = delay.min(max);
                uniform(delay / 2, delay, draw)
            }
            Self::Decorrelated => {
                let base = base.min(max);
                let high = previous.max(base).saturating_mul(3).min(max);
                uniform(base, high.max(base), draw)
            }
            Self::Proportional(factor) => {
                let delay = delay.min(max);
                let factor = if factor.is_nan() {
                    0.0
                } else {
                    factor.clamp(0.0, 1.0)
                };
                let spread = delay.mul_f64(factor);
                let high = delay.saturating_add(spread).min(max);
                // `saturating_sub`: a delay past 2^53 ns may round its spread up.
                uniform(delay.saturating_sub(spread), high, draw)
            }
        }
    }
}

/// A point of `[low, high]` picked by a uniform `draw`, to the nanosecond
/// ([`rng::pick()`]); `low` if the range is empty.
pub fn uniform(low: Duration, high: Duration, draw: u64) -> Duration {
    let (low, high) = (low.as_nanos(), high.as_nanos());
    if high <= low {
        return from_nanos(low);
    }
    // A span wider than u64 nanoseconds (584 years) is past what a draw
    // can spread: the draw itself is the offset.
    let offset = match u64::try_from(high - low) {
        Ok(span) => rng::pick(draw, 0, span),
        Err(_) => draw,
    };
    from_nanos(low + u128::from(offset))
}

/// A duration of `nanos` nanoseconds, saturating at `Duration::MAX`.
fn from_nanos(nanos: u128) -> Duration {
    match u64::try_from(nanos / 1_000_000_000) {
        Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
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
    fn grows_rounds_and_caps() {
        let backoff = Exponential::new(ms(10), 3.0, ms(500));
        let delays: Vec<_> = (0..6).map(|n| backoff.delay(n)).collect();
        assert_eq!(delays, [ms(10), ms(30), ms(90), ms(270), ms(500), ms(500)]);
        assert_eq!(backoff.delay(u32::MAX), ms(500), "no overflow");
        let odd = Exponential::new(Duration::from_nanos(3), 1.5, ms(1));
        assert_eq!(odd.delay(1), Duration::from_nanos(5), "4.5 rounds to 5");
        assert_eq!(
            Exponential::new(ms(10), f64::NAN, ms(100)).delay(1),
            ms(100),
            "not a number gives the cap"
        );
        assert_eq!(
            Exponential::new(ms(10), 2.0, ms(5)).delay(0),
            ms(5),
            "a cap below the base wins"
        );
    }

    #[test]
    fn draws_at_the_ends_reach_the_ends() {
        let (delay, base, max) = (ms(1000), ms(100), ms(5000));
        let apply = |kind: JitterKind, previous, draw| kind.apply(delay, previous, base, max, draw);
        assert_eq!(apply(JitterKind::Full, ms(0), 0), Duration::ZERO);
        assert_eq!(apply(JitterKind::Full, ms(0), u64::MAX), ms(1000));
        assert_eq!(apply(JitterKind::Equal, ms(0), 0), ms(500));
        assert_eq!(apply(JitterKind::Equal, ms(0), u64::MAX), ms(1000));
        assert_eq!(apply(JitterKind::Proportional(0.2), ms(0), 0), ms(800));
        assert_eq!(
            apply(JitterKind::Proportional(0.2), ms(0), u64::MAX),
            ms(1200)
        );
        assert_eq!(
            apply(JitterKind::Proportional(f64::NAN), ms(0), 7),
            ms(1000)
        );
        assert_eq!(apply(JitterKind::None, ms(0), 12345), ms(1000));
        assert_eq!(apply(JitterKind::Decorrelated, ms(0), 0), ms(100));
        assert_eq!(apply(JitterKind::Decorrelated, ms(0), u64::MAX), ms(300));
        assert_eq!(
            apply(JitterKind::Decorrelated, ms(4000), u64::MAX),
            ms(5000)
        );
        assert!(!JitterKind::None.draws() && JitterKind::Full.draws());
    }

    #[test]
    fn uniform_spans_past_u64_nanoseconds_do_not_overflow() {
        let (low, high) = (Duration::from_secs(1), Duration::MAX);
        assert_eq!(uniform(low, high, 5), low + Duration::from_nanos(5));
        assert_eq!(
            uniform(high, low, 5),
            high,
            "an empty range gives its low end"
        );
        assert_eq!(from_nanos(u128::MAX), Duration::MAX);
    }

    proptest! {
        #[test]
        fn delays_stay_between_base_and_max(
            base in 1_u64..10_000,
            extra in 0_u64..1_000_000,
            multiplier in 1.0_f64..100.0,
            growths: u32,
        ) {
            let backoff = Exponential::new(ms(base), multiplier, ms(base + extra));
            let delay = backoff.delay(growths);
            prop_assert!(delay >= ms(base) && delay <= ms(base + extra), "{delay:?}");
            prop_assert!(backoff.delay(growths.saturating_add(1)) >= delay, "never shrinks");
        }

        #[test]
        fn every_kind_stays_under_the_max(
            delay in 0_u64..100_000,
            previous in 0_u64..100_000,
            max in 0_u64..100_000,
            factor in 0.0_f64..=1.0,
            draw: u64,
        ) {
            for kind in [
                JitterKind::None,
                JitterKind::Full,
                JitterKind::Equal,
                JitterKind::Decorrelated,
                JitterKind::Proportional(factor),
            ] {
                let d = kind.apply(ms(delay).min(ms(max)), ms(previous), ms(1).min(ms(max)), ms(max), draw);
                prop_assert!(d <= ms(max), "{kind:?}: {d:?}");
            }
        }

        #[test]
        fn proportional_is_within_the_factor(delay in 0_u64..100_000, factor in 0.0_f64..=1.0, draw: u64) {
            let d = JitterKind::Proportional(factor).apply(ms(delay), ms(0), ms(1), ms(200_000), draw);
            let nominal = ms(delay).as_secs_f64();
            prop_assert!(d.as_secs_f64() >= nominal * (1.0 - factor) - 1e-9, "{d:?}");
            prop_assert!(d.as_secs_f64() <= nominal * (1.0 + factor) + 1e-9, "{d:?}");
        }
    }
}
