//! The shared vocabulary of the Portcullis resilience layers.
//!
//! Every Portcullis pattern (circuit breaker, retry, timeout, bulkhead, rate
//! limiter, fallback) has to answer the same questions about a call: *did it
//! fail?*, *was it turned away by another Portcullis layer?*, *did the server
//! say when to come back?* This crate answers them once, so that the layers
//! agree with each other when they are stacked:
//!
//! - [`Outcome`] and [`Classify`]: what a `Result<&Response, &Error>` means to a
//!   resilience layer. [`DefaultClassifier`] treats any error as a failure,
//!   except the rejections of inner Portcullis layers, which are
//!   [`Outcome::Ignored`]: an outer breaker must not open because an inner
//!   bulkhead was full.
//! - [`error`]: [`BoxError`], the rejection types ([`BreakerOpen`],
//!   [`BulkheadFull`], [`LimitExceeded`], [`RateLimited`], [`Elapsed`]), the [`Rejection`] trait
//!   that gives each of them an HTTP status hint and an optional `Retry-After`,
//!   and [`find_in_chain`] to find an error type anywhere in a `source()` chain.
//! - [`retry_after`]: strict `Retry-After` parsing (delta-seconds and
//!   HTTP-date); absurd or malformed values are rejected rather than trusted.
//! - [`duration`]: human durations (`"30s"`, `"250ms"`, `"1m30s"`) for
//!   configuration files.
//! - [`sync`]: the atomics facade that switches to `loom` under `cfg(loom)`.
//! - [`rng`]: the seeded, lock-free generator behind jitter and fault
//!   injection; [`backoff`]: exponential backoff with jitter, the one
//!   computation of the retry delays and the breaker's growing open wait.
//!
//! # Example
//!
//! ```
//! use portcullis_core::{BoxError, BreakerOpen, Classify, DefaultClassifier, Outcome};
//!
//! let classify = DefaultClassifier;
//! let ok: Result<&u32, &BoxError> = Ok(&7);
//! assert_eq!(Classify::<u32>::classify(&classify, ok), Outcome::Success);
//!
//! let io: BoxError = std::io::Error::other("connection reset").into();
//! assert_eq!(Classify::<u32>::classify(&classify, Err(&io)), Outcome::Failure);
//!
//! // A rejection from an inner Portcullis layer is not the callee's fault.
//! let open: BoxError = BreakerOpen::new("payments", None).into();
//! assert_eq!(Classify::<u32>::classify(&classify, Err(&open)), Outcome::Ignored);
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`HttpClassifier`]: 5xx, 408 and 429 are failures; `Retry-After` of 429/503 |
//! | `grpc`  | [`GrpcClassifier`]: `grpc-status` codes that mean the server is in trouble |
//! | `serde` | [`duration::serde`] for human durations in config files |
//! | `events` | [`events`]: the bounded event channel of the layers that report events |

pub mod backoff;
mod classify;
#[cfg(feature = "clock")]
pub mod clock;
pub mod config;
pub mod duration;
pub mod error;
#[cfg(feature = "events")]
pub mod events;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
pub mod kind;
pub mod percent;
pub mod retry_after;
pub mod rng;
pub mod sync;

pub use classify::{Classify, DefaultClassifier, Outcome, Pushback};
pub use config::ConfigError;
pub use error::{
    BoxError, BreakerOpen, BulkheadFull, Elapsed, LimitExceeded, RateLimited, Rejection,
    find_in_chain, find_rejection,
};
#[cfg(feature = "grpc")]
pub use grpc::GrpcClassifier;
#[cfg(feature = "http")]
pub use http::HttpClassifier;
pub use kind::ErrorKind;
#[cfg(feature = "http")]
pub use kind::X_PORTCULLIS_ERROR;
