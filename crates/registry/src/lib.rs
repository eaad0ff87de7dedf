//! The shared registry of Portcullis instances, and its HTTP face.
//!
//! A service stack holds breaker handles; an operator needs to see them
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
//! let payments = registry.breaker("payments"); // give this to a CircuitBreakerLayer
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
//! - **Get-or-create**: [`Registry::breaker`] hands every caller the same
//!   breaker; [`Registry::breaker_for`] does so per key, with at most
//!   [`max_keys`](RegistryBuilder::max_keys) keys per name (the least
//!   recently used closed one is evicted to make room).
//! - **Live updates**: [`Registry::update_breaker_config`] keeps each live
//!   breaker's window, state and permits; an update a live breaker cannot
//!   take changes nothing.
//! - **Snapshots** as serde data ([`Registry::snapshot`]) and **events** in
//!   one numbered feed ([`Registry::watch`], [`Event`]): transitions,
//!   rejections (counted per interval), threshold crossings, resets, and
//!   instances added, removed and changed. Each subscriber has a bounded
//!   buffer and is dropped when it lets it fill up: nothing on a call's
//!   path ever waits for a subscriber.
//!
//! # The service
//!
//! See [`RegistryService`] for the endpoints. `GET /health` is `UP`,
//! `DEGRADED` when any breaker is not closed (manual states included: the
//! protection is off), or `DOWN` with a 503 when a breaker named as
//! [critical](RegistryServiceBuilder::critical_breakers) is open or forced
//! open. `GET /metrics` writes the Prometheus text format by hand, with
//! Resilience4j-like names (`portcullis_circuitbreaker_state{name,state}`
//! and so on). The dashboard at `GET /` is one HTML page with inline CSS
//! and JavaScript, nothing from a CDN, live from `GET /events`.
//!
//! # Kinds
//!
//! The registry keeps circuit breakers ([`portcullis_breaker::Breaker`])
//! and bulkheads ([`portcullis_bulkhead::Bulkhead`]), each kind with its
//! own section in configs (`[breakers.…]`, `[bulkheads.…]`), snapshots,
//! paths (`/health/breakers`, `/health/bulkheads`) and metrics. A live
//! bulkhead cannot be reconfigured yet: an update that would change one is
//! refused, naming the field. Its store is generic over the kind, so that
//! rate limiters and retry budgets can join it the same way.
//!
//! # Features
//!
//! | feature   | what it adds |
//! |-----------|--------------|
//! | `metrics` | [`MetricsPublisher`]: the same figures as `GET /metrics`, published to the `metrics` crate's recorder |

mod body;
mod breaker;
mod bulkhead;
mod config;
mod dashboard;
pub mod error;
pub mod event;
mod figures;
pub mod future;
mod hub;
mod kind;
#[cfg(feature = "metrics")]
mod metrics;
mod prometheus;
mod registry;
mod service;
mod snapshot;
mod store;

pub use body::ResponseBody;
pub use config::{Overrides, RegistryConfig};
pub use error::{AlreadyRegistered, ConfigError, KeyLimitReached};
pub use event::{Event, EventFeed, EventKind};
pub use kind::InstanceKind;
#[cfg(feature = "metrics")]
pub use metrics::MetricsPublisher;
pub use registry::{EventStats, Registry, RegistryBuilder};
pub use service::{RegistryService, RegistryServiceBuilder};
pub use snapshot::{Keyed, RegistrySnapshot};
