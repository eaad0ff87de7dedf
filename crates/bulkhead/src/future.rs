//! The response future of [`BulkheadService`](crate::BulkheadService) and
//! [`KeyedBulkheadService`](crate::KeyedBulkheadService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, BulkheadFull};
use tower_service::Service;

use crate::bulkhead::Admission;
use crate::{Acquire, BulkheadPermit, HoldPermit};

pin_project! {
    /// Resolves to the inner response, holding a permit while the call runs
    /// (and as long as the [`HoldPermit`] policy `P` says), or to
    /// [`BulkheadFull`].
    ///
    /// When the bulkhead waits (`max_wait` above zero) and no permit was
    /// free, the future first waits in the queue, with the inner service
    /// and the request, and calls the service once it has a permit.
    /// Dropping it leaves the queue, or gives the permit back.
    pub struct ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
        hold: P,
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
            permit: Option<BulkheadPermit>,
        },
        Waiting {
            acquire: Acquire,
            service: Option<S>,
            request: Option<Req>,
        },
        Rejected {
            error: Option<BulkheadFull>,
        },
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    /// Admits the call: with a permit it calls `service` at once; without
    /// one it waits, and then needs a service of its own, taken from
    /// `service` (which keeps a clone).
    #[inline]
    pub(crate) fn admit(admission: Admission, service: &mut S, request: Req, hold: P) -> Self
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
                // The readied service goes with the request; the clone left
                // behind is made ready by the next `poll_ready`.
                let clone = service.clone();
                Kind::Waiting {
                    acquire,
                    service: Some(std::mem::replace(service, clone)),
                    request: Some(request),
                }
            }
        };
        Self { kind, hold }
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: HoldPermit<S::Response>,
{
    type Output = Result<P::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    let permit = permit.take().expect("polled after completion");
                    return Poll::Ready(match result {
                        Ok(response) => Ok(this.hold.hold(response, permit)),
                        Err(error) => Err(error.into()),
                    });
                }
                KindProj::Waiting {
                    acquire,
                    service,
                    request,
                } => match ready!(Pin::new(acquire).poll(cx)) {
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

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
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
