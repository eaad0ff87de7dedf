//! Breaker configuration: a builder, serde data, and validation that names
//! the field and the allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::config::check_range as in_range;
use portcullis_core::duration;
use serde::{Deserialize, Serialize};

use crate::State;
use crate::state::micros;
use crate::window::{CountWindow, TimeWindow, Window};

/// The sliding window over which rates are computed.
///
/// As serde data: `{ type = "count", size = 100 }` or
/// `{ type = "time", span = "60s", buckets = 60 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `size` calls.
    Count {
        /// How many calls the window holds (1 to 1,000,000).
        size: u32,
    },
    /// The calls of the last `span`, in `buckets` equal buckets; calls leave
    /// the window a bucket at a time.
    Time {
        /// How far back the window reaches.
        #[serde(with = "portcullis_core::duration::serde")]
        span: Duration,
        /// How many buckets the span is cut into (1 to 1,000; default 10).
        #[serde(default = "default_buckets")]
        buckets: u32,
    },
}

/// The configuration of a circuit breaker; see the crate docs for what each
/// rule means. Build it with [`BreakerConfig::builder`] or read it with serde
/// (every field is optional; durations are written like `"30s"`):
///
/// ```
/// use portcullis_breaker::{BreakerConfig, SlidingWindow};
/// use std::time::Duration;
///
/// let config: BreakerConfig = toml::from_str(r#"
///     sliding_window = { type = "time", span = "30s", buckets = 30 }
///     minimum_calls = 20
///     failure_rate_threshold = 25.0
///     wait_in_open = "10s"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.wait_in_open(), Duration::from_secs(10));
/// assert_eq!(
///     config.sliding_window(),
///     SlidingWindow::Time { span: Duration::from_secs(30), buckets: 30 }
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    sliding_window: SlidingWindow,
    minimum_calls: u32,
    failure_rate_threshold: f64,
    slow_call_rate_threshold: f64,
    #[serde(
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    slow_call_duration: Option<Duration>,
    #[serde(skip_serializing_if = "is_false")]
    record_call_durations: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_failures: Option<u32>,
    #[serde(with = "duration::serde")]
    wait_in_open: Duration,
    open_wait_multiplier: f64,
    #[serde(
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait_in_open: Option<Duration>,
    open_wait_jitter: f64,
    permitted_calls_in_half_open: u32,
    #[serde(
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait_in_half_open: Option<Duration>,
    #[serde(
        with = "duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_retry_after: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter_seed: Option<u64>,
    #[serde(skip_serializing_if = "is_closed")]
    initial_state: State,
    #[serde(skip_serializing_if = "is_open")]
    state_after_max_wait_in_half_open: State,
}

/// Builds a [`BreakerConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_closed(state: &State) -> bool {
    *state == State::Closed
}

fn is_open(state: &State) -> bool {
    *state == State::Open
}

fn default_buckets() -> u32 {
    10
}

/// The longest wait the breaker accepts anywhere: a year.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

impl Default for BreakerConfig {
    /// A count window of 100 calls, opening at a 50 % failure rate once 20
    /// calls are in, for 30 s, then 5 probes. No slow-call rule, no
    /// consecutive-failure rule, no growth of the open wait, and
    /// server-directed waits ignored.
    fn default() -> Self {
        Self {
            sliding_window: SlidingWindow::Count { size: 100 },
            minimum_calls: 20,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            record_call_durations: false,
            consecutive_failures: None,
            wait_in_open: Duration::from_secs(30),
            open_wait_multiplier: 1.0,
            max_wait_in_open: None,
            open_wait_jitter: 0.0,
            permitted_calls_in_half_open: 5,
            max_wait_in_half_open: None,
            max_retry_after: None,
            jitter_seed: None,
            initial_state: State::Closed,
            state_after_max_wait_in_half_open: State::Open,
        }
    }
}

impl BreakerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder::default()
    }

    /// The sliding window.
    pub fn sliding_window(&self) -> SlidingWindow {
        self.sliding_window
    }

    /// Calls needed in the window before rates are defined.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The failure rate (percent) at or above which the breaker opens.
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }

    /// The slow-call rate (percent) at or above which the breaker opens.
    pub fn slow_call_rate_threshold(&self) -> f64 {
        self.slow_call_rate_threshold
    }

    /// Calls that take longer than this are slow; `None`: no slow-call rule.
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.slow_call_duration
    }

    /// Whether every call is timed for the duration figures of a snapshot.
    pub fn record_call_durations(&self) -> bool {
        self.record_call_durations
    }

    /// Failures in a row that open the breaker whatever the rate.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// How long the breaker stays open before it lets probes through.
    pub fn wait_in_open(&self) -> Duration {
        self.wait_in_open
    }

    /// Factor by which the open wait grows each time the probes fail.
    pub fn open_wait_multiplier(&self) -> f64 {
        self.open_wait_multiplier
    }

    /// The cap of the grown open wait (default: ten times the base wait
    /// when it grows, else the base wait).
    pub fn max_wait_in_open(&self) -> Duration {
        self.max_wait_in_open
            .unwrap_or(if self.open_wait_multiplier > 1.0 {
                self.wait_in_open.saturating_mul(10).min(MAX_WAIT)
            } else {
                self.wait_in_open
            })
    }

    /// Proportional jitter of the open wait: a wait `w` becomes uniform in
    /// `w * (1 ± jitter)`, capped by [`max_wait_in_open`](Self::max_wait_in_open).
    pub fn open_wait_jitter(&self) -> f64 {
        self.open_wait_jitter
    }

    /// How many probes half-open lets through, and judges, before deciding.
    pub fn permitted_calls_in_half_open(&self) -> u32 {
        self.permitted_calls_in_half_open
    }

    /// How long half-open waits for its probes before opening again.
    pub fn max_wait_in_half_open(&self) -> Option<Duration> {
        self.max_wait_in_half_open
    }

    /// When set, a failure that carries a server-directed wait (e.g. a 503
    /// with `Retry-After`, as told by the classifier) opens the breaker for
    /// that wait, capped at this value. `None` (the default): such waits
    /// are ignored.
    pub fn max_retry_after(&self) -> Option<Duration> {
        self.max_retry_after
    }

    /// The state a new breaker starts in (default `Closed`).
    pub fn initial_state(&self) -> State {
        self.initial_state
    }

    /// The state half-open moves to when
    /// [`max_wait_in_half_open`](Self::max_wait_in_half_open) runs out:
    /// `Open` (the default) or `Closed`.
    pub fn state_after_max_wait_in_half_open(&self) -> State {
        self.state_after_max_wait_in_half_open
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.sliding_window {
            SlidingWindow::Count { size } => {
                in_range("sliding_window.size", u64::from(size), 1, 1_000_000)?;
                if self.minimum_calls > size {
                    return Err(ConfigError::new(
                        "minimum_calls",
                        format!(
                            "must not exceed sliding_window.size ({size}), got {}",
                            self.minimum_calls
                        ),
                    ));
                }
            }
            SlidingWindow::Time { span, buckets } => {
                in_range("sliding_window.buckets", u64::from(buckets), 1, 1_000)?;
                positive("sliding_window.span", span)?;
                if span < Duration::from_millis(u64::from(buckets)) {
                    return Err(ConfigError::new(
                        "sliding_window.span",
                        format!(
                            "must be at least 1ms per bucket ({buckets}ms), got {}",
                            duration::format(span)
                        ),
                    ));
                }
            }
        }
        in_range("minimum_calls", u64::from(self.minimum_calls), 1, 1_000_000)?;
        percent("failure_rate_threshold", self.failure_rate_threshold)?;
        percent("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(slow) = self.slow_call_duration {
            positive("slow_call_duration", slow)?;
        }
        if let Some(count) = self.consecutive_failures {
            in_range("consecutive_failures", u64::from(count), 1, 1_000_000)?;
        }
        positive("wait_in_open", self.wait_in_open)?;
        if !(self.open_wait_multiplier.is_finite()
            && (1.0..=100.0).contains(&self.open_wait_multiplier))
        {
            return Err(ConfigError::new(
                "open_wait_multiplier",
                format!("must be in [1, 100], got {}", self.open_wait_multiplier),
            ));
        }
        if let Some(max) = self.max_wait_in_open {
            positive("max_wait_in_open", max)?;
            if max < self.wait_in_open {
                return Err(ConfigError::new(
                    "max_wait_in_open",
                    format!(
                        "must be at least wait_in_open ({}), got {}",
                        duration::format(self.wait_in_open),
                        duration::format(max)
                    ),
                ));
            }
        }
        if !(self.open_wait_jitter.is_finite() && (0.0..1.0).contains(&self.open_wait_jitter)) {
            return Err(ConfigError::new(
                "open_wait_jitter",
                format!("must be in [0, 1), got {}", self.open_wait_jitter),
            ));
        }
        in_range(
            "permitted_calls_in_half_open",
            u64::from(self.permitted_calls_in_half_open),
            1,
            1_000,
        )?;
        if let Some(wait) = self.max_wait_in_half_open {
            positive("max_wait_in_half_open", wait)?;
        }
        if let Some(wait) = self.max_retry_after {
            positive("max_retry_after", wait)?;
        }
        if self.initial_state == State::HalfOpen {
            return Err(ConfigError::new(
                "initial_state",
                "must be one of CLOSED, OPEN, METRICS_ONLY, DISABLED, FORCED_OPEN, got HALF_OPEN",
            ));
        }
        if !matches!(
            self.state_after_max_wait_in_half_open,
            State::Open | State::Closed
        ) {
            return Err(ConfigError::new(
                "state_after_max_wait_in_half_open",
                format!(
                    "must be OPEN or CLOSED, got {:?}",
                    self.state_after_max_wait_in_half_open
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn window(&self) -> Window {
        match self.sliding_window {
            SlidingWindow::Count { size } => Window::Count(CountWindow::new(size)),
            SlidingWindow::Time { span, buckets } => Window::Time(Box::new(TimeWindow::new(
                micros(span) / u64::from(buckets),
                buckets,
            ))),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.jitter_seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0u8)
        })
    }
}

fn percent(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in (0, 100], got {value}"),
        ))
    }
}

fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be greater than zero"))
    } else if value > MAX_WAIT {
        Err(ConfigError::new(
            field,
            format!("must be at most 365d, got {}", duration::format(value)),
        ))
    } else {
        Ok(())
    }
}

impl BreakerConfigBuilder {
    /// The last `size` calls (default: 100).
    pub fn count_window(mut self, size: u32) -> Self {
        self.config.sliding_window = SlidingWindow::Count { size };
        self
    }

    /// The calls of the last `span`, in `buckets` buckets.
    pub fn time_window(mut self, span: Duration, buckets: u32) -> Self {
        self.config.sliding_window = SlidingWindow::Time { span, buckets };
        self
    }

    /// Calls needed before rates are defined (default: 20).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Failure rate in percent, in (0, 100], that opens (default: 50).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// Slow-call rate in percent, in (0, 100], that opens (default: 100).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.config.slow_call_rate_threshold = percent;
        self
    }

    /// Calls longer than `duration` are slow (default: no slow-call rule).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    /// Times every call, for the total and average call duration of a
    /// [`BreakerSnapshot`](crate::BreakerSnapshot) (default: off). It costs
    /// two clock reads per call, which the closed path otherwise does not
    /// make; with a slow-call rule calls are timed anyway, and their
    /// durations recorded whatever this says.
    pub fn record_call_durations(mut self, record: bool) -> Self {
        self.config.record_call_durations = record;
        self
    }

    /// Opens after `count` failures in a row (default: no such rule). A
    /// success ends a run; a time window also forgets the failures of a run
    /// that left it (see the crate docs).
    pub fn consecutive_failures(mut self, count: u32) -> Self {
        self.config.consecutive_failures = Some(count);
        self
    }

    /// How long to stay open before probing (default: 30 s).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.config.wait_in_open = wait;
        self
    }

    /// Grow the open wait by `multiplier` per consecutive re-open, up to
    /// `max` (default: no growth).
    pub fn open_wait_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.open_wait_multiplier = multiplier;
        self.config.max_wait_in_open = Some(max);
        self
    }

    /// Proportional jitter of the open wait, in [0, 1) (default: 0).
    pub fn open_wait_jitter(mut self, jitter: f64) -> Self {
        self.config.open_wait_jitter = jitter;
        self
    }

    /// Probes let through in half-open (default: 5).
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.config.permitted_calls_in_half_open = calls;
        self
    }

    /// Give up on slow probes after `wait` and open again (default: wait
    /// for them; a cancelled probe gives its permit back in any case).
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.config.max_wait_in_half_open = Some(wait);
        self
    }

    /// Open for a server-directed wait that comes with a failure (see
    /// [`BreakerConfig::max_retry_after`]), at most `max`.
    pub fn open_on_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = Some(max);
        self
    }

    /// The state a new breaker starts in (default: `Closed`): any state but
    /// `HalfOpen`. An `Open` breaker starts its open wait when it is made.
    /// It applies to new breakers only: [`Breaker::reconfigure`] keeps the
    /// state of a live one, and [`Breaker::reset`] closes it.
    ///
    /// ```
    /// use portcullis_breaker::{Breaker, BreakerConfig, State};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let config = BreakerConfig::builder().initial_state(State::MetricsOnly).build().unwrap();
    /// assert_eq!(Breaker::from_config("new-dependency", config).unwrap().state(), State::MetricsOnly);
    ///
    /// let config: BreakerConfig = toml::from_str(r#"initial_state = "FORCED_OPEN""#).unwrap();
    /// let breaker = Breaker::from_config("maintenance", config).unwrap();
    /// assert!(breaker.try_acquire().is_err());
    /// # }
    /// ```
    ///
    /// [`Breaker::reconfigure`]: crate::Breaker::reconfigure
    /// [`Breaker::reset`]: crate::Breaker::reset
    pub fn initial_state(mut self, state: State) -> Self {
        self.config.initial_state = state;
        self
    }

    /// The state to enter when half-open gives up waiting for its probes
    /// ([`max_wait_in_half_open`](Self::max_wait_in_half_open)): `Open`
    /// (the default) or `Closed`, with a fresh window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_breaker::{Breaker, BreakerConfig, State};
    /// use portcullis_core::Outcome;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config = BreakerConfig::builder()
    ///     .count_window(1)
    ///     .minimum_calls(1)
    ///     .wait_in_open(Duration::from_secs(1))
    ///     .max_wait_in_half_open(Duration::from_secs(5))
    ///     .state_after_max_wait_in_half_open(State::Closed)
    ///     .build()
    ///     .unwrap();
    /// let breaker = Breaker::from_config("lenient", config).unwrap();
    /// breaker.try_acquire().unwrap().record(Outcome::Failure);
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// let _stuck = breaker.try_acquire().expect("a probe");
    /// tokio::time::advance(Duration::from_secs(5)).await;
    /// assert!(breaker.try_acquire().is_ok(), "gave up on the probe and closed");
    /// assert_eq!(breaker.state(), State::Closed);
    /// # }
    /// ```
    pub fn state_after_max_wait_in_half_open(mut self, state: State) -> Self {
        self.config.state_after_max_wait_in_half_open = state;
        self
    }

    /// Seed the jitter's randomness, for reproducible runs.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = Some(seed);
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<BreakerConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn field_of(builder: BreakerConfigBuilder) -> String {
        builder.build().unwrap_err().field().to_owned()
    }

    #[test]
    fn defaults_are_valid() {
        BreakerConfig::default().validate().unwrap();
        assert_eq!(
            BreakerConfig::builder().build().unwrap(),
            BreakerConfig::default()
        );
    }

    #[test]
    fn errors_name_the_field_and_range() {
        let error = BreakerConfig::builder()
            .failure_rate_threshold(0.0)
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "failure_rate_threshold: must be in (0, 100], got 0"
        );
        let error = BreakerConfig::builder()
            .failure_rate_threshold(150.0)
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "failure_rate_threshold: must be in (0, 100], got 150"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().count_window(0)),
            "sliding_window.size"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().time_window(Duration::ZERO, 10)),
            "sliding_window.span"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().time_window(Duration::from_secs(1), 0)),
            "sliding_window.buckets"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().permitted_calls_in_half_open(0)),
            "permitted_calls_in_half_open"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().minimum_calls(0)),
            "minimum_calls"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().count_window(10).minimum_calls(11)),
            "minimum_calls"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().wait_in_open(Duration::ZERO)),
            "wait_in_open"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().open_wait_backoff(0.5, Duration::from_secs(60))),
            "open_wait_multiplier"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().open_wait_backoff(2.0, Duration::from_secs(1))),
            "max_wait_in_open"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().open_wait_jitter(1.0)),
            "open_wait_jitter"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().slow_call_rate_threshold(f64::NAN)),
            "slow_call_rate_threshold"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().slow_call_duration(Duration::ZERO)),
            "slow_call_duration"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().consecutive_failures(0)),
            "consecutive_failures"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().initial_state(State::HalfOpen)),
            "initial_state"
        );
        assert_eq!(
            field_of(BreakerConfig::builder().state_after_max_wait_in_half_open(State::Disabled)),
            "state_after_max_wait_in_half_open"
        );
    }

    #[test]
    fn serde_round_trip_with_human_durations() {
        let config = BreakerConfig::builder()
            .time_window(Duration::from_secs(60), 12)
            .slow_call_duration(Duration::from_millis(250))
            .open_wait_backoff(2.0, Duration::from_secs(300))
            .build()
            .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["sliding_window"]["span"], "1m");
        assert_eq!(json["slow_call_duration"], "250ms");
        assert_eq!(json["max_wait_in_open"], "5m");
        let back: BreakerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let error = toml::from_str::<BreakerConfig>("failure_rate = 50.0").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `failure_rate`"),
            "{error}"
        );
        let error = toml::from_str::<BreakerConfig>("wait_in_open = \"soon\"").unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
    }
}
