use std::hash::Hash;
use std::task::{Context, Poll};

use portcullis_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::limiter::Admit;
use crate::{ByKey, KeyExtractor, KeyedRateLimiter, RateLimiter};

/// A service behind a rate limit.
///
/// `poll_ready` is the inner service's; `call` asks the limit. A call that
/// conforms goes to the inner service at once. One that does not fails
/// fast: the returned future resolves at once to a
/// [`RateLimited`](crate::RateLimited) error with the exact `retry_after`,
/// and the inner service is not called. With a `max_wait`, a call whose
/// slot comes within it reserves the slot and waits for it inside the
/// response future, then calls the inner service; dropping that future
/// before then gives the slot back (if no call was admitted since).
///
/// The inner service must be `Clone` (as every axum service is): a call that
/// waits takes the ready service with it and leaves a clone behind.
///
/// `L` is the limit: a [`RateLimiter`] (one budget for every request) or a
/// [`ByKey`] (one budget per key).
#[derive(Clone, Debug)]
pub struct RateLimit<S, L = RateLimiter> {
    inner: S,
    limit: L,
}

impl<S> RateLimit<S> {
    /// `inner` behind `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        Self {
            inner,
            limit: limiter,
        }
    }
}

impl<S, X, K> RateLimit<S, ByKey<X, K>> {
    /// `inner` behind `limiter`, by the key `extractor` finds in each
    /// request.
    pub fn keyed(inner: S, limiter: KeyedRateLimiter<K>, extractor: X) -> Self {
        Self {
            inner,
            limit: ByKey::new(limiter, extractor),
        }
    }
}

impl<S, L> RateLimit<S, L> {
    pub(crate) fn with_limit(inner: S, limit: L) -> Self {
        Self { inner, limit }
    }

    /// The limit: the [`RateLimiter`] handle, or the [`ByKey`] pair.
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

#[inline]
fn call<S, L, Req>(inner: &mut S, limit: &L, request: Req) -> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    L: Admit<Req>,
{
    let check = limit.check(&request);
    ResponseFuture::start(inner, request, check.verdict)
}

impl<S, Req> Service<Req> for RateLimit<S, RateLimiter>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        call(&mut self.inner, &self.limit, request)
    }
}

impl<S, Req, X, K> Service<Req> for RateLimit<S, ByKey<X, K>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    X: KeyExtractor<Req, Key = K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        call(&mut self.inner, &self.limit, request)
    }
}
