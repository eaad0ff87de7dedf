//! The response future of [`FleetRateLimit`](crate::FleetRateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, RateLimited};
use tower_service::Service;

/// The decision of a call that went to Redis.
type Deciding = Pin<Box<dyn Future<Output = Result<(), RateLimited>> + Send>>;

pin_project! {
    /// Resolves to the inner response, once the fleet limit admitted the
    /// call, or to its [`RateLimited`] rejection.
    ///
    /// A call decided locally (a leased token, a cached denial) is called
    /// or rejected at once. One that goes to Redis holds its decision
    /// (boxed: it waits on the network anyway) and the ready inner service
    /// until then.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Deciding {
            decision: Deciding,
            call: Option<(S, Req)>,
        },
        Called {
            #[pin]
            future: S::Future,
        },
        Rejected {
            error: Option<RateLimited>,
        },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn rejected(error: RateLimited) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn deciding(decision: Deciding, service: S, request: Req) -> Self {
        Self {
            kind: Kind::Deciding {
                decision,
                call: Some((service, request)),
            },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.kind.as_mut().project() {
                KindProj::Called { future } => return future.poll(cx).map_err(Into::into),
                KindProj::Rejected { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
                KindProj::Deciding { decision, call } => {
                    let verdict = ready!(decision.as_mut().poll(cx));
                    let (mut service, request) = call.take().expect("polled after completion");
                    match verdict {
                        Ok(()) => this.kind.set(Kind::Called {
                            future: service.call(request),
                        }),
                        Err(error) => this.kind.set(Kind::Rejected { error: Some(error) }),
                    }
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Deciding { .. } => "deciding",
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
