//! Timeouts for `tower`: a typed [`Elapsed`] error, an HTTP flavour that
//! answers instead of erroring, per-request overrides and deadline
//! propagation.
//!
//! A call that never ends holds a connection, a bulkhead permit and a
//! caller's patience. [`Timeout`] bounds it: the inner call is dropped
//! (cancelled) when the timeout fires and the caller gets [`Elapsed`], which
//! carries the configured duration. Inside a retry it is the per-attempt
//! timeout; outside it, the total deadline.
//!
//! With the `http` feature, [`HttpTimeout`] answers a timeout with a 504 (or
//! the status you choose, or a gRPC `DEADLINE_EXCEEDED`) so that an axum
//! route keeps `Error = Infallible`. A request may carry its own
//! [`RequestTimeout`]; a timeout never waits past the [`Deadline`] of an
//! outer one; and the remaining time can be told to the callee in
//! `grpc-timeout` or a header of milliseconds.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_timeout::{Elapsed, TimeoutLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(500)))
//!     .service(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
//! let error = service.oneshot(()).await.unwrap_err();
//! assert!(error.is::<Elapsed>());
//! # }
//! ```
//!
//! # Cost
//!
//! No allocation per call, no boxed future: the response future holds the
//! inner future and a `tokio::time::Sleep` inline. The inner future is
//! polled first and the timer is made only when it is pending, so a
//! response that is ready at once costs no clock read with [`Timeout`]
//! (whose timeout therefore starts at the first poll that finds the inner
//! future pending, not in `call`), and one with [`HttpTimeout`] (which
//! fixes its deadline in `call`, to honour and propagate deadlines).
//! Propagation (opt-in) writes a header and a request extension.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`HttpTimeout`], [`HttpTimeoutLayer`], [`RequestTimeout`], [`Deadline`] |

mod config;
pub mod error;
pub mod future;
#[cfg(feature = "http")]
mod http;
mod layer;
mod service;

pub use config::{Propagation, TimeoutConfig};
pub use error::Elapsed;
#[cfg(feature = "http")]
pub use http::{Deadline, HttpResponseFuture, HttpTimeout, HttpTimeoutLayer, RequestTimeout};
pub use layer::TimeoutLayer;
pub use service::Timeout;

#[cfg(feature = "http")]
use std::pin::Pin;

/// How far away "never" is: a timeout longer than the clock can add
/// (`Duration::MAX`, say) waits this long instead, as tokio's own timers do.
#[cfg(feature = "http")]
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `now + timeout`, saturated at [`FAR_FUTURE`] instead of overflowing.
#[cfg(feature = "http")]
fn deadline_after(now: tokio::time::Instant, timeout: std::time::Duration) -> tokio::time::Instant {
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The timer of a response future, made on first use.
#[cfg(feature = "http")]
fn timer(
    mut slot: Pin<&mut Option<tokio::time::Sleep>>,
    deadline: tokio::time::Instant,
) -> Pin<&mut tokio::time::Sleep> {
    if slot.is_none() {
        slot.set(Some(tokio::time::sleep_until(deadline)));
    }
    slot.as_pin_mut().expect("the timer was just made")
}
