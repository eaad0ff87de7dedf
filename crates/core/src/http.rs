use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};

use crate::classify::classify_error;
use crate::{BoxError, Classify, Outcome, retry_after};

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
}
