//! Per-route statistics: what operators read off a Hystrix dashboard for
//! each route or upstream.
//!
//! A [`RouteStats`] counts the calls of one route by outcome
//! ([`RouteOutcome`]: success, failure, timeout, rejection), keeps their
//! latencies in a histogram with fixed buckets, and reads, when a snapshot
//! is taken, the counters of the fallback and retry layers attached to it
//! ([`RouteStats::attach_fallbacks`], [`RouteStats::attach_retries`]), so
//! that those layers need not know about it. A [`RouteStatsLayer`] records
//! every call of the services it makes.
//!
//! In the registry it is the kind [`InstanceKind::Route`]: made on first
//! use by `registry.routes().get("checkout")`, served at
//! `GET /health/routes[/{name}[/{key}]]`.
//!
//! ```
//! use std::time::Duration;
//! use portcullis_registry::{Registry, RouteOutcome};
//!
//! let registry = Registry::new();
//! let checkout = registry.routes().get("checkout");
//! checkout.record(RouteOutcome::Success, Duration::from_millis(20));
//! checkout.record(RouteOutcome::Timeout, Duration::from_secs(2));
//!
//! let snapshot = checkout.snapshot();
//! assert_eq!((snapshot.requests, snapshot.successes, snapshot.timeouts), (2, 1, 1));
//! assert_eq!(snapshot.latency.count, 2);
//! let json = serde_json::to_value(&snapshot).unwrap();
//! assert_eq!(json["latency"]["buckets"][3], serde_json::json!({"le": 0.05, "count": 1}));
//! ```
//!
//! # Buckets
//!
//! The latency buckets are Prometheus's default ones, in seconds: 0.005,
//! 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 and +Inf
//! ([`RouteStats::LATENCY_BOUNDS`]). A latency equal to a bound is counted
//! in that bound's bucket (`le`, "less than or equal", as in Prometheus).
//! They are the buckets that dashboards and alerts written for Prometheus
//! clients already assume, so that the same queries work on these figures.
//!
//! # Consistency
//!
//! Recording is three relaxed atomic additions (the outcome, the bucket,
//! the sum): no lock, no allocation. A snapshot reads the counters one by
//! one, so a snapshot taken while calls are being recorded may be off by
//! those calls: `requests` (the sum of the outcomes) and `latency.count`
//! (the sum of the buckets) may differ by the calls in flight. The
//! histogram itself is always whole: its `count` is its +Inf bucket.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Classify, ConfigError, DefaultClassifier, ErrorKind, Outcome};
use portcullis_fallback::{Cause, FallbackCounters};
use portcullis_retry::RetryMetrics;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::figures::{Family, Value, counter, histogram};
use crate::hub::Hub;
use crate::kind::{Instance, InstanceKind, Source};

/// The statistics of one route or upstream: a cheap, cloneable handle
/// (clones share the counts).
///
/// Record with [`record`](Self::record) or through a [`RouteStatsLayer`];
/// read with [`snapshot`](Self::snapshot). See the [module docs](self) for
/// the buckets and what a snapshot taken under traffic means.
#[derive(Clone)]
pub struct RouteStats {
    inner: Arc<Inner>,
}

/// How a call ended, as a [`RouteStats`] counts it.
///
/// ```
/// use std::time::Duration;
/// use portcullis_core::{BoxError, BreakerOpen, Elapsed};
/// use portcullis_registry::RouteOutcome;
///
/// let open: BoxError = BreakerOpen::new("db", None).into();
/// assert_eq!(RouteOutcome::of_error(&open), RouteOutcome::Rejected);
/// let late: BoxError = Elapsed::new(Duration::from_secs(1)).into();
/// assert_eq!(RouteOutcome::of_error(&late), RouteOutcome::Timeout);
/// let refused: BoxError = std::io::Error::other("connection refused").into();
/// assert_eq!(RouteOutcome::of_error(&refused), RouteOutcome::Failure);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteOutcome {
    /// The call succeeded: a response its classifier does not call a
    /// failure.
    Success,
    /// The callee failed: an error that is no Portcullis rejection, or a
    /// response classified as a failure (with
    /// [`HttpClassifier`](portcullis_core::HttpClassifier): a 5xx, 408 or
    /// 429).
    Failure,
    /// A Portcullis timeout fired ([`Elapsed`](portcullis_core::Elapsed)).
    Timeout,
    /// A Portcullis layer turned the call away before it was sent: a
    /// breaker open, a bulkhead full, a rate limit exceeded.
    Rejected,
}

/// The configuration of a [`RouteStats`]: nothing to set yet (the buckets
/// are fixed). It is an empty table, so that the registry's named configs
/// ([`Overrides`](crate::Overrides)) apply to it as to every kind, and it
/// refuses any field, naming it.
///
/// ```
/// use portcullis_registry::{Overrides, Registry};
///
/// let registry = Registry::new();
/// let error = registry
///     .routes()
///     .update_config("checkout", Overrides::new().set("buckets", "fine"))
///     .unwrap_err();
/// assert_eq!(error.field(), "routes.checkout.buckets");
/// assert!(error.message().contains("unknown field"), "{error}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteStatsConfig {}

/// A [`RouteStats`] at one moment, as plain serde data.
///
/// Serialized as JSON, it is:
///
/// ```json
/// { "name": "checkout", "requests": 3, "successes": 1, "failures": 1,
///   "timeouts": 1, "rejections": 0, "retries": 0, "fallbacks": 1,
///   "fallbacks_by_cause": { "breaker_open": 0, "bulkhead_full": 0,
///     "rate_limited": 0, "elapsed": 1, "limit_exceeded": 0, "error": 0,
///     "response": 0 },
///   "latency": { "count": 3, "sum_seconds": 1.03, "p50_seconds": 0.0075,
///     "p99_seconds": 0.99, "buckets": [ { "le": 0.005, "count": 0 }, ...,
///     { "le": null, "count": 3 } ] } }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouteSnapshot {
    /// The route's name.
    pub name: String,
    /// Calls recorded, whatever their outcome: the sum of the four below.
    pub requests: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (an error, or a response classified as a
    /// failure).
    pub failures: u64,
    /// Calls that ended in a Portcullis timeout.
    pub timeouts: u64,
    /// Calls a Portcullis layer rejected (breaker open, bulkhead full, rate
    /// limited).
    pub rejections: u64,
    /// Retries made, by the retry layers attached
    /// ([`RouteStats::attach_retries`]); 0 without one.
    pub retries: u64,
    /// Fallbacks taken, all causes, by the fallback layers attached
    /// ([`RouteStats::attach_fallbacks`]); 0 without one.
    pub fallbacks: u64,
    /// Fallbacks taken by cause, keyed by
    /// [`Cause::as_str`] (`"breaker_open"`, `"elapsed"`, `"response"`, ...):
    /// every cause, 0 included.
    pub fallbacks_by_cause: BTreeMap<&'static str, u64>,
    /// The latencies of the calls recorded.
    pub latency: LatencySnapshot,
}

/// A latency histogram at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Calls in the histogram.
    pub count: u64,
    /// Their latencies added up, in seconds.
    pub sum_seconds: f64,
    /// The median, by [`quantile`](Self::quantile); `None` (JSON `null`)
    /// without calls.
    pub p50_seconds: Option<f64>,
    /// The 99th percentile, by [`quantile`](Self::quantile); `None` (JSON
    /// `null`) without calls.
    pub p99_seconds: Option<f64>,
    /// The buckets, cumulative as in Prometheus, the +Inf one last.
    pub buckets: Vec<LatencyBucket>,
}

/// One bucket of a [`LatencySnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencyBucket {
    /// Its upper bound, in seconds, inclusive; `None` (JSON `null`) for
    /// the +Inf bucket.
    pub le: Option<f64>,
    /// Calls whose latency is at most `le` (cumulative).
    pub count: u64,
}

/// Records, in a [`RouteStats`], the outcome and the latency of every call
/// of the services it makes.
///
/// The latency runs from `call` to the completion of the response future,
/// measured with `tokio::time::Instant` (so a test with paused time reads
/// exact latencies). A call whose future is dropped before it completes
/// (cancelled) records nothing: it has no outcome.
///
/// Responses are judged by a classifier, [`DefaultClassifier`] by default
/// (every response a success); for HTTP use
/// [`HttpClassifier`](portcullis_core::HttpClassifier), under which a 5xx
/// (and a 408 or 429) is a failure, as for a breaker. Errors are judged by
/// [`RouteOutcome::of_error`], whatever the classifier.
///
/// Place it where the Portcullis errors are still errors: inside a
/// fallback, which would answer for them, and inside any layer that turns
/// them into responses; outside the timeouts, breakers, bulkheads and rate
/// limits whose rejections it should count.
///
/// ```
/// use std::time::Duration;
/// use portcullis_core::HttpClassifier;
/// use portcullis_registry::{RouteStats, RouteStatsLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let stats = RouteStats::new("checkout");
/// let handler = service_fn(|_: http::Request<()>| async {
///     let mut response = http::Response::new(());
///     *response.status_mut() = http::StatusCode::BAD_GATEWAY;
///     Ok::<_, std::convert::Infallible>(response)
/// });
/// let service = RouteStatsLayer::new(stats.clone())
///     .classifier(HttpClassifier)
///     .layer(handler);
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 502);
/// assert_eq!(stats.snapshot().failures, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct RouteStatsLayer<C = DefaultClassifier> {
    stats: RouteStats,
    classifier: C,
}

/// A service that records its calls in a [`RouteStats`]; see
/// [`RouteStatsLayer`].
#[derive(Clone)]
pub struct RouteStatsService<S, C = DefaultClassifier> {
    inner: S,
    stats: RouteStats,
    classifier: C,
}

pin_project! {
    /// The response future of [`RouteStatsService`]: the inner response,
    /// its outcome and latency recorded once, when it completes.
    pub struct ResponseFuture<F, C> {
        #[pin]
        future: F,
        start: Instant,
        stats: Option<RouteStats>,
        classifier: C,
    }
}

/// Where a snapshot reads the retries made.
type RetrySource = Arc<dyn Fn() -> RetryMetrics + Send + Sync>;

struct Inner {
    name: Arc<str>,
    /// One counter per [`RouteOutcome`], in the order of its variants.
    outcomes: [AtomicU64; 4],
    /// One counter per bucket, not cumulative; the last is +Inf.
    buckets: [AtomicU64; BUCKETS],
    /// The latencies added up, in nanoseconds.
    sum_nanos: AtomicU64,
    /// Read at snapshot time only: never locked on a call's path.
    fallbacks: Mutex<Vec<FallbackCounters>>,
    retries: Mutex<Vec<RetrySource>>,
}

/// Buckets, +Inf included.
const BUCKETS: usize = RouteStats::LATENCY_BOUNDS.len() + 1;

/// [`RouteStats::LATENCY_BOUNDS`] in nanoseconds, for recording without
/// floating point.
const BOUNDS_NANOS: [u64; BUCKETS - 1] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

impl RouteStats {
    /// The upper bounds of the latency buckets, in seconds (Prometheus's
    /// default buckets); a last bucket, +Inf, holds the rest.
    pub const LATENCY_BOUNDS: [f64; 11] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// Statistics at zero for the route `name`. Through a registry, use
    /// `registry.routes().get(name)` instead, so that it is served.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                outcomes: Default::default(),
                buckets: Default::default(),
                sum_nanos: AtomicU64::new(0),
                fallbacks: Mutex::new(Vec::new()),
                retries: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Records one call that ended with `outcome` after `elapsed`: three
    /// relaxed atomic additions, no lock, no allocation.
    pub fn record(&self, outcome: RouteOutcome, elapsed: Duration) {
        let inner = &*self.inner;
        inner.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Calls recorded so far, whatever their outcome.
    pub fn requests(&self) -> u64 {
        self.inner
            .outcomes
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// Calls recorded with `outcome`.
    pub fn count(&self, outcome: RouteOutcome) -> u64 {
        self.inner.outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    /// The latency buckets as Prometheus writes them: each upper bound in
    /// seconds ([`LATENCY_BOUNDS`](Self::LATENCY_BOUNDS), then
    /// `f64::INFINITY`) with the cumulative count of calls at most that
    /// long. The last count is the histogram's count.
    pub fn latency_buckets(&self) -> [(f64, u64); BUCKETS] {
        let mut cumulative = 0;
        std::array::from_fn(|at| {
            cumulative += self.inner.buckets[at].load(Ordering::Relaxed);
            let bound = Self::LATENCY_BOUNDS
                .get(at)
                .copied()
                .unwrap_or(f64::INFINITY);
            (bound, cumulative)
        })
    }

    /// The latencies recorded, added up (the histogram's sum).
    pub fn latency_sum(&self) -> Duration {
        Duration::from_nanos(self.inner.sum_nanos.load(Ordering::Relaxed))
    }

    /// Adds the counts of a fallback layer's counters
    /// ([`FallbackLayer::counters`](portcullis_fallback::FallbackLayer::counters))
    /// to every snapshot's `fallbacks` and `fallbacks_by_cause`.
    ///
    /// Each stack built for the route may attach its own: their counts add
    /// up. Counters stay attached for the life of the statistics (their
    /// counts never go down, so a stack dropped keeps its share), which
    /// is why attaching belongs to building a stack, not to a call.
    pub fn attach_fallbacks(&self, counters: FallbackCounters) {
        lock(&self.inner.fallbacks).push(counters);
    }

    /// Adds the retries that `metrics` reports (typically
    /// `move || layer.metrics()` of a
    /// [`RetryLayer`](portcullis_retry::RetryLayer)) to every snapshot's
    /// `retries`. As for [`attach_fallbacks`](Self::attach_fallbacks),
    /// sources add up and stay attached. `metrics` is called at snapshot
    /// time, never on a call's path.
    ///
    /// These are the retries made, which a retry budget's withdrawals are
    /// not: without a budget nothing is withdrawn.
    pub fn attach_retries(&self, metrics: impl Fn() -> RetryMetrics + Send + Sync + 'static) {
        lock(&self.inner.retries).push(Arc::new(metrics));
    }

    /// The figures now; see the [module docs](self) for what a snapshot
    /// taken during recording may be off by.
    pub fn snapshot(&self) -> RouteSnapshot {
        let [successes, failures, timeouts, rejections] = RouteOutcome::ALL.map(|o| self.count(o));
        let mut fallbacks_by_cause: BTreeMap<&'static str, u64> =
            Cause::ALL.iter().map(|cause| (cause.as_str(), 0)).collect();
        for counters in lock(&self.inner.fallbacks).iter() {
            for (cause, count) in counters.snapshot() {
                *fallbacks_by_cause.entry(cause.as_str()).or_default() += count;
            }
        }
        // Called out of the lock: a source is code of the caller's.
        let sources: Vec<RetrySource> = lock(&self.inner.retries).clone();
        let retries = sources.iter().map(|metrics| metrics().retries).sum();
        RouteSnapshot {
            name: self.name().to_owned(),
            requests: successes + failures + timeouts + rejections,
            successes,
            failures,
            timeouts,
            rejections,
            retries,
            fallbacks: fallbacks_by_cause.values().sum(),
            fallbacks_by_cause,
            latency: LatencySnapshot::new(&self.latency_buckets(), self.latency_sum()),
        }
    }
}

impl RouteOutcome {
    /// Every outcome.
    const ALL: [Self; 4] = [Self::Success, Self::Failure, Self::Timeout, Self::Rejected];

    fn index(self) -> usize {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Timeout => 2,
            Self::Rejected => 3,
        }
    }

    /// The outcome of a call that failed with `error`, from its row in the
    /// rejection table ([`ErrorKind::of`], the first Portcullis rejection
    /// in its `source()` chain): a breaker open, a bulkhead full or a rate
    /// limit is [`Rejected`](Self::Rejected), a timeout
    /// ([`Elapsed`](portcullis_core::Elapsed)) is
    /// [`Timeout`](Self::Timeout), and any other error a
    /// [`Failure`](Self::Failure). A retry that gave up
    /// (`RetriesExhausted`) counts as its last error.
    pub fn of_error(error: &BoxError) -> Self {
        match ErrorKind::of(error.as_ref()) {
            ErrorKind::Upstream => Self::Failure,
            ErrorKind::Timeout => Self::Timeout,
            _ => Self::Rejected,
        }
    }

    /// The outcome of a call's result: an error by
    /// [`of_error`](Self::of_error), a response by `classifier` (a
    /// [`Failure`](Outcome::Failure) is a failure, anything else a
    /// success).
    pub fn of<Res, C: Classify<Res>>(result: Result<&Res, &BoxError>, classifier: &C) -> Self {
        match result {
            Err(error) => Self::of_error(error),
            Ok(_) => match classifier.classify(result) {
                Outcome::Failure => Self::Failure,
                _ => Self::Success,
            },
        }
    }

    /// The outcome as a word: `"success"`, `"failure"`, `"timeout"`,
    /// `"rejected"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Timeout => "timeout",
            Self::Rejected => "rejected",
        }
    }
}

impl fmt::Display for RouteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LatencySnapshot {
    fn new(buckets: &[(f64, u64); BUCKETS], sum: Duration) -> Self {
        let mut snapshot = Self {
            count: buckets[BUCKETS - 1].1,
            sum_seconds: sum.as_secs_f64(),
            p50_seconds: None,
            p99_seconds: None,
            buckets: buckets
                .iter()
                .map(|&(bound, count)| LatencyBucket {
                    le: bound.is_finite().then_some(bound),
                    count,
                })
                .collect(),
        };
        snapshot.p50_seconds = snapshot.quantile(0.5);
        snapshot.p99_seconds = snapshot.quantile(0.99);
        snapshot
    }

    /// The `q`-quantile (0 ≤ `q` ≤ 1) in seconds, estimated as
    /// Prometheus's `histogram_quantile` does: the bucket that holds the
    /// rank `q × count` is found, and the latency interpolated linearly
    /// between its bounds (the first bucket starts at 0). A rank in the
    /// +Inf bucket gives the highest finite bound. `None` without calls
    /// or for a `q` outside [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let finite = &self.buckets[..self.buckets.len() - 1];
        let Some(at) = finite.iter().position(|b| b.count as f64 >= rank) else {
            return finite.last().and_then(|b| b.le);
        };
        let end = finite[at].le?;
        let (start, below) = match at {
            0 => (0.0, 0),
            _ => (finite[at - 1].le?, finite[at - 1].count),
        };
        let inside = (finite[at].count - below) as f64;
        if inside == 0.0 {
            // Only at rank 0 with an empty first bucket.
            return Some(start);
        }
        Some(start + (end - start) * ((rank - below as f64) / inside))
    }
}

impl<C> RouteStatsLayer<C> {
    /// Records in `stats`, judging responses with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> RouteStatsLayer<C2> {
        RouteStatsLayer {
            stats: self.stats,
            classifier,
        }
    }

    /// The statistics it records in.
    pub fn stats(&self) -> &RouteStats {
        &self.stats
    }
}

impl RouteStatsLayer {
    /// Records in `stats`; every response is a success until a
    /// [`classifier`](Self::classifier) says otherwise.
    pub fn new(stats: RouteStats) -> Self {
        Self {
            stats,
            classifier: DefaultClassifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for RouteStatsLayer<C> {
    type Service = RouteStatsService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteStatsService::new(inner, self.stats.clone()).with_classifier(self.classifier.clone())
    }
}

impl<S> RouteStatsService<S> {
    /// `inner`, recording in `stats`.
    pub fn new(inner: S, stats: RouteStats) -> Self {
        Self {
            inner,
            stats,
            classifier: DefaultClassifier,
        }
    }
}

impl<S, C> RouteStatsService<S, C> {
    /// Judges responses with `classifier`.
    pub fn with_classifier<C2>(self, classifier: C2) -> RouteStatsService<S, C2> {
        RouteStatsService {
            inner: self.inner,
            stats: self.stats,
            classifier,
        }
    }

    /// The statistics it records in.
    pub fn stats(&self) -> &RouteStats {
        &self.stats
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for RouteStatsService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture {
            start: Instant::now(),
            future: self.inner.call(request),
            stats: Some(self.stats.clone()),
            classifier: self.classifier.clone(),
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx)).map_err(Into::into);
        if let Some(stats) = this.stats.take() {
            let outcome = RouteOutcome::of(result.as_ref(), &*this.classifier);
            stats.record(outcome, this.start.elapsed());
        }
        Poll::Ready(result)
    }
}

impl Instance for RouteStats {
    type Attachment = Infallible;
    type Config = RouteStatsConfig;
    type Snapshot = RouteSnapshot;

    const KIND: InstanceKind = InstanceKind::Route;

    fn validate(_config: &RouteStatsConfig) -> Result<(), ConfigError> {
        Ok(())
    }

    fn build(name: &str, _config: RouteStatsConfig) -> Self {
        RouteStats::new(name)
    }

    fn name(&self) -> &str {
        RouteStats::name(self)
    }

    fn check_update(&self, _config: &RouteStatsConfig) -> Result<(), ConfigError> {
        Ok(())
    }

    fn reconfigure(&self, _config: RouteStatsConfig) -> Result<(), ConfigError> {
        Ok(())
    }

    fn snapshot(&self) -> RouteSnapshot {
        RouteStats::snapshot(self)
    }

    /// Statistics that have recorded nothing hold nothing worth keeping.
    fn evictable(&self) -> bool {
        self.requests() == 0
    }

    /// None yet: the histogram is encoded from
    /// [`RouteStats::latency_buckets`] once the families have a histogram
    /// type; until then the figures are served at `/health/routes` only.
    fn families() -> &'static [Family<RouteSnapshot>] {
        &FAMILIES
    }

    fn attach(&self, _source: Source, _hub: Hub) -> Option<Infallible> {
        None
    }
}

/// A route's metric families: its calls by outcome, their latency as a
/// histogram (Prometheus's default buckets, in seconds), and the retries
/// and fallbacks of the layers attached to it.
static FAMILIES: [Family<RouteSnapshot>; 4] = [
    counter(
        "portcullis_route_requests",
        "Calls through the route or upstream, by outcome (success, failure, timeout or rejected).",
        |figures, emit| {
            for (outcome, count) in [
                ("success", figures.successes),
                ("failure", figures.failures),
                ("timeout", figures.timeouts),
                ("rejected", figures.rejections),
            ] {
                emit(&[("outcome", outcome)], Value::Counter(count));
            }
        },
    ),
    histogram(
        "portcullis_route_request_duration_seconds",
        "Latency of the calls through the route or upstream, from the call to its answer.",
        |figures, emit| {
            let latency = &figures.latency;
            let mut below = 0;
            let mut buckets = [(0.0, 0); BUCKETS];
            for (bucket, at) in buckets.iter_mut().zip(&latency.buckets) {
                *bucket = (at.le.unwrap_or(f64::INFINITY), at.count - below);
                below = at.count;
            }
            emit(
                &[],
                Value::Histogram {
                    sum: latency.sum_seconds,
                    count: latency.count,
                    buckets: &buckets,
                },
            );
        },
    ),
    counter(
        "portcullis_route_retries",
        "Retries made by the route's or upstream's retry layers.",
        |figures, emit| emit(&[], Value::Counter(figures.retries)),
    ),
    counter(
        "portcullis_route_fallbacks",
        "Fallbacks taken by the route's fallback layers, by cause.",
        |figures, emit| {
            for (cause, count) in &figures.fallbacks_by_cause {
                emit(&[("cause", cause)], Value::Counter(*count));
            }
        },
    ),
];

impl fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteStats")
            .field("name", &self.name())
            .field("requests", &self.requests())
            .field("latency_sum", &self.latency_sum())
            .finish_non_exhaustive()
    }
}

impl<C: fmt::Debug> fmt::Debug for RouteStatsLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteStatsLayer")
            .field("stats", &self.stats)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for RouteStatsService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteStatsService")
            .field("inner", &self.inner)
            .field("stats", &self.stats)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("start", &self.start)
            .field("recorded", &self.stats.is_none())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use portcullis_core::{BreakerOpen, BulkheadFull, Elapsed, HttpClassifier, RateLimited};
    use serde_json::json;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// The non-cumulative count of each bucket.
    fn per_bucket(stats: &RouteStats) -> Vec<u64> {
        let mut below = 0;
        stats
            .latency_buckets()
            .iter()
            .map(|&(_, cumulative)| {
                let count = cumulative - below;
                below = cumulative;
                count
            })
            .collect()
    }

    #[test]
    fn latencies_land_in_their_buckets_bounds_included() {
        let stats = RouteStats::new("checkout");
        for latency in [
            Duration::ZERO,
            ms(5),                           // on the first bound: in it
            ms(5) + Duration::from_nanos(1), // just past: the next
            ms(30),
            ms(1000),
            Duration::from_secs(10),
            Duration::from_secs(11), // +Inf
            Duration::MAX,           // +Inf, the sum saturates per call
        ] {
            stats.record(RouteOutcome::Success, latency);
        }
        assert_eq!(per_bucket(&stats), [2, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 2]);
        let buckets = stats.latency_buckets();
        assert_eq!(buckets[0], (0.005, 2));
        assert_eq!(buckets[10], (10.0, 6));
        assert_eq!(buckets[11].0, f64::INFINITY);
        assert_eq!(buckets[11].1, 8, "the last bucket counts every call");
    }

    #[test]
    fn the_sum_is_kept_in_nanoseconds() {
        let stats = RouteStats::new("checkout");
        stats.record(RouteOutcome::Success, Duration::from_nanos(1));
        stats.record(RouteOutcome::Success, ms(250));
        assert_eq!(stats.latency_sum(), ms(250) + Duration::from_nanos(1));
        let snapshot = stats.snapshot();
        assert!((snapshot.latency.sum_seconds - 0.250_000_001).abs() < 1e-12);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let stats = RouteStats::new("checkout");
        assert_eq!(stats.snapshot().latency.p50_seconds, None, "no calls");
        // 100 calls: 50 in (0.05, 0.1], 49 in (0.1, 0.25], 1 in +Inf.
        for _ in 0..50 {
            stats.record(RouteOutcome::Success, ms(60));
        }
        for _ in 0..49 {
            stats.record(RouteOutcome::Success, ms(200));
        }
        stats.record(RouteOutcome::Success, Duration::from_secs(60));
        let latency = stats.snapshot().latency;
        // Rank 50 is the last of the 50 in (0.05, 0.1]: its upper bound.
        assert_eq!(latency.p50_seconds, Some(0.1));
        // Rank 99 is the last of (0.1, 0.25].
        assert_eq!(latency.p99_seconds, Some(0.25));
        // Rank 25 is half-way through (0.05, 0.1].
        assert!((latency.quantile(0.25).unwrap() - 0.075).abs() < 1e-12);
        // Rank 99.5 is in +Inf: the highest finite bound.
        assert_eq!(latency.quantile(0.995), Some(10.0));
        // In the first bucket, from 0.
        let fast = RouteStats::new("fast");
        for _ in 0..4 {
            fast.record(RouteOutcome::Success, ms(1));
        }
        assert_eq!(fast.snapshot().latency.p50_seconds, Some(0.0025));
        assert_eq!(fast.snapshot().latency.quantile(1.5), None);
    }

    #[test]
    fn every_outcome_is_counted() {
        let stats = RouteStats::new("checkout");
        let outcomes = [
            (RouteOutcome::Success, 4),
            (RouteOutcome::Failure, 3),
            (RouteOutcome::Timeout, 2),
            (RouteOutcome::Rejected, 1),
        ];
        for (outcome, times) in outcomes {
            for _ in 0..times {
                stats.record(outcome, ms(1));
            }
        }
        for (outcome, times) in outcomes {
            assert_eq!(stats.count(outcome), times, "{outcome}");
        }
        let snapshot = stats.snapshot();
        assert_eq!(
            (
                snapshot.requests,
                snapshot.successes,
                snapshot.failures,
                snapshot.timeouts,
                snapshot.rejections
            ),
            (10, 4, 3, 2, 1)
        );
        assert_eq!(snapshot.latency.count, 10);
    }

    #[test]
    fn errors_are_judged_by_the_rejection_in_their_chain() {
        let errors: [(BoxError, RouteOutcome); 5] = [
            (BreakerOpen::new("a", None).into(), RouteOutcome::Rejected),
            (BulkheadFull::new("a").into(), RouteOutcome::Rejected),
            (RateLimited::new("a", None).into(), RouteOutcome::Rejected),
            (Elapsed::new(ms(1)).into(), RouteOutcome::Timeout),
            (std::io::Error::other("boom").into(), RouteOutcome::Failure),
        ];
        for (error, outcome) in &errors {
            assert_eq!(RouteOutcome::of_error(error), *outcome, "{error}");
        }
        #[derive(Debug)]
        struct Wrapped(Elapsed);
        impl fmt::Display for Wrapped {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped: BoxError = Wrapped(Elapsed::new(ms(1))).into();
        assert_eq!(RouteOutcome::of_error(&wrapped), RouteOutcome::Timeout);
        let ok = http::Response::builder().status(503).body(()).unwrap();
        assert_eq!(
            RouteOutcome::of(Ok(&ok), &HttpClassifier),
            RouteOutcome::Failure
        );
        assert_eq!(
            RouteOutcome::of(Ok(&ok), &DefaultClassifier),
            RouteOutcome::Success
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_times_each_call_and_records_its_outcome() {
        let stats = RouteStats::new("checkout");
        let handler = service_fn(|status: u16| async move {
            match status {
                0 => Err::<http::Response<()>, BoxError>(Elapsed::new(ms(300)).into()),
                1 => Err(BreakerOpen::new("checkout", None).into()),
                _ => {
                    tokio::time::sleep(ms(u64::from(status) / 10)).await;
                    Ok(http::Response::builder().status(status).body(()).unwrap())
                }
            }
        });
        let service = RouteStatsLayer::new(stats.clone())
            .classifier(HttpClassifier)
            .layer(handler);
        // 200 sleeps 20 ms, 500 sleeps 50 ms.
        for request in [200, 200, 500, 0, 1] {
            let _ = service.clone().oneshot(request).await;
        }
        let snapshot = stats.snapshot();
        assert_eq!(
            (
                snapshot.successes,
                snapshot.failures,
                snapshot.timeouts,
                snapshot.rejections
            ),
            (2, 1, 1, 1)
        );
        // Paused time: exactly 0, 0, 20, 20 and 50 ms.
        assert_eq!(stats.latency_sum(), ms(90));
        assert_eq!(per_bucket(&stats), [2, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0]);

        // A call dropped before it completes records nothing.
        let pending = service.clone().oneshot(200);
        drop(pending);
        assert_eq!(stats.requests(), 5);
    }

    #[tokio::test]
    async fn the_layer_keeps_the_response_and_boxes_the_error() {
        let stats = RouteStats::new("checkout");
        let service = RouteStatsLayer::new(stats.clone()).layer(service_fn(|n: u8| async move {
            if n == 0 {
                Err(std::io::Error::other("no"))
            } else {
                Ok(n)
            }
        }));
        assert_eq!(service.clone().oneshot(7).await.unwrap(), 7);
        let error = service.oneshot(0).await.unwrap_err();
        assert_eq!(error.to_string(), "no");
        assert_eq!(
            (
                stats.count(RouteOutcome::Success),
                stats.count(RouteOutcome::Failure)
            ),
            (1, 1)
        );
        let never = service_fn(|()| async { Ok::<_, Infallible>(()) });
        let _ = RouteStatsLayer::new(stats).layer(never);
    }

    #[test]
    fn attached_sources_are_read_at_snapshot_time() {
        let stats = RouteStats::new("inventory");
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.retries, snapshot.fallbacks), (0, 0));
        assert_eq!(snapshot.fallbacks_by_cause.len(), Cause::ALL.len());

        let retries = Arc::new(AtomicU64::new(3));
        let source = retries.clone();
        stats.attach_retries(move || {
            let mut metrics = RetryMetrics::default();
            metrics.retries = source.load(Ordering::Relaxed);
            metrics
        });
        stats.attach_retries(|| {
            let mut metrics = RetryMetrics::default();
            metrics.retries = 1;
            metrics
        });
        assert_eq!(stats.snapshot().retries, 4, "sources add up");
        retries.store(10, Ordering::Relaxed);
        assert_eq!(stats.snapshot().retries, 11, "read when the snapshot is");
    }

    #[tokio::test]
    async fn fallbacks_are_counted_by_cause() {
        let stats = RouteStats::new("inventory");
        let failing = service_fn(|late: bool| async move {
            let error: BoxError = if late {
                Elapsed::new(ms(1)).into()
            } else {
                std::io::Error::other("boom").into()
            };
            Err::<u8, _>(error)
        });
        let fallback = portcullis_fallback::FallbackLayer::value(0u8);
        stats.attach_fallbacks(fallback.counters().clone());
        let service = fallback.layer(failing);
        for late in [true, true, false] {
            assert_eq!(service.clone().oneshot(late).await.unwrap(), 0);
        }
        // A second stack of the same route adds its own.
        let other = portcullis_fallback::FallbackLayer::value(0u8);
        stats.attach_fallbacks(other.counters().clone());
        let _ = other.layer(failing).oneshot(false).await;
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.fallbacks, 4);
        assert_eq!(snapshot.fallbacks_by_cause["elapsed"], 2);
        assert_eq!(snapshot.fallbacks_by_cause["error"], 2);
        assert_eq!(snapshot.fallbacks_by_cause["breaker_open"], 0);
    }

    #[test]
    fn the_snapshot_has_the_fields_dashboards_read() {
        let stats = RouteStats::new("checkout");
        stats.record(RouteOutcome::Success, ms(7));
        stats.record(RouteOutcome::Failure, ms(7));
        stats.record(RouteOutcome::Timeout, Duration::from_secs(20));
        let value = serde_json::to_value(stats.snapshot()).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "failures",
                "fallbacks",
                "fallbacks_by_cause",
                "latency",
                "name",
                "rejections",
                "requests",
                "retries",
                "successes",
                "timeouts"
            ]
        );
        assert_eq!(value["name"], "checkout");
        assert_eq!(value["requests"], 3);
        assert_eq!(value["timeouts"], 3 - 2);
        assert_eq!(
            value["fallbacks_by_cause"],
            json!({"breaker_open": 0, "bulkhead_full": 0, "rate_limited": 0,
                   "elapsed": 0, "limit_exceeded": 0, "error": 0, "response": 0})
        );
        let latency = &value["latency"];
        assert_eq!(latency["count"], 3);
        assert!((latency["sum_seconds"].as_f64().unwrap() - 20.014).abs() < 1e-9);
        // Ranks 1.5 and 2.97 of 3, two calls in (0.005, 0.01].
        assert!((latency["p50_seconds"].as_f64().unwrap() - 0.00875).abs() < 1e-12);
        assert_eq!(latency["p99_seconds"], 10.0);
        let buckets = latency["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 12);
        assert_eq!(buckets[0], json!({"le": 0.005, "count": 0}));
        assert_eq!(buckets[1], json!({"le": 0.01, "count": 2}));
        assert_eq!(buckets[11], json!({"le": null, "count": 3}));

        let empty = serde_json::to_value(RouteStats::new("idle").snapshot()).unwrap();
        assert_eq!(empty["latency"]["p50_seconds"], serde_json::Value::Null);
        assert_eq!(empty["latency"]["p99_seconds"], serde_json::Value::Null);
    }

    #[test]
    fn the_config_takes_no_field_and_says_so() {
        let config: RouteStatsConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(config, RouteStatsConfig::default());
        let error = serde_json::from_value::<RouteStatsConfig>(json!({"buckets": [1]}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `buckets`"), "{error}");
    }

    #[test]
    fn statistics_are_evictable_until_they_record() {
        let stats = <RouteStats as Instance>::build("checkout", RouteStatsConfig::default());
        assert!(Instance::evictable(&stats));
        stats.record(RouteOutcome::Rejected, Duration::ZERO);
        assert!(!Instance::evictable(&stats));
    }
}
