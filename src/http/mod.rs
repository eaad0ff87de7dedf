//! Every Portcullis error as the HTTP response it should be (feature
//! `http`), so that an axum router keeps `Error = Infallible`.
//!
//! A stack of Portcullis layers fails with a `BoxError`: a rejection of one
//! of its layers, or the callee's own error. Behind an HTTP server each of
//! them has a right answer:
//!
//! | error (first found in the `source()` chain) | status | headers |
//! |---------------------------------------------|--------|---------|
//! | `BreakerOpen` | `503 Service Unavailable` | `Retry-After` when the breaker will let a probe through by itself |
//! | `BulkheadFull` | `503 Service Unavailable` | `Retry-After` if the rejection carries one |
//! | `LimitExceeded` | `503 Service Unavailable` | `Retry-After`: the adaptive limit's estimate of one call's latency |
//! | `RateLimited` | `429 Too Many Requests` | `Retry-After` and `RateLimit-Reset` (the same seconds), when known |
//! | `Elapsed` | `504 Gateway Timeout` | |
//! | anything else | `502 Bad Gateway` | |
//!
//! Every one of them also carries [`x-portcullis-error`](X_PORTCULLIS_ERROR)
//! with the [`ErrorKind`] name (`breaker-open`, `bulkhead-full`,
//! `limit-exceeded`, `rate-limited`, `timeout`, `upstream`), so that a client or a test can
//! tell a Portcullis rejection from a response of the upstream. `Retry-After`
//! is in whole seconds, rounded up.
//!
//! The rejection is looked for anywhere in the `source()` chain: wrapped in
//! an error of your own, or as the last error of a retry that gave up
//! (`RetriesExhausted`, whose `source()` is that last error), it is mapped
//! the same way; a retry that gave up on plain errors is a 502. Only the
//! Portcullis types are recognised: the errors of tower's own middleware
//! (its `Elapsed`, its `Overloaded`) are answered as upstream errors.
//!
//! Two ways to use it:
//!
//! - [`ErrorMappingLayer`], outermost in a route's stack: errors become
//!   responses and the stack's error type becomes `Infallible`;
//! - [`handle_error`] in axum's `HandleErrorLayer`, or [`error_response`]
//!   from your own error handler.
//!
//! The body is empty (`B::default()`). For a body of your own (a JSON
//! problem document, say), wrap [`error_response`] and set it, or match on
//! [`ErrorKind::of`].
//!
//! ```
//! use std::time::Duration;
//! use portcullis::http::{ErrorMappingLayer, X_PORTCULLIS_ERROR};
//! use portcullis::core::{BoxError, BreakerOpen};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let rejected = service_fn(|_: http::Request<()>| async {
//!     Err::<http::Response<String>, BoxError>(
//!         BreakerOpen::new("payments", Some(Duration::from_millis(1500))).into(),
//!     )
//! });
//! let service = ServiceBuilder::new().layer(ErrorMappingLayer::new()).service(rejected);
//!
//! let response: Result<_, std::convert::Infallible> = service.oneshot(http::Request::new(())).await;
//! let response = response.unwrap();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["retry-after"], "2");
//! assert_eq!(response.headers()[X_PORTCULLIS_ERROR], "breaker-open");
//! assert_eq!(response.body(), "");
//! # }
//! ```

use bytes::Bytes;
use http::Response;
use http_body_util::Empty;
use portcullis_core::BoxError;

use crate::ErrorKind;

pub mod future;
mod layer;

pub use layer::{ErrorMapping, ErrorMappingLayer};

/// `x-portcullis-error`: the [`ErrorKind`] name of a mapped error.
pub use portcullis_core::X_PORTCULLIS_ERROR;

/// The response for `error`, with an empty body: see the
/// [module docs](self) for the rules.
///
/// ```
/// use std::time::Duration;
/// use portcullis::core::{BoxError, RateLimited};
/// use portcullis::http::error_response;
///
/// let error: BoxError = RateLimited::new("api", Some(Duration::from_millis(200))).into();
/// let response: http::Response<()> = error_response(&error);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "1");
/// assert_eq!(response.headers()["ratelimit-reset"], "1");
/// assert_eq!(response.headers()["x-portcullis-error"], "rate-limited");
///
/// let error: BoxError = std::io::Error::other("connection refused").into();
/// let response: http::Response<()> = error_response(&error);
/// assert_eq!(response.status(), 502);
/// assert_eq!(response.headers()["x-portcullis-error"], "upstream");
/// assert!(response.headers().get("retry-after").is_none());
/// ```
pub fn error_response<B: Default>(error: &BoxError) -> Response<B> {
    let kind = ErrorKind::of(error.as_ref());
    tracing::debug!(%error, kind = kind.as_str(), "error answered with {}", kind.status());
    kind.response()
}

/// [`error_response`] as an error handler for axum's `HandleErrorLayer`,
/// with an empty body.
///
/// ```
/// # #[cfg(feature = "breaker")]
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     use axum::{Router, error_handling::HandleErrorLayer, routing::get};
///     use portcullis::ServiceBuilderExt;
///     use portcullis::breaker::Breaker;
///     use portcullis::http::handle_error;
///     use tower::{ServiceBuilder, ServiceExt};
///
///     let breaker = Breaker::new("reports");
///     let app: Router = Router::new()
///         .route(
///             "/reports",
///             get(|| async { "report" }).layer(
///                 ServiceBuilder::new()
///                     .layer(HandleErrorLayer::new(handle_error))
///                     .circuit_breaker(breaker.clone()),
///             ),
///         )
///         .with_state(());
///
///     breaker.force_open();
///     let request = http::Request::get("/reports").body(axum::body::Body::empty()).unwrap();
///     let response = app.oneshot(request).await.unwrap();
///     assert_eq!(response.status(), 503);
///     assert_eq!(response.headers()["x-portcullis-error"], "breaker-open");
///     assert!(response.headers().get("retry-after").is_none(), "forced open: no known end");
/// }
/// # #[cfg(not(feature = "breaker"))]
/// # fn main() {}
/// ```
pub async fn handle_error(error: BoxError) -> Response<Empty<Bytes>> {
    error_response(&error)
}
