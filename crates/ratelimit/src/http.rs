//! HTTP: a rejected request becomes a `429 Too Many Requests` response
//! with `Retry-After` and the `RateLimit-*` headers, so that an axum route
//! keeps `Error = Infallible`.
//!
//! The headers are the three-header form of the IETF draft
//! *RateLimit header fields for HTTP* (draft-ietf-httpapi-ratelimit-headers),
//! read for a GCRA limit:
//!
//! | header | value |
//! |--------|-------|
//! | `RateLimit-Limit` | the burst: the most requests that can be made at once, what `Remaining` counts down from |
//! | `RateLimit-Remaining` | how many more requests would be admitted now |
//! | `RateLimit-Reset` | seconds (rounded up) until the whole burst is available again |
//! | `Retry-After` | on a 429 only: seconds (rounded up) until this request would be admitted |
//!
//! The 429 always carries them; an admitted response carries the
//! `RateLimit-*` ones when
//! [`HttpRateLimitLayer::admitted_headers`] is on. Since a rate limit is
//! an answer about the client, not about the server, a rejection is never
//! an error of the service: the inner service's errors pass through
//! unchanged.
//!
//! With a plain [`RateLimit`](crate::RateLimit) behind axum's
//! `HandleErrorLayer`, [`too_many_requests`] turns a [`RateLimited`] into
//! the 429 with its `Retry-After`.

use std::hash::Hash;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use portcullis_core::{ErrorKind, RateLimited};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::{HttpResponseFuture, Start, start};
use crate::limiter::{Admit, Check, Verdict};
use crate::{ByKey, KeyExtractor, RateLimitLayer, RateLimiter};

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Wraps HTTP services in an [`HttpRateLimit`]; made from a
/// [`RateLimitLayer`] with [`RateLimitLayer::into_http`], sharing its limit
/// the same way.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use portcullis_ratelimit::{RateLimitConfig, RateLimitLayer, RateLimiter};
/// use std::convert::Infallible;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = RateLimiter::from_config("api", RateLimitConfig::per_second(1).build().unwrap()).unwrap();
/// let layer = RateLimitLayer::new(limiter).into_http().admitted_headers(true);
/// let service = layer.layer(service_fn(|_: Request<()>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// }));
///
/// let ok = service.clone().oneshot(Request::new(())).await.unwrap();
/// assert_eq!(ok.headers()["ratelimit-remaining"], "0");
/// let limited = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(limited.headers()["retry-after"], "1");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HttpRateLimitLayer<L = RateLimiter> {
    layer: RateLimitLayer<L>,
    admitted_headers: bool,
}

/// An HTTP service behind a rate limit: a rejected request is answered with
/// `429 Too Many Requests` (and an empty body), not an error.
///
/// Otherwise it is a [`RateLimit`](crate::RateLimit): same decisions, same
/// bounded wait, same need for a `Clone` inner service.
#[derive(Clone, Debug)]
pub struct HttpRateLimit<S, L = RateLimiter> {
    inner: S,
    limit: L,
    admitted_headers: bool,
}

/// The `RateLimit-*` header values of one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    limit: u32,
    remaining: u64,
    reset: u64,
}

/// A `429 Too Many Requests` response for `rejection`, as every Portcullis
/// layer answers one ([`ErrorKind::response`]): `Retry-After` and
/// `RateLimit-Reset` (whole seconds, rounded up) when the wait is known,
/// `x-portcullis-error: rate-limited`, and an empty body.
///
/// ```
/// use portcullis_ratelimit::{RateLimited, http::too_many_requests};
/// use std::time::Duration;
///
/// let response: http::Response<()> =
///     too_many_requests(&RateLimited::new("api", Some(Duration::from_millis(1500))));
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// assert_eq!(response.headers()["x-portcullis-error"], "rate-limited");
/// ```
pub fn too_many_requests<B: Default>(rejection: &RateLimited) -> Response<B> {
    ErrorKind::RateLimited {
        retry_after: rejection.retry_after(),
    }
    .response()
}

fn ceil_secs_nanos(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

impl<L> HttpRateLimitLayer<L> {
    /// Answers rejections of `layer`'s limit with 429s.
    pub fn new(layer: RateLimitLayer<L>) -> Self {
        Self {
            layer,
            admitted_headers: false,
        }
    }

    /// Whether admitted responses carry the `RateLimit-*` headers too
    /// (default: no; a 429 always does).
    pub fn admitted_headers(self, enabled: bool) -> Self {
        Self {
            admitted_headers: enabled,
            ..self
        }
    }
}

impl<S> Layer<S> for HttpRateLimitLayer<RateLimiter> {
    type Service = HttpRateLimit<S, RateLimiter>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRateLimit {
            inner,
            limit: self.layer.make(RateLimiter::fresh),
            admitted_headers: self.admitted_headers,
        }
    }
}

impl<S, X, K> Layer<S> for HttpRateLimitLayer<ByKey<X, K>>
where
    X: Clone,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Service = HttpRateLimit<S, ByKey<X, K>>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRateLimit {
            inner,
            limit: self.layer.make(ByKey::fresh),
            admitted_headers: self.admitted_headers,
        }
    }
}

impl<S> HttpRateLimit<S> {
    /// `inner` behind `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        Self {
            inner,
            limit: limiter,
            admitted_headers: false,
        }
    }
}

impl<S, X, K> HttpRateLimit<S, ByKey<X, K>> {
    /// `inner` behind `limiter`, by the key `extractor` finds in each
    /// request.
    pub fn keyed(inner: S, limiter: crate::KeyedRateLimiter<K>, extractor: X) -> Self {
        Self {
            inner,
            limit: ByKey::new(limiter, extractor),
            admitted_headers: false,
        }
    }
}

impl<S, L> HttpRateLimit<S, L> {
    /// Whether admitted responses carry the `RateLimit-*` headers too.
    pub fn admitted_headers(self, enabled: bool) -> Self {
        Self {
            admitted_headers: enabled,
            ..self
        }
    }

    /// The limit.
    pub fn limit(&self) -> &L {
        &self.limit
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn call<S, L, ReqB, ResB>(
    inner: &mut S,
    limit: &L,
    admitted_headers: bool,
    request: Request<ReqB>,
) -> HttpResponseFuture<S, Request<ReqB>>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    L: Admit<Request<ReqB>>,
    ResB: Default,
{
    let check = limit.check(&request);
    let headers = RateHeaders::of(limit, &check, admitted_headers);
    match start(inner, request, check.verdict) {
        Start::Admitted(call) => HttpResponseFuture::admitted(call, headers),
        Start::Rejected(error) => {
            let mut response = too_many_requests(&error);
            if let Some(headers) = headers {
                headers.insert_into(response.headers_mut());
            }
            HttpResponseFuture::rejected(response)
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for HttpRateLimit<S, RateLimiter>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S, Request<ReqB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        call(&mut self.inner, &self.limit, self.admitted_headers, request)
    }
}

impl<S, ReqB, ResB, X, K> Service<Request<ReqB>> for HttpRateLimit<S, ByKey<X, K>>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ResB: Default,
    X: KeyExtractor<Request<ReqB>, Key = K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S, Request<ReqB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        call(&mut self.inner, &self.limit, self.admitted_headers, request)
    }
}

impl RateHeaders {
    /// The headers of `check`: always for a rejection, for an admission
    /// only when `admitted` asks for them.
    fn of<Req, L: Admit<Req>>(limit: &L, check: &Check, admitted: bool) -> Option<Self> {
        let common = limit.common();
        let burst = common.burst();
        match check.verdict {
            Verdict::Now { tat } | Verdict::Later { tat, .. } => admitted.then(|| Self {
                limit: burst,
                remaining: common.gcra().available(tat, check.now),
                reset: ceil_secs_nanos(common.gcra().reset(tat, check.now)),
            }),
            Verdict::Rejected { reset, .. } => Some(Self {
                limit: burst,
                remaining: 0,
                reset: ceil_secs_nanos(reset),
            }),
        }
    }

    pub(crate) fn insert_into(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(
            portcullis_core::retry_after::seconds(Duration::from_millis(1)),
            1
        );
        assert_eq!(
            portcullis_core::retry_after::seconds(Duration::from_secs(2)),
            2
        );
        assert_eq!(
            portcullis_core::retry_after::seconds(Duration::from_millis(2_001)),
            3
        );
        assert_eq!(ceil_secs_nanos(0), 0);
        assert_eq!(ceil_secs_nanos(1), 1);
        assert_eq!(ceil_secs_nanos(1_000_000_000), 1);
        assert_eq!(ceil_secs_nanos(1_000_000_001), 2);
    }
}
