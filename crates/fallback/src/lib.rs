//! Fallbacks for `tower`: answer a failure or a rejection from a value, a
//! closure, secondary services, or the last good response.
//!
//! When a dependency fails — an error, a 503, a timeout, an open breaker, a
//! full bulkhead — the caller often has something better to say than the
//! error: a default, a degraded answer built from the request, another
//! replica, or what the dependency said last time. A [`FallbackLayer`]
//! outermost in a stack says it, and, when it answers every error, makes
//! the stack's error type `Infallible`, as an axum route needs.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_core::{BoxError, Elapsed};
//! use portcullis_fallback::{Cause, Failure, FallbackLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let recommendations = service_fn(|user: u32| async move {
//!     if user == 0 {
//!         Err::<Vec<&str>, BoxError>(Elapsed::new(Duration::from_millis(200)).into())
//!     } else {
//!         Ok(vec!["personal pick"])
//!     }
//! });
//! let layer = FallbackLayer::from_error(|failure: Failure<Vec<&str>>| {
//!     assert_eq!(failure.cause(), Cause::Elapsed);
//!     vec!["bestseller"]
//! });
//! let counters = layer.counters().clone();
//! let service = ServiceBuilder::new().layer(layer).service(recommendations);
//!
//! assert_eq!(service.clone().oneshot(7).await.unwrap(), ["personal pick"]);
//! assert_eq!(service.oneshot(0).await.unwrap(), ["bestseller"]);
//! assert_eq!(counters.get(Cause::Elapsed), 1);
//! # }
//! ```
//!
//! # The rules
//!
//! - **What triggers it** is a [`Trigger`]: [`OnFailure`] (the default)
//!   answers every error — rejections of other Portcullis layers included
//!   ([`BreakerOpen`], [`BulkheadFull`], [`RateLimited`], [`Elapsed`],
//!   [`LimitExceeded`]) —
//!   and every response its classifier calls a failure: with
//!   [`HttpClassifier`](portcullis_core::HttpClassifier)
//!   ([`FallbackLayer::classifier`]) a 503 is answered too.
//!   [`OnRejection`] answers only the rejections you select; a closure
//!   `Fn(Result<&Res, &BoxError>) -> bool` decides as you like.
//! - **The error type** is the trigger's and the source's business: with
//!   [`OnFailure`] and an answer that cannot fail (a value, a closure) it is
//!   `Infallible`; with a trigger that lets errors through, or a source
//!   that may have no answer (secondary services, the stale cache), it is
//!   [`BoxError`], and what comes out is the original failure.
//! - **The sources**: [`Value`] (cloned), [`FromError`] (a closure of the
//!   [`Failure`]), [`FromRequest`] (a closure of the failure and of what
//!   `Fn(&Req) -> Ctx` took from the request before it was sent; for HTTP,
//!   [`FallbackLayer::from_parts`] takes the method, URI, version and
//!   headers), [`Chain`] (secondary services in order; **`Req: Clone`**),
//!   and with the `http` feature [`StaleCache`] (the last good 2xx response
//!   to the same `GET`/`HEAD` request, within a TTL, an entry bound and a
//!   bound per path, marked `x-portcullis-fallback: stale`; never one with
//!   `Set-Cookie`, `no-store` or `private`, never for a request with
//!   credentials unless keyed by them, and only where its `Vary` matches;
//!   bodies must be `Clone`).
//! - **A chain** ([`FallbackLayer::chain`]) tries its services in order,
//!   each result going through the same trigger, and returns the last
//!   failure if every one fails. Services of different types are boxed
//!   (`tower::util::BoxCloneService`) or layered: the layer nearest the
//!   primary is tried first.
//! - **Readiness**: a failing `poll_ready` of the inner service is a
//!   failure like any other and goes through the trigger on the next call.
//! - **Counted**: each fallback taken is counted by [`Cause`] in the
//!   layer's [`FallbackCounters`] and is a `tracing` event at `DEBUG`.
//!
//! # Where it goes in a stack
//!
//! Outermost: it answers for everything below it — the rate limiter's
//! rejections, the total timeout, the retries' last failure, the open
//! breaker. Several fallbacks nest: a stale cache inside, a closure outside
//! it for the requests the cache cannot answer, and the stack is
//! `Infallible`. Give both the same classifier: what the cache cannot
//! answer comes out as it was, a 503 included, and only an outer layer that
//! classifies 503s as failures answers it.
//!
//! # Cost
//!
//! On the success path: one `Arc` clone per call and whatever the source
//! keeps from the request (nothing for a value or a closure of the error;
//! a clone of the request for secondary services; a key and a stored copy
//! of 2xx `GET` responses for the stale cache). The futures are named
//! types, hand-written state machines, not boxed.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`HttpParts`] and [`FallbackLayer::from_parts`], [`StaleCache`] and [`FallbackLayer::stale`], the HTTP classifier of `portcullis-core` |

mod chain;
mod counters;
pub mod error;
pub mod future;
#[cfg(feature = "http")]
mod http;
mod layer;
mod service;
mod source;
#[cfg(feature = "http")]
mod stale;
mod trigger;

pub use chain::{Chain, ChainFuture};
pub use counters::FallbackCounters;
pub use error::{BoxError, BreakerOpen, BulkheadFull, Elapsed, LimitExceeded, RateLimited};
#[cfg(feature = "http")]
pub use http::HttpParts;
pub use layer::FallbackLayer;
pub use service::Fallback;
pub use source::{Extract, FromError, FromRequest, Source, Value};
#[cfg(feature = "http")]
pub use stale::{
    STALE_HEADER, StaleCache, StaleCacheConfig, StaleCacheConfigBuilder, StaleKey, StaleStats,
};
pub use trigger::{Cause, Decision, Failure, OnFailure, OnRejection, Trigger};
