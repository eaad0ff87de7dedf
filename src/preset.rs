//! Presets: the common stacks, with documented defaults, checked across
//! layers when built (feature `preset`).
//!
//! | preset | layers, outermost first |
//! |--------|-------------------------|
//! | [`standard_http_client`] | rate limit → total timeout → retry → circuit breaker → bulkhead → attempt timeout |
//! | [`standard_server_route`] | error mapping → rate limit → circuit breaker → timeout → bulkhead |
//! | `standard_grpc_client` (feature `grpc`) | rate limit → total timeout → retry → circuit breaker → bulkhead → attempt timeout |
//!
//! The order is the one recommended for every Portcullis stack: the breaker
//! sits inside the retry, so that each attempt is recorded and the retry
//! does not retry what the breaker refused; the bulkhead sits inside the
//! breaker, so that calls it turns away are ignored by the breaker rather
//! than counted as failures; the attempt timeout is innermost, so that a
//! hung attempt is a failure of that attempt. A server route has no retry,
//! and its one timeout sits inside the breaker for the same reason. (A
//! breaker outside the retry
//! would see one outcome per request, after every retry: put one there by
//! hand if that is what you want.)
//!
//! The HTTP client stack mirrors the shape and the defaults of the
//! standard resilience handler of .NET's `Microsoft.Extensions.Http.Resilience`
//! (a limiter, a 30 s total timeout, 3 retries with exponential backoff
//! from 2 s, a breaker over 30 s opening at 10 % failures once 100 calls are
//! in and waiting 5 s, a 10 s attempt timeout). Where that handler has one
//! concurrency limiter of 1,000 outermost, this stack has a rate limiter of
//! 1,000 calls a second outermost and a bulkhead of 1,000 concurrent calls
//! inside the breaker.
//!
//! Two rules tie the layers together, and [`build`](HttpClientStack::build)
//! refuses a stack that breaks them, naming both fields:
//!
//! - the attempt timeout may not be longer than the total timeout (the
//!   total timeout would always fire first, and the retry never run);
//! - a breaker's time window must span at least twice the attempt timeout
//!   (else a window may end before the calls in it have had their outcome).
//!
//! Each stack is one value built once: every service it layers (every
//! clone of a route, every connection of a client) shares its breaker,
//! bulkhead, rate limiter and retry counters. The layer types are concrete,
//! not boxed: a code-built preset costs what the same layers stacked by hand
//! cost.
//!
//! ```
//! use std::time::Duration;
//! use portcullis::preset::standard_http_client;
//!
//! let stack = standard_http_client("inventory")
//!     .attempt_timeout(Duration::from_secs(2))
//!     .total_timeout(Duration::from_secs(10))
//!     .build()
//!     .unwrap();
//! assert_eq!(stack.breaker().name(), "inventory");
//!
//! // The default attempt timeout is 10 s.
//! let error = standard_http_client("inventory")
//!     .total_timeout(Duration::from_secs(5))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "attempt_timeout: must not be longer than total_timeout (10s > 5s)"
//! );
//! ```

use std::fmt;
use std::time::Duration;

use portcullis_core::duration;
use portcullis_core::{ConfigError, HttpClassifier};
use tower::Layer;
use tower::layer::util::Stack;

use crate::breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, SlidingWindow};
use crate::bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer};
use crate::error::ConfigErrors;
use crate::http::ErrorMappingLayer;
use crate::ratelimit::{RateLimitConfig, RateLimitLayer, RateLimiter};
use crate::retry::{EqualJitter, ExponentialBackoff, HttpPolicy, RetryConfig, RetryLayer};
use crate::timeout::{TimeoutConfig, TimeoutLayer};

/// The layers of a client stack, outermost first: rate limit, total
/// timeout, retry, breaker, bulkhead, attempt timeout.
type ClientLayers<P, C> = Stack<
    Stack<
        Stack<Stack<Stack<TimeoutLayer, BulkheadLayer>, CircuitBreakerLayer<C>>, RetryLayer<P>>,
        TimeoutLayer,
    >,
    RateLimitLayer,
>;

/// The layers of a server route, outermost first: error mapping, rate
/// limit, breaker, timeout, bulkhead.
type RouteLayers = Stack<
    Stack<
        Stack<Stack<BulkheadLayer, TimeoutLayer>, CircuitBreakerLayer<HttpClassifier>>,
        RateLimitLayer,
    >,
    ErrorMappingLayer,
>;

/// The standard HTTP client stack, to build: [`standard_http_client`].
///
/// | layer (outermost first) | default |
/// |-------------------------|---------|
/// | rate limit | 1,000 calls a second, burst 1,000, no wait |
/// | total timeout | 30 s for the call, retries included |
/// | retry ([`HttpPolicy`]) | 4 attempts (3 retries), exponential backoff from 2 s, doubling, at most 30 s, equal jitter; `Retry-After` obeyed up to 30 s; idempotent requests only; bodies up to 64 KiB replayed |
/// | circuit breaker ([`HttpClassifier`]: 5xx, 408, 429 and errors fail) | time window of 30 s in 30 buckets; opens at 10 % failures once 100 calls are in; open 5 s; 5 probes |
/// | bulkhead | 1,000 concurrent calls, no wait |
/// | attempt timeout | 10 s per attempt |
///
/// The inner service receives `http::Request<ReplayBody<B>>` (the retry
/// keeps the body to replay it).
#[derive(Clone, Debug)]
pub struct HttpClientStack {
    parts: ClientParts,
}

/// The standard server route stack, to build: [`standard_server_route`].
///
/// | layer (outermost first) | default |
/// |-------------------------|---------|
/// | error mapping | every error becomes its response (503 + `Retry-After`, 429, 504, 502): the route keeps `Error = Infallible` |
/// | rate limit | 1,000 requests a second, burst 1,000, no wait |
/// | circuit breaker ([`HttpClassifier`]: the handler's 5xx and timeouts fail) | count window of 100; opens at 50 % failures once 20 calls are in; open 30 s; 5 probes |
/// | timeout | 10 s, inside the breaker: a handler that hangs is a failure it counts |
/// | bulkhead | 256 concurrent requests, no wait |
///
/// No retry: a server route answers its own caller, who decides whether to
/// try again.
#[derive(Clone, Debug)]
pub struct ServerRouteStack {
    name: String,
    rate_limit: RateLimitConfig,
    timeout: TimeoutConfig,
    breaker: BreakerConfig,
    bulkhead: BulkheadConfig,
}

/// The standard gRPC client stack (feature `grpc`), to build:
/// [`standard_grpc_client`].
///
/// The layers and defaults of [`HttpClientStack`], but the retry is
/// [`GrpcPolicy`](crate::retry::GrpcPolicy) (`UNAVAILABLE`,
/// `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, on calls declared idempotent
/// only) and the breaker judges with
/// [`GrpcClassifier`](portcullis_core::GrpcClassifier) (`grpc-status`).
#[cfg(feature = "grpc")]
#[derive(Clone, Debug)]
pub struct GrpcClientStack {
    parts: ClientParts,
}

/// What the client stacks share.
#[derive(Clone, Debug)]
struct ClientParts {
    name: String,
    rate_limit: RateLimitConfig,
    total_timeout: TimeoutConfig,
    retry: RetryConfig,
    breaker: BreakerConfig,
    bulkhead: BulkheadConfig,
    attempt_timeout: TimeoutConfig,
}

/// A built client stack: a [`tower::Layer`] whose services share one
/// breaker, bulkhead, rate limiter and retry.
#[derive(Clone)]
pub struct ClientStackLayer<P, C> {
    layers: ClientLayers<P, C>,
    breaker: Breaker,
    bulkhead: Bulkhead,
    limiter: RateLimiter,
}

/// A built [`HttpClientStack`].
pub type HttpClientLayer = ClientStackLayer<HttpPolicy, HttpClassifier>;

/// A built [`GrpcClientStack`].
#[cfg(feature = "grpc")]
pub type GrpcClientLayer =
    ClientStackLayer<crate::retry::GrpcPolicy, portcullis_core::GrpcClassifier>;

/// A built [`ServerRouteStack`]: a [`tower::Layer`] whose services share
/// one breaker, bulkhead and rate limiter, with `Error = Infallible`.
#[derive(Clone)]
pub struct ServerRouteLayer {
    layers: RouteLayers,
    breaker: Breaker,
    bulkhead: Bulkhead,
    limiter: RateLimiter,
}

/// The standard HTTP client stack named `name` (the name of its breaker,
/// bulkhead, rate limiter and retry), with the defaults of
/// [`HttpClientStack`].
pub fn standard_http_client(name: impl Into<String>) -> HttpClientStack {
    HttpClientStack {
        parts: ClientParts::standard(name.into()),
    }
}

/// The standard server route stack named `name`, with the defaults of
/// [`ServerRouteStack`].
pub fn standard_server_route(name: impl Into<String>) -> ServerRouteStack {
    ServerRouteStack {
        name: name.into(),
        rate_limit: default_rate_limit(),
        timeout: TimeoutConfig::new(Duration::from_secs(10)),
        breaker: BreakerConfig::default(),
        bulkhead: BulkheadConfig::builder()
            .max_concurrent_calls(256)
            .build()
            .expect("the default bulkhead is valid"),
    }
}

/// The standard gRPC client stack named `name`, with the defaults of
/// [`GrpcClientStack`] (feature `grpc`).
#[cfg(feature = "grpc")]
pub fn standard_grpc_client(name: impl Into<String>) -> GrpcClientStack {
    GrpcClientStack {
        parts: ClientParts::standard(name.into()),
    }
}

fn default_rate_limit() -> RateLimitConfig {
    RateLimitConfig::per_second(1_000)
        .burst(1_000)
        .build()
        .expect("the default rate limit is valid")
}

/// Checks the two rules that tie a stack's layers together, placing the
/// errors under `prefix`: the attempt timeout is not longer than the total
/// timeout, and a breaker's time window spans at least twice the attempt
/// timeout.
///
/// The field names are those of a profile in a config file
/// (`attempt_timeout.timeout`, `timeout.timeout`,
/// `breaker.sliding_window.span`) and of the presets.
pub(crate) fn check_layers(
    errors: &mut ConfigErrors,
    prefix: &str,
    names: LayerNames,
    total: Option<Duration>,
    attempt: Option<Duration>,
    breaker: Option<&BreakerConfig>,
) {
    if let (Some(total), Some(attempt)) = (total, attempt) {
        if attempt > total {
            errors.check(
                prefix,
                Err(ConfigError::new(
                    names.attempt,
                    format!(
                        "must not be longer than {} ({} > {})",
                        names.total,
                        duration::format(attempt),
                        duration::format(total)
                    ),
                )),
            );
        }
    }
    if let (Some(attempt), Some(breaker)) = (attempt, breaker) {
        if let SlidingWindow::Time { span, .. } = breaker.sliding_window() {
            if span < attempt.saturating_mul(2) {
                errors.check(
                    prefix,
                    Err(ConfigError::new(
                        names.window,
                        format!(
                            "must be at least twice {} ({}), got {}",
                            names.attempt,
                            duration::format(attempt.saturating_mul(2)),
                            duration::format(span)
                        ),
                    )),
                );
            }
        }
    }
}

/// The names of the fields [`check_layers`] blames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerNames {
    pub(crate) total: &'static str,
    pub(crate) attempt: &'static str,
    pub(crate) window: &'static str,
}

const PRESET_NAMES: LayerNames = LayerNames {
    total: "total_timeout",
    attempt: "attempt_timeout",
    window: "breaker.sliding_window.span",
};

impl ClientParts {
    fn standard(name: String) -> Self {
        Self {
            name,
            rate_limit: default_rate_limit(),
            total_timeout: TimeoutConfig::new(Duration::from_secs(30)),
            retry: RetryConfig::builder()
                .max_attempts(4)
                .backoff(ExponentialBackoff::new(
                    Duration::from_secs(2),
                    2.0,
                    Duration::from_secs(30),
                ))
                .jitter(EqualJitter)
                .build()
                .expect("the default retry is valid"),
            breaker: BreakerConfig::builder()
                .time_window(Duration::from_secs(30), 30)
                .minimum_calls(100)
                .failure_rate_threshold(10.0)
                .wait_in_open(Duration::from_secs(5))
                .build()
                .expect("the default breaker is valid"),
            bulkhead: BulkheadConfig::builder()
                .max_concurrent_calls(1_000)
                .build()
                .expect("the default bulkhead is valid"),
            attempt_timeout: TimeoutConfig::new(Duration::from_secs(10)),
        }
    }

    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        errors.check("rate_limit", self.rate_limit.validate());
        errors.check("total_timeout", self.total_timeout.validate());
        errors.check("retry", self.retry.validate());
        errors.check("breaker", self.breaker.validate());
        errors.check("bulkhead", self.bulkhead.validate());
        errors.check("attempt_timeout", self.attempt_timeout.validate());
        check_layers(
            &mut errors,
            "",
            PRESET_NAMES,
            Some(self.total_timeout.timeout()),
            Some(self.attempt_timeout.timeout()),
            Some(&self.breaker),
        );
        errors.into_result(())
    }

    fn build<P, C>(
        self,
        retry: impl FnOnce(String, RetryConfig) -> Result<RetryLayer<P>, ConfigError>,
        classifier: C,
    ) -> Result<ClientStackLayer<P, C>, ConfigErrors> {
        self.validate()?;
        let name = self.name;
        let limiter = RateLimiter::from_config(name.as_str(), self.rate_limit)
            .map_err(|e| e.within("rate_limit"))?;
        let breaker =
            Breaker::from_config(name.as_str(), self.breaker).map_err(|e| e.within("breaker"))?;
        let bulkhead = Bulkhead::from_config(name.as_str(), self.bulkhead)
            .map_err(|e| e.within("bulkhead"))?;
        let retry = retry(name, self.retry).map_err(|e| e.within("retry"))?;
        let layers = Stack::new(
            Stack::new(
                Stack::new(
                    Stack::new(
                        Stack::new(
                            TimeoutLayer::new(self.attempt_timeout.timeout()),
                            BulkheadLayer::new(bulkhead.clone()),
                        ),
                        CircuitBreakerLayer::new(breaker.clone()).classifier(classifier),
                    ),
                    retry,
                ),
                TimeoutLayer::new(self.total_timeout.timeout()),
            ),
            RateLimitLayer::new(limiter.clone()),
        );
        Ok(ClientStackLayer {
            layers,
            breaker,
            bulkhead,
            limiter,
        })
    }
}

macro_rules! client_setters {
    () => {
        /// The rate limit, outermost.
        pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
            self.parts.rate_limit = config;
            self
        }

        /// The deadline of the whole call, retries and their waits
        /// included.
        pub fn total_timeout(mut self, timeout: Duration) -> Self {
            self.parts.total_timeout = TimeoutConfig::new(timeout);
            self
        }

        /// The retry's configuration.
        pub fn retry(mut self, config: RetryConfig) -> Self {
            self.parts.retry = config;
            self
        }

        /// The breaker's configuration.
        pub fn breaker(mut self, config: BreakerConfig) -> Self {
            self.parts.breaker = config;
            self
        }

        /// The bulkhead's configuration.
        pub fn bulkhead(mut self, config: BulkheadConfig) -> Self {
            self.parts.bulkhead = config;
            self
        }

        /// The timeout of each attempt.
        pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
            self.parts.attempt_timeout = TimeoutConfig::new(timeout);
            self
        }

        /// Checks every layer's configuration and the rules between them,
        /// reporting every error.
        pub fn validate(&self) -> Result<(), ConfigErrors> {
            self.parts.validate()
        }
    };
}

impl HttpClientStack {
    client_setters!();

    /// Validates everything, then makes the breaker, bulkhead, rate
    /// limiter and retry that every service of the layer shares.
    pub fn build(self) -> Result<HttpClientLayer, ConfigErrors> {
        self.parts.build(RetryLayer::http, HttpClassifier)
    }
}

#[cfg(feature = "grpc")]
impl GrpcClientStack {
    client_setters!();

    /// Validates everything, then makes the breaker, bulkhead, rate
    /// limiter and retry that every service of the layer shares.
    pub fn build(self) -> Result<GrpcClientLayer, ConfigErrors> {
        self.parts
            .build(RetryLayer::grpc, portcullis_core::GrpcClassifier)
    }
}

impl ServerRouteStack {
    /// The rate limit, outermost but for the error mapping.
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.rate_limit = config;
        self
    }

    /// The timeout of a request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = TimeoutConfig::new(timeout);
        self
    }

    /// The breaker's configuration.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// The bulkhead's configuration.
    pub fn bulkhead(mut self, config: BulkheadConfig) -> Self {
        self.bulkhead = config;
        self
    }

    /// Checks every layer's configuration and the rule between them (the
    /// breaker's time window spans at least twice the timeout), reporting
    /// every error.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        errors.check("rate_limit", self.rate_limit.validate());
        errors.check("timeout", self.timeout.validate());
        errors.check("breaker", self.breaker.validate());
        errors.check("bulkhead", self.bulkhead.validate());
        check_layers(
            &mut errors,
            "",
            LayerNames {
                total: "timeout",
                attempt: "timeout",
                window: "breaker.sliding_window.span",
            },
            None,
            Some(self.timeout.timeout()),
            Some(&self.breaker),
        );
        errors.into_result(())
    }

    /// Validates everything, then makes the breaker, bulkhead and rate
    /// limiter that every service of the layer shares.
    pub fn build(self) -> Result<ServerRouteLayer, ConfigErrors> {
        self.validate()?;
        let name = self.name.as_str();
        let limiter =
            RateLimiter::from_config(name, self.rate_limit).map_err(|e| e.within("rate_limit"))?;
        let breaker = Breaker::from_config(name, self.breaker).map_err(|e| e.within("breaker"))?;
        let bulkhead =
            Bulkhead::from_config(name, self.bulkhead).map_err(|e| e.within("bulkhead"))?;
        let layers = Stack::new(
            Stack::new(
                Stack::new(
                    Stack::new(
                        BulkheadLayer::new(bulkhead.clone()),
                        TimeoutLayer::new(self.timeout.timeout()),
                    ),
                    CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier),
                ),
                RateLimitLayer::new(limiter.clone()),
            ),
            ErrorMappingLayer::new(),
        );
        Ok(ServerRouteLayer {
            layers,
            breaker,
            bulkhead,
            limiter,
        })
    }
}

impl<P, C> ClientStackLayer<P, C> {
    /// The breaker every service shares (register it with a
    /// [`Registry`](crate::registry::Registry) to serve it).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The bulkhead every service shares.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The rate limiter every service shares.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S, P, C> Layer<S> for ClientStackLayer<P, C>
where
    ClientLayers<P, C>: Layer<S>,
{
    type Service = <ClientLayers<P, C> as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}

impl<P, C> fmt::Debug for ClientStackLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStackLayer")
            .field("breaker", &self.breaker.name())
            .field("bulkhead", &self.bulkhead.name())
            .field("rate_limiter", &self.limiter.name())
            .finish_non_exhaustive()
    }
}

impl ServerRouteLayer {
    /// The breaker every service shares (register it with a
    /// [`Registry`](crate::registry::Registry) to serve it).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The bulkhead every service shares.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The rate limiter every service shares.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S> Layer<S> for ServerRouteLayer
where
    RouteLayers: Layer<S>,
{
    type Service = <RouteLayers as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}

impl fmt::Debug for ServerRouteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRouteLayer")
            .field("breaker", &self.breaker.name())
            .field("bulkhead", &self.bulkhead.name())
            .field("rate_limiter", &self.limiter.name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_build() {
        let stack = standard_http_client("api").build().unwrap();
        assert_eq!(stack.breaker().name(), "api");
        assert_eq!(stack.bulkhead().max_concurrent_calls(), 1_000);
        assert_eq!(stack.rate_limiter().config().rate(), 1_000);
        let config = stack.breaker().config();
        assert_eq!(config.failure_rate_threshold(), 10.0);
        assert_eq!(config.minimum_calls(), 100);
        assert_eq!(config.wait_in_open(), Duration::from_secs(5));
        assert!(standard_server_route("home").build().is_ok());
    }

    #[test]
    fn an_attempt_longer_than_the_total_is_refused() {
        let errors = standard_http_client("api")
            .total_timeout(Duration::from_secs(5))
            .attempt_timeout(Duration::from_secs(6))
            .build()
            .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(
            errors.to_string(),
            "attempt_timeout: must not be longer than total_timeout (6s > 5s)"
        );
        // Equal is allowed.
        assert!(
            standard_http_client("api")
                .total_timeout(Duration::from_secs(6))
                .attempt_timeout(Duration::from_secs(6))
                .build()
                .is_ok()
        );
    }

    #[test]
    fn a_window_shorter_than_two_attempts_is_refused() {
        let breaker = BreakerConfig::builder()
            .time_window(Duration::from_secs(15), 15)
            .build()
            .unwrap();
        let errors = standard_http_client("api")
            .breaker(breaker.clone())
            .validate()
            .unwrap_err();
        assert_eq!(
            errors.to_string(),
            "breaker.sliding_window.span: must be at least twice attempt_timeout (20s), got 15s"
        );
        // Exactly twice is enough.
        let ok = standard_http_client("api")
            .breaker(breaker.clone())
            .attempt_timeout(Duration::from_millis(7_500));
        assert!(ok.validate().is_ok());
        // A count window has no span to compare.
        let count = BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .build()
            .unwrap();
        assert!(
            standard_http_client("api")
                .breaker(count)
                .validate()
                .is_ok()
        );
        // The server route compares with its one timeout.
        let errors = standard_server_route("home")
            .breaker(breaker)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors.errors()[0].field(), "breaker.sliding_window.span");
    }

    #[test]
    fn every_error_is_reported_with_its_layer() {
        let errors = standard_http_client("api")
            .total_timeout(Duration::ZERO)
            .attempt_timeout(Duration::from_secs(40))
            .retry(RetryConfig::builder().max_attempts(4).build().unwrap())
            .build()
            .unwrap_err();
        let fields: Vec<_> = errors.errors().iter().map(ConfigError::field).collect();
        assert_eq!(
            fields,
            [
                "total_timeout.timeout",
                "attempt_timeout",
                "breaker.sliding_window.span"
            ],
            "{errors}"
        );
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn the_grpc_stack_checks_the_same_rules() {
        assert!(standard_grpc_client("greeter").build().is_ok());
        let errors = standard_grpc_client("greeter")
            .attempt_timeout(Duration::from_secs(31))
            .build()
            .unwrap_err();
        assert!(errors.find("attempt_timeout").is_some(), "{errors}");
        assert!(
            errors.find("breaker.sliding_window.span").is_some(),
            "{errors}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_http_client_stack_retries_through_its_breaker() {
        use std::convert::Infallible;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};

        use axum::body::Body;
        use http::{Request, Response, StatusCode};
        use tower::{ServiceExt, service_fn};

        use crate::retry::ReplayBody;

        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        // Answers 503 twice, then 200.
        let upstream = service_fn(move |_: Request<ReplayBody<Body>>| {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut response = Response::new(Body::empty());
                if call < 2 {
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok::<_, Infallible>(response)
            }
        });
        let stack = standard_http_client("inventory").build().unwrap();
        let response = stack
            .layer(upstream)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let breaker = stack.breaker().snapshot();
        assert_eq!(
            (breaker.buffered_calls, breaker.failed_calls),
            (3, 2),
            "the breaker inside the retry sees each attempt"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_route_stack_answers_a_timeout_with_504_and_counts_it() {
        use std::convert::Infallible;

        use axum::body::Body;
        use http::{Request, Response};
        use tower::{ServiceExt, service_fn};

        let hangs = service_fn(|_: Request<Body>| {
            std::future::pending::<Result<Response<Body>, Infallible>>()
        });
        let stack = standard_server_route("reports")
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let breaker = stack.breaker().clone();
        let response: Result<_, Infallible> = stack
            .layer(hangs)
            .oneshot(Request::new(Body::empty()))
            .await;
        assert_eq!(response.unwrap().status(), 504);
        assert_eq!(
            breaker.snapshot().failed_calls,
            1,
            "the timeout is inside the breaker, which counts it"
        );
    }
}
