//! Strict parsing of the HTTP `Retry-After` header (RFC 9110 §10.2.3).
//!
//! A server may answer `Retry-After: 120` (delta-seconds) or
//! `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (an HTTP-date). Resilience
//! layers act on it — a breaker stays open for it, a retry waits for it — so a
//! value that is malformed, or absurdly far in the future, is rejected rather
//! than trusted: a misbehaving server must not be able to park a client for a
//! week. The bound is [`DEFAULT_MAX`] unless the caller gives its own.
//!
//! ```
//! use portcullis_core::retry_after::{self, RetryAfterError};
//! use std::time::{Duration, SystemTime};
//!
//! let now = SystemTime::now();
//! assert_eq!(retry_after::parse("120", now), Ok(Duration::from_secs(120)));
//! assert_eq!(retry_after::parse("soon", now), Err(RetryAfterError::Malformed));
//! assert!(matches!(retry_after::parse("99999999999", now), Err(RetryAfterError::TooFar { .. })));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

/// The longest wait that [`parse`] accepts: one day.
pub const DEFAULT_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a `Retry-After` value was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfterError {
    /// Neither delta-seconds nor an HTTP-date.
    Malformed,
    /// A well-formed value that asks for a wait longer than the bound.
    TooFar {
        /// The bound that was exceeded.
        max: Duration,
    },
}

/// A wait as `Retry-After` writes it: whole seconds, rounded up, so that
/// a client never comes back before the wait is over.
///
/// ```
/// use std::time::Duration;
/// use portcullis_core::retry_after::seconds;
///
/// assert_eq!(seconds(Duration::from_millis(1500)), 2);
/// assert_eq!(seconds(Duration::from_secs(3)), 3);
/// assert_eq!(seconds(Duration::ZERO), 0);
/// ```
pub const fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + (wait.subsec_nanos() > 0) as u64
}

/// Parses a `Retry-After` value into a wait from `now`, at most
/// [`DEFAULT_MAX`].
///
/// An HTTP-date in the past means "now" and gives `Duration::ZERO`.
pub fn parse(value: &str, now: SystemTime) -> Result<Duration, RetryAfterError> {
    parse_with_max(value, now, DEFAULT_MAX)
}

/// Parses a `Retry-After` value into a wait from `now`, at most `max`.
pub fn parse_with_max(
    value: &str,
    now: SystemTime,
    max: Duration,
) -> Result<Duration, RetryAfterError> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(RetryAfterError::Malformed);
    }
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: delta-seconds. Too many digits to fit is "too far".
        match value.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => return Err(RetryAfterError::TooFar { max }),
        }
    } else {
        let at = httpdate::parse_http_date(value).map_err(|_| RetryAfterError::Malformed)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    if wait > max {
        return Err(RetryAfterError::TooFar { max });
    }
    Ok(wait)
}

/// The accepted `Retry-After` of a header map, if it has exactly one that
/// parses within [`DEFAULT_MAX`].
#[cfg(feature = "http")]
pub fn from_headers(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(http::header::RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(value.to_str().ok()?, now).ok()
}

impl fmt::Display for RetryAfterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("retry-after is neither delta-seconds nor an http-date"),
            Self::TooFar { max } => write!(f, "retry-after is further away than {max:?}"),
        }
    }
}

impl std::error::Error for RetryAfterError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110.
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse("0", now()), Ok(Duration::ZERO));
        assert_eq!(parse(" 30 ", now()), Ok(Duration::from_secs(30)));
        assert_eq!(parse("86400", now()), Ok(DEFAULT_MAX));
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let later = Duration::from_secs(60);
        assert_eq!(parse("Sun, 06 Nov 1994 08:50:37 GMT", now()), Ok(later));
        assert_eq!(parse("Sunday, 06-Nov-94 08:50:37 GMT", now()), Ok(later));
        assert_eq!(parse("Sun Nov  6 08:50:37 1994", now()), Ok(later));
    }

    #[test]
    fn a_past_date_means_now() {
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:00:00 GMT", now()),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        for value in [
            "",
            "  ",
            "-1",
            "+5",
            "1.5",
            "5s",
            "0x10",
            "tomorrow",
            "Sun, 99 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(
                parse(value, now()),
                Err(RetryAfterError::Malformed),
                "{value:?}"
            );
        }
    }

    #[test]
    fn absurd_values_are_rejected() {
        let too_far = Err(RetryAfterError::TooFar { max: DEFAULT_MAX });
        assert_eq!(parse("86401", now()), too_far);
        assert_eq!(parse("184467440737095516160", now()), too_far);
        assert_eq!(parse("Sat, 06 Nov 2094 08:49:37 GMT", now()), too_far);
        assert_eq!(
            parse_with_max("11", now(), Duration::from_secs(10)),
            Err(RetryAfterError::TooFar {
                max: Duration::from_secs(10)
            })
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn from_headers_takes_exactly_one_value() {
        use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers, now()), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(from_headers(&headers, now()), Some(Duration::from_secs(7)));
        headers.append(RETRY_AFTER, HeaderValue::from_static("8"));
        assert_eq!(from_headers(&headers, now()), None);
    }
}
