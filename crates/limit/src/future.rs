//! The response future of [`Limit`](crate::Limit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Classify, LimitExceeded};
use tower_service::Service;

use crate::limiter::Admission;
use crate::{Acquire, LimitPermit};

pin_project! {
    /// Resolves to the inner response, holding room under the limit while
    /// the call runs, or to [`LimitExceeded`].
    ///
    /// When the limiter has a queue and there was no room, the future first
    /// waits in it with the inner service and the request, and calls the
    /// service once it has room. Dropping it leaves the queue, or gives the
    /// room back without a sample.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            future: S::Future,
            permit: Option<LimitPermit>,
        },
        Waiting {
            #[pin]
            acquire: Acquire,
            service: Option<S>,
            request: Option<Req>,
        },
        Rejected {
            error: Option<LimitExceeded>,
        },
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    /// With room, calls `service` at once; without, waits, and then needs
    /// a service of its own, taken from `service` (which keeps a clone).
    #[inline]
    pub(crate) fn admit(admission: Admission, service: &mut S, request: Req, classifier: C) -> Self
    where
        S: Clone,
    {
        let kind = match admission {
            Admission::Acquired(permit) => Kind::Called {
                future: service.call(request),
                permit: Some(permit),
            },
            Admission::Rejected(error) => Kind::Rejected { error: Some(error) },
            Admission::Wait(acquire) => {
                let clone = service.clone();
                Kind::Waiting {
                    acquire,
                    service: Some(std::mem::replace(service, clone)),
                    request: Some(request),
                }
            }
        };
        Self { kind, classifier }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let permit = permit.take().expect("polled after completion");
                    permit.record(this.classifier.classify(result.as_ref()));
                    return Poll::Ready(result);
                }
                KindProj::Waiting {
                    acquire,
                    service,
                    request,
                } => match ready!(acquire.poll(cx)) {
                    Ok(permit) => {
                        let mut service = service.take().expect("polled after completion");
                        let request = request.take().expect("polled after completion");
                        let future = service.call(request);
                        this.kind.set(Kind::Called {
                            future,
                            permit: Some(permit),
                        });
                    }
                    Err(error) => {
                        this.kind.set(Kind::Rejected { error: None });
                        return Poll::Ready(Err(error.into()));
                    }
                },
                KindProj::Rejected { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
            }
        }
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { permit, .. } => f
                .debug_struct("ResponseFuture::Called")
                .field("permit", permit)
                .finish_non_exhaustive(),
            Kind::Waiting { acquire, .. } => f
                .debug_struct("ResponseFuture::Waiting")
                .field("acquire", acquire)
                .finish_non_exhaustive(),
            Kind::Rejected { error } => f
                .debug_struct("ResponseFuture::Rejected")
                .field("error", error)
                .finish(),
        }
    }
}
