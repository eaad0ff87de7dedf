use std::task::{Context, Poll};

use portcullis_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::Breaker;
use crate::future::ResponseFuture;

/// A service behind a circuit breaker.
///
/// `poll_ready` is the inner service's; `call` asks the breaker first. An
/// open breaker fails fast: the returned future resolves at once to a
/// [`BreakerOpen`](crate::BreakerOpen) error and the inner service is not
/// called. Otherwise the outcome of the inner call, as decided by the
/// classifier `C`, is recorded when the future completes; a future dropped
/// before that records nothing (and gives a half-open probe slot back).
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    breaker: Breaker,
    classifier: C,
}

impl<S> CircuitBreaker<S> {
    /// `inner` behind `breaker`, with the default classifier.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        Self {
            inner,
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// The same service with another classifier.
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreaker<S, C2> {
        CircuitBreaker {
            inner: self.inner,
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
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

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.breaker.try_acquire() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
