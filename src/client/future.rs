//! The response future of [`PerAuthority`](crate::client::PerAuthority).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Classify};
use tower::Service;

use crate::breaker::future::ResponseFuture as BreakerFuture;
use crate::bulkhead::UntilResponse;
use crate::bulkhead::future::ResponseFuture as BulkheadFuture;

pin_project! {
    /// Resolves to the inner response, through the authority's breaker
    /// (and bulkhead), or to the error that kept the call from being made.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req, C>,
        // Names the authority: entered on every poll, so that what the
        // breaker and bulkhead log says which host it is about.
        span: tracing::Span,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, C>
    where
        S: Service<Req>,
    {
        Breaker {
            #[pin]
            future: BreakerFuture<S::Future, C>,
        },
        Guarded {
            #[pin]
            future: BreakerFuture<BulkheadFuture<S, Req, UntilResponse>, C>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(crate) fn breaker(future: BreakerFuture<S::Future, C>) -> Self {
        Self {
            kind: Kind::Breaker { future },
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn guarded(future: BreakerFuture<BulkheadFuture<S, Req, UntilResponse>, C>) -> Self {
        Self {
            kind: Kind::Guarded { future },
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
            span: tracing::Span::none(),
        }
    }

    /// Polls in `span` from now on.
    pub(crate) fn in_span(self, span: tracing::Span) -> Self {
        Self { span, ..self }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.kind.project() {
            KindProj::Breaker { future } => future.poll(cx),
            KindProj::Guarded { future } => future.poll(cx),
            KindProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
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
            Kind::Breaker { .. } => f.write_str("ResponseFuture::Breaker"),
            Kind::Guarded { .. } => f.write_str("ResponseFuture::Guarded"),
            Kind::Failed { error } => f
                .debug_struct("ResponseFuture::Failed")
                .field("error", error)
                .finish(),
        }
    }
}
