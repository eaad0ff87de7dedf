//! Stacks built from a config file, through the registry, with reload.

use std::convert::Infallible;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use portcullis_core::{BoxError, ConfigError, HttpClassifier};
use tower::layer::layer_fn;
use tower::util::{BoxCloneSyncService, BoxCloneSyncServiceLayer};
use tower::{Layer, Service, ServiceExt};

use super::file::{ConfigFile, FallbackConfig, FallbackOn, Profile, RateLimitKey, RateLimitScope};
use crate::breaker::CircuitBreakerLayer;
use crate::bulkhead::BulkheadLayer;
use crate::client::PerAuthorityLayer;
use crate::error::ConfigErrors;
use crate::fallback::{Failure, FallbackCounters, FallbackLayer, OnFailure, OnRejection};
use crate::http::ErrorMappingLayer;
use crate::limit::LimitLayer;
use crate::ratelimit::key::{BoundedKey, ClientIp, Header, Route};
use crate::ratelimit::{KeyExtractor, KeyedRateLimiter, RateLimitLayer, RateLimiter};
#[cfg(feature = "redis")]
use crate::redis::{FleetLimiter, FleetRateLimitLayer};
use crate::registry::{Overrides, Registry, RouteStats, RouteStatsLayer};
use crate::retry::{ReplayBody, RetryConfig, RetryLayer};
use crate::timeout::TimeoutLayer;

/// `x-portcullis-fallback: true`, on every answer of a configured fallback.
pub const X_PORTCULLIS_FALLBACK: HeaderName = HeaderName::from_static("x-portcullis-fallback");

/// The layer for an axum route built from a profile: boxed, with
/// `Error = Infallible`.
pub type RouteLayer<S, ReqB, ResB> =
    BoxCloneSyncServiceLayer<S, Request<ReqB>, Response<ResB>, Infallible>;

/// The layer for a client built from a profile: boxed, failing with a
/// `BoxError`; its inner service receives `Request<ReplayBody<B>>`.
pub type UpstreamLayer<S, B, ResB> =
    BoxCloneSyncServiceLayer<S, Request<B>, Response<ResB>, BoxError>;

type Boxed<Req, Res> = BoxCloneSyncService<Req, Res, BoxError>;

/// The live stacks of a config file: builds the layer of each route and
/// upstream, with its breaker and bulkhead from the [`Registry`], and
/// applies a reloaded file to them.
///
/// A clone is another handle to the same stacks.
#[derive(Clone)]
pub struct Routes {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Registry,
    config: Mutex<ConfigFile>,
    /// The fleet limits' connection and limiters, made by the first stack
    /// that needs them.
    #[cfg(feature = "redis")]
    fleet: Mutex<Fleet>,
}

/// The Redis side of the fleet limits of a file.
#[cfg(feature = "redis")]
#[derive(Default)]
struct Fleet {
    /// The connection, and the URL it is to: one for every fleet limit.
    connection: Option<(String, redis::aio::ConnectionManager)>,
    /// The limiters made, by route or upstream name: every stack built for
    /// a name shares its limiter, until a reload changes its config.
    limiters: std::collections::HashMap<String, FleetLimiter>,
}

/// What a [reload](Routes::reload) changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reload {
    /// Live breakers reconfigured (keeping their window and state).
    pub breakers: usize,
    /// The layers whose change applies only to stacks built after the
    /// reload (`routes.search.timeout`, say): rate limits, timeouts,
    /// retries and fallbacks are fixed when a stack is built.
    pub not_live: Vec<String>,
}

/// No route or upstream of that name is in the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRoute {
    name: String,
}

impl Routes {
    /// The stacks of `config`, with breakers and bulkheads from
    /// `registry`: their configs are set in the registry under the route's
    /// (or upstream's) name.
    pub fn new(config: ConfigFile, registry: Registry) -> Result<Self, ConfigErrors> {
        apply(&registry, &config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                registry,
                config: Mutex::new(config),
                #[cfg(feature = "redis")]
                fleet: Mutex::default(),
            }),
        })
    }

    /// [`Routes::new`] of a TOML text.
    pub fn from_toml(text: &str, registry: Registry) -> Result<Self, ConfigErrors> {
        Self::new(ConfigFile::from_toml(text)?, registry)
    }

    /// [`Routes::new`] of the TOML file at `path`; a file that cannot be
    /// read is an error named by its path
    /// ([`ConfigFile::from_file`]).
    pub fn from_file(
        path: impl AsRef<std::path::Path>,
        registry: Registry,
    ) -> Result<Self, ConfigErrors> {
        Self::new(ConfigFile::from_file(path)?, registry)
    }

    /// The registry the breakers and bulkheads live in.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The config in force.
    pub fn config(&self) -> ConfigFile {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConfigFile> {
        self.shared
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The layer of the route named `route`, for an axum route (or any HTTP
    /// server service), outermost first: error mapping → fallback → route
    /// statistics → rate limit → circuit breaker → concurrency limit →
    /// timeout → bulkhead → attempt timeout, each present when its section is in the route's
    /// profile but the statistics, always there. The
    /// timeout is inside the breaker (as Resilience4j puts its
    /// `TimeLimiter`), so that a handler that hangs is a failure the
    /// breaker counts rather than a call cancelled above it.
    ///
    /// The statistics are the registry's [`RouteStats`] named `route`
    /// (`registry.routes().get(route)`, served at `/health/routes/{route}`).
    /// They record every call inside the fallback and the error mapping,
    /// where a timeout, a breaker's, bulkhead's or rate limiter's
    /// rejection is still its typed error (the fallback would answer for
    /// it, the mapping turn it into a 503, 504 or 429 response): so they
    /// count timeouts and rejections as such, and the handler's 5xx (and
    /// 408 and 429, as for the breaker: [`HttpClassifier`]) and errors as
    /// failures. Their latency is the whole stack's but the fallback's
    /// answer. The fallback's counters are attached to them, so the
    /// fallbacks taken, by cause, are in the same figures.
    ///
    /// The breaker and bulkhead are the registry's, named `route`: they
    /// are served at `/health/breakers` and `/health/bulkheads` under that
    /// name, and a reload reconfigures them. The breaker judges with
    /// [`HttpClassifier`] (the handler's 5xx are failures). The rate
    /// limiter is the registry's too (`/health/ratelimiters`), named
    /// `route`, and a reload changes its limit; a fleet limit
    /// (`scope = "fleet"`, feature `redis`) is a
    /// `FleetLimiter` named `route` instead,
    /// on the file's Redis, one per name for every stack built from this
    /// `Routes`, and must be built inside a tokio runtime. Errors become responses ([`ErrorMappingLayer`]), so the layer's
    /// services have `Error = Infallible`.
    ///
    /// The stack is boxed, a layer at a time (one allocation per layer and
    /// call), since which layers it has is known only at run time. For a
    /// stack fixed in code, use [`preset`](crate::preset) or
    /// [`ServiceBuilderExt`](crate::ServiceBuilderExt): they are not boxed.
    pub fn route_layer<S, ReqB, ResB>(
        &self,
        route: &str,
    ) -> Result<RouteLayer<S, ReqB, ResB>, UnknownRoute>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        ReqB: Send + 'static,
        ResB: From<Bytes> + Default + Send + 'static,
    {
        let profile = self
            .lock()
            .route(route)
            .cloned()
            .ok_or_else(|| UnknownRoute {
                name: route.to_owned(),
            })?;
        let mut parts = Parts::new(
            &self.shared.registry,
            route,
            &profile,
            TimeoutPlace::InsideBreaker,
            false,
        );
        self.fleet_limit(&mut parts);
        Ok(BoxCloneSyncServiceLayer::new(layer_fn(move |inner: S| {
            let service: Boxed<Request<ReqB>, Response<ResB>> =
                BoxCloneSyncService::new(inner.map_err(Into::into));
            let service = parts.inner(service);
            let service = parts.outer(service);
            BoxCloneSyncService::new(InSpan::route(
                ErrorMappingLayer::new().layer(service),
                &parts.name,
            ))
        })))
    }

    /// The layer of the upstream named `upstream`, for an HTTP client,
    /// outermost first: fallback → route statistics → rate limit → timeout
    /// → retry → circuit breaker → concurrency limit → bulkhead → attempt
    /// timeout, each present
    /// when its section is in the upstream's profile but the statistics,
    /// always there. The timeout bounds the whole call,
    /// retries included, so it cancels an attempt before the breaker sees
    /// it: a profile with a breaker and a timeout must have an
    /// `attempt_timeout` to be bound to an upstream (checked when loaded).
    ///
    /// With `per_host = true` in the upstream's binding, the breaker (and
    /// bulkhead) is one per request authority (`host:port`), through a
    /// [`PerAuthorityLayer`]: the registry's `breaker_for(upstream, host)`,
    /// served at `/health/breakers` under the upstream's name with the host
    /// as key, made with the upstream's config (its profile over
    /// `defaults`), which a reload changes on every host's breaker. The
    /// rate limit, timeout, retry (and its budget) and fallback stay one
    /// for the upstream. A request without an authority then fails with
    /// [`NoAuthority`](crate::client::NoAuthority).
    ///
    /// The retry is [`RetryLayer::http`]'s; the inner service receives
    /// `Request<ReplayBody<B>>` whether the profile retries or not (without
    /// a retry section, the call has one attempt). Errors are not mapped:
    /// the layer fails with the rejections as they are. Breakers, bulkheads
    /// and boxing as for [`route_layer`](Self::route_layer).
    ///
    /// The statistics are the registry's [`RouteStats`] named `upstream`,
    /// as for a route: inside the fallback, so that the timeout and the
    /// rejections are seen as such, and outside the retry, so that they
    /// count one outcome and one latency per call, retries included (the
    /// breaker, inside the retry, sees each attempt). The retry layer's
    /// metrics (its retries made, which are not its budget's withdrawals)
    /// and the fallback's counters are attached to them.
    pub fn upstream_layer<S, B, ResB>(
        &self,
        upstream: &str,
    ) -> Result<UpstreamLayer<S, B, ResB>, UnknownRoute>
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        ResB: From<Bytes> + Send + 'static,
    {
        let (profile, per_host) = {
            let config = self.lock();
            let profile = config
                .upstream(upstream)
                .cloned()
                .ok_or_else(|| UnknownRoute {
                    name: upstream.to_owned(),
                })?;
            (profile, config.is_per_host(upstream))
        };
        let mut parts = Parts::new(
            &self.shared.registry,
            upstream,
            &profile,
            TimeoutPlace::OutsideRetry,
            per_host,
        );
        self.fleet_limit(&mut parts);
        let retry = profile.retry.clone().unwrap_or_else(|| {
            RetryConfig::builder()
                .max_attempts(1)
                .build()
                .expect("one attempt is valid")
        });
        let budget = retry
            .budget()
            .map(|_| self.shared.registry.budgets().get(upstream));
        let mut retry = RetryLayer::http(upstream, retry).expect("validated when loaded");
        if let Some(budget) = budget {
            retry = retry.with_budget(budget);
        }
        if profile.retry.is_some() {
            let retries = retry.clone();
            parts.stats.attach_retries(move || retries.metrics());
        }
        Ok(BoxCloneSyncServiceLayer::new(layer_fn(move |inner: S| {
            let service: Boxed<Request<ReplayBody<B>>, Response<ResB>> =
                BoxCloneSyncService::new(inner.map_err(Into::into));
            let service = parts.inner(service);
            let service: Boxed<Request<B>, Response<ResB>> =
                BoxCloneSyncService::new(retry.layer(service));
            BoxCloneSyncService::new(InSpan::upstream(parts.outer(service), &parts.name))
        })))
    }

    /// Gives `parts` its fleet limiter, if its profile's rate limit says
    /// `scope = "fleet"`: the one made for its name, or a new one on the
    /// file's Redis connection (made by the first fleet limit, lazily: it
    /// connects in the background, and until Redis answers the fail policy
    /// decides).
    #[cfg(feature = "redis")]
    fn fleet_limit(&self, parts: &mut Parts) {
        let profile = &parts.profile;
        let Some(limit) = &profile.rate_limit else {
            return;
        };
        if profile.rate_limit_scope != RateLimitScope::Fleet {
            return;
        }
        let redis = self
            .lock()
            .redis()
            .cloned()
            .expect("validated when loaded: a fleet limit has a [redis] section");
        let config = redis
            .fleet_config(limit.clone())
            .expect("validated when loaded");
        let mut fleet = self
            .shared
            .fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(limiter) = fleet.limiters.get(&parts.name)
            && limiter.config() == &config
        {
            parts.limiter = Some(Limiter::Fleet(limiter.clone()));
            return;
        }
        let connection = match &fleet.connection {
            Some((url, connection)) if url == redis.url() => connection.clone(),
            _ => {
                let client = redis::Client::open(redis.url()).expect("validated when loaded");
                let connection =
                    FleetLimiter::connection(client).expect("a lazy connection is made at once");
                fleet.connection = Some((redis.url().to_owned(), connection.clone()));
                connection
            }
        };
        let limiter = FleetLimiter::new(parts.name.as_str(), config, connection)
            .expect("validated when loaded");
        fleet.limiters.insert(parts.name.clone(), limiter.clone());
        parts.limiter = Some(Limiter::Fleet(limiter));
    }

    #[cfg(not(feature = "redis"))]
    fn fleet_limit(&self, _parts: &mut Parts) {}

    /// Reads `text` as the new config file and applies it: all of it is
    /// validated first, and nothing changes if anything is wrong (every
    /// error is reported).
    ///
    /// What changes live, keeping state: the breakers' configs (their
    /// window, state and half-open permits are kept; a new window shape
    /// cannot be applied to a live breaker and is an error), the rate
    /// limits (what a limiter admitted still counts against the new limit)
    /// and the ratio and floor of retry budgets (a budget keeps its
    /// balance; a new `ttl` is an error). A live bulkhead or concurrency
    /// limiter cannot be reconfigured (an error, as in the registry).
    /// The breakers and bulkheads of a `per_host` upstream are keyed
    /// instances of the upstream's name: a reload reaches every host's.
    /// What applies only to stacks built afterwards, listed in
    /// [`Reload::not_live`]: timeouts, retry policies and fallbacks,
    /// `per_host` turned on or off,
    /// a layer added to or removed from a profile, and a route removed from
    /// the file (its built stack keeps working as it was). A route added by
    /// the reload can be built with [`route_layer`](Self::route_layer)
    /// afterwards.
    pub fn reload(&self, text: &str) -> Result<Reload, ConfigErrors> {
        self.reload_config(ConfigFile::from_toml(text)?)
    }

    /// [`reload`](Self::reload) of a parsed file.
    pub fn reload_config(&self, config: ConfigFile) -> Result<Reload, ConfigErrors> {
        let mut current = self.lock();
        let breakers = apply(&self.shared.registry, &config)?;
        let mut not_live = Vec::new();
        for (section, old_names, new_names) in [
            ("routes", &current.routes, &config.routes),
            ("upstreams", &current.upstreams, &config.upstreams),
        ] {
            for name in old_names.keys() {
                let old = current.profiles.get(&old_names[name]);
                let new = new_names.get(name).and_then(|p| config.profiles.get(p));
                let (Some(old), Some(new)) = (old, new) else {
                    if new_names.get(name).is_none() {
                        not_live.push(format!("{section}.{name}"));
                    }
                    continue;
                };
                if section == "upstreams" && current.is_per_host(name) != config.is_per_host(name) {
                    not_live.push(format!("{section}.{name}.per_host"));
                }
                for (layer, changed) in [
                    (
                        "rate_limit",
                        old.rate_limit.is_some() != new.rate_limit.is_some()
                            || old.rate_limit_key != new.rate_limit_key
                            || old.rate_limit_scope != new.rate_limit_scope
                            || ((new.rate_limit_key.is_some()
                                || new.rate_limit_scope == RateLimitScope::Fleet)
                                && old.rate_limit != new.rate_limit),
                    ),
                    ("timeout", old.timeout != new.timeout),
                    (
                        "retry",
                        retry_policy(&old.retry) != retry_policy(&new.retry),
                    ),
                    ("breaker", old.breaker.is_some() != new.breaker.is_some()),
                    ("limit", old.limit.is_some() != new.limit.is_some()),
                    ("bulkhead", old.bulkhead.is_some() != new.bulkhead.is_some()),
                    (
                        "attempt_timeout",
                        old.attempt_timeout != new.attempt_timeout,
                    ),
                    ("fallback", old.fallback != new.fallback),
                ] {
                    if changed {
                        not_live.push(format!("{section}.{name}.{layer}"));
                    }
                }
            }
        }
        #[cfg(feature = "redis")]
        if current.redis() != config.redis() {
            not_live.push("redis".to_owned());
        }
        *current = config;
        Ok(Reload { breakers, not_live })
    }
}

/// Checks that the registry's live breakers and bulkheads can take the
/// configs of `config`, then sets them, under the route's or upstream's
/// name. All or nothing as far as the checks go.
fn apply(registry: &Registry, config: &ConfigFile) -> Result<usize, ConfigErrors> {
    let mut errors = ConfigErrors::new();
    // The live instances of each name, plain and keyed (a per-host
    // upstream's): found once, checked for every binding.
    let breakers = registry.breakers().list();
    let bulkheads = registry.bulkheads().list();
    let limiters = registry.limiters();
    for (name, path, profile) in config.bound() {
        if let Some(new) = &profile.breaker {
            let mut live = breakers
                .iter()
                .filter(|b| b.snapshot.name == name)
                .filter_map(|b| registry.breakers().find(name, b.key.as_deref()));
            if live.any(|live| live.config().sliding_window() != new.sliding_window()) {
                errors.push(ConfigError::new(
                    format!("{path}.breaker.sliding_window"),
                    format!("cannot change on the live breaker '{name}', which keeps its window"),
                ));
            }
        }
        if let Some(new) = &profile.bulkhead {
            let mut live = bulkheads
                .iter()
                .filter(|b| b.snapshot.name == name)
                .filter_map(|b| registry.bulkheads().find(name, b.key.as_deref()));
            if live.any(|live| live.config() != new) {
                errors.push(ConfigError::new(
                    format!("{path}.bulkhead"),
                    format!("cannot change on the live bulkhead '{name}'"),
                ));
            }
        }
        if let (Some(new), Some(live)) = (&profile.limit, limiters.find(name, None)) {
            if live.config() != new {
                errors.push(ConfigError::new(
                    format!("{path}.limit"),
                    format!("cannot change on the live concurrency limiter '{name}'"),
                ));
            }
        }
        let budget = profile.retry.as_ref().and_then(RetryConfig::budget);
        if let (Some(new), Some(live)) = (budget, registry.budgets().find(name, None)) {
            if live.config().ttl() != new.ttl() {
                errors.push(ConfigError::new(
                    format!("{path}.retry.budget.ttl"),
                    format!(
                        "cannot change on the live retry budget '{name}', which keeps its window"
                    ),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut changed = 0;
    for (name, path, profile) in config.bound() {
        if let Some(breaker) = &profile.breaker {
            let overrides = Overrides::from_config(breaker).map_err(|e| e.within(&path))?;
            changed += registry
                .breakers()
                .update_config(name, overrides)
                .map_err(|e| ConfigError::new(format!("{path}.breaker"), e.to_string()))?;
        }
        if let Some(bulkhead) = &profile.bulkhead {
            let overrides = Overrides::from_config(bulkhead).map_err(|e| e.within(&path))?;
            registry
                .bulkheads()
                .update_config(name, overrides)
                .map_err(|e| ConfigError::new(format!("{path}.bulkhead"), e.to_string()))?;
        }
        if let Some(limit) = &profile.limit {
            let overrides = Overrides::from_config(limit).map_err(|e| e.within(&path))?;
            registry
                .limiters()
                .update_config(name, overrides)
                .map_err(|e| ConfigError::new(format!("{path}.limit"), e.to_string()))?;
        }
        if let Some(rate_limit) = profile.rate_limit.as_ref().filter(|_| {
            profile.rate_limit_key.is_none() && profile.rate_limit_scope == RateLimitScope::Local
        }) {
            // A burst left out means "the rate", not the registry's default.
            let overrides = Overrides::from_config(rate_limit)
                .map_err(|e| e.within(&path))?
                .set("burst", rate_limit.burst());
            registry
                .rate_limiters()
                .update_config(name, overrides)
                .map_err(|e| ConfigError::new(format!("{path}.rate_limit"), e.to_string()))?;
        }
        if let Some(budget) = profile.retry.as_ref().and_then(RetryConfig::budget) {
            let overrides = Overrides::from_config(budget).map_err(|e| e.within(&path))?;
            registry
                .budgets()
                .update_config(name, overrides)
                .map_err(|e| ConfigError::new(format!("{path}.retry.budget"), e.to_string()))?;
        }
    }
    Ok(changed)
}

/// What of a retry config is fixed in a built stack: all but the numbers of
/// its budget, which the registry applies live (a budget added or removed
/// is not live either).
fn retry_policy(config: &Option<RetryConfig>) -> Option<toml::Value> {
    let mut value = toml::Value::try_from(config.as_ref()?).ok()?;
    if let Some(table) = value.as_table_mut() {
        if table.remove("budget").is_some() {
            table.insert("budget".to_owned(), toml::Value::Boolean(true));
        }
    }
    Some(value)
}

/// The layers of one profile, made once per route: every service shares
/// them.
#[derive(Clone)]
struct Parts {
    name: String,
    registry: Registry,
    profile: Profile,
    limiter: Option<Limiter>,
    /// Where the profile's `timeout` goes: inside the breaker for a route
    /// (so that the breaker counts a handler that hangs), outside the
    /// retry for an upstream (so that it bounds the retries).
    timeout: TimeoutPlace,
    /// Whether the breaker and bulkhead are one per request authority.
    per_host: bool,
    /// The registry's statistics of this name.
    stats: RouteStats,
    /// The counters of the profile's fallback, attached to `stats`: one
    /// set for every service built from these parts.
    fallbacks: Option<FallbackCounters>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeoutPlace {
    InsideBreaker,
    OutsideRetry,
}

/// A config-built stack whose calls run in a span naming their route or
/// upstream, so that every event of its layers (a breaker's transition, a
/// timeout, a fallback taken, a retry) says where it happened.
#[derive(Clone)]
struct InSpan<S> {
    inner: S,
    name: Arc<str>,
    upstream: bool,
}

impl<S> InSpan<S> {
    fn route(inner: S, name: &str) -> Self {
        Self {
            inner,
            name: name.into(),
            upstream: false,
        }
    }

    fn upstream(inner: S, name: &str) -> Self {
        Self {
            inner,
            name: name.into(),
            upstream: true,
        }
    }
}

impl<S, Req> Service<Req> for InSpan<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        use tracing::Instrument;
        let span = if self.upstream {
            tracing::info_span!("portcullis", upstream = %self.name)
        } else {
            tracing::info_span!("portcullis", route = %self.name)
        };
        self.inner.call(request).instrument(span)
    }
}

/// A route's rate limiter: the registry's, shared by every caller, or one
/// budget per key (not in the registry: it is the route's own).
#[derive(Clone)]
enum Limiter {
    Shared(RateLimiter),
    Keyed(KeyedRateLimiter<BoundedKey>, ConfigKey),
    /// Shared by the fleet, in Redis.
    #[cfg(feature = "redis")]
    Fleet(FleetLimiter),
}

/// The key a config file names, read from a request.
#[derive(Clone, Debug)]
enum ConfigKey {
    ClientIp(ClientIp),
    Route(Route),
    Header(Header),
}

impl<B> KeyExtractor<Request<B>> for ConfigKey {
    type Key = BoundedKey;

    fn extract(&self, request: &Request<B>) -> Option<BoundedKey> {
        match self {
            Self::ClientIp(client_ip) => client_ip.extract(request).map(|ip| match ip {
                IpAddr::V4(v4) => BoundedKey::new(&v4.octets()),
                IpAddr::V6(v6) => BoundedKey::new(&v6.octets()),
            }),
            Self::Route(route) => route.extract(request),
            Self::Header(header) => header.extract(request),
        }
    }
}

impl Parts {
    fn new(
        registry: &Registry,
        name: &str,
        profile: &Profile,
        timeout: TimeoutPlace,
        per_host: bool,
    ) -> Self {
        // A fleet limit's limiter is made by `Routes::fleet_limit`.
        let local = profile.rate_limit_scope == RateLimitScope::Local;
        let limiter = profile.rate_limit.as_ref().filter(|_| local).map(|config| {
            let key = match &profile.rate_limit_key {
                None => return Limiter::Shared(registry.rate_limiters().get(name)),
                Some(RateLimitKey::ClientIp) => ConfigKey::ClientIp(ClientIp::new()),
                Some(RateLimitKey::Route) => ConfigKey::Route(Route),
                Some(RateLimitKey::Header(header)) => ConfigKey::Header(Header::new(
                    HeaderName::from_bytes(header.as_bytes()).expect("validated when loaded"),
                )),
            };
            let limiter =
                KeyedRateLimiter::from_config(name, config.clone()).expect("validated when loaded");
            Limiter::Keyed(limiter, key)
        });
        let stats = registry.routes().get(name);
        let fallbacks = profile.fallback.as_ref().map(|_| {
            let counters = FallbackCounters::new();
            stats.attach_fallbacks(counters.clone());
            counters
        });
        Self {
            name: name.to_owned(),
            registry: registry.clone(),
            profile: profile.clone(),
            limiter,
            timeout,
            per_host,
            stats,
            fallbacks,
        }
    }

    /// Breaker → limit → (a route's timeout) → bulkhead → attempt timeout,
    /// around `service`; per host, the limit around the breaker and
    /// bulkhead of the request's authority.
    fn inner<ReqB, ResB>(
        &self,
        service: Boxed<Request<ReqB>, Response<ResB>>,
    ) -> Boxed<Request<ReqB>, Response<ResB>>
    where
        ReqB: Send + 'static,
        ResB: Send + 'static,
    {
        let mut service = service;
        if let Some(attempt) = &self.profile.attempt_timeout {
            service = BoxCloneSyncService::new(TimeoutLayer::new(attempt.timeout()).layer(service));
        }
        if self.per_host {
            // Validated when loaded: a per-host upstream has a breaker, and
            // its timeout is outside the retry.
            let layer = PerAuthorityLayer::new(self.registry.clone(), self.name.as_str())
                .classifier(HttpClassifier);
            let layer = if self.profile.bulkhead.is_some() {
                layer.with_bulkheads()
            } else {
                layer
            };
            return self.limit(BoxCloneSyncService::new(layer.layer(service)));
        }
        if self.profile.bulkhead.is_some() {
            let bulkhead = self.registry.bulkheads().get(&self.name);
            service = BoxCloneSyncService::new(BulkheadLayer::new(bulkhead).layer(service));
        }
        if self.timeout == TimeoutPlace::InsideBreaker {
            service = self.timeout(service);
        }
        service = self.limit(service);
        if self.profile.breaker.is_some() {
            let breaker = self.registry.breakers().get(&self.name);
            service = BoxCloneSyncService::new(
                CircuitBreakerLayer::new(breaker)
                    .classifier(HttpClassifier)
                    .layer(service),
            );
        }
        service
    }

    /// The registry's concurrency limiter of this name around `service`,
    /// if the profile has a `limit`: it judges with [`HttpClassifier`], so
    /// that the handler's 5xx, and the timeouts inside it, back it off.
    fn limit<ReqB, ResB>(
        &self,
        service: Boxed<Request<ReqB>, Response<ResB>>,
    ) -> Boxed<Request<ReqB>, Response<ResB>>
    where
        ReqB: Send + 'static,
        ResB: Send + 'static,
    {
        if self.profile.limit.is_none() {
            return service;
        }
        let limiter = self.registry.limiters().get(&self.name);
        BoxCloneSyncService::new(
            LimitLayer::new(limiter)
                .classifier(HttpClassifier)
                .layer(service),
        )
    }

    /// The profile's `timeout` around `service`, if it has one.
    fn timeout<Req, Res>(&self, service: Boxed<Req, Res>) -> Boxed<Req, Res>
    where
        Req: Send + 'static,
        Res: Send + 'static,
    {
        match &self.profile.timeout {
            Some(timeout) => {
                BoxCloneSyncService::new(TimeoutLayer::new(timeout.timeout()).layer(service))
            }
            None => service,
        }
    }

    /// Fallback → statistics → rate limit → (an upstream's timeout), around
    /// `service`.
    fn outer<B, ResB>(
        &self,
        service: Boxed<Request<B>, Response<ResB>>,
    ) -> Boxed<Request<B>, Response<ResB>>
    where
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        let mut service = service;
        if self.timeout == TimeoutPlace::OutsideRetry {
            service = self.timeout(service);
        }
        service = match &self.limiter {
            None => service,
            Some(Limiter::Shared(limiter)) => {
                BoxCloneSyncService::new(RateLimitLayer::new(limiter.clone()).layer(service))
            }
            Some(Limiter::Keyed(limiter, key)) => BoxCloneSyncService::new(
                RateLimitLayer::keyed(limiter.clone(), key.clone()).layer(service),
            ),
            #[cfg(feature = "redis")]
            Some(Limiter::Fleet(limiter)) => {
                BoxCloneSyncService::new(FleetRateLimitLayer::new(limiter.clone()).layer(service))
            }
        };
        // Inside the fallback: the rejections and timeouts are still errors.
        service = BoxCloneSyncService::new(
            RouteStatsLayer::new(self.stats.clone())
                .classifier(HttpClassifier)
                .layer(service),
        );
        if let Some(fallback) = &self.profile.fallback {
            let counters = self.fallbacks.clone().unwrap_or_default();
            let answer = answer::<ResB>(fallback);
            service = match fallback.get_on() {
                FallbackOn::Rejection => BoxCloneSyncService::new(
                    FallbackLayer::from_error(answer)
                        .with_counters(counters.clone())
                        .on(OnRejection::all())
                        .layer(service),
                ),
                FallbackOn::Failure => BoxCloneSyncService::new(
                    FallbackLayer::from_error(answer)
                        .with_counters(counters.clone())
                        .on(OnFailure::with_classifier(HttpClassifier))
                        .layer(service)
                        .map_err(BoxError::from),
                ),
                _ => BoxCloneSyncService::new(
                    FallbackLayer::from_error(answer)
                        .with_counters(counters.clone())
                        .layer(service)
                        .map_err(BoxError::from),
                ),
            };
        }
        service
    }
}

/// The answer of a configured fallback.
fn answer<ResB: From<Bytes>>(
    config: &FallbackConfig,
) -> impl Fn(Failure<Response<ResB>>) -> Response<ResB> + Clone + Send + Sync + 'static {
    let status = StatusCode::from_u16(config.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = Bytes::from(config.get_body().to_owned());
    let content_type = config
        .get_content_type()
        .and_then(|value| HeaderValue::from_str(value).ok());
    move |_failure| {
        let mut response = Response::new(ResB::from(body.clone()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(X_PORTCULLIS_FALLBACK, HeaderValue::from_static("true"));
        if let Some(content_type) = &content_type {
            headers.insert(http::header::CONTENT_TYPE, content_type.clone());
        }
        response
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.lock();
        f.debug_struct("Routes")
            .field("routes", &config.routes)
            .field("upstreams", &config.upstreams)
            .finish_non_exhaustive()
    }
}

impl UnknownRoute {
    /// The name asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no route or upstream named '{}' in the config",
            self.name
        )
    }
}

impl std::error::Error for UnknownRoute {}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::service_fn;

    use super::*;
    use crate::breaker::State;

    const FILE: &str = r#"
        [profiles.payments.breaker]
        sliding_window = { type = "count", size = 10 }
        minimum_calls = 4
        failure_rate_threshold = 100.0
        wait_in_open = "1m"

        [routes.checkout]
        profile = "payments"
    "#;

    /// A route whose handler answers `status`, behind the layer of `route`.
    fn route(
        routes: &Routes,
        route: &str,
        status: u16,
    ) -> BoxCloneSyncService<Request<Body>, Response<Body>, Infallible> {
        let handler = service_fn(move |_: Request<Body>| async move {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        });
        BoxCloneSyncService::new(routes.route_layer(route).unwrap().layer(handler))
    }

    async fn send(service: &BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>) -> u16 {
        let response = service
            .clone()
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn a_reload_keeps_the_breaker_window() {
        let routes = Routes::from_toml(FILE, Registry::new()).unwrap();
        let failing = route(&routes, "checkout", 500);
        let breaker = routes.registry().breakers().find("checkout", None).unwrap();
        for _ in 0..3 {
            assert_eq!(send(&failing).await, 500);
        }
        assert_eq!(breaker.state(), State::Closed, "3 calls, 4 needed");

        let reload = routes
            .reload(&FILE.replace(
                "failure_rate_threshold = 100.0",
                "failure_rate_threshold = 75.0",
            ))
            .unwrap();
        assert_eq!(reload.breakers, 1);
        assert!(reload.not_live.is_empty(), "{reload:?}");
        assert_eq!(breaker.config().failure_rate_threshold(), 75.0);
        assert_eq!(breaker.state(), State::Closed);

        // The three failures are still in the window: one more opens it.
        assert_eq!(send(&failing).await, 500);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(send(&failing).await, 503, "rejected by the breaker");
    }

    #[tokio::test]
    async fn a_bad_reload_changes_nothing() {
        let routes = Routes::from_toml(FILE, Registry::new()).unwrap();
        let _stack = route(&routes, "checkout", 200);
        let errors = routes
            .reload(&FILE.replace("minimum_calls = 4", "minimum_calls = 40"))
            .unwrap_err();
        assert_eq!(
            errors.to_string(),
            "profiles.payments.breaker.minimum_calls: must not exceed sliding_window.size (10), got 40"
        );
        let errors = routes
            .reload(&FILE.replace("size = 10", "size = 20"))
            .unwrap_err();
        assert_eq!(
            errors.errors()[0].field(),
            "profiles.payments.breaker.sliding_window"
        );
        let breaker = routes.registry().breakers().get("checkout");
        assert_eq!(breaker.config().minimum_calls(), 4);
        assert_eq!(
            breaker.config().sliding_window(),
            crate::breaker::SlidingWindow::Count { size: 10 }
        );
    }

    #[tokio::test]
    async fn what_cannot_change_live_is_listed() {
        let routes = Routes::from_toml(FILE, Registry::new()).unwrap();
        let with_timeout = format!("{FILE}\n[profiles.payments.timeout]\ntimeout = \"1s\"\n");
        let reload = routes.reload(&with_timeout).unwrap();
        assert_eq!(reload.breakers, 0);
        assert_eq!(reload.not_live, ["routes.checkout.timeout"]);
        assert!(routes.config().route("checkout").unwrap().timeout.is_some());
        assert_eq!(
            routes.route_layer::<tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>, Body, Body>("nowhere").unwrap_err().to_string(),
            "no route or upstream named 'nowhere' in the config"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_changes_the_live_rate_limit() {
        let file = r#"
            [profiles.metered.rate_limit]
            rate = 2
            period = "1m"
            [routes.search]
            profile = "metered"
        "#;
        let routes = Routes::from_toml(file, Registry::new()).unwrap();
        let service = route(&routes, "search", 200);
        let limiter = routes
            .registry()
            .rate_limiters()
            .find("search", None)
            .unwrap();
        assert_eq!(limiter.config().burst(), 2, "the burst is the rate");
        assert_eq!(send(&service).await, 200);
        assert_eq!(send(&service).await, 200);
        assert_eq!(send(&service).await, 429);

        let reload = routes
            .reload(&file.replace("rate = 2", "rate = 4"))
            .unwrap();
        assert!(reload.not_live.is_empty(), "{reload:?}");
        assert_eq!(limiter.config().burst(), 4);
        // The two calls admitted still count: two more pass, not four.
        assert_eq!(send(&service).await, 200);
        assert_eq!(send(&service).await, 200);
        assert_eq!(send(&service).await, 429);
        let served = routes.registry().rate_limiters().list();
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].snapshot.name, "search");
    }

    #[tokio::test]
    async fn a_reload_changes_the_live_retry_budget_but_not_its_window() {
        let file = r#"
            [profiles.api.retry]
            max_attempts = 2
            budget = { ratio = 0.2, min_per_second = 10, ttl = "10s" }
            [upstreams.inventory]
            profile = "api"
        "#;
        let routes = Routes::from_toml(file, Registry::new()).unwrap();
        let client = service_fn(|_: Request<ReplayBody<Body>>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let _service = routes
            .upstream_layer::<_, Body, Body>("inventory")
            .unwrap()
            .layer(client);
        let budget = routes.registry().budgets().find("inventory", None).unwrap();
        assert_eq!(budget.config().min_per_second(), 10);

        let reload = routes
            .reload(&file.replace("min_per_second = 10", "min_per_second = 3"))
            .unwrap();
        assert!(reload.not_live.is_empty(), "{reload:?}");
        assert_eq!(budget.config().min_per_second(), 3);

        let errors = routes
            .reload(&file.replace("ttl = \"10s\"", "ttl = \"20s\""))
            .unwrap_err();
        assert_eq!(errors.errors()[0].field(), "profiles.api.retry.budget.ttl");
        assert_eq!(budget.config().ttl(), std::time::Duration::from_secs(10));

        let reload = routes
            .reload(&file.replace("max_attempts = 2", "max_attempts = 3"))
            .unwrap();
        assert_eq!(reload.not_live, ["upstreams.inventory.retry"]);
    }

    #[tokio::test]
    async fn a_fallback_answers_for_a_rejection() {
        let routes = Routes::from_toml(
            r#"
            [profiles.cached.bulkhead]
            max_concurrent_calls = 1
            [profiles.cached.fallback]
            status = 200
            body = "cached"
            content_type = "text/plain"
            on = "rejection"
            [routes.catalog]
            profile = "cached"
            "#,
            Registry::new(),
        )
        .unwrap();
        let service = route(&routes, "catalog", 500);
        assert_eq!(send(&service).await, 500, "not a rejection: passed on");
        let bulkhead = routes.registry().bulkheads().find("catalog", None).unwrap();
        let _held = bulkhead.try_acquire().unwrap();
        let response = service
            .clone()
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[X_PORTCULLIS_FALLBACK], "true");
        assert_eq!(response.headers()["content-type"], "text/plain");
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_retries_and_records_each_attempt() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};

        let routes = Routes::from_toml(
            r#"
            [profiles.api.retry]
            max_attempts = 3
            backoff = { type = "constant", delay = "100ms" }
            jitter = { type = "none" }
            [profiles.api.breaker]
            [profiles.api.attempt_timeout]
            timeout = "1s"
            [profiles.once.breaker]
            [upstreams.inventory]
            profile = "api"
            [upstreams.billing]
            profile = "once"
            "#,
            Registry::new(),
        )
        .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        // Answers 503 twice, then 200.
        let client = service_fn(move |_: Request<ReplayBody<Body>>| {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut response = Response::new(Body::empty());
                if call < 2 {
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok::<_, Infallible>(response)
            }
        });
        let layer = routes.upstream_layer("inventory").unwrap();
        let service = layer.layer(client.clone());
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let snapshot = routes.registry().breakers().get("inventory").snapshot();
        assert_eq!(snapshot.buffered_calls, 3, "each attempt is recorded");
        assert_eq!(snapshot.failed_calls, 2);

        // Without a retry section, one attempt.
        calls.store(0, Ordering::SeqCst);
        let once = routes.upstream_layer("billing").unwrap().layer(client);
        let response = once.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
