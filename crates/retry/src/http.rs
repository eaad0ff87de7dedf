//! HTTP: the retry rules for HTTP (and gRPC) responses, the idempotency
//! gate, and body replay.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use portcullis_core::{BoxError, HttpClassifier};

use crate::body::{ReplayBody, Shared};
use crate::policy::never_sent;
use crate::{Policy, Replay, RetryConfig, RetryPredicate};

/// The HTTP retry policy: [`HttpClassifier`] decides failures,
/// [`HttpPredicate`] the retryable ones, [`HttpReplay`] sends requests
/// again.
pub type HttpPolicy = Policy<HttpClassifier, HttpPredicate, HttpReplay>;

/// The gRPC retry policy: [`GrpcClassifier`](portcullis_core::GrpcClassifier)
/// decides failures, [`GrpcPredicate`] the retryable ones, [`HttpReplay`]
/// sends requests again — only once the calls are declared idempotent
/// ([`RetryLayer::retry_non_idempotent`](crate::RetryLayer::retry_non_idempotent)
/// or the [`Idempotent`] extension), since every gRPC call is a POST.
#[cfg(feature = "grpc")]
pub type GrpcPolicy = Policy<portcullis_core::GrpcClassifier, GrpcPredicate, HttpReplay>;

/// Which HTTP failures are retried: errors that are not rejections of an
/// inner Portcullis layer (connection errors, and timeouts:
/// [`Elapsed`](crate::Elapsed)), and the responses 408, 429, 500, 502, 503
/// and 504. Never another 4xx, never 501 or 505.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpPredicate;

/// Which gRPC failures are retried: `UNAVAILABLE`, `RESOURCE_EXHAUSTED` and
/// `DEADLINE_EXCEEDED` (read from `grpc-status` in the response headers, as
/// a trailers-only response carries it), the [`HttpPredicate`] statuses of
/// a response that is not `200 OK`, and errors that are not Portcullis
/// rejections.
#[cfg(feature = "grpc")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcPredicate;

/// Sends `http::Request<B>`s again, streaming bodies included.
///
/// The inner service receives `http::Request<ReplayBody<B>>`: the method,
/// URI, version, headers and extensions are cloned for each attempt, and
/// the body is a [`ReplayBody`] that buffers the first attempt's body as it
/// streams, up to [`body_limit`](Self::body_limit) bytes. A request whose
/// body outgrows the limit, or whose known length exceeds it, is sent once.
///
/// **Idempotency gate.** A request whose method is not idempotent — POST,
/// PATCH, CONNECT, or a method unknown to RFC 9110 — is sent once, unless
/// it carries an `Idempotency-Key` header, or the [`Idempotent`]
/// extension, or the route opts in with
/// [`retry_non_idempotent`](Self::retry_non_idempotent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpReplay {
    body_limit: u64,
    retry_non_idempotent: bool,
}

/// A request extension that declares one request idempotent, so that it may
/// be retried whatever its method (for example a gRPC call to a read-only
/// method):
///
/// ```
/// use portcullis_retry::Idempotent;
///
/// let request = http::Request::post("/lookup.v1.Directory/Find")
///     .extension(Idempotent)
///     .body(())
///     .unwrap();
/// # let _ = request;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idempotent;

/// What [`HttpReplay`] keeps of a request to send it again: its head and
/// its body's buffer.
pub struct HttpReplayState<B> {
    parts: http::request::Parts,
    body: Arc<Shared<B>>,
}

/// The header that lets a non-idempotent request be retried.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl HttpPredicate {
    /// Whether a response of `status` is retried.
    pub fn is_retryable_status(status: StatusCode) -> bool {
        matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
    }
}

impl<B> RetryPredicate<Response<B>> for HttpPredicate {
    fn is_retryable(&self, result: Result<&Response<B>, &BoxError>) -> bool {
        match result {
            Ok(response) => Self::is_retryable_status(response.status()),
            Err(error) => !never_sent(error),
        }
    }
}

#[cfg(feature = "grpc")]
impl GrpcPredicate {
    /// Whether a `grpc-status` code is retried: 14 (`UNAVAILABLE`), 8
    /// (`RESOURCE_EXHAUSTED`), 4 (`DEADLINE_EXCEEDED`).
    pub fn is_retryable_code(code: u32) -> bool {
        matches!(code, 4 | 8 | 14)
    }
}

#[cfg(feature = "grpc")]
impl<B> RetryPredicate<Response<B>> for GrpcPredicate {
    fn is_retryable(&self, result: Result<&Response<B>, &BoxError>) -> bool {
        Self::is_retryable_with(result, Self::is_retryable_code)
    }
}

#[cfg(feature = "grpc")]
impl GrpcPredicate {
    /// The gRPC rules with other codes: a `grpc-status` (in the headers)
    /// for which `codes` holds, a response that is not `200 OK` whose
    /// status [`HttpPredicate`] retries, or an error that is not a
    /// Portcullis rejection. A hedge's non-fatal codes use it.
    pub fn is_retryable_with<B>(
        result: Result<&Response<B>, &BoxError>,
        codes: impl Fn(u32) -> bool,
    ) -> bool {
        let response = match result {
            Ok(response) => response,
            Err(error) => return !never_sent(error),
        };
        if response.status() != StatusCode::OK {
            return HttpPredicate::is_retryable_status(response.status());
        }
        response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok())
            .is_some_and(codes)
    }
}

impl Default for HttpReplay {
    /// A 64 KiB limit, and the idempotency gate on.
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            retry_non_idempotent: false,
        }
    }
}

impl HttpReplay {
    /// The replay settings of `config` (`body_limit`, `retry_non_idempotent`).
    pub fn from_config(config: &RetryConfig) -> Self {
        Self {
            body_limit: config.body_limit(),
            retry_non_idempotent: config.retry_non_idempotent(),
        }
    }

    /// Buffer at most `bytes` of a body for replay.
    pub fn body_limit(mut self, bytes: u64) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Retry non-idempotent requests even without an `Idempotency-Key`.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// The body limit, in bytes.
    pub fn get_body_limit(&self) -> u64 {
        self.body_limit
    }

    /// Whether `request` passes the idempotency gate.
    pub fn may_retry<B>(&self, request: &Request<B>) -> bool {
        self.retry_non_idempotent
            || is_idempotent(request.method())
            || request.headers().contains_key(IDEMPOTENCY_KEY)
            || request.extensions().get::<Idempotent>().is_some()
    }
}

/// The methods RFC 9110 defines as idempotent.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B> Replay<Request<B>> for HttpReplay
where
    B: Body<Data = Bytes>,
{
    type Request = Request<ReplayBody<B>>;
    type State = HttpReplayState<B>;

    fn prepare(&self, request: Request<B>) -> (Self::Request, Option<Self::State>) {
        let too_long = request.body().size_hint().lower() > self.body_limit;
        if too_long || !self.may_retry(&request) {
            return (self.once(request), None);
        }
        let (parts, body) = request.into_parts();
        let (first, shared) = ReplayBody::tee(body, self.body_limit);
        let state = HttpReplayState {
            parts: parts.clone(),
            body: shared,
        };
        (Request::from_parts(parts, first), Some(state))
    }

    fn once(&self, request: Request<B>) -> Self::Request {
        request.map(ReplayBody::once)
    }

    fn replay(&self, state: &mut Self::State) -> Option<Self::Request> {
        if state.body.is_unreplayable() {
            return None;
        }
        Some(Request::from_parts(
            state.parts.clone(),
            ReplayBody::replay(state.body.clone()),
        ))
    }

    fn replay_last(&self, state: Self::State) -> Option<Self::Request> {
        if state.body.is_unreplayable() {
            return None;
        }
        Some(Request::from_parts(
            state.parts,
            ReplayBody::replay(state.body),
        ))
    }
}

impl<B> fmt::Debug for HttpReplayState<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpReplayState")
            .field("method", &self.parts.method)
            .field("uri", &self.parts.uri)
            .field("body", &self.body)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use portcullis_core::{BreakerOpen, Elapsed};
    use std::time::Duration;

    fn status(code: u16) -> bool {
        let response = Response::builder().status(code).body(()).unwrap();
        HttpPredicate.is_retryable(Ok(&response))
    }

    #[test]
    fn retryable_statuses_and_errors() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code), "{code}");
        }
        for code in [200, 400, 401, 404, 409, 422, 501, 505] {
            assert!(!status(code), "{code}");
        }
        let err =
            |e: BoxError| RetryPredicate::<Response<()>>::is_retryable(&HttpPredicate, Err(&e));
        assert!(err(std::io::Error::other("connection reset").into()));
        assert!(err(Elapsed::new(Duration::from_secs(1)).into()));
        assert!(!err(BreakerOpen::new("b", None).into()));
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn retryable_grpc_codes() {
        let code = |value: &str| {
            let response = Response::builder()
                .header("grpc-status", value)
                .body(())
                .unwrap();
            GrpcPredicate.is_retryable(Ok(&response))
        };
        for retried in ["14", "8", "4"] {
            assert!(code(retried), "{retried}");
        }
        for not in ["0", "2", "5", "10", "13", "junk"] {
            assert!(!code(not), "{not}");
        }
        let bad_gateway = Response::builder().status(502).body(()).unwrap();
        assert!(GrpcPredicate.is_retryable(Ok(&bad_gateway)));
    }

    #[test]
    fn the_idempotency_gate() {
        let replay = HttpReplay::default();
        let request = |method: &str| Request::builder().method(method).body(()).unwrap();
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(replay.may_retry(&request(method)), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "PROPFIND"] {
            assert!(!replay.may_retry(&request(method)), "{method}");
            assert!(
                replay
                    .retry_non_idempotent(true)
                    .may_retry(&request(method))
            );
        }
        let keyed = Request::post("/")
            .header("Idempotency-Key", "k1")
            .body(())
            .unwrap();
        assert!(replay.may_retry(&keyed));
        let marked = Request::post("/").extension(Idempotent).body(()).unwrap();
        assert!(replay.may_retry(&marked));
    }
}
