use std::time::Duration;

use http::Response;

use crate::classify::classify_error;
use crate::{BoxError, Classify, HttpClassifier, Outcome, Pushback};

/// Classifies gRPC responses by their `grpc-status`.
///
/// `UNAVAILABLE` (14), `DEADLINE_EXCEEDED` (4), `RESOURCE_EXHAUSTED` (8),
/// `INTERNAL` (13), `UNKNOWN` (2) and `ABORTED` (10) are failures; other codes
/// are successes. The status is read from the response headers, which is
/// where a trailers-only response (the way gRPC servers answer errors) puts
/// it; a streamed response whose status only comes in the trailers is a
/// success to this classifier. A response whose HTTP status is not 200
/// follows [`HttpClassifier`]. Errors follow
/// [`DefaultClassifier`](crate::DefaultClassifier).
///
/// Its [`retry_after`](Classify::retry_after) is the server's
/// `grpc-retry-pushback-ms`, when it is a plain non-negative number.
///
/// ```
/// use http::Response;
/// use portcullis_core::{Classify, GrpcClassifier, Outcome};
///
/// let unavailable = Response::builder().header("grpc-status", "14").body(()).unwrap();
/// assert_eq!(GrpcClassifier.classify(Ok(&unavailable)), Outcome::Failure);
/// let not_found = Response::builder().header("grpc-status", "5").body(()).unwrap();
/// assert_eq!(GrpcClassifier.classify(Ok(&not_found)), Outcome::Success);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcClassifier;

impl GrpcClassifier {
    /// Whether a `grpc-status` code is a failure under the default rules.
    pub fn is_failure(code: u32) -> bool {
        matches!(code, 2 | 4 | 8 | 10 | 13 | 14)
    }
}

impl<B> Classify<Response<B>, BoxError> for GrpcClassifier {
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        let response = match result {
            Ok(response) => response,
            Err(error) => return classify_error(error),
        };
        if response.status() != http::StatusCode::OK {
            return HttpClassifier.classify(Ok(response));
        }
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        match code {
            Some(code) if Self::is_failure(code) => Outcome::Failure,
            _ => Outcome::Success,
        }
    }

    fn retry_after(&self, result: Result<&Response<B>, &BoxError>) -> Option<Duration> {
        let value = result.ok()?.headers().get("grpc-retry-pushback-ms")?;
        let millis: u64 = value.to_str().ok()?.trim().parse().ok()?;
        Some(Duration::from_millis(millis)).filter(|d| *d <= crate::retry_after::DEFAULT_MAX)
    }

    /// The server's `grpc-retry-pushback-ms` as gRFC A6 reads it: a
    /// non-negative integer is a wait in milliseconds (a value too large
    /// for a `Duration` is `Duration::MAX`); anything else, negative or not
    /// a number, means "do not retry".
    fn pushback(&self, result: Result<&Response<B>, &BoxError>) -> Pushback {
        let Ok(response) = result else {
            return Pushback::None;
        };
        let Some(value) = response.headers().get("grpc-retry-pushback-ms") else {
            return Pushback::None;
        };
        let Ok(text) = value.to_str() else {
            return Pushback::Stop;
        };
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Pushback::Stop;
        }
        match text.parse::<u64>() {
            Ok(millis) => Pushback::After(Duration::from_millis(millis)),
            Err(_) => Pushback::After(Duration::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(value: &str) -> Outcome {
        let response = Response::builder()
            .header("grpc-status", value)
            .body(())
            .unwrap();
        GrpcClassifier.classify(Ok(&response))
    }

    #[test]
    fn codes() {
        for failure in ["2", "4", "8", "10", "13", "14"] {
            assert_eq!(code(failure), Outcome::Failure, "{failure}");
        }
        for success in [
            "0", "1", "3", "5", "6", "7", "9", "11", "12", "15", "16", "junk",
        ] {
            assert_eq!(code(success), Outcome::Success, "{success}");
        }
    }

    #[test]
    fn http_errors_and_pushback() {
        let bad_gateway = Response::builder().status(502).body(()).unwrap();
        assert_eq!(GrpcClassifier.classify(Ok(&bad_gateway)), Outcome::Failure);
        let push = Response::builder()
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", "250")
            .body(())
            .unwrap();
        assert_eq!(
            GrpcClassifier.retry_after(Ok(&push)),
            Some(Duration::from_millis(250))
        );
        let negative = Response::builder()
            .header("grpc-retry-pushback-ms", "-1")
            .body(())
            .unwrap();
        assert_eq!(GrpcClassifier.retry_after(Ok(&negative)), None);
    }

    #[test]
    fn pushback_follows_grfc_a6() {
        let with = |value: &str| {
            let response = Response::builder()
                .header("grpc-status", "14")
                .header("grpc-retry-pushback-ms", value)
                .body(())
                .unwrap();
            GrpcClassifier.pushback(Ok(&response))
        };
        assert_eq!(with("250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(with("0"), Pushback::After(Duration::ZERO));
        assert_eq!(
            with("99999999999999999999999"),
            Pushback::After(Duration::MAX)
        );
        for stop in ["-1", "1.5", "soon", "", "+5", "0x10"] {
            assert_eq!(with(stop), Pushback::Stop, "{stop:?}");
        }
        let silent = Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        assert_eq!(GrpcClassifier.pushback(Ok(&silent)), Pushback::None);
    }
}
