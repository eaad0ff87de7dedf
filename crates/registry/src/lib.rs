//! The shared registry of Portcullis instances, and its HTTP face.
//!
//! A service stack holds breaker, bulkhead, rate-limiter and retry-budget
//! handles; an operator needs to see them
//! all, change their configs without a restart, and flip one by hand when a
//! dependency is known to be down. The [`Registry`] is where instances are
//! made and found by name (and by `(name, key)`, e.g. one breaker per
//! upstream host), from named configs that inherit from a default; it
//! applies config updates to the live instances without losing their
//! state, and numbers every event in one feed. The [`RegistryService`]
//! serves it over HTTP, in the manner of Resilience4j's actuator endpoints
//! and the Hystrix dashboard: health, figures, Prometheus metrics,
//! server-sent events, a self-contained dashboard page, and manual control
//! behind a bearer token.
//!
//! # Example
//!
//! ```
//! use http_body_util::BodyExt;
//! use portcullis_registry::{Registry, RegistryService};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let registry = Registry::new();
//! let payments = registry.breakers().get("payments"); // give this to a CircuitBreakerLayer
//! let service = RegistryService::new(registry.clone());
//!
//! payments.force_open();
//! let request = http::Request::get("/health").body(String::new()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(health["status"], "DEGRADED");
//! assert_eq!(health["breakers"]["not_closed"][0]["name"], "payments");
//! # }
//! ```
//!
//! In axum, mount it under a prefix of your choice (axum strips the prefix
//! before the service sees the path):
//!
//! ```
//! # use portcullis_registry::{Registry, RegistryService};
//! let registry = Registry::new();
//! let service = RegistryService::builder(registry)
//!     .control_token("a-long-random-secret-from-the-environment")
//!     .critical_breakers(["payments"])
//!     .build()
//!     .unwrap();
//! let app: axum::Router = axum::Router::new().nest_service("/resilience", service);
//! ```
//!
//! # The registry
//!
//! - **Configs with inheritance**: a default config per kind and named
//!   [`Overrides`] that set only what differs, from code or from a config
//!   file ([`RegistryConfig`]); errors name the path, such as
//!   `breakers.payments.failure_rate_threshold`.
//! - **One set of operations for every kind** ([`Instances`], from
//!   [`Registry::instances`] or the shorthands [`Registry::breakers`],
//!   [`Registry::bulkheads`], [`Registry::rate_limiters`],
//!   [`Registry::limiters`], [`Registry::budgets`], [`Registry::routes`]):
//!   `registry.breakers().get("payments")`.
//! - **Get-or-create**: [`Instances::get`] hands every caller the same
//!   instance; [`Instances::get_keyed`] does so per key, with at most
//!   [`max_keys`](RegistryBuilder::max_keys) keys per name: a CLOCK hand
//!   evicts, in O(1), one neither recently used nor holding state (a
//!   breaker with failures in its window is kept), and when none can go
//!   the new key shares the name's overflow instance ([`AtKeyLimit`],
//!   [`OVERFLOW_KEY`]); an eviction is one `replaced` event. The keyed
//!   breakers of a name are [siblings](portcullis_breaker::Breaker::sibling):
//!   they share one configuration instead of a copy each, a breaker makes
//!   what it rarely needs (event channels, open and half-open bookkeeping)
//!   on first need, and a key is stored once, its name not at all: a keyed
//!   breaker with a 100-call window costs about 490 bytes with the
//!   registry's index, slot and hook (`tests/memory.rs` bounds it at 512).
//! - **Live updates**: [`Instances::update_config`] keeps each live
//!   breaker's window, state and permits; an update a live breaker cannot
//!   take changes nothing. The keyed breakers of a name take it in one
//!   write to the configuration they share
//!   ([`Breaker::reconfigure_siblings`](portcullis_breaker::Breaker::reconfigure_siblings)).
//! - **Snapshots** as serde data ([`Registry::snapshot`]) and **events** in
//!   one numbered feed ([`Registry::watch`], [`Event`]): transitions,
//!   rejections (counted per interval), threshold crossings, resets, and
//!   instances added, removed and changed. Each subscriber has a bounded
//!   buffer and is dropped when it lets it fill up: nothing on a call's
//!   path ever waits for a subscriber.
//!
//! # The service
//!
//! See [`RegistryService`] for the endpoints. Control (manual transitions)
//! exists only with a [control token](RegistryServiceBuilder::control_token);
//! the rest is open to whoever can reach it, unless a
//! [read token](RegistryServiceBuilder::read_token) is set, in which case
//! every endpoint wants either token as a bearer token. Both are compared
//! in constant time; a request with two `Authorization` headers, or a
//! control body with a key given twice, is refused rather than read one way
//! here and another way by a proxy. `GET /health` is `UP`,
//! `DEGRADED` when any breaker is not closed (manual states included: the
//! protection is off), or `DOWN` with a 503 when a breaker named as
//! [critical](RegistryServiceBuilder::critical_breakers) is open or forced
//! open. `GET /metrics` writes the Prometheus text format by hand, with
//! Resilience4j-like names (`portcullis_circuitbreaker_state{name,state}`
//! and so on). The dashboard at `GET /` is one HTML page with inline CSS
//! and JavaScript, nothing from a CDN, live from `GET /events`.
//!
//! `GET /events` serves at most
//! [`max_event_streams`](RegistryServiceBuilder::max_event_streams) clients
//! at once (64 by default), so that clients cannot hold an unbounded number
//! of buffers and connections; past that it answers 503 with `Retry-After`.
//! A stream's place is given back when its client goes away, and at once
//! when it is dropped for not reading its events.
//!
//! # Kinds
//!
//! The registry keeps six kinds, each with its own section in snapshots
//! and paths (and, but for route statistics so far, in configs and metric
//! families), and the same get-or-create, keys and inheritance:
//!
//! | kind | handle | config section | paths | metrics |
//! |------|--------|----------------|-------|---------|
//! | circuit breaker | [`portcullis_breaker::Breaker`] | `[breakers.…]` | `/health/breakers[/{name}]` | `portcullis_circuitbreaker_*` |
//! | bulkhead | [`portcullis_bulkhead::Bulkhead`] | `[bulkheads.…]` | `/health/bulkheads[/{name}]` | `portcullis_bulkhead_*` |
//! | rate limiter | [`portcullis_ratelimit::RateLimiter`] | `[ratelimiters.…]` | `/health/ratelimiters[/{name}]` | `portcullis_ratelimiter_*` |
//! | concurrency limiter | [`portcullis_limit::Limiter`] | `[limiters.…]` | `/health/limiters[/{name}]` | `portcullis_concurrency_limiter_*` |
//! | retry budget | [`portcullis_retry::RetryBudget`] | `[budgets.…]` | `/health/budgets[/{name}]` | `portcullis_retry_budget_*` |
//! | route statistics | [`RouteStats`] | (nothing to configure) | `/health/routes[/{name}]` | not yet |
//!
//! What a live update does differs by kind:
//!
//! - a **breaker** takes every field but the window's shape, keeping its
//!   window, state and permits;
//! - a **bulkhead** cannot be reconfigured yet: an update that would
//!   change a live one is refused, naming the field;
//! - a **rate limiter** takes any valid config and keeps what it admitted
//!   (its theoretical arrival time), so that a spent burst stays spent
//!   under the new limit. The default rate-limit config is
//!   [`RateLimitConfig::default`](portcullis_ratelimit::RateLimitConfig):
//!   100 calls per second with a burst of 100, as Resilience4j also has a
//!   default limit; set `[ratelimiters.default]` to choose your own;
//! - an adaptive **concurrency limiter** cannot be reconfigured yet: an
//!   update that would change a live one is refused, naming the field
//!   (`algorithm`, `aimd`, `window`, ...), and the limit it has found is
//!   kept;
//! - a **retry budget** keeps its balance and takes a new `ratio` and
//!   `min_per_second`, but not a new `ttl` (its window): that update is
//!   refused, naming `budgets.<name>.ttl`, until the budget is removed;
//! - **route statistics** have nothing to configure
//!   ([`RouteStatsConfig`] is empty and refuses any field): they count
//!   what a [`RouteStatsLayer`] records, by outcome and latency, and read
//!   the fallback and retry counters attached to them (see [`route`]).
//!
//! Rate limiters, concurrency limiters, budgets and route statistics send
//! no events of their own: the feed says when one is added, removed or
//! changed, and their rejections and refusals are counted in their figures
//! (`rejected`, `shed`, `refused`, `rejections`) rather than announced one
//! by one.
//!
//! A rate limiter or budget from the registry is the very handle its crate
//! makes: it costs the same per call as one made directly (no lock, no
//! allocation, no lookup).
//!
//! Instances push their events to the registry through a hook
//! ([`Breaker::on_event`](portcullis_breaker::Breaker::on_event)),
//! synchronously, on the thread that caused them: there is no task and no
//! buffer per instance, and an instance made before any runtime exists
//! reports from its first event. Breakers report rejections in batches (at
//! most one count per 10 ms), which the registry adds up into one
//! `rejected` event per
//! [`rejection_report_interval`](RegistryBuilder::rejection_report_interval),
//! published by one ticker that runs only while rejections come in: a
//! flood of rejected calls costs the feed a bounded number of events.
//!
//! # Features
//!
//! | feature   | what it adds |
//! |-----------|--------------|
//! | `metrics` | [`MetricsPublisher`]: the same figures as `GET /metrics`, published to the `metrics` crate's recorder |

mod body;
mod breaker;
mod budget;
mod bulkhead;
mod clock;
mod config;
mod dashboard;
pub mod error;
pub mod event;
mod figures;
pub mod future;
mod hub;
mod instances;
mod kind;
mod limit;
#[cfg(feature = "metrics")]
mod metrics;
mod prometheus;
mod ratelimit;
mod registry;
pub mod route;
mod service;
mod snapshot;
mod store;

pub use body::ResponseBody;
pub use config::{Overrides, RegistryConfig};
pub use error::{AlreadyRegistered, ConfigError, KeyLimitReached};
pub use event::{Event, EventFeed, EventKind};
pub use instances::Instances;
pub use kind::{Instance, InstanceKind};
#[cfg(feature = "metrics")]
pub use metrics::MetricsPublisher;
pub use prometheus::PrometheusCollector;
pub use registry::{EventStats, Registry, RegistryBuilder};
pub use route::{
    LatencyBucket, LatencySnapshot, RouteOutcome, RouteSnapshot, RouteStats, RouteStatsConfig,
    RouteStatsLayer, RouteStatsService,
};
pub use service::{RegistryService, RegistryServiceBuilder};
pub use snapshot::{Keyed, RegistrySnapshot};
pub use store::{AtKeyLimit, OVERFLOW_KEY};
