//! The shared state of a set of endpoints: who is in rotation, who is
//! ejected and until when, and the rules that eject and readmit.

use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

use portcullis_core::clock::Clock;
use portcullis_core::sync::{Arc, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use portcullis_core::{ConfigError, Outcome};
use serde::Serialize;

use crate::OutlierConfig;

/// One endpoint of a [`Detector`]: its place in the set and the name it
/// was given (for HTTP, the authority calls are sent to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    index: usize,
    name: StdArc<str>,
}

impl Endpoint {
    /// Its place in the detector's list, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why an endpoint was ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// [`consecutive_failures`](OutlierConfig::consecutive_failures)
    /// failures in a row.
    ConsecutiveFailures,
    /// A success rate below the others' by more than
    /// [`success_rate_stdev_factor`](OutlierConfig::success_rate_stdev_factor)
    /// standard deviations.
    SuccessRate,
}

/// The shared outlier state of a set of endpoints: a cheap handle, cloned
/// into every service of an [`OutlierLayer`](crate::OutlierLayer) and kept
/// by whoever wants to watch it ([`snapshot`](Self::snapshot)).
///
/// ```
/// use portcullis_outlier::{Detector, OutlierConfig};
///
/// let detector = Detector::new("inventory", ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"],
///     OutlierConfig::default()).unwrap();
/// assert_eq!(detector.endpoints().len(), 3);
/// assert_eq!(detector.snapshot().ejected, 0);
/// // At least one endpoint may always be ejected, whatever the percentage.
/// assert_eq!(detector.max_ejected(), 1);
/// ```
#[derive(Clone)]
pub struct Detector {
    inner: Arc<Inner>,
}

struct Inner {
    name: StdArc<str>,
    config: OutlierConfig,
    clock: Clock,
    endpoints: Box<[Endpoint]>,
    slots: Box<[Slot]>,
    /// The next endpoint in the rotation (taken modulo their number).
    next: AtomicUsize,
    /// Endpoints ejected, or reserved to be: never more than `max_ejected`.
    ejected: AtomicU32,
    max_ejected: u32,
    /// When the next success-rate sweep is due, in clock nanoseconds.
    next_sweep: AtomicU64,
    counters: Counters,
}

/// One endpoint's figures, on a cache line of its own so that calls to
/// different endpoints do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    /// Failures since the last success (or ejection).
    consecutive: AtomicU32,
    /// How many times it was ejected, less one per sweep it spent in
    /// rotation: the ejection time's multiplier.
    ejections: AtomicU32,
    /// When its ejection ends, in clock nanoseconds; 0 while in rotation.
    ejected_until: AtomicU64,
    /// This interval's calls (low 32 bits) and successes (high 32 bits).
    counts: AtomicU64,
    /// The calls of the intervals before this one, added at each sweep.
    earlier: AtomicU64,
}

const SUCCESS: u64 = 1 << 32;

#[derive(Debug, Default)]
struct Counters {
    consecutive_ejections: AtomicU64,
    success_rate_ejections: AtomicU64,
    refused: AtomicU64,
    not_enforced: AtomicU64,
    readmissions: AtomicU64,
    all_ejected: AtomicU64,
}

/// A detector's figures at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DetectorSnapshot {
    /// The detector's name.
    pub name: String,
    /// Endpoints ejected now.
    pub ejected: u32,
    /// The most that may be ejected at once.
    pub max_ejected: u32,
    /// Calls whose outcome was recorded (successes and failures; not the
    /// ignored ones, nor those still in flight).
    pub calls: u64,
    /// Ejections after failures in a row.
    pub consecutive_ejections: u64,
    /// Ejections of success-rate outliers.
    pub success_rate_ejections: u64,
    /// Outliers left in rotation because as many endpoints as allowed were
    /// ejected already.
    pub refused: u64,
    /// Success-rate outliers found but only counted
    /// ([`enforcing_success_rate`](OutlierConfig::enforcing_success_rate)
    /// is off).
    pub not_enforced: u64,
    /// Endpoints put back in rotation after their ejection time.
    pub readmissions: u64,
    /// Calls sent to an ejected endpoint because every endpoint was
    /// ejected (Envoy's "panic" routing: a call is never dropped for want
    /// of an endpoint).
    pub all_ejected: u64,
    /// Each endpoint, in order.
    pub endpoints: Vec<EndpointSnapshot>,
}

/// One endpoint's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EndpointSnapshot {
    /// Its name.
    pub name: String,
    /// Whether it is out of rotation now.
    pub ejected: bool,
    /// How much longer it stays out, when ejected.
    #[serde(with = "portcullis_core::duration::serde::rounded::option")]
    pub ejected_for: Option<Duration>,
    /// The multiplier of its next ejection time, less one.
    pub ejections: u32,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Calls this interval.
    pub calls: u32,
    /// Successes this interval.
    pub successes: u32,
}

impl Detector {
    /// A detector named `name` over `endpoints` (at least one, each named
    /// once), with `config`, validated first. For HTTP an endpoint's name
    /// is where its calls go: `host:port`, or `scheme://host:port`.
    pub fn new<I>(
        name: impl Into<StdArc<str>>,
        endpoints: I,
        config: OutlierConfig,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: Into<StdArc<str>>,
    {
        config.validate()?;
        let endpoints: Box<[Endpoint]> = endpoints
            .into_iter()
            .enumerate()
            .map(|(index, name)| Endpoint {
                index,
                name: name.into(),
            })
            .collect();
        if endpoints.is_empty() {
            return Err(ConfigError::new(
                "endpoints",
                "must name at least one endpoint",
            ));
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            if endpoint.name.is_empty() {
                return Err(ConfigError::new(
                    format!("endpoints[{i}]"),
                    "must not be empty",
                ));
            }
            if let Some(first) = endpoints[..i].iter().position(|e| e.name == endpoint.name) {
                return Err(ConfigError::new(
                    format!("endpoints[{i}]"),
                    format!("`{}` is already endpoints[{first}]", endpoint.name),
                ));
            }
        }
        let count = u32::try_from(endpoints.len())
            .map_err(|_| ConfigError::new("endpoints", "too many endpoints"))?;
        // At least one may always be ejected (as in Envoy); otherwise the
        // share of the set, rounded down.
        let max_ejected =
            (u64::from(count) * u64::from(config.max_ejection_percent()) / 100).max(1) as u32;
        let clock = Clock::new();
        let next_sweep = clock.now().saturating_add(nanos(config.interval()));
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.into(),
                slots: endpoints.iter().map(|_| Slot::default()).collect(),
                endpoints,
                config,
                clock,
                next: AtomicUsize::new(0),
                ejected: AtomicU32::new(0),
                max_ejected,
                next_sweep: AtomicU64::new(next_sweep),
                counters: Counters::default(),
            }),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its configuration.
    pub fn config(&self) -> &OutlierConfig {
        &self.inner.config
    }

    /// The endpoints, in order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.inner.endpoints
    }

    /// The most endpoints ejected at once: the configured share of them,
    /// rounded down, and at least one.
    pub fn max_ejected(&self) -> u32 {
        self.inner.max_ejected
    }

    /// Whether endpoint `index` is out of rotation now.
    pub fn is_ejected(&self, index: usize) -> bool {
        let until = self.inner.slots[index]
            .ejected_until
            .load(Ordering::Acquire);
        until != 0 && self.inner.clock.now() < until
    }

    /// The endpoint the next call goes to: the next one in rotation after
    /// the last pick, skipping ejected ones (so that those in rotation keep
    /// equal shares). When every endpoint is ejected, the next one anyway (counted in
    /// [`all_ejected`](DetectorSnapshot::all_ejected)).
    pub fn pick(&self) -> &Endpoint {
        let inner = &*self.inner;
        let n = inner.slots.len();
        let mut now = None;
        let mut first = None;
        // An ejected endpoint's turn goes to the next call's turn, not to
        // its neighbour: the endpoints in rotation keep equal shares.
        for _ in 0..n {
            let index = inner.next.fetch_add(1, Ordering::Relaxed) % n;
            first.get_or_insert(index);
            let until = inner.slots[index].ejected_until.load(Ordering::Acquire);
            if until == 0 {
                return &inner.endpoints[index];
            }
            let now = *now.get_or_insert_with(|| inner.clock.now());
            if now >= until {
                inner.readmit(index, until);
                return &inner.endpoints[index];
            }
        }
        inner.counters.all_ejected.fetch_add(1, Ordering::Relaxed);
        &inner.endpoints[first.unwrap_or(0)]
    }

    /// Records the outcome of a call to endpoint `index`: a failure may
    /// eject it; a success ends its run of failures. Then runs the
    /// success-rate sweep if one is due. [`Ignored`](Outcome::Ignored)
    /// records nothing.
    pub fn record(&self, index: usize, outcome: Outcome) {
        let inner = &*self.inner;
        let slot = &inner.slots[index];
        match outcome {
            Outcome::Success => {
                slot.counts.fetch_add(SUCCESS | 1, Ordering::Relaxed);
                if slot.consecutive.load(Ordering::Relaxed) != 0 {
                    slot.consecutive.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failure => {
                slot.counts.fetch_add(1, Ordering::Relaxed);
                let failures = slot.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                let limit = inner.config.consecutive_failures();
                if limit != 0
                    && failures >= limit
                    && slot.ejected_until.load(Ordering::Acquire) == 0
                {
                    inner.eject(index, Reason::ConsecutiveFailures, inner.clock.now());
                }
            }
            Outcome::Ignored => return,
        }
        let now = inner.clock.now();
        let due = inner.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && inner
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(nanos(inner.config.interval())),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            inner.sweep(now);
        }
    }

    /// The detector's figures now.
    pub fn snapshot(&self) -> DetectorSnapshot {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &inner.counters;
        let endpoints: Vec<EndpointSnapshot> = inner
            .endpoints
            .iter()
            .zip(inner.slots.iter())
            .map(|(endpoint, slot)| {
                let until = slot.ejected_until.load(Ordering::Acquire);
                let ejected = until != 0 && now < until;
                let counts = slot.counts.load(Ordering::Relaxed);
                EndpointSnapshot {
                    name: endpoint.name.to_string(),
                    ejected,
                    ejected_for: ejected.then(|| Duration::from_nanos(until - now)),
                    ejections: slot.ejections.load(Ordering::Relaxed),
                    consecutive_failures: slot.consecutive.load(Ordering::Relaxed),
                    calls: counts as u32,
                    successes: (counts >> 32) as u32,
                }
            })
            .collect();
        DetectorSnapshot {
            name: inner.name.to_string(),
            ejected: endpoints.iter().filter(|e| e.ejected).count() as u32,
            max_ejected: inner.max_ejected,
            calls: inner
                .slots
                .iter()
                .map(|slot| {
                    let counts = slot.counts.load(Ordering::Relaxed);
                    slot.earlier.load(Ordering::Relaxed) + (counts & 0xFFFF_FFFF)
                })
                .sum(),
            consecutive_ejections: read(&counters.consecutive_ejections),
            success_rate_ejections: read(&counters.success_rate_ejections),
            refused: read(&counters.refused),
            not_enforced: read(&counters.not_enforced),
            readmissions: read(&counters.readmissions),
            all_ejected: read(&counters.all_ejected),
            endpoints,
        }
    }
}

impl Inner {
    /// Takes endpoint `index` out of rotation for its ejection time, if no
    /// more than `max_ejected` endpoints would then be out. Idempotent: an
    /// endpoint already ejected stays as it is.
    fn eject(&self, index: usize, reason: Reason, now: u64) -> bool {
        // Ejections whose time is over no longer count against the cap.
        self.readmit_expired(now);
        let slot = &self.slots[index];
        // Reserve a place under the cap before marking the endpoint, so the
        // marked endpoints never outnumber the count, nor the count the cap.
        let mut count = self.ejected.load(Ordering::Acquire);
        loop {
            if count >= self.max_ejected {
                if slot.ejected_until.load(Ordering::Acquire) == 0 {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                }
                return false;
            }
            match self.ejected.compare_exchange_weak(
                count,
                count + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => count = actual,
            }
        }
        let multiplier = slot.ejections.load(Ordering::Relaxed).saturating_add(1);
        let base = self.config.base_ejection_time();
        let time = base
            .saturating_mul(multiplier)
            .min(self.config.max_ejection_time());
        let until = now.saturating_add(nanos(time)).max(1);
        if slot
            .ejected_until
            .compare_exchange(0, until, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another call ejected it first: give the place back.
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        slot.ejections.store(multiplier, Ordering::Relaxed);
        slot.consecutive.store(0, Ordering::Relaxed);
        let counter = match reason {
            Reason::ConsecutiveFailures => &self.counters.consecutive_ejections,
            Reason::SuccessRate => &self.counters.success_rate_ejections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            detector = %self.name,
            endpoint = %self.endpoints[index].name,
            ?reason,
            ejected_for = ?time,
            "endpoint ejected"
        );
        true
    }

    /// Puts endpoint `index` back in rotation if its ejection still ends at
    /// `until` (one caller wins; the others see it in rotation already).
    fn readmit(&self, index: usize, until: u64) {
        if self.slots[index]
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            self.counters.readmissions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                detector = %self.name,
                endpoint = %self.endpoints[index].name,
                "endpoint readmitted"
            );
        }
    }

    fn readmit_expired(&self, now: u64) {
        for (index, slot) in self.slots.iter().enumerate() {
            let until = slot.ejected_until.load(Ordering::Acquire);
            if until != 0 && now >= until {
                self.readmit(index, until);
            }
        }
    }

    /// Once an interval: readmits the endpoints whose time is over, lowers
    /// the multiplier of those in rotation, and ejects the success-rate
    /// outliers among the endpoints with enough calls.
    fn sweep(&self, now: u64) {
        self.readmit_expired(now);
        let config = &self.config;
        // The rates of this interval's endpoints with enough calls. This
        // allocates, once an interval, never per call.
        let mut rates = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let counts = slot.counts.swap(0, Ordering::Relaxed);
            slot.earlier
                .fetch_add(counts & 0xFFFF_FFFF, Ordering::Relaxed);
            let in_rotation = slot.ejected_until.load(Ordering::Acquire) == 0;
            if in_rotation {
                let multiplier = slot.ejections.load(Ordering::Relaxed);
                if multiplier > 0 {
                    slot.ejections.store(multiplier - 1, Ordering::Relaxed);
                }
            }
            let calls = counts as u32;
            let successes = (counts >> 32) as u32;
            if in_rotation && calls >= config.success_rate_request_volume() {
                rates.push((index, f64::from(successes) / f64::from(calls)));
            }
        }
        if rates.len() < config.success_rate_minimum_hosts() as usize {
            return;
        }
        let threshold = success_rate_threshold(
            rates.iter().map(|&(_, rate)| rate),
            config.success_rate_stdev_factor(),
        );
        for &(index, rate) in &rates {
            if rate < threshold {
                if config.enforcing_success_rate() {
                    self.eject(index, Reason::SuccessRate, now);
                } else {
                    self.counters.not_enforced.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The success rate below which an endpoint is an outlier: the mean of
/// `rates` less `factor` (population) standard deviations.
pub(crate) fn success_rate_threshold(rates: impl Iterator<Item = f64> + Clone, factor: f64) -> f64 {
    let n = rates.clone().count() as f64;
    let mean = rates.clone().sum::<f64>() / n;
    let variance = rates.map(|rate| (rate - mean).powi(2)).sum::<f64>() / n;
    mean - factor * variance.sqrt()
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Detector")
            .field("name", &inner.name)
            .field("endpoints", &inner.endpoints.len())
            .field("ejected", &inner.ejected.load(Ordering::Relaxed))
            .field("max_ejected", &inner.max_ejected)
            .field("config", &inner.config)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn detector(n: usize, config: OutlierConfig) -> Detector {
        Detector::new("test", (0..n).map(|i| format!("e{i}")), config).unwrap()
    }

    #[test]
    fn threshold_is_mean_less_factor_stdevs() {
        // Rates 1, 1, 1, 1, 0.5: mean 0.9; deviations 0.1 ×4 and 0.4;
        // variance (4 × 0.01 + 0.16) / 5 = 0.04; stdev 0.2.
        let rates = [1.0, 1.0, 1.0, 1.0, 0.5];
        let threshold = success_rate_threshold(rates.iter().copied(), 1.9);
        assert!((threshold - (0.9 - 1.9 * 0.2)).abs() < 1e-12, "{threshold}");
    }

    #[test]
    fn endpoints_are_checked() {
        let error = |names: &[&str]| {
            Detector::new("t", names.iter().copied(), OutlierConfig::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(&[]), "endpoints: must name at least one endpoint");
        assert_eq!(error(&["a", ""]), "endpoints[1]: must not be empty");
        assert_eq!(
            error(&["a", "b", "a"]),
            "endpoints[2]: `a` is already endpoints[0]"
        );
    }

    #[test]
    fn the_cap_is_a_share_rounded_down_and_at_least_one() {
        let cap = |n, percent| {
            let config = OutlierConfig::builder()
                .max_ejection_percent(percent)
                .build()
                .unwrap();
            detector(n, config).max_ejected()
        };
        assert_eq!(cap(3, 10), 1);
        assert_eq!(cap(3, 50), 1);
        assert_eq!(cap(4, 50), 2);
        assert_eq!(cap(20, 10), 2);
        assert_eq!(cap(1, 0), 1);
    }

    #[test]
    fn picks_go_round_the_endpoints_in_rotation() {
        let detector = detector(3, OutlierConfig::default());
        let picks: Vec<usize> = (0..6).map(|_| detector.pick().index()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_and_a_success_resets_the_run() {
        let config = OutlierConfig::builder()
            .consecutive_failures(3)
            .max_ejection_percent(50)
            .build()
            .unwrap();
        let detector = detector(3, config);
        detector.record(1, Outcome::Failure);
        detector.record(1, Outcome::Failure);
        detector.record(1, Outcome::Success);
        detector.record(1, Outcome::Failure);
        detector.record(1, Outcome::Failure);
        assert!(!detector.is_ejected(1), "the success ended the first run");
        detector.record(1, Outcome::Ignored);
        assert!(!detector.is_ejected(1), "an ignored outcome is no failure");
        detector.record(1, Outcome::Failure);
        assert!(detector.is_ejected(1));
        let picks: Vec<usize> = (0..4).map(|_| detector.pick().index()).collect();
        assert_eq!(
            picks,
            [0, 2, 0, 2],
            "endpoint 1 is skipped, the others share evenly"
        );
        let snapshot = detector.snapshot();
        assert_eq!(snapshot.consecutive_ejections, 1);
        assert_eq!(snapshot.ejected, 1);
        assert_eq!(
            snapshot.endpoints[1].ejected_for,
            Some(Duration::from_secs(30))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_each_ejection_and_is_capped() {
        let config = OutlierConfig::builder()
            .consecutive_failures(1)
            .base_ejection_time(Duration::from_secs(10))
            .max_ejection_time(Duration::from_secs(25))
            .interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        let detector = detector(2, config);
        let mut times = Vec::new();
        for _ in 0..3 {
            detector.record(0, Outcome::Failure);
            let snapshot = detector.snapshot();
            let time = snapshot.endpoints[0].ejected_for.unwrap();
            times.push(time);
            tokio::time::advance(time - Duration::from_millis(1)).await;
            assert!(detector.is_ejected(0), "still out 1 ms before its time");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(!detector.is_ejected(0));
            assert_eq!(
                detector.pick().index(),
                0,
                "readmitted on the first pick after its time"
            );
            detector.pick();
        }
        assert_eq!(
            times,
            [
                Duration::from_secs(10),
                Duration::from_secs(20),
                Duration::from_secs(25)
            ]
        );
        assert_eq!(detector.snapshot().readmissions, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_cap_are_out() {
        let config = OutlierConfig::builder()
            .consecutive_failures(2)
            .max_ejection_percent(50)
            .build()
            .unwrap();
        let detector = detector(3, config);
        for _ in 0..2 {
            detector.record(0, Outcome::Failure);
            detector.record(1, Outcome::Failure);
        }
        assert!(detector.is_ejected(0));
        assert!(
            !detector.is_ejected(1),
            "a second of three would be over 50 %"
        );
        let snapshot = detector.snapshot();
        assert_eq!(snapshot.ejected, 1);
        assert_eq!(snapshot.refused, 1);
        // Once the first is back, the second may go at its next failure.
        tokio::time::advance(Duration::from_secs(30)).await;
        detector.record(1, Outcome::Failure);
        assert!(!detector.is_ejected(0));
        assert!(detector.is_ejected(1));
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_endpoint_is_out_calls_still_go_somewhere() {
        let config = OutlierConfig::builder()
            .consecutive_failures(1)
            .max_ejection_percent(100)
            .build()
            .unwrap();
        let detector = detector(2, config);
        detector.record(0, Outcome::Failure);
        detector.record(1, Outcome::Failure);
        let picks: Vec<usize> = (0..2).map(|_| detector.pick().index()).collect();
        assert_eq!(
            picks,
            [0, 0],
            "each pick tried both, and took the first it tried"
        );
        assert_eq!(detector.snapshot().all_ejected, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_outliers_are_ejected_at_the_sweep() {
        let config = OutlierConfig::builder()
            .consecutive_failures(0)
            .interval(Duration::from_secs(10))
            .success_rate_minimum_hosts(5)
            .success_rate_request_volume(100)
            .build()
            .unwrap();
        let detector = detector(6, config);
        // Five endpoints at 100 % and one at 50 % over 100 calls each
        // (mean 11/12 ≈ 0.917, stdev ≈ 0.186, threshold ≈ 0.563); the
        // sixth has too few calls to be compared.
        for index in 0..5 {
            for call in 0..100 {
                let outcome = if index == 4 && call % 2 == 0 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                detector.record(index, outcome);
            }
        }
        detector.record(5, Outcome::Failure);
        assert!(
            !detector.is_ejected(4),
            "nothing is judged before the interval"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        detector.record(0, Outcome::Success);
        let snapshot = detector.snapshot();
        assert!(snapshot.endpoints[4].ejected, "{snapshot:?}");
        assert_eq!(snapshot.success_rate_ejections, 1);
        assert_eq!(snapshot.ejected, 1);
        // The interval's counts start again after a sweep; the total keeps
        // them (500 + 1, and the call that ran the sweep, counted before it).
        assert_eq!(snapshot.endpoints[0].calls, 0);
        assert_eq!(snapshot.calls, 502);
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_hosts_with_volume_judge_nothing_and_unenforced_only_counts() {
        let build = |enforcing| {
            let config = OutlierConfig::builder()
                .consecutive_failures(0)
                .success_rate_minimum_hosts(3)
                .success_rate_request_volume(10)
                .success_rate_stdev_factor(1.0)
                .enforcing_success_rate(enforcing)
                .build()
                .unwrap();
            detector(3, config)
        };
        let feed = |detector: &Detector, hosts: usize| {
            for index in 0..hosts {
                for call in 0..10 {
                    let fail = index == 0 && call < 5;
                    detector.record(
                        index,
                        if fail {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        },
                    );
                }
            }
        };
        let few = build(true);
        feed(&few, 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        few.record(1, Outcome::Success);
        assert_eq!(
            few.snapshot().ejected,
            0,
            "two hosts with volume of three needed"
        );

        let counted = build(false);
        feed(&counted, 3);
        tokio::time::advance(Duration::from_secs(10)).await;
        counted.record(1, Outcome::Success);
        let snapshot = counted.snapshot();
        assert_eq!(snapshot.ejected, 0);
        assert_eq!(snapshot.not_enforced, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_in_rotation_winds_the_multiplier_down() {
        let config = OutlierConfig::builder()
            .consecutive_failures(1)
            .interval(Duration::from_secs(60))
            .base_ejection_time(Duration::from_secs(30))
            .build()
            .unwrap();
        let detector = detector(2, config);
        detector.record(0, Outcome::Failure);
        assert_eq!(detector.snapshot().endpoints[0].ejections, 1);
        // The sweep at 60 s readmits it first, then finds it in rotation.
        tokio::time::advance(Duration::from_secs(60)).await;
        detector.record(1, Outcome::Success);
        assert_eq!(detector.snapshot().endpoints[0].ejections, 0);
        detector.record(0, Outcome::Failure);
        assert_eq!(
            detector.snapshot().endpoints[0].ejected_for,
            Some(Duration::from_secs(30)),
            "back to the base time"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::thread;

    fn detector(n: usize, percent: u32) -> Detector {
        let config = OutlierConfig::builder()
            .consecutive_failures(1)
            .max_ejection_percent(percent)
            .build()
            .unwrap();
        Detector::new("loom", (0..n).map(|i| format!("e{i}")), config).unwrap()
    }

    fn marked(detector: &Detector) -> u32 {
        detector
            .inner
            .slots
            .iter()
            .filter(|slot| slot.ejected_until.load(Ordering::Acquire) != 0)
            .count() as u32
    }

    /// Two endpoints failing at once under a cap of one: exactly one is
    /// ejected, and the count matches the marks.
    #[test]
    fn loom_the_cap_holds_between_racing_ejections() {
        loom::model(|| {
            let detector = detector(3, 50);
            let other = detector.clone();
            let t = thread::spawn(move || other.inner.eject(1, Reason::ConsecutiveFailures, 0));
            let a = detector.inner.eject(0, Reason::ConsecutiveFailures, 0);
            let b = t.join().unwrap();
            assert!(a ^ b, "exactly one ejection: {a} {b}");
            assert_eq!(marked(&detector), 1);
            assert_eq!(detector.inner.ejected.load(Ordering::Acquire), 1);
        });
    }

    /// Two calls ejecting one endpoint: it is marked once and counted once.
    #[test]
    fn loom_one_endpoint_is_ejected_once() {
        loom::model(|| {
            let detector = detector(4, 100);
            let other = detector.clone();
            let t = thread::spawn(move || other.inner.eject(2, Reason::ConsecutiveFailures, 0));
            let a = detector.inner.eject(2, Reason::ConsecutiveFailures, 0);
            let b = t.join().unwrap();
            assert!(a ^ b);
            assert_eq!(detector.inner.ejected.load(Ordering::Acquire), 1);
        });
    }

    /// A readmission racing an ejection of another endpoint: the count
    /// ends equal to the marks and within the cap. The ejection either
    /// takes the place given back or, when it looks while the readmission
    /// is between its two steps, is refused (and counted), never over the
    /// cap: the endpoint's next failure tries again.
    #[test]
    fn loom_readmission_and_ejection_keep_the_count() {
        loom::model(|| {
            let detector = detector(2, 50);
            assert!(detector.inner.eject(0, Reason::ConsecutiveFailures, 0));
            let until = detector.inner.slots[0]
                .ejected_until
                .load(Ordering::Acquire);
            let other = detector.clone();
            let t = thread::spawn(move || other.inner.readmit(0, until));
            // Past endpoint 0's time: it no longer holds the one place.
            let ejected = detector.inner.eject(1, Reason::ConsecutiveFailures, until);
            t.join().unwrap();
            let count = detector.inner.ejected.load(Ordering::Acquire);
            assert_eq!(count, marked(&detector));
            let refused = detector.inner.counters.refused.load(Ordering::Relaxed);
            if ejected {
                assert_eq!((count, refused), (1, 0));
            } else {
                assert_eq!((count, refused), (0, 1));
            }
        });
    }
}
