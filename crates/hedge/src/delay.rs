//! How long a hedge waits before it sends another attempt: a fixed delay,
//! or a percentile of the recent latencies.

use std::fmt;
use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::clock::Clock;
use portcullis_core::config::check_range;
use portcullis_core::duration;
use portcullis_core::sync::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;

/// The delay before each hedge, as serde data:
///
/// ```
/// use portcullis_hedge::DelayConfig;
/// use std::time::Duration;
///
/// let fixed: DelayConfig = toml::from_str(r#"type = "fixed"
/// delay = "20ms""#).unwrap();
/// assert_eq!(fixed, DelayConfig::Fixed { delay: Duration::from_millis(20) });
///
/// let percentile: DelayConfig = toml::from_str(r#"type = "percentile"
/// p = 0.95
/// min_data_points = 100
/// fallback = "50ms"
/// window = "10s""#).unwrap();
/// percentile.validate().unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DelayConfig {
    /// The same delay for every hedge.
    Fixed {
        /// The delay.
        #[serde(with = "duration::serde")]
        delay: Duration,
    },
    /// The `p` percentile of the latencies of the last `window` to two
    /// `window`s (see [`crate`] docs), once `min_data_points` of them are
    /// in; `fallback` until then.
    Percentile {
        /// The percentile, in (0, 1): 0.95 hedges the calls slower than
        /// 95 % of the others.
        p: f64,
        /// Latencies needed in the window before the percentile is used
        /// (tower's hedge has the same floor).
        #[serde(default = "default_min_data_points")]
        min_data_points: u64,
        /// The delay while there are fewer latencies.
        #[serde(with = "duration::serde")]
        fallback: Duration,
        /// How long a generation of the histogram lasts.
        #[serde(default = "default_window", with = "duration::serde")]
        window: Duration,
    },
}

/// The live delay of a layer.
pub(crate) enum Delay {
    Fixed(Duration),
    Percentile(Box<Percentile>),
}

pub(crate) struct Percentile {
    histogram: Histogram,
    clock: Clock,
    p: f64,
    min_data_points: u64,
    fallback: Duration,
    /// The delay last computed, in nanoseconds; `u64::MAX` for the fallback.
    cached: AtomicU64,
    /// When it was computed, on `clock`.
    refreshed: AtomicU64,
    refresh_nanos: u64,
}

/// The longest delay a configuration may ask for.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// The percentile is computed again this often, per window.
const REFRESHES_PER_WINDOW: u64 = 16;

fn default_min_data_points() -> u64 {
    100
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}

impl Default for DelayConfig {
    /// The 95th percentile once 100 latencies are in, 50 ms until then,
    /// over windows of 10 s.
    fn default() -> Self {
        Self::Percentile {
            p: 0.95,
            min_data_points: default_min_data_points(),
            fallback: Duration::from_millis(50),
            window: default_window(),
        }
    }
}

impl DelayConfig {
    /// A fixed delay.
    pub const fn fixed(delay: Duration) -> Self {
        Self::Fixed { delay }
    }

    /// The `p` percentile of recent latencies once `min_data_points` are in,
    /// `fallback` before, over windows of 10 s.
    pub const fn percentile(p: f64, min_data_points: u64, fallback: Duration) -> Self {
        Self::Percentile {
            p,
            min_data_points,
            fallback,
            window: Duration::from_secs(10),
        }
    }

    /// The same percentile delay over windows of `window` (a fixed delay
    /// is returned as it is).
    #[must_use]
    pub fn window(self, window: Duration) -> Self {
        match self {
            Self::Percentile {
                p,
                min_data_points,
                fallback,
                ..
            } => Self::Percentile {
                p,
                min_data_points,
                fallback,
                window,
            },
            fixed @ Self::Fixed { .. } => fixed,
        }
    }

    /// Checks every field; the error names it and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_most = |field: &'static str, value: Duration, max: Duration| {
            if value > max {
                Err(ConfigError::new(
                    field,
                    format!(
                        "must be at most {}, got {}",
                        duration::format(max),
                        duration::format(value)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        match *self {
            Self::Fixed { delay } => at_most("delay", delay, MAX_DELAY),
            Self::Percentile {
                p,
                min_data_points,
                fallback,
                window,
            } => {
                if !(p > 0.0 && p < 1.0) {
                    return Err(ConfigError::new("p", format!("must be in (0, 1), got {p}")));
                }
                check_range("min_data_points", min_data_points, 1, 1_000_000)?;
                at_most("fallback", fallback, MAX_DELAY)?;
                if window < Duration::from_millis(100) || window > Duration::from_secs(3600) {
                    return Err(ConfigError::new(
                        "window",
                        format!("must be in [100ms, 1h], got {}", duration::format(window)),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Delay {
    pub(crate) fn new(config: &DelayConfig) -> Self {
        match *config {
            DelayConfig::Fixed { delay } => Self::Fixed(delay),
            DelayConfig::Percentile {
                p,
                min_data_points,
                fallback,
                window,
            } => {
                let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
                Self::Percentile(Box::new(Percentile {
                    histogram: Histogram::new(window),
                    clock: Clock::new(),
                    p,
                    min_data_points,
                    fallback,
                    cached: AtomicU64::new(u64::MAX),
                    refreshed: AtomicU64::new(0),
                    refresh_nanos: (window / REFRESHES_PER_WINDOW).max(1),
                }))
            }
        }
    }

    /// The delay before the next hedge now.
    #[inline]
    pub(crate) fn current(&self) -> Duration {
        match self {
            Self::Fixed(delay) => *delay,
            Self::Percentile(percentile) => percentile.current(),
        }
    }

    /// Whether latencies are recorded.
    #[inline]
    pub(crate) fn percentile(&self) -> Option<&Percentile> {
        match self {
            Self::Fixed(_) => None,
            Self::Percentile(percentile) => Some(percentile),
        }
    }
}

impl Percentile {
    /// Counts the latency of one attempt.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.record(self.clock.now(), micros);
    }

    /// The cached delay, computed again at most `REFRESHES_PER_WINDOW`
    /// times per window (by one caller; the others read the value before).
    fn current(&self) -> Duration {
        let now = self.clock.now();
        let last = self.refreshed.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.refresh_nanos
            && self
                .refreshed
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let nanos = self
                .histogram
                .percentile(now, self.p, self.min_data_points)
                .map_or(u64::MAX, |micros| micros.saturating_mul(1000));
            self.cached.store(nanos, Ordering::Relaxed);
        }
        match self.cached.load(Ordering::Relaxed) {
            u64::MAX => self.fallback,
            nanos => Duration::from_nanos(nanos).min(MAX_DELAY),
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(delay) => f.debug_tuple("Fixed").field(delay).finish(),
            Self::Percentile(percentile) => f
                .debug_struct("Percentile")
                .field("p", &percentile.p)
                .field("min_data_points", &percentile.min_data_points)
                .field("fallback", &percentile.fallback)
                .field("current", &percentile.current())
                .finish(),
        }
    }
}
