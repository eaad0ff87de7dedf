use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};

use crate::classify::classify_error;
use crate::{BoxError, Classify, Outcome, Pushback, retry_after};

/// Classifies HTTP responses: 5xx, 408 (Request Timeout) and 429 (Too Many
/// Requests) are failures, every other status a success; errors follow
/// [`DefaultClassifier`](crate::DefaultClassifier).
///
/// Its [`retry_after`](Classify::retry_after) is the `Retry-After` of a 429
/// or 503 response, parsed strictly (see [`retry_after`](crate::retry_after)).
///
/// ```
/// use http::{Response, StatusCode};
/// use portcullis_core::{BoxError, Classify, HttpClassifier, Outcome};
/// use std::time::Duration;
///
/// let busy = Response::builder()
///     .status(StatusCode::SERVICE_UNAVAILABLE)
///     .header("retry-after", "5")
///     .body(())
///     .unwrap();
/// let result: Result<&Response<()>, &BoxError> = Ok(&busy);
/// assert_eq!(HttpClassifier.classify(result), Outcome::Failure);
/// assert_eq!(HttpClassifier.retry_after(result), Some(Duration::from_secs(5)));
///
/// let missing = Response::builder().status(StatusCode::NOT_FOUND).body(()).unwrap();
/// assert_eq!(HttpClassifier.classify(Ok(&missing)), Outcome::Success);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpClassifier;

impl HttpClassifier {
    /// Whether `status` is a failure under the default HTTP rules.
    pub fn is_failure(status: StatusCode) -> bool {
        status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl<B> Classify<Response<B>, BoxError> for HttpClassifier {
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        match result {
            Ok(response) if Self::is_failure(response.status()) => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(error) => classify_error(error),
        }
    }

    fn retry_after(&self, result: Result<&Response<B>, &BoxError>) -> Option<Duration> {
        let response = result.ok()?;
        match response.status() {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after::from_headers(response.headers(), SystemTime::now())
            }
            _ => None,
        }
    }

    /// The `Retry-After` of a 429 or 503 response however far away it is
    /// (a retry gives up on one longer than it accepts, instead of taking
    /// it for "no header"); a malformed or repeated header says nothing.
    fn pushback(&self, result: Result<&Response<B>, &BoxError>) -> Pushback {
        let Ok(response) = result else {
            return Pushback::None;
        };
        if !matches!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            return Pushback::None;
        }
        let mut values = response.headers().get_all(http::header::RETRY_AFTER).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Pushback::None;
        };
        let Ok(value) = value.to_str() else {
            return Pushback::None;
        };
        match retry_after::parse_with_max(value, SystemTime::now(), Duration::MAX) {
            Ok(wait) => Pushback::After(wait),
            Err(retry_after::RetryAfterError::TooFar { .. }) => Pushback::After(Duration::MAX),
            Err(retry_after::RetryAfterError::Malformed) => Pushback::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BulkheadFull;

    fn status(code: u16) -> Outcome {
        let response = Response::builder().status(code).body(()).unwrap();
        HttpClassifier.classify(Ok(&response))
    }

    #[test]
    fn statuses() {
        for code in [500, 502, 503, 504, 599, 408, 429] {
            assert_eq!(status(code), Outcome::Failure, "{code}");
        }
        for code in [200, 201, 204, 301, 400, 401, 403, 404, 409, 422] {
            assert_eq!(status(code), Outcome::Success, "{code}");
        }
    }

    #[test]
    fn errors_follow_the_default_rules() {
        let full: BoxError = BulkheadFull::new("x").into();
        let io: BoxError = std::io::Error::other("reset").into();
        let classify = |e| Classify::<Response<()>>::classify(&HttpClassifier, Err(e));
        assert_eq!(classify(&full), Outcome::Ignored);
        assert_eq!(classify(&io), Outcome::Failure);
    }

    #[test]
    fn retry_after_only_for_429_and_503() {
        let with = |code: u16, value: &str| {
            let response = Response::builder()
                .status(code)
                .header("retry-after", value)
                .body(())
                .unwrap();
            HttpClassifier.retry_after(Ok(&response))
        };
        assert_eq!(with(429, "3"), Some(Duration::from_secs(3)));
        assert_eq!(with(503, "3"), Some(Duration::from_secs(3)));
        assert_eq!(with(500, "3"), None);
        assert_eq!(with(503, "later"), None);
        assert_eq!(with(503, "100000000"), None);
    }

    #[test]
    fn pushback_keeps_long_waits_and_ignores_malformed_ones() {
        let with = |code: u16, values: &[&str]| {
            let mut response = Response::builder().status(code);
            for value in values {
                response = response.header("retry-after", *value);
            }
            HttpClassifier.pushback(Ok(&response.body(()).unwrap()))
        };
        let secs = |s| Pushback::After(Duration::from_secs(s));
        assert_eq!(with(429, &["0"]), secs(0));
        assert_eq!(with(503, &["3"]), secs(3));
        assert_eq!(
            with(503, &["100000000"]),
            secs(100_000_000),
            "kept, not dropped"
        );
        assert_eq!(
            with(503, &["99999999999999999999999"]),
            Pushback::After(Duration::MAX)
        );
        assert_eq!(with(503, &["later"]), Pushback::None);
        assert_eq!(with(503, &["-1"]), Pushback::None);
        assert_eq!(with(503, &["1", "2"]), Pushback::None, "ambiguous");
        assert_eq!(with(500, &["3"]), Pushback::None);
        assert_eq!(with(429, &[]), Pushback::None);
        let error: BoxError = "reset".into();
        assert_eq!(
            Classify::<Response<()>>::pushback(&HttpClassifier, Err(&error)),
            Pushback::None
        );
    }
}
