use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::Chaos;
use crate::chaos::Fault;
use crate::future::ResponseFuture;
use crate::inject::{DefaultError, MakeError, MakeResponse, NoResponse};

/// A service with faults injected by a [`Chaos`] handle.
///
/// `poll_ready` is the inner service's. In `call`, when the handle is
/// switched off, the request goes to the inner service and its future is
/// returned as is (one relaxed atomic load). When it is on, the call may
/// be:
///
/// - **failed** with an injected error (from the factory `E`) or
/// - **answered** with an injected response (from the factory `R`) —
///   in both cases without reaching the inner service, whose readiness
///   carries over to the next call;
/// - **delayed**: the inner future (or the injected fault) is released
///   only after the delay, so the latency adds to the callee's own.
///
/// During an outage window every call is answered with the injected
/// response if `R` makes one, else failed with the injected error, at once.
#[derive(Clone)]
pub struct ChaosService<S, E = DefaultError, R = NoResponse> {
    inner: S,
    chaos: Chaos,
    errors: E,
    responses: R,
}

impl<S> ChaosService<S> {
    /// `inner` with faults from `chaos`; injected errors are [`ChaosError`]s
    /// and no response is injected.
    ///
    /// [`ChaosError`]: crate::ChaosError
    pub fn new(inner: S, chaos: Chaos) -> Self {
        Self {
            inner,
            chaos,
            errors: DefaultError,
            responses: NoResponse,
        }
    }
}

impl<S, E, R> ChaosService<S, E, R> {
    pub(crate) fn from_parts(inner: S, chaos: Chaos, errors: E, responses: R) -> Self {
        Self {
            inner,
            chaos,
            errors,
            responses,
        }
    }

    /// The handle.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
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

impl<S, E, R, Req> Service<Req> for ChaosService<S, E, R>
where
    S: Service<Req>,
    E: MakeError<S::Error>,
    S::Error: Into<E::Error>,
    R: MakeResponse<S::Response>,
{
    type Response = S::Response;
    type Error = E::Error;
    type Future = ResponseFuture<S::Future, S::Response, E::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let can_error = <E as MakeError<S::Error>>::INJECTS;
        let can_respond = <R as MakeResponse<S::Response>>::INJECTS;
        let Some(decision) = self.chaos.decide(can_error, can_respond) else {
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let sleep = decision.delay.map(tokio::time::sleep);
        let injected = match decision.fault {
            None => None,
            Some(Fault::Error) => self.errors.make_error(false).map(Err),
            Some(Fault::Response) => self.responses.make_response().map(Ok),
            Some(Fault::Outage) => self
                .responses
                .make_response()
                .map(Ok)
                .or_else(|| self.errors.make_error(true).map(Err)),
        };
        match (injected, sleep) {
            (Some(result), sleep) => ResponseFuture::injected(result, sleep),
            (None, Some(sleep)) => ResponseFuture::delayed(sleep, self.inner.call(request)),
            (None, None) => ResponseFuture::passthrough(self.inner.call(request)),
        }
    }
}

impl<S: fmt::Debug, E, R> fmt::Debug for ChaosService<S, E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosService")
            .field("inner", &self.inner)
            .field("chaos", &self.chaos)
            .field("errors", &std::any::type_name::<E>())
            .field("responses", &std::any::type_name::<R>())
            .finish()
    }
}
