//! What an error out of a stack means, and how each protocol answers it:
//! the one table of Portcullis's rejections.
//!
//! | kind | error | HTTP status | gRPC code | wait |
//! |------|-------|-------------|-----------|------|
//! | `breaker-open` | [`BreakerOpen`] | `503 Service Unavailable` | `UNAVAILABLE` (14) | when the breaker lets a probe through by itself |
//! | `bulkhead-full` | [`BulkheadFull`] | `503 Service Unavailable` | `UNAVAILABLE` (14) | if the rejection carries one |
//! | `limit-exceeded` | [`LimitExceeded`] | `503 Service Unavailable` | `UNAVAILABLE` (14) | the limiter's estimate of one call's latency |
//! | `rate-limited` | [`RateLimited`] | `429 Too Many Requests` | `RESOURCE_EXHAUSTED` (8) | when the limiter has room again, if known |
//! | `timeout` | [`Elapsed`] | `504 Gateway Timeout` | `DEADLINE_EXCEEDED` (4) | |
//! | `upstream` | anything else | `502 Bad Gateway` | `UNKNOWN` (2) | |
//!
//! The wait is sent as `Retry-After` in whole seconds, rounded up
//! ([`retry_after::seconds`](crate::retry_after::seconds)), and by a rate
//! limit also as `RateLimit-Reset`; over gRPC as `grpc-retry-pushback-ms`.
//! Every answer carries `x-portcullis-error` with the kind's name, so that
//! a client or a test can tell a Portcullis rejection from an answer of the
//! upstream. A layer that turns calls away answers through this table, so
//! the protocols cannot disagree.

use std::error::Error;
use std::time::Duration;

#[cfg(doc)]
use crate::{BreakerOpen, BulkheadFull, Elapsed, LimitExceeded, RateLimited};
use crate::{Rejection, find_rejection};

/// What an error out of a stack means: which Portcullis layer turned the
/// call away, or that the callee failed.
///
/// [`ErrorKind::of`] finds it from the first Portcullis rejection in the
/// error's `source()` chain, the error itself included, as
/// [`find_rejection`] does. So a rejection
/// wrapped in an error of your own, or the last error of a retry that gave
/// up (`RetriesExhausted`, whose `source()` is that error), is recognised.
/// Any other error is [`Upstream`](Self::Upstream).
///
/// ```
/// use std::time::Duration;
/// use portcullis_core::{BoxError, BreakerOpen, Elapsed, ErrorKind};
///
/// let open: BoxError = BreakerOpen::new("payments", Some(Duration::from_secs(3))).into();
/// let kind = ErrorKind::of(open.as_ref());
/// assert_eq!(kind, ErrorKind::BreakerOpen { retry_after: Some(Duration::from_secs(3)) });
/// assert_eq!(kind.as_str(), "breaker-open");
///
/// let timeout: BoxError = Elapsed::new(Duration::from_secs(1)).into();
/// assert_eq!(ErrorKind::of(timeout.as_ref()), ErrorKind::Timeout);
///
/// let reset = std::io::Error::other("connection reset");
/// assert_eq!(ErrorKind::of(&reset), ErrorKind::Upstream);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A circuit breaker is open ([`BreakerOpen`]).
    BreakerOpen {
        /// When the breaker lets a probe through, if it will by itself.
        retry_after: Option<Duration>,
    },
    /// A bulkhead had no permit ([`BulkheadFull`]).
    BulkheadFull {
        /// When to try again, if the rejection says.
        retry_after: Option<Duration>,
    },
    /// An adaptive concurrency limit shed the call ([`LimitExceeded`]).
    LimitExceeded {
        /// When to try again, if the rejection says.
        retry_after: Option<Duration>,
    },
    /// A rate limit is exhausted ([`RateLimited`]).
    RateLimited {
        /// When the limiter has capacity for the call again, if known.
        retry_after: Option<Duration>,
    },
    /// The call took longer than its timeout ([`Elapsed`]).
    Timeout,
    /// The callee failed: any error that is no Portcullis rejection.
    Upstream,
}

impl ErrorKind {
    /// The kind of `error`, from the first Portcullis rejection in its
    /// `source()` chain; [`Upstream`](Self::Upstream) if there is none.
    pub fn of(error: &(dyn Error + 'static)) -> Self {
        find_rejection(error).map_or(Self::Upstream, Rejection::kind)
    }

    /// The HTTP status for this kind, as its number: 503, 503, 503, 429,
    /// 504 or 502.
    pub const fn status_code(&self) -> u16 {
        match self {
            Self::BreakerOpen { .. } | Self::BulkheadFull { .. } | Self::LimitExceeded { .. } => {
                503
            }
            Self::RateLimited { .. } => 429,
            Self::Timeout => 504,
            Self::Upstream => 502,
        }
    }

    /// A short machine-readable name: `breaker-open`, `bulkhead-full`,
    /// `limit-exceeded`, `rate-limited`, `timeout` or `upstream`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::BreakerOpen { .. } => "breaker-open",
            Self::BulkheadFull { .. } => "bulkhead-full",
            Self::LimitExceeded { .. } => "limit-exceeded",
            Self::RateLimited { .. } => "rate-limited",
            Self::Timeout => "timeout",
            Self::Upstream => "upstream",
        }
    }

    /// When trying again may succeed, if the rejection says.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::BreakerOpen { retry_after }
            | Self::BulkheadFull { retry_after }
            | Self::LimitExceeded { retry_after }
            | Self::RateLimited { retry_after } => *retry_after,
            Self::Timeout | Self::Upstream => None,
        }
    }

    /// Whether the call was turned away before it reached the callee (a
    /// breaker, bulkhead, concurrency limit or rate limit rejection).
    pub const fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::BreakerOpen { .. }
                | Self::BulkheadFull { .. }
                | Self::LimitExceeded { .. }
                | Self::RateLimited { .. }
        )
    }
}

impl ErrorKind {
    /// The gRPC status code for this kind, as its number: `UNAVAILABLE`
    /// (14) for an open breaker, a full bulkhead or a concurrency limit
    /// that shed the call, `RESOURCE_EXHAUSTED`
    /// (8) for a rate limit, `DEADLINE_EXCEEDED` (4) for a timeout, and
    /// `UNKNOWN` (2) for an upstream error. With tonic,
    /// `tonic::Code::from(kind.grpc_code())`.
    ///
    /// ```
    /// use portcullis_core::ErrorKind;
    ///
    /// assert_eq!(ErrorKind::Timeout.grpc_code(), 4);
    /// ```
    pub const fn grpc_code(&self) -> i32 {
        match self {
            Self::BreakerOpen { .. } | Self::BulkheadFull { .. } | Self::LimitExceeded { .. } => 14,
            Self::RateLimited { .. } => 8,
            Self::Timeout => 4,
            Self::Upstream => 2,
        }
    }
}

/// `x-portcullis-error`: the [`ErrorKind`] name of an answered error.
#[cfg(feature = "http")]
pub const X_PORTCULLIS_ERROR: http::HeaderName =
    http::HeaderName::from_static("x-portcullis-error");

#[cfg(feature = "http")]
const RATELIMIT_RESET: http::HeaderName = http::HeaderName::from_static("ratelimit-reset");

#[cfg(feature = "http")]
impl ErrorKind {
    /// The status of the response for this kind: 503, 503, 503, 429, 504
    /// or 502 (feature `http`).
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.status_code()).expect("every kind's status is valid")
    }

    /// The response for this kind, with its headers and an empty body
    /// (feature `http`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_core::ErrorKind;
    ///
    /// let kind = ErrorKind::RateLimited { retry_after: Some(Duration::from_millis(1500)) };
    /// let response: http::Response<()> = kind.response();
    /// assert_eq!(response.status(), 429);
    /// assert_eq!(response.headers()["retry-after"], "2");
    /// assert_eq!(response.headers()["ratelimit-reset"], "2");
    /// assert_eq!(response.headers()["x-portcullis-error"], "rate-limited");
    /// ```
    pub fn response<B: Default>(&self) -> http::Response<B> {
        use http::HeaderValue;
        let mut response = http::Response::new(B::default());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(X_PORTCULLIS_ERROR, HeaderValue::from_static(self.as_str()));
        if let Some(wait) = self.retry_after() {
            let secs = HeaderValue::from(crate::retry_after::seconds(wait));
            if let Self::RateLimited { .. } = self {
                headers.insert(RATELIMIT_RESET, secs.clone());
            }
            headers.insert(http::header::RETRY_AFTER, secs);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[cfg(feature = "http")]
    use http::Response;
    #[cfg(feature = "http")]
    use http::header::RETRY_AFTER;

    use super::*;
    use crate::error::tests::Outer;
    use crate::{
        BoxError, BreakerOpen, BulkheadFull, Elapsed, LimitExceeded, RateLimited, retry_after,
    };

    #[test]
    fn seconds_round_up() {
        assert_eq!(retry_after::seconds(Duration::ZERO), 0);
        assert_eq!(retry_after::seconds(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after::seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after::seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn grpc_codes() {
        let none = None;
        assert_eq!(ErrorKind::BreakerOpen { retry_after: none }.grpc_code(), 14);
        assert_eq!(
            ErrorKind::BulkheadFull { retry_after: none }.grpc_code(),
            14
        );
        assert_eq!(ErrorKind::RateLimited { retry_after: none }.grpc_code(), 8);
        assert_eq!(
            ErrorKind::LimitExceeded { retry_after: none }.grpc_code(),
            14
        );
        assert_eq!(ErrorKind::Timeout.grpc_code(), 4);
        assert_eq!(ErrorKind::Upstream.grpc_code(), 2);
    }

    #[cfg(feature = "http")]
    #[test]
    fn statuses() {
        let none = None;
        assert_eq!(ErrorKind::BreakerOpen { retry_after: none }.status(), 503);
        assert_eq!(ErrorKind::BulkheadFull { retry_after: none }.status(), 503);
        assert_eq!(ErrorKind::LimitExceeded { retry_after: none }.status(), 503);
        assert_eq!(ErrorKind::RateLimited { retry_after: none }.status(), 429);
        assert_eq!(ErrorKind::Timeout.status(), 504);
        assert_eq!(ErrorKind::Upstream.status(), 502);
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_rate_limit_without_a_wait_has_no_wait_headers() {
        let response: Response<()> = ErrorKind::RateLimited { retry_after: None }.response();
        assert_eq!(response.status(), 429);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert!(response.headers().get(RATELIMIT_RESET).is_none());
        assert_eq!(response.headers()[X_PORTCULLIS_ERROR], "rate-limited");
    }

    #[cfg(feature = "http")]
    #[test]
    fn only_a_rate_limit_has_a_reset() {
        let wait = Some(Duration::from_secs(4));
        let response: Response<()> = ErrorKind::BreakerOpen { retry_after: wait }.response();
        assert_eq!(response.headers()[RETRY_AFTER], "4");
        assert!(response.headers().get(RATELIMIT_RESET).is_none());
    }

    #[test]
    fn each_rejection_has_its_kind() {
        let secs = |s| Some(Duration::from_secs(s));
        let cases: [(BoxError, ErrorKind); 6] = [
            (
                LimitExceeded::new("l", secs(1)).into(),
                ErrorKind::LimitExceeded {
                    retry_after: secs(1),
                },
            ),
            (
                BreakerOpen::new("b", secs(2)).into(),
                ErrorKind::BreakerOpen {
                    retry_after: secs(2),
                },
            ),
            (
                BulkheadFull::new("b").into(),
                ErrorKind::BulkheadFull { retry_after: None },
            ),
            (
                RateLimited::new("r", secs(1)).into(),
                ErrorKind::RateLimited {
                    retry_after: secs(1),
                },
            ),
            (
                Elapsed::new(Duration::from_millis(1)).into(),
                ErrorKind::Timeout,
            ),
            (std::io::Error::other("x").into(), ErrorKind::Upstream),
        ];
        for (error, kind) in cases {
            assert_eq!(ErrorKind::of(error.as_ref()), kind, "{error}");
        }
    }

    #[test]
    fn a_rejection_is_found_deep_in_the_chain() {
        let deep = Outer(Outer(RateLimited::new("api", None).into()).into());
        assert_eq!(
            ErrorKind::of(&deep),
            ErrorKind::RateLimited { retry_after: None }
        );
        let outer = Outer(Elapsed::new(Duration::from_secs(1)).into());
        assert_eq!(ErrorKind::of(&outer), ErrorKind::Timeout);
    }

    #[test]
    fn names_and_never_sent() {
        let open = ErrorKind::BreakerOpen { retry_after: None };
        assert_eq!(open.as_str(), "breaker-open");
        assert!(open.never_sent());
        assert_eq!(
            ErrorKind::BulkheadFull { retry_after: None }.as_str(),
            "bulkhead-full"
        );
        assert_eq!(
            ErrorKind::RateLimited { retry_after: None }.as_str(),
            "rate-limited"
        );
        assert_eq!(ErrorKind::Timeout.as_str(), "timeout");
        assert!(!ErrorKind::Timeout.never_sent());
        assert_eq!(ErrorKind::Upstream.as_str(), "upstream");
        assert!(!ErrorKind::Upstream.never_sent());
    }
}
