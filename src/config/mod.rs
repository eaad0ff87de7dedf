//! Per-route stacks from a config file (feature `config`).
//!
//! A TOML file says which layers each route of a server, and each upstream
//! a client calls, has and how they are set; the code names the routes.
//!
//! ```toml
//! # Field values every profile inherits; a section here adds no layer.
//! [defaults.breaker]
//! minimum_calls = 10
//! wait_in_open = "10s"
//!
//! # A profile: the layers it has, each with what differs from `defaults`.
//! [profiles.payments.breaker]
//! failure_rate_threshold = 25.0
//! [profiles.payments.timeout]
//! timeout = "2s"
//! [profiles.payments.bulkhead]
//! max_concurrent_calls = 20
//! [profiles.payments.attempt_timeout]   # each attempt, inside the breaker
//! timeout = "1s"
//!
//! [profiles.search.rate_limit]
//! rate = 100
//! [profiles.search.fallback]
//! status = 200
//! body = '{"results": []}'
//! content_type = "application/json"
//!
//! # Routes and upstreams name a profile.
//! [routes.checkout]
//! profile = "payments"
//! [routes.search]
//! profile = "search"
//! [upstreams.inventory]
//! profile = "payments"
//! per_host = true                       # a breaker (and bulkhead) per host
//! ```
//!
//! - **Sections** of a profile, in stack order (outermost first):
//!   `rate_limit`, `timeout` (of the whole call, retries included),
//!   `retry` (upstreams only), `breaker`, `limit` (an adaptive
//!   concurrency limit, the registry's limiter named after the route or
//!   upstream: inside the breaker and outside the bulkhead, so that it
//!   sees timeouts and 5xx as drops; on a `per_host` upstream one for all
//!   its hosts), `bulkhead`, `attempt_timeout` (inside the breaker),
//!   `fallback` (outermost of all). On a route, which has no retry, the
//!   `timeout` is inside the breaker instead (rate limit → breaker →
//!   limit → timeout → bulkhead), so that a handler that
//!   hangs counts as a failure; on an upstream a profile with a breaker
//!   and a timeout needs an `attempt_timeout`, which the breaker sees, or
//!   it is refused. Each takes the fields of its layer's
//!   config ([`RateLimitConfig`](crate::ratelimit::RateLimitConfig),
//!   [`TimeoutConfig`](crate::timeout::TimeoutConfig),
//!   [`RetryConfig`](crate::retry::RetryConfig),
//!   [`BreakerConfig`](crate::breaker::BreakerConfig),
//!   [`LimitConfig`](crate::limit::LimitConfig),
//!   [`BulkheadConfig`](crate::bulkhead::BulkheadConfig),
//!   [`FallbackConfig`]); durations are written `"250ms"`, `"1m30s"`. A
//!   `rate_limit` may also say what it is keyed by ([`RateLimitKey`]:
//!   `key = "client_ip"`, `"route"` or `{ header = "x-api-key" }`), each
//!   key then having the whole limit to itself.
//! - **Fleet limits** (feature `redis`): a `rate_limit` with
//!   `scope = "fleet"` ([`RateLimitScope`]) is one limit for every
//!   instance that runs the file against the same Redis, kept there by a
//!   `FleetLimiter` named after the route
//!   (or upstream), in place of the local limiter. The top-level `[redis]`
//!   table (`RedisConfig`) says where Redis is and how the limits behave
//!   when it is slow or away; a fleet limit without it, or with a `key`,
//!   is an error named by its path:
//!
//!   ```toml
//!   [redis]
//!   url = "redis://10.0.0.7:6379/"
//!   timeout = "5ms"            # the longest a call waits for Redis
//!   fail_policy = "local"      # then: "open", "closed", or "local" (limit / instances)
//!   key_prefix = "portcullis:rl:"
//!   instances = 4
//!
//!   [profiles.api.rate_limit]
//!   rate = 200                 # a second, for the whole fleet
//!   burst = 20
//!   scope = "fleet"
//!   ```
//!
//!   Loading the file connects to nothing: the first stack built with a
//!   fleet limit opens the file's one connection, lazily (Redis may be
//!   down then; until it answers, the fail policy decides), so a stack
//!   with a fleet limit must be built inside a tokio runtime, as an axum
//!   app's are. A reload lists a changed `[redis]`, or a changed fleet
//!   limit, in [`Reload::not_live`]: they apply to stacks built
//!   afterwards.
//! - **Inheritance**: a profile's section is laid over the same section of
//!   `defaults`, itself laid over the layer's built-in defaults, field by
//!   field, with the registry's [`Overrides`](crate::registry::Overrides)
//!   (a table-valued field such as `sliding_window` is replaced whole).
//!   A layer is in a profile's stack when the profile has its section (an
//!   empty one takes the defaults).
//! - **Formats**: TOML ([`ConfigFile::from_toml`]), or any serde format
//!   (YAML with `serde_yaml`, JSON) through [`ConfigFile::from_deserializer`].
//! - **Validation**: [`ConfigFile::from_toml`] reports every error of the
//!   file at once, each with its path ([`ConfigErrors`]):
//!   `profiles.payments.breaker.failure_rate_threshold: must be in (0, 100], got 150`;
//!   unknown fields and sections, missing and unknown profiles, a retry on
//!   a server route, an upstream whose breaker could not see its timeout,
//!   and the cross-layer rules of the
//!   [presets](crate::preset) (an attempt timeout longer than the timeout;
//!   a breaker time window shorter than twice the attempt timeout).
//! - **Building**: [`Routes`] holds the file and a
//!   [`Registry`](crate::registry::Registry). [`Routes::route_layer`] is
//!   the layer of an axum route, [`Routes::upstream_layer`] that of a
//!   client. Their breaker, bulkhead, rate limiter and retry budget are
//!   the registry's, **named after the route or upstream** (`checkout`,
//!   `inventory`), so they appear in the registry service's
//!   `/health/breakers`, `/health/bulkheads`, `/health/ratelimiters` and
//!   `/health/budgets` under those names, and can be controlled there.
//!   Each also has the registry's statistics of that name
//!   ([`RouteStats`](crate::registry::RouteStats), at `/health/routes`):
//!   its calls by outcome (success, failure, timeout, rejection), their
//!   latencies, and the fallbacks and retries its stack took.
//! - **Per host**: an upstream with `per_host = true` (upstreams only;
//!   its profile needs a breaker) has one breaker, and one bulkhead if the
//!   profile has one, per request authority (`host:port`), through a
//!   [`PerAuthorityLayer`](crate::client::PerAuthorityLayer): the
//!   registry's keyed instances of the upstream's name, served under that
//!   name with the host as key, each made with the upstream's config
//!   (profile over `defaults`). One client can then call many hosts
//!   without one host's outage opening the breaker for all of them. Its
//!   rate limit, timeouts, retry and fallback stay one for the upstream.
//! - **Reload**: [`Routes::reload`] validates the new text whole (nothing
//!   changes if anything is wrong), then applies the new configs of the
//!   breakers (every host's, for a `per_host` upstream), rate limiters and
//!   retry budgets through the registry, keeping their windows, state and
//!   balances. Timeouts, retry policies, fallbacks, `per_host`, and a
//!   layer added or removed, are fixed when a stack is built: a reload
//!   lists their changes in [`Reload::not_live`], and they apply to stacks
//!   built afterwards.
//!
//! ```
//! use portcullis::config::Routes;
//! use portcullis::registry::Registry;
//! use axum::{Router, routing::get};
//!
//! let routes = Routes::from_toml(r#"
//!     [profiles.payments.breaker]
//!     failure_rate_threshold = 25.0
//!     [profiles.payments.timeout]
//!     timeout = "2s"
//!     [routes.checkout]
//!     profile = "payments"
//! "#, Registry::new()).unwrap();
//!
//! let app: Router = Router::new()
//!     .route("/checkout", get(|| async { "paid" }))
//!     .route_layer(routes.route_layer("checkout").unwrap())
//!     .with_state(());
//! assert_eq!(routes.registry().breakers().get("checkout").config().failure_rate_threshold(), 25.0);
//! # let _ = app;
//! ```

mod file;
#[cfg(feature = "redis")]
mod redis;
mod routes;

pub use file::{ConfigFile, FallbackConfig, FallbackOn, Profile, RateLimitKey, RateLimitScope};
#[cfg(feature = "redis")]
pub use redis::RedisConfig;
pub use routes::{Reload, RouteLayer, Routes, UnknownRoute, UpstreamLayer, X_PORTCULLIS_FALLBACK};

pub use crate::error::ConfigErrors;
