use std::hash::Hash;
use std::sync::Arc;

use portcullis_core::ConfigError;
use tower_layer::Layer;

use crate::{ByKey, KeyedRateLimiter, RateLimit, RateLimitConfig, RateLimiter};

/// Wraps services in a [`RateLimit`].
///
/// Built from a handle with [`new`](Self::new) or [`keyed`](Self::keyed),
/// every service it makes shares that one budget (or set of budgets): every
/// clone, every route, every connection. This is the point of the handle —
/// axum clones a route's service for every request, so a limit that lived
/// in the service itself would limit nothing. Built from a configuration
/// with [`per_service`](Self::per_service) or
/// [`keyed_per_service`](Self::keyed_per_service), each call to
/// [`Layer::layer`] makes a fresh limiter: one per route when axum applies
/// the layer once per route.
///
/// **Under axum**, a layer on a handler (`get(handler).layer(..)`) is applied
/// when the router is given its state. Call `Router::with_state` (with `()`
/// if it has none) before serving: served without it, the router is given
/// its state once per connection, and a per-service limiter would then
/// limit each connection on its own. A layer built from a handle is immune
/// to this.
///
/// ```
/// use portcullis_ratelimit::{RateLimitConfig, RateLimitLayer, RateLimiter};
/// use std::time::Duration;
/// use tower::{ServiceBuilder, service_fn};
///
/// let config = RateLimitConfig::per_second(100).burst(10).build().unwrap();
/// let shared = RateLimiter::from_config("api", config.clone()).unwrap();
/// let a = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(shared.clone()))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// // `a`, its clones and any other service built from `shared` draw on one budget.
///
/// let per_route = RateLimitLayer::per_service("route", config).unwrap();
/// # let _ = (a, per_route);
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer<L = RateLimiter> {
    limit: L,
    per_service: bool,
}

impl RateLimitLayer {
    /// Every service shares `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limit: limiter,
            per_service: false,
        }
    }

    /// Every call to `layer` makes a new limiter named `name` with `config`
    /// (validated here, so that `layer` cannot fail).
    pub fn per_service(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            limit: RateLimiter::from_config(name, config)?,
            per_service: true,
        })
    }
}

impl<X, K> RateLimitLayer<ByKey<X, K>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Every service shares `limiter`, keyed by what `extractor` finds in
    /// each request.
    pub fn keyed(limiter: KeyedRateLimiter<K>, extractor: X) -> Self {
        Self {
            limit: ByKey::new(limiter, extractor),
            per_service: false,
        }
    }

    /// Every call to `layer` makes a new keyed limiter named `name` with
    /// `config` (validated here).
    pub fn keyed_per_service(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
        extractor: X,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            limit: ByKey::new(KeyedRateLimiter::from_config(name, config)?, extractor),
            per_service: true,
        })
    }
}

impl<L> RateLimitLayer<L> {
    /// The limit, when the layer shares one; `None` when each `layer` call
    /// makes its own.
    pub fn limit(&self) -> Option<&L> {
        (!self.per_service).then_some(&self.limit)
    }

    /// The same layer, answering HTTP requests: rejections become `429 Too
    /// Many Requests` responses (see [`crate::http`]).
    #[cfg(feature = "http")]
    pub fn into_http(self) -> crate::http::HttpRateLimitLayer<L> {
        crate::http::HttpRateLimitLayer::new(self)
    }

    pub(crate) fn make(&self, fresh: impl FnOnce(&L) -> L) -> L
    where
        L: Clone,
    {
        if self.per_service {
            fresh(&self.limit)
        } else {
            self.limit.clone()
        }
    }
}

impl<S> Layer<S> for RateLimitLayer<RateLimiter> {
    type Service = RateLimit<S, RateLimiter>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::with_limit(inner, self.make(RateLimiter::fresh))
    }
}

impl<S, X, K> Layer<S> for RateLimitLayer<ByKey<X, K>>
where
    X: Clone,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Service = RateLimit<S, ByKey<X, K>>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::with_limit(inner, self.make(ByKey::fresh))
    }
}
