use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;

/// Fails a call with [`Elapsed`](crate::Elapsed) when the inner service
/// takes longer than the timeout.
///
/// The timer starts on the first poll of the response future that finds
/// the inner future pending (not in `call`): a response that is ready at
/// once costs no clock read. The time between `call` and that poll, and
/// the first poll of the inner future itself, are not counted. Inside a
/// retry this is the per-attempt timeout; outside it, the total deadline
/// of all the attempts.
#[derive(Clone, Copy, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// `inner`, with calls limited to `timeout`.
    pub const fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
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

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), self.timeout)
    }
}
