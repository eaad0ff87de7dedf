//! Fault injection for `tower`: latency, errors and responses at seeded
//! rates, outage windows, all switchable at runtime.
//!
//! Resilience layers are only as good as the failures they were tested
//! against. A [`ChaosLayer`] put in front of a dependency makes it slow,
//! failing or down on demand, so that timeouts, retries, breakers and
//! fallbacks can be seen doing their job — in tests, on game days and in
//! demos. It is driven by a [`Chaos`] handle that can be changed while the
//! service runs, and it costs one relaxed atomic load per call when it is
//! switched off.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_chaos::{Chaos, ChaosConfig, ChaosError, ChaosLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = ChaosConfig::builder()
//!     .seed(7)
//!     .error_rate(0.2)
//!     .latency(0.5, Duration::from_millis(300))
//!     .build()
//!     .expect("a valid configuration");
//! let chaos = Chaos::from_config("inventory", config).unwrap();
//! let mut service = ServiceBuilder::new()
//!     .layer(ChaosLayer::new(chaos.clone()))
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//!
//! let mut failed = 0;
//! for i in 0..100 {
//!     match service.ready().await.unwrap().call(i).await {
//!         Ok(x) => assert_eq!(x, i),
//!         Err(error) => {
//!             assert!(error.is::<ChaosError>());
//!             failed += 1;
//!         }
//!     }
//! }
//! assert_eq!(chaos.stats().errors, failed);
//! assert!((10..=30).contains(&failed), "about 20 % of 100: {failed}");
//!
//! // An outage: every call fails, at once.
//! chaos.outage_for(Duration::from_secs(60));
//! assert!(service.ready().await.unwrap().call(0).await.is_err());
//!
//! // Off: calls pass through untouched.
//! chaos.disable();
//! assert_eq!(service.ready().await.unwrap().call(5).await.unwrap(), 5);
//! # }
//! ```
//!
//! # The rules
//!
//! - **Rates** are shares of calls in [0, 1]. A rate of 0 never injects, a
//!   rate of 1 always does. The error and the response are decided from
//!   one draw: a call is failed with probability `error_rate`, and *the
//!   others* are answered with an injected response with probability
//!   `response_rate`. The delay is decided independently, with
//!   `latency_rate`, and applies to passed calls and to injected faults
//!   alike (a slow failure).
//! - **Injected faults never reach the inner service.** The inner service's
//!   readiness carries over to the next call.
//! - **Latency** is fixed or uniform in `[min, max]`. The inner future is
//!   polled only after the delay, so the latency adds to the callee's own.
//!   Time comes from `tokio::time`: paused time drives it in tests.
//! - **An outage window** ([`Chaos::outage`], [`Chaos::outage_for`]) fails
//!   every call between two instants, at once and without a draw: with the
//!   injected response if the layer has one, else with the injected error.
//! - **Reproducible**: the decisions come from a splitmix64 sequence on one
//!   atomic. Two draws are made per call while injection is on, whatever
//!   the rates (none while an outage window is open, and none while it is
//!   off), so the same seed and the same calls in the same order give
//!   the same faults ([`Chaos::reseed`] replays a sequence). Concurrent
//!   calls share the sequence, so their interleaving decides who gets what.
//! - **Runtime control** on the handle: [`Chaos::enable`],
//!   [`Chaos::disable`], [`Chaos::set_error_rate`],
//!   [`Chaos::set_response_rate`], [`Chaos::set_latency_rate`],
//!   [`Chaos::set_latency`], [`Chaos::set_latency_range`], outage windows.
//!   Plain atomics, no lock; a bad value is refused with a [`ConfigError`]
//!   that names the field. [`Chaos::stats`] counts what was injected, and
//!   every injection is a `tracing` event at `DEBUG`.
//!
//! # Errors and responses
//!
//! By default the injected error is a [`ChaosError`] ("injected fault") and
//! the service's error type is [`BoxError`](portcullis_core::BoxError).
//! [`ChaosLayer::error_with`] injects errors of your own;
//! [`ChaosLayer::respond_with`] injects responses of your own, and with the
//! `http` feature [`ChaosLayer::respond_with_status`] injects an empty
//! response with a status (say 503) marked `x-portcullis-chaos: injected`.
//! With [`ChaosLayer::without_errors`] no error is injected and the service
//! keeps the inner error type, so an axum route stays `Infallible`.
//!
//! # Cost
//!
//! Switched off: one relaxed atomic load, then the inner future is returned
//! unchanged inside the `Passthrough` variant of [`ResponseFuture`] — no
//! allocation, no clock read, no draw. Switched on: two `fetch_add`s on the
//! random state, a few relaxed loads, a clock read only while an outage
//! window is set, and a `tokio::time::Sleep` held inline for a delay.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`StatusResponse`] and [`ChaosLayer::respond_with_status`] |
//!
//! [`ConfigError`]: portcullis_core::ConfigError
//! [`ResponseFuture`]: future::ResponseFuture

mod chaos;
mod config;
pub mod error;
pub mod future;
mod inject;
mod layer;
mod service;

pub use chaos::{Chaos, ChaosStats};
pub use config::{ChaosConfig, ChaosConfigBuilder};
pub use error::ChaosError;
#[cfg(feature = "http")]
pub use inject::StatusResponse;
pub use inject::{DefaultError, MakeError, MakeResponse, NoErrors, NoResponse};
pub use layer::ChaosLayer;
pub use service::ChaosService;
