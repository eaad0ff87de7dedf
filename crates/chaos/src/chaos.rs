//! The shared handle that owns the injection settings.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::rng::{self, SplitMix64};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{self, ChaosConfig};

/// A chaos switchboard: a cheap, cloneable handle to one set of injection
/// settings, changed at runtime with atomics (no lock).
///
/// Every clone and every service built from it see the same rates, the same
/// outage window and the same random sequence. Switching it off
/// ([`disable`](Self::disable)) makes every service built from it a plain
/// pass-through at once.
///
/// ```
/// use portcullis_chaos::{Chaos, ChaosConfig};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let chaos = Chaos::from_config(
///     "upstream",
///     ChaosConfig::builder().seed(42).error_rate(0.1).build().unwrap(),
/// )
/// .unwrap();
///
/// // A game day: an error burst, then an outage, then calm.
/// chaos.set_error_rate(0.5).unwrap();
/// chaos.outage_for(Duration::from_secs(30));
/// assert!(chaos.in_outage());
/// chaos.end_outage();
/// chaos.set_error_rate(0.0).unwrap();
/// chaos.disable();
/// assert!(!chaos.is_enabled());
///
/// assert_eq!(
///     chaos.set_error_rate(1.5).unwrap_err().to_string(),
///     "error_rate: must be in [0, 1], got 1.5"
/// );
/// # }
/// ```
#[derive(Clone)]
pub struct Chaos {
    shared: Arc<Shared>,
}

/// What a [`Chaos`] injected since it was made (or its counters were reset),
/// as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChaosStats {
    /// The handle's name.
    pub name: String,
    /// Calls that went through a service while injection was on.
    pub calls: u64,
    /// Calls failed with an injected error (outside an outage).
    pub errors: u64,
    /// Calls answered with an injected response (outside an outage).
    pub responses: u64,
    /// Calls delayed.
    pub delays: u64,
    /// Calls failed because an outage window was open.
    pub outage: u64,
}

/// What to do with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) fault: Option<Fault>,
    pub(crate) delay: Option<Duration>,
}

/// The kind of fault chosen for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Error,
    Response,
    Outage,
}

struct Shared {
    name: Arc<str>,
    enabled: AtomicBool,
    /// `f64` bits.
    error_rate: AtomicU64,
    response_rate: AtomicU64,
    latency_rate: AtomicU64,
    /// Nanoseconds.
    latency_min: AtomicU64,
    latency_max: AtomicU64,
    /// Nanoseconds since `epoch`; `outage_end == 0`: no outage.
    outage_start: AtomicU64,
    outage_end: AtomicU64,
    epoch: Instant,
    rng: SplitMix64,
    calls: AtomicU64,
    errors: AtomicU64,
    responses: AtomicU64,
    delays: AtomicU64,
    outage: AtomicU64,
}

impl Chaos {
    /// A handle named `name` with the default configuration: enabled, every
    /// rate 0 (nothing injected until a rate is set), a random seed.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), &ChaosConfig::default())
    }

    /// A handle named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: ChaosConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), &config))
    }

    fn build(name: Arc<str>, config: &ChaosConfig) -> Self {
        let seed = config.seed().unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0u8)
        });
        let (min, max) = config.latency();
        let bits = |rate: f64| AtomicU64::new(rate.to_bits());
        Self {
            shared: Arc::new(Shared {
                name,
                enabled: AtomicBool::new(config.enabled()),
                error_rate: bits(config.error_rate()),
                response_rate: bits(config.response_rate()),
                latency_rate: bits(config.latency_rate()),
                latency_min: AtomicU64::new(nanos(min)),
                latency_max: AtomicU64::new(nanos(max)),
                outage_start: AtomicU64::new(0),
                outage_end: AtomicU64::new(0),
                epoch: Instant::now(),
                rng: SplitMix64::new(seed),
                calls: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                responses: AtomicU64::new(0),
                delays: AtomicU64::new(0),
                outage: AtomicU64::new(0),
            }),
        }
    }

    /// The handle's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Switches injection on.
    pub fn enable(&self) {
        if !self.shared.enabled.swap(true, Ordering::Relaxed) {
            tracing::info!(chaos = %self.shared.name, "chaos enabled");
        }
    }

    /// Switches injection off: every service built from this handle passes
    /// calls through untouched (one relaxed atomic load per call) until
    /// [`enable`](Self::enable) is called. Rates and the outage window are
    /// kept.
    pub fn disable(&self) {
        if self.shared.enabled.swap(false, Ordering::Relaxed) {
            tracing::info!(chaos = %self.shared.name, "chaos disabled");
        }
    }

    /// Whether injection is on.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// The share of calls that fail with an injected error.
    pub fn error_rate(&self) -> f64 {
        load_rate(&self.shared.error_rate)
    }

    /// The share of the calls not failed with an error that are answered
    /// with an injected response.
    pub fn response_rate(&self) -> f64 {
        load_rate(&self.shared.response_rate)
    }

    /// The share of calls that are delayed.
    pub fn latency_rate(&self) -> f64 {
        load_rate(&self.shared.latency_rate)
    }

    /// The injected latency as `(min, max)`.
    pub fn latency(&self) -> (Duration, Duration) {
        let (min, max) = self.latency_nanos();
        (Duration::from_nanos(min), Duration::from_nanos(max))
    }

    /// Fail this share of calls, in [0, 1], with an injected error.
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ConfigError> {
        config::rate("error_rate", rate)?;
        self.shared
            .error_rate
            .store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Answer this share, in [0, 1], of the calls not failed with an error
    /// with an injected response. A service whose layer has no response to
    /// inject ignores it.
    pub fn set_response_rate(&self, rate: f64) -> Result<(), ConfigError> {
        config::rate("response_rate", rate)?;
        self.shared
            .response_rate
            .store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Delay this share of calls, in [0, 1].
    pub fn set_latency_rate(&self, rate: f64) -> Result<(), ConfigError> {
        config::rate("latency_rate", rate)?;
        self.shared
            .latency_rate
            .store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Delayed calls wait exactly `latency` (at most an hour).
    pub fn set_latency(&self, latency: Duration) -> Result<(), ConfigError> {
        self.set_latency_range(latency, latency)
    }

    /// Delayed calls wait a latency uniform in `[min, max]` (at most an
    /// hour). The two ends are stored one after the other: a call racing
    /// this update may see one old end and one new one.
    pub fn set_latency_range(&self, min: Duration, max: Duration) -> Result<(), ConfigError> {
        config::latency_range(min, max)?;
        self.shared.latency_min.store(nanos(min), Ordering::Relaxed);
        self.shared.latency_max.store(nanos(max), Ordering::Relaxed);
        Ok(())
    }

    /// Starts the random sequence of `seed` again: the same calls, in the
    /// same order, get the same faults.
    pub fn reseed(&self, seed: u64) {
        self.shared.rng.reseed(seed);
    }

    /// Fail every call between `from` and `until` (a past `from` counts from
    /// now). During an outage a call is answered with the layer's injected
    /// response if it has one, else failed with its injected error, without
    /// delay and without reaching the inner service.
    pub fn outage(&self, from: Instant, until: Instant) -> Result<(), ConfigError> {
        if until <= from {
            return Err(ConfigError::new(
                "outage.until",
                "must be after outage.from",
            ));
        }
        let shared = &self.shared;
        let since = |at: Instant| nanos(at.saturating_duration_since(shared.epoch));
        // `end` is cleared first and set last (Release), and read first
        // (Acquire): a reader that sees the new end sees the new start.
        shared.outage_end.store(0, Ordering::Relaxed);
        shared.outage_start.store(since(from), Ordering::Relaxed);
        shared
            .outage_end
            .store(since(until).max(1), Ordering::Release);
        tracing::info!(chaos = %shared.name, ?from, ?until, "chaos outage scheduled");
        Ok(())
    }

    /// Fail every call from now on, for `duration`.
    pub fn outage_for(&self, duration: Duration) {
        let now = Instant::now();
        let until = now.checked_add(duration).unwrap_or(now + MAX_OUTAGE);
        if until > now {
            self.outage(now, until)
                .expect("the end of the outage is after its start");
        }
    }

    /// Cancels the outage window, if any.
    pub fn end_outage(&self) {
        self.shared.outage_end.store(0, Ordering::Release);
    }

    /// The outage window, if one is set (it may be over).
    pub fn outage_window(&self) -> Option<(Instant, Instant)> {
        let (start, end) = self.outage_nanos()?;
        let at = |nanos| self.shared.epoch + Duration::from_nanos(nanos);
        Some((at(start), at(end)))
    }

    /// Whether an outage window is open now.
    pub fn in_outage(&self) -> bool {
        self.outage_nanos().is_some_and(|(start, end)| {
            let now = nanos(Instant::now().saturating_duration_since(self.shared.epoch));
            (start..end).contains(&now)
        })
    }

    /// What was injected so far.
    pub fn stats(&self) -> ChaosStats {
        let shared = &self.shared;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ChaosStats {
            name: shared.name.to_string(),
            calls: load(&shared.calls),
            errors: load(&shared.errors),
            responses: load(&shared.responses),
            delays: load(&shared.delays),
            outage: load(&shared.outage),
        }
    }

    /// Sets every counter of [`stats`](Self::stats) back to 0.
    pub fn reset_stats(&self) {
        let shared = &self.shared;
        for counter in [
            &shared.calls,
            &shared.errors,
            &shared.responses,
            &shared.delays,
            &shared.outage,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// The decision for one call: `None` when injection is off (one relaxed
    /// load), else the fault and the delay to inject, if any. `can_error`
    /// and `can_respond` tell what the calling layer is able to inject.
    #[inline]
    pub(crate) fn decide(&self, can_error: bool, can_respond: bool) -> Option<Decision> {
        if !self.shared.enabled.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.decide_enabled(can_error, can_respond))
    }

    fn decide_enabled(&self, can_error: bool, can_respond: bool) -> Decision {
        let shared = &self.shared;
        shared.calls.fetch_add(1, Ordering::Relaxed);
        if (can_error || can_respond) && self.in_outage() {
            shared.outage.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(chaos = %shared.name, "injected fault: outage");
            return Decision {
                fault: Some(Fault::Outage),
                delay: None,
            };
        }
        // Two draws per call, whatever the rates, so that changing one rate
        // does not shift the decisions of the others.
        let faults = shared.rng.next_u64();
        let latency = shared.rng.next_u64();
        // Each decision takes a 32-bit half of a draw, moved to the high bits.
        let (faults_high, faults_low) = (faults & HIGH_HALF, faults << 32);
        let fault = if can_error && hits(faults_high, self.error_rate()) {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(chaos = %shared.name, "injected fault: error");
            Some(Fault::Error)
        } else if can_respond && hits(faults_low, self.response_rate()) {
            shared.responses.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(chaos = %shared.name, "injected fault: response");
            Some(Fault::Response)
        } else {
            None
        };
        let delay = if hits(latency & HIGH_HALF, self.latency_rate()) {
            let (min, max) = self.latency_nanos();
            let nanos = rng::pick(latency << 32, min, max);
            (nanos > 0).then(|| {
                shared.delays.fetch_add(1, Ordering::Relaxed);
                let delay = Duration::from_nanos(nanos);
                tracing::debug!(chaos = %shared.name, ?delay, "injected latency");
                delay
            })
        } else {
            None
        };
        Decision { fault, delay }
    }

    fn latency_nanos(&self) -> (u64, u64) {
        let a = self.shared.latency_min.load(Ordering::Relaxed);
        let b = self.shared.latency_max.load(Ordering::Relaxed);
        (a.min(b), a.max(b))
    }

    fn outage_nanos(&self) -> Option<(u64, u64)> {
        let end = self.shared.outage_end.load(Ordering::Acquire);
        if end == 0 {
            return None;
        }
        Some((self.shared.outage_start.load(Ordering::Relaxed), end))
    }
}

/// The longest outage `outage_for` schedules: a hundred years.
const MAX_OUTAGE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The high 32 bits of a draw.
const HIGH_HALF: u64 = 0xFFFF_FFFF_0000_0000;

/// Whether a 32-bit half of a draw, in the high bits of `half`, falls under
/// `rate` (in [0, 1]): a rate of 0 never hits, a rate of 1 always does.
fn hits(half: u64, rate: f64) -> bool {
    rng::unit(half) < rate
}

fn load_rate(rate: &AtomicU64) -> f64 {
    f64::from_bits(rate.load(Ordering::Relaxed))
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("name", &self.name())
            .field("enabled", &self.is_enabled())
            .field("error_rate", &self.error_rate())
            .field("response_rate", &self.response_rate())
            .field("latency_rate", &self.latency_rate())
            .field("latency", &self.latency())
            .field("outage_window", &self.outage_window())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn chaos(config: crate::ChaosConfigBuilder) -> Chaos {
        Chaos::from_config("test", config.build().unwrap()).unwrap()
    }

    #[test]
    fn rates_at_the_edges() {
        for half in [0, 1, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
            let half = u64::from(half) << 32;
            assert!(!hits(half, 0.0), "rate 0 never hits ({half:x})");
            assert!(hits(half, 1.0), "rate 1 always hits ({half:x})");
        }
        assert!(hits(0, 0.5) && !hits(HIGH_HALF, 0.5));
        assert!(hits(0x7FFF_FFFF << 32, 0.5) && !hits(0x8000_0000 << 32, 0.5));
    }

    #[test]
    fn disabled_decides_nothing_and_counts_nothing() {
        let c = chaos(ChaosConfig::builder().error_rate(1.0).disabled());
        assert_eq!(c.decide(true, true), None);
        assert_eq!(c.stats().calls, 0);
        c.enable();
        assert_eq!(c.decide(true, true).unwrap().fault, Some(Fault::Error));
        assert_eq!(c.stats().calls, 1);
    }

    #[test]
    fn a_fault_the_layer_cannot_inject_is_not_chosen() {
        let c = chaos(ChaosConfig::builder().error_rate(1.0).response_rate(1.0));
        assert_eq!(c.decide(false, true).unwrap().fault, Some(Fault::Response));
        assert_eq!(c.decide(false, false).unwrap().fault, None);
        let stats = c.stats();
        assert_eq!((stats.errors, stats.responses), (0, 1));
    }

    #[test]
    fn the_error_rate_is_about_right_and_the_response_rate_takes_the_rest() {
        let c = chaos(
            ChaosConfig::builder()
                .seed(3)
                .error_rate(0.25)
                .response_rate(0.5),
        );
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            match c.decide(true, true).unwrap().fault {
                Some(Fault::Error) => counts[0] += 1,
                Some(Fault::Response) => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
        // 25 % errors; half of the remaining 75 % are responses.
        assert!((2_300..2_700).contains(&counts[0]), "{counts:?}");
        assert!((3_500..4_000).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn latency_ranges_are_uniform_between_their_ends() {
        let c = chaos(ChaosConfig::builder().seed(5).latency_range(
            1.0,
            Duration::from_millis(100),
            Duration::from_millis(200),
        ));
        let delays: Vec<Duration> = (0..2_000)
            .map(|_| c.decide(true, false).unwrap().delay.unwrap())
            .collect();
        let min = *delays.iter().min().unwrap();
        let max = *delays.iter().max().unwrap();
        assert!(
            min >= Duration::from_millis(100) && min < Duration::from_millis(102),
            "{min:?}"
        );
        assert!(
            max <= Duration::from_millis(200) && max > Duration::from_millis(198),
            "{max:?}"
        );
        assert_eq!(c.stats().delays, 2_000);
    }

    #[test]
    fn invalid_settings_are_refused_and_change_nothing() {
        let c = Chaos::new("x");
        assert_eq!(
            c.set_latency_rate(2.0).unwrap_err().to_string(),
            "latency_rate: must be in [0, 1], got 2"
        );
        assert_eq!(c.latency_rate(), 0.0);
        let error = c
            .set_latency_range(Duration::from_secs(2), Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(error.field(), "latency_max");
        assert_eq!(c.latency(), (Duration::ZERO, Duration::ZERO));
        assert_eq!(
            c.set_response_rate(f64::INFINITY).unwrap_err().field(),
            "response_rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_window_opens_and_closes_with_time() {
        let c = Chaos::new("x");
        let now = Instant::now();
        c.outage(now + Duration::from_secs(10), now + Duration::from_secs(20))
            .unwrap();
        assert!(!c.in_outage());
        assert_eq!(c.decide(true, false).unwrap().fault, None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(c.in_outage());
        assert_eq!(c.decide(true, false).unwrap().fault, Some(Fault::Outage));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!c.in_outage(), "the end is excluded");
        assert_eq!(
            c.outage_window(),
            Some((now + Duration::from_secs(10), now + Duration::from_secs(20)))
        );
        assert_eq!(
            c.outage(now, now).unwrap_err().to_string(),
            "outage.until: must be after outage.from"
        );
        c.outage_for(Duration::from_secs(5));
        assert!(c.in_outage());
        c.end_outage();
        assert!(!c.in_outage());
        assert_eq!(c.outage_window(), None);
        assert_eq!(c.stats().outage, 1);
    }
}
