//! [`ServiceBuilderExt`]: the Portcullis layers as `ServiceBuilder` methods.

#[cfg(feature = "timeout")]
use std::time::Duration;

use tower::ServiceBuilder;
#[cfg(any(
    feature = "breaker",
    feature = "retry",
    feature = "hedge",
    feature = "outlier",
    feature = "limit",
    feature = "timeout",
    feature = "bulkhead",
    feature = "fallback",
    feature = "chaos",
    feature = "ratelimit"
))]
use tower::layer::util::Stack;

#[cfg(feature = "breaker")]
use crate::breaker::{Breaker, CircuitBreakerLayer};
#[cfg(feature = "bulkhead")]
use crate::bulkhead::{Bulkhead, BulkheadLayer};
#[cfg(feature = "chaos")]
use crate::chaos::{Chaos, ChaosLayer};
#[cfg(feature = "fallback")]
use crate::fallback::FallbackLayer;
#[cfg(feature = "hedge")]
use crate::hedge::HedgeLayer;
#[cfg(feature = "limit")]
use crate::limit::LimitLayer;
#[cfg(feature = "outlier")]
use crate::outlier::OutlierLayer;
#[cfg(feature = "ratelimit")]
use crate::ratelimit::{RateLimitLayer, RateLimiter};
#[cfg(feature = "retry")]
use crate::retry::RetryLayer;
#[cfg(feature = "timeout")]
use crate::timeout::TimeoutLayer;

/// The Portcullis layers as methods of [`tower::ServiceBuilder`], one per
/// pattern, each behind the feature of its crate.
///
/// As with any `ServiceBuilder`, the first method called is the outermost
/// layer. The recommended order, outermost first: fallback → rate limit →
/// total timeout → retry → circuit breaker → bulkhead → per-attempt timeout
/// → service.
///
/// ```
/// # #[cfg(all(feature = "breaker", feature = "bulkhead", feature = "timeout"))]
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     use std::time::Duration;
///     use portcullis::ServiceBuilderExt;
///     use portcullis::breaker::{Breaker, State};
///     use portcullis::bulkhead::Bulkhead;
///     use tower::{ServiceBuilder, ServiceExt, service_fn};
///
///     let breaker = Breaker::new("inventory");
///     let service = ServiceBuilder::new()
///         .circuit_breaker(breaker.clone())
///         .bulkhead(Bulkhead::new("inventory"))
///         .timeout_after(Duration::from_secs(2))
///         .service(service_fn(|sku: u32| async move { Ok::<_, std::io::Error>(sku * 10) }));
///     assert_eq!(service.oneshot(4).await.unwrap(), 40);
///     assert_eq!(breaker.state(), State::Closed);
/// }
/// # #[cfg(not(all(feature = "breaker", feature = "bulkhead", feature = "timeout")))]
/// # fn main() {}
/// ```
///
/// # Names
///
/// A method is named after its pattern, except where `ServiceBuilder`
/// already has a method of that name. `ServiceBuilder` has inherent
/// methods `timeout`, `retry`, `rate_limit` and `concurrency_limit` when
/// tower's `timeout`, `retry` and `limit` features are on, and an inherent
/// method always wins over a trait method. Those features are unified
/// across everything a build links, so any other dependency can turn them
/// on. A trait method `timeout(Duration)` would then silently become
/// tower's timeout (whose error is not Portcullis's `Elapsed`). So the
/// timeout is [`timeout_after`](Self::timeout_after), the retry
/// [`retry_with`](Self::retry_with) and the rate limit
/// [`rate_limiter`](Self::rate_limiter): they are Portcullis's whatever
/// features are on.
///
/// # Variants
///
/// Each method takes the common form of its layer: the shared handle for
/// the stateful patterns, so every service built (every clone, every route)
/// shares its state. For another form (a per-route breaker, a classifier, a
/// keyed bulkhead, the HTTP flavour of a timeout), build the layer and pass
/// it to [`ServiceBuilder::layer`].
///
/// In particular, [`circuit_breaker`](Self::circuit_breaker) judges outcomes
/// with the default classifier, for which only an `Err` is a failure. Behind
/// an axum handler, which answers a 500 rather than failing, use
/// `.layer(CircuitBreakerLayer::new(breaker).classifier(HttpClassifier))`.
///
/// This trait is sealed: it is implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// A [circuit breaker](crate::breaker): every service built shares
    /// `breaker` (feature `breaker`).
    ///
    /// Outcomes are judged by the default classifier: an `Err` is a
    /// failure, except the rejections of inner Portcullis layers.
    #[cfg(feature = "breaker")]
    fn circuit_breaker(self, breaker: Breaker) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// A [retry](crate::retry) with `layer`'s policy, budget and metrics
    /// (feature `retry`).
    ///
    /// Not `retry`: tower's `ServiceBuilder::retry` would shadow it when
    /// tower's `retry` feature is on.
    #[cfg(feature = "retry")]
    fn retry_with<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>>;

    /// A [timeout](crate::timeout) of `timeout` per call, failing with
    /// `Elapsed` (feature `timeout`).
    ///
    /// Inside a retry it limits each attempt; outside it is the deadline of
    /// the whole call. Not `timeout`: tower's `ServiceBuilder::timeout` would
    /// shadow it when tower's `timeout` feature is on.
    #[cfg(feature = "timeout")]
    fn timeout_after(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// A [bulkhead](crate::bulkhead): every service built shares the
    /// permits of `bulkhead` (feature `bulkhead`).
    #[cfg(feature = "bulkhead")]
    fn bulkhead(self, bulkhead: Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// A [rate limit](crate::ratelimit): every service built draws on the
    /// budget of `limiter`, and a call over it fails at once with
    /// `RateLimited` (or waits, up to the limiter's `max_wait`) (feature
    /// `ratelimit`).
    ///
    /// Not `rate_limit`: tower's `ServiceBuilder::rate_limit` would shadow
    /// it when tower's `limit` feature is on.
    #[cfg(feature = "ratelimit")]
    fn rate_limiter(self, limiter: RateLimiter) -> ServiceBuilder<Stack<RateLimitLayer, L>>;

    /// A [fallback](crate::fallback) built as `layer` says: its source and
    /// the failures it answers (feature `fallback`).
    #[cfg(feature = "fallback")]
    fn fallback<T, Src>(
        self,
        layer: FallbackLayer<T, Src>,
    ) -> ServiceBuilder<Stack<FallbackLayer<T, Src>, L>>;

    /// [Hedged requests](crate::hedge) with `layer`'s policy, delay,
    /// budget and metrics (feature `hedge`). Inside a retry, outside the
    /// circuit breaker.
    #[cfg(feature = "hedge")]
    fn hedge<P>(self, layer: HedgeLayer<P>) -> ServiceBuilder<Stack<HedgeLayer<P>, L>>;

    /// An [adaptive concurrency limit](crate::limit) with `layer`'s shared
    /// limiter (or one per route), classifier and partitions (feature
    /// `limit`). Where a bulkhead would go: inside the breaker and the
    /// retry, around the per-attempt timeout.
    #[cfg(feature = "limit")]
    fn limit<C, P>(self, layer: LimitLayer<C, P>) -> ServiceBuilder<Stack<LimitLayer<C, P>, L>>;

    /// [Fault injection](crate::chaos) driven by the shared `chaos` handle,
    /// injecting `ChaosError`s (feature `chaos`).
    #[cfg(feature = "chaos")]
    fn chaos(self, chaos: Chaos) -> ServiceBuilder<Stack<ChaosLayer, L>>;

    /// [Outlier ejection](crate::outlier) over `layer`'s endpoints (feature
    /// `outlier`): outside per-endpoint breakers, so that each endpoint is
    /// judged on its own.
    #[cfg(feature = "outlier")]
    fn outlier<R, C>(
        self,
        layer: OutlierLayer<R, C>,
    ) -> ServiceBuilder<Stack<OutlierLayer<R, C>, L>>;
}

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}

    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker(self, breaker: Breaker) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    #[cfg(feature = "retry")]
    fn retry_with<P>(self, layer: RetryLayer<P>) -> ServiceBuilder<Stack<RetryLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn timeout_after(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new(timeout))
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead(self, bulkhead: Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(BulkheadLayer::new(bulkhead))
    }

    #[cfg(feature = "ratelimit")]
    fn rate_limiter(self, limiter: RateLimiter) -> ServiceBuilder<Stack<RateLimitLayer, L>> {
        self.layer(RateLimitLayer::new(limiter))
    }

    #[cfg(feature = "fallback")]
    fn fallback<T, Src>(
        self,
        layer: FallbackLayer<T, Src>,
    ) -> ServiceBuilder<Stack<FallbackLayer<T, Src>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "hedge")]
    fn hedge<P>(self, layer: HedgeLayer<P>) -> ServiceBuilder<Stack<HedgeLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "limit")]
    fn limit<C, P>(self, layer: LimitLayer<C, P>) -> ServiceBuilder<Stack<LimitLayer<C, P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "chaos")]
    fn chaos(self, chaos: Chaos) -> ServiceBuilder<Stack<ChaosLayer, L>> {
        self.layer(ChaosLayer::new(chaos))
    }

    #[cfg(feature = "outlier")]
    fn outlier<R, C>(
        self,
        layer: OutlierLayer<R, C>,
    ) -> ServiceBuilder<Stack<OutlierLayer<R, C>, L>> {
        self.layer(layer)
    }
}
