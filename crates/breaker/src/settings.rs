//! The numbers of a breaker's configuration, in the units the state
//! machine uses, held in atomics so that a live breaker can be reconfigured
//! without a lock on the call path and without losing its window or state.
//!
//! They are plain `std` atomics even under loom: they are not part of the
//! protocol the models check, only its parameters.
//!
//! A [`Profile`] holds them with the configuration they come from, the
//! breaker's name and the epoch its clock counts from: everything a
//! breaker is made with and nothing it changes by itself. Breakers made
//! with [`Breaker::sibling`](crate::Breaker::sibling) (the keyed breakers
//! of one name in a registry) share one profile behind an `Arc` rather
//! than each keep a copy: a hundred thousand keys cost one configuration.
//! [`Breaker::reconfigure_siblings`](crate::Breaker::reconfigure_siblings)
//! writes the shared atomics once for all of them; a plain
//! [`Breaker::reconfigure`](crate::Breaker::reconfigure) of a breaker that
//! shares its profile first gives it a copy of its own (once, kept for the
//! rest of its life), so that it changes that breaker alone.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::clock::Clock;

use crate::BreakerConfig;
use crate::state::micros;

/// What a breaker is made with: shared by siblings.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) name: Arc<str>,
    /// The breaker's clock (and its siblings'), from when the profile was
    /// made: the coarse time in a running runtime, tokio's where time is
    /// paused ([`Clock`]).
    pub(crate) clock: Clock,
    /// The configuration as given; read by `config()` and replaced by
    /// `reconfigure()`, never on the call path (which reads `settings`).
    config: Mutex<BreakerConfig>,
    pub(crate) settings: Settings,
}

/// `None` in an optional field.
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct Settings {
    /// Thresholds in hundredths of a percent.
    failure_bp: AtomicU64,
    slow_bp: AtomicU64,
    minimum_calls: AtomicU64,
    /// 0: no consecutive-failure rule.
    consecutive_failures: AtomicU64,
    permitted_in_half_open: AtomicU64,
    /// Waits in microseconds.
    wait_in_open: AtomicU64,
    /// `f64` bits.
    multiplier: AtomicU64,
    max_wait_in_open: AtomicU64,
    /// `f64` bits.
    jitter: AtomicU64,
    max_wait_in_half_open: AtomicU64,
    /// The cap of a server-directed open wait; `NONE` ignores them.
    max_retry_after: AtomicU64,
    /// Nanoseconds; `NONE`: no slow-call rule.
    slow_call_nanos: AtomicU64,
    /// Half-open closes, rather than opens, when its wait runs out.
    closes_after_half_open_wait: AtomicBool,
    /// Why calls are timed by the configuration: `SLOW_RULE`, `DURATIONS`;
    /// 0: they are not. (`CALL_EVENTS` is the breaker's own.)
    timing: AtomicU8,
}

/// Calls are timed for the slow-call rule.
pub(crate) const SLOW_RULE: u8 = 1;
/// Calls are timed for per-call events (set while somebody may listen).
pub(crate) const CALL_EVENTS: u8 = 2;
/// Calls are timed for the duration figures.
pub(crate) const DURATIONS: u8 = 4;

fn optional(value: u64) -> Option<u64> {
    (value != NONE).then_some(value)
}

impl Profile {
    /// A profile of `config` (already validated), whose clock starts now.
    pub(crate) fn new(name: Arc<str>, config: BreakerConfig) -> Self {
        Self {
            name,
            clock: Clock::new(),
            settings: Settings::new(&config),
            config: Mutex::new(config),
        }
    }

    /// A copy of this profile, the same clock included, to be changed on
    /// its own.
    pub(crate) fn copy(&self) -> Self {
        let config = self.config();
        Self {
            name: self.name.clone(),
            clock: self.clock,
            settings: Settings::new(&config),
            config: Mutex::new(config),
        }
    }

    pub(crate) fn config(&self) -> BreakerConfig {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Refuses a `config` (already validated) with another window shape.
    pub(crate) fn check(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        let current = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        check_window(&current, config)
    }

    /// Takes `config` (already validated), unless its window has another
    /// shape.
    pub(crate) fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        let mut current = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        check_window(&current, &config)?;
        if *current != config {
            self.settings.update(&config);
            *current = config;
        }
        Ok(())
    }
}

fn check_window(current: &BreakerConfig, config: &BreakerConfig) -> Result<(), ConfigError> {
    if config.sliding_window() != current.sliding_window() {
        return Err(ConfigError::new(
            "sliding_window",
            format!(
                "cannot change on a live breaker (from {:?} to {:?}); make a new breaker instead",
                current.sliding_window(),
                config.sliding_window()
            ),
        ));
    }
    Ok(())
}

impl Settings {
    pub(crate) fn new(config: &BreakerConfig) -> Self {
        let settings = Self {
            failure_bp: AtomicU64::new(0),
            slow_bp: AtomicU64::new(0),
            minimum_calls: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            permitted_in_half_open: AtomicU64::new(0),
            wait_in_open: AtomicU64::new(0),
            multiplier: AtomicU64::new(0),
            max_wait_in_open: AtomicU64::new(0),
            jitter: AtomicU64::new(0),
            max_wait_in_half_open: AtomicU64::new(NONE),
            max_retry_after: AtomicU64::new(NONE),
            slow_call_nanos: AtomicU64::new(NONE),
            closes_after_half_open_wait: AtomicBool::new(false),
            timing: AtomicU8::new(0),
        };
        settings.update(config);
        settings
    }

    /// Takes the numbers of `config` (already validated). Each field changes
    /// on its own: a call racing the update sees each number old or new.
    pub(crate) fn update(&self, config: &BreakerConfig) {
        let bp = |percent: f64| (percent * 100.0).round() as u64;
        self.failure_bp
            .store(bp(config.failure_rate_threshold()), Relaxed);
        self.slow_bp
            .store(bp(config.slow_call_rate_threshold()), Relaxed);
        self.minimum_calls
            .store(u64::from(config.minimum_calls()), Relaxed);
        self.consecutive_failures.store(
            u64::from(config.consecutive_failures().unwrap_or(0)),
            Relaxed,
        );
        self.permitted_in_half_open
            .store(u64::from(config.permitted_calls_in_half_open()), Relaxed);
        self.wait_in_open
            .store(micros(config.wait_in_open()), Relaxed);
        self.multiplier
            .store(config.open_wait_multiplier().to_bits(), Relaxed);
        self.max_wait_in_open
            .store(micros(config.max_wait_in_open()), Relaxed);
        self.jitter
            .store(config.open_wait_jitter().to_bits(), Relaxed);
        self.max_wait_in_half_open
            .store(config.max_wait_in_half_open().map_or(NONE, micros), Relaxed);
        self.max_retry_after
            .store(config.max_retry_after().map_or(NONE, micros), Relaxed);
        self.slow_call_nanos.store(
            config
                .slow_call_duration()
                .map_or(NONE, |d| u64::try_from(d.as_nanos()).unwrap_or(NONE - 1)),
            Relaxed,
        );
        for (bit, on) in [
            (SLOW_RULE, config.slow_call_duration().is_some()),
            (DURATIONS, config.record_call_durations()),
        ] {
            if on {
                self.timing.fetch_or(bit, AcqRel);
            } else {
                self.timing.fetch_and(!bit, AcqRel);
            }
        }
        self.closes_after_half_open_wait.store(
            config.state_after_max_wait_in_half_open() == crate::State::Closed,
            Relaxed,
        );
    }

    pub(crate) fn closes_after_half_open_wait(&self) -> bool {
        self.closes_after_half_open_wait.load(Relaxed)
    }

    #[inline]
    pub(crate) fn failure_bp(&self) -> u64 {
        self.failure_bp.load(Relaxed)
    }

    #[inline]
    pub(crate) fn slow_bp(&self) -> u64 {
        self.slow_bp.load(Relaxed)
    }

    #[inline]
    pub(crate) fn minimum_calls(&self) -> u64 {
        self.minimum_calls.load(Relaxed)
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed) as u32
    }

    pub(crate) fn permitted_in_half_open(&self) -> u64 {
        self.permitted_in_half_open.load(Relaxed)
    }

    pub(crate) fn wait_in_open(&self) -> u64 {
        self.wait_in_open.load(Relaxed)
    }

    pub(crate) fn multiplier(&self) -> f64 {
        f64::from_bits(self.multiplier.load(Relaxed))
    }

    pub(crate) fn max_wait_in_open(&self) -> u64 {
        self.max_wait_in_open.load(Relaxed)
    }

    pub(crate) fn jitter(&self) -> f64 {
        f64::from_bits(self.jitter.load(Relaxed))
    }

    pub(crate) fn max_wait_in_half_open(&self) -> Option<u64> {
        optional(self.max_wait_in_half_open.load(Relaxed))
    }

    #[inline]
    pub(crate) fn max_retry_after(&self) -> Option<u64> {
        optional(self.max_retry_after.load(Relaxed))
    }

    /// Why the configuration has calls timed (`SLOW_RULE`, `DURATIONS`), 0
    /// when it does not.
    #[inline]
    pub(crate) fn timing(&self) -> u8 {
        self.timing.load(Relaxed)
    }

    #[inline]
    pub(crate) fn slow_call_duration(&self) -> Option<Duration> {
        optional(self.slow_call_nanos.load(Relaxed)).map(Duration::from_nanos)
    }
}
