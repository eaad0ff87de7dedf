//! Every Portcullis error as the `tonic::Status` it should be (feature
//! `grpc`), so that a tonic server or client stack keeps tonic's error
//! type.
//!
//! A stack of Portcullis layers fails with a `BoxError`. tonic turns an
//! error it does not recognise into `UNKNOWN`, which tells a gRPC client
//! nothing: not that it was turned away before the call was sent, nor when
//! to come back. [`to_status`] gives each error its code:
//!
//! | error (first found in the `source()` chain) | code | metadata |
//! |---------------------------------------------|------|----------|
//! | `BreakerOpen` | `UNAVAILABLE` | `grpc-retry-pushback-ms` when the breaker will let a probe through by itself |
//! | `BulkheadFull` | `UNAVAILABLE` | `grpc-retry-pushback-ms` if the rejection carries one |
//! | `LimitExceeded` | `UNAVAILABLE` | `grpc-retry-pushback-ms`: the adaptive limit's estimate of one call's latency |
//! | `RateLimited` | `RESOURCE_EXHAUSTED` | `grpc-retry-pushback-ms` when known |
//! | `Elapsed` | `DEADLINE_EXCEEDED` | |
//! | a `tonic::Status` | that status, unchanged | its own |
//! | a `tonic::ConnectError` or a `std::io::Error` (the connection failed) | `UNAVAILABLE` | |
//! | `RetriesExhausted` over any other error | `UNAVAILABLE` | |
//! | anything else | `UNKNOWN` | |
//!
//! The message is the rejection's own (`circuit breaker 'payments' is
//! open`), or the error's for the last rows. Every status made here also
//! carries [`x-portcullis-error`](X_PORTCULLIS_ERROR) with the
//! [`ErrorKind`] name, as the HTTP mapping does. `grpc-retry-pushback-ms`
//! is in whole milliseconds, rounded up; gRPC clients (and
//! [`GrpcClassifier`](crate::core::GrpcClassifier)) read it as the time to
//! wait before trying again.
//!
//! The rejection is looked for anywhere in the `source()` chain, with
//! [`ErrorKind::of`]: wrapped in an error of your own, or as the last error
//! of a retry that gave up (`RetriesExhausted`, whose `source()` is that
//! error), it is mapped the same way.
//!
//! Two ways to use it:
//!
//! - [`StatusMappingLayer`], outermost in a stack: errors become `Status`,
//!   which tonic's server sends as the call's status and tonic's client
//!   hands back as the call's error;
//! - [`to_status`] / [`into_status`] from your own code.
//!
//! ```
//! use std::time::Duration;
//! use portcullis::core::{BoxError, RateLimited};
//! use portcullis::grpc::to_status;
//! use tonic::Code;
//!
//! let error: BoxError = RateLimited::new("api", Some(Duration::from_millis(250))).into();
//! let status = to_status(&error);
//! assert_eq!(status.code(), Code::ResourceExhausted);
//! assert_eq!(status.message(), "rate limit 'api' exceeded");
//! assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
//! assert_eq!(status.metadata().get("x-portcullis-error").unwrap(), "rate-limited");
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{BoxError, find_in_chain, find_rejection};
use tonic::metadata::MetadataValue;
use tonic::{Code, ConnectError, Status};

use crate::ErrorKind;

pub mod future;
mod layer;

pub use layer::{StatusMapping, StatusMappingLayer};

/// `grpc-retry-pushback-ms`: the milliseconds a client should wait before
/// trying again, as gRPC's retry design names it.
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// `x-portcullis-error`: the [`ErrorKind`] name of a mapped error, as in
/// the HTTP mapping.
pub const X_PORTCULLIS_ERROR: &str = "x-portcullis-error";

/// The status for `error`: see the [module docs](self) for the rules.
///
/// ```
/// use std::time::Duration;
/// use portcullis::core::{BoxError, BreakerOpen, Elapsed};
/// use portcullis::grpc::to_status;
/// use tonic::Code;
///
/// let open: BoxError = BreakerOpen::new("payments", Some(Duration::from_secs(2))).into();
/// let status = to_status(&open);
/// assert_eq!(status.code(), Code::Unavailable);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "2000");
///
/// let slow: BoxError = Elapsed::new(Duration::from_secs(1)).into();
/// assert_eq!(to_status(&slow).code(), Code::DeadlineExceeded);
///
/// let other: BoxError = "parse failure".into();
/// let status = to_status(&other);
/// assert_eq!(status.code(), Code::Unknown);
/// assert_eq!(status.message(), "parse failure");
/// ```
pub fn to_status(error: &BoxError) -> Status {
    status_of(error.as_ref())
}

/// [`to_status`], keeping `error` as the status's
/// [`source`](Error::source), so that the caller can still downcast to it.
///
/// ```
/// use portcullis::core::{BoxError, BulkheadFull};
/// use portcullis::grpc::into_status;
/// use std::error::Error;
///
/// let error: BoxError = BulkheadFull::new("db").into();
/// let status = into_status(error);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert!(status.source().unwrap().is::<BulkheadFull>());
/// ```
pub fn into_status(error: BoxError) -> Status {
    let error = match error.downcast::<Status>() {
        Ok(status) => return *status,
        Err(error) => error,
    };
    let mut status = to_status(&error);
    status.set_source(Arc::from(error));
    status
}

fn status_of(error: &(dyn Error + 'static)) -> Status {
    let kind = ErrorKind::of(error);
    let mut status = match kind {
        ErrorKind::Upstream => {
            if let Some(status) = find_in_chain::<Status>(error) {
                tracing::debug!(%error, code = ?status.code(), "error mapped to its own status");
                return status.clone();
            }
            Status::new(upstream_code(error), error.to_string())
        }
        _ => {
            let message =
                find_rejection(error).map_or_else(|| error.to_string(), |r| r.to_string());
            Status::new(code(&kind), message)
        }
    };
    let metadata = status.metadata_mut();
    metadata.insert(
        X_PORTCULLIS_ERROR,
        MetadataValue::from_static(kind.as_str()),
    );
    if let Some(wait) = kind.retry_after() {
        metadata.insert(
            GRPC_RETRY_PUSHBACK_MS,
            MetadataValue::from(ceil_millis(wait)),
        );
    }
    tracing::debug!(%error, kind = kind.as_str(), code = ?status.code(), "error mapped to a status");
    status
}

/// The code of an error that is no Portcullis rejection and no `Status`.
fn upstream_code(error: &(dyn Error + 'static)) -> Code {
    if find_in_chain::<ConnectError>(error).is_some()
        || find_in_chain::<std::io::Error>(error).is_some()
    {
        return Code::Unavailable;
    }
    #[cfg(feature = "retry")]
    if find_in_chain::<crate::retry::RetriesExhausted>(error).is_some() {
        return Code::Unavailable;
    }
    Code::Unknown
}

/// The gRPC code for `kind` (feature `grpc`), from the one table in
/// [`ErrorKind`]: `UNAVAILABLE` for an open breaker or a full bulkhead,
/// `RESOURCE_EXHAUSTED` for a rate limit, `DEADLINE_EXCEEDED` for a
/// timeout, and `UNKNOWN` for an upstream error ([`to_status`] looks closer
/// at those).
///
/// ```
/// use portcullis::ErrorKind;
///
/// assert_eq!(portcullis::grpc::code(&ErrorKind::Timeout), tonic::Code::DeadlineExceeded);
/// ```
pub fn code(kind: &ErrorKind) -> Code {
    Code::from(kind.grpc_code())
}

fn ceil_millis(duration: Duration) -> u64 {
    let millis = duration.as_millis();
    let round_up = u128::from(duration.subsec_nanos() % 1_000_000 > 0);
    u64::try_from(millis + round_up).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_up() {
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(ceil_millis(Duration::from_micros(1501)), 2);
        assert_eq!(ceil_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn codes() {
        let none = None;
        assert_eq!(
            code(&ErrorKind::BreakerOpen { retry_after: none }),
            Code::Unavailable
        );
        assert_eq!(
            code(&ErrorKind::BulkheadFull { retry_after: none }),
            Code::Unavailable
        );
        assert_eq!(
            code(&ErrorKind::LimitExceeded { retry_after: none }),
            Code::Unavailable
        );
        assert_eq!(
            code(&ErrorKind::RateLimited { retry_after: none }),
            Code::ResourceExhausted
        );
        assert_eq!(code(&ErrorKind::Timeout), Code::DeadlineExceeded);
        assert_eq!(code(&ErrorKind::Upstream), Code::Unknown);
    }
}
