use std::task::{Context, Poll};

use portcullis_core::BoxError;
use tower_service::Service;

use crate::FleetLimiter;
use crate::future::ResponseFuture;
use crate::limiter::Decision;

/// A service behind a fleet rate limit.
///
/// `poll_ready` is the inner service's; `call` asks the limit. A call the
/// local state decides (a leased token, a cached denial) is called or
/// rejected at once, without an allocation. One that goes to Redis takes
/// the ready inner service with it and leaves a clone behind, so the inner
/// service must be `Clone` (as every axum service is).
#[derive(Clone, Debug)]
pub struct FleetRateLimit<S> {
    inner: S,
    limiter: FleetLimiter,
}

impl<S> FleetRateLimit<S> {
    /// `inner` behind `limiter`.
    pub fn new(inner: S, limiter: FleetLimiter) -> Self {
        Self { inner, limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &FleetLimiter {
        &self.limiter
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

impl<S, Req> Service<Req> for FleetRateLimit<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.limiter.decide(None) {
            Decision::Ready(Ok(())) => ResponseFuture::called(self.inner.call(request)),
            Decision::Ready(Err(error)) => ResponseFuture::rejected(error),
            Decision::Redis(trip) => {
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::deciding(Box::pin(trip.run()), ready, request)
            }
        }
    }
}
