use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use portcullis_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{Bulkhead, HoldPermit, KeyedBulkhead, UntilResponse};

/// A service behind a bulkhead.
///
/// `poll_ready` is the inner service's; the permit is taken in `call`, so a
/// caller that polls readiness and never calls holds nothing. With a free
/// permit the inner service is called at once (one compare-and-swap, no
/// lock, no allocation). Without one, a bulkhead that fails fast (the
/// default) returns a future that resolves at once to
/// [`BulkheadFull`](crate::BulkheadFull), without calling the inner service.
/// A bulkhead that waits (`max_wait` above zero) returns a future that waits
/// in the queue with the request and the readied inner service — a clone
/// takes its place here, hence `S: Clone` — and calls it once it has a
/// permit, or resolves to `BulkheadFull` when `max_wait` passes first.
///
/// The permit is held until the response future completes or is dropped,
/// or for as long as the [`HoldPermit`] policy `P` says.
#[derive(Clone, Debug)]
pub struct BulkheadService<S, P = UntilResponse> {
    inner: S,
    bulkhead: Bulkhead,
    hold: P,
}

/// A service behind a [`KeyedBulkhead`]: each call draws from the pool of
/// the key that `F` extracts from its request. Otherwise it behaves as a
/// [`BulkheadService`].
#[derive(Clone)]
pub struct KeyedBulkheadService<S, K, F, P = UntilResponse> {
    inner: S,
    bulkhead: KeyedBulkhead<K>,
    key: F,
    hold: P,
}

impl<S> BulkheadService<S> {
    /// `inner` behind `bulkhead`; permits are held until the response.
    pub fn new(inner: S, bulkhead: Bulkhead) -> Self {
        Self {
            inner,
            bulkhead,
            hold: UntilResponse,
        }
    }
}

impl<S, P> BulkheadService<S, P> {
    /// The same service with another [`HoldPermit`] policy.
    pub fn with_hold<P2>(self, hold: P2) -> BulkheadService<S, P2> {
        BulkheadService {
            inner: self.inner,
            bulkhead: self.bulkhead,
            hold,
        }
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
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

impl<S, P, Req> Service<Req> for BulkheadService<S, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: HoldPermit<S::Response> + Clone,
{
    type Response = P::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let admission = self.bulkhead.admit();
        ResponseFuture::admit(admission, &mut self.inner, request, self.hold.clone())
    }
}

impl<S, K, F> KeyedBulkheadService<S, K, F> {
    /// `inner` behind `bulkhead`, with the pool chosen by `key` for each
    /// request; permits are held until the response.
    pub fn new(inner: S, bulkhead: KeyedBulkhead<K>, key: F) -> Self {
        Self {
            inner,
            bulkhead,
            key,
            hold: UntilResponse,
        }
    }
}

impl<S, K, F, P> KeyedBulkheadService<S, K, F, P> {
    /// The same service with another [`HoldPermit`] policy.
    pub fn with_hold<P2>(self, hold: P2) -> KeyedBulkheadService<S, K, F, P2> {
        KeyedBulkheadService {
            inner: self.inner,
            bulkhead: self.bulkhead,
            key: self.key,
            hold,
        }
    }

    /// The keyed bulkhead.
    pub fn bulkhead(&self) -> &KeyedBulkhead<K> {
        &self.bulkhead
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

impl<S, K, F, P, Req> Service<Req> for KeyedBulkheadService<S, K, F, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
    P: HoldPermit<S::Response> + Clone,
{
    type Response = P::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key)(&request);
        let admission = self.bulkhead.admit(key);
        ResponseFuture::admit(admission, &mut self.inner, request, self.hold.clone())
    }
}

impl<S: fmt::Debug, K, F, P: fmt::Debug> fmt::Debug for KeyedBulkheadService<S, K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}
