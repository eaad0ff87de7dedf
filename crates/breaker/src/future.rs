//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, BreakerOpen, Classify, Outcome};

use crate::Permit;

pin_project! {
    /// Resolves to the inner response, recording its outcome, or to the
    /// breaker's rejection.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            classifier: C,
        },
        Rejected {
            error: Option<BreakerOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, permit: Permit, classifier: C) -> Self {
        Self {
            state: Kind::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: BreakerOpen) -> Self {
        Self {
            state: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            KindProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                // Recorded in place: the permit stays (spent) until the
                // future is dropped.
                if let Some(permit) = permit {
                    let outcome = classifier.classify(result.as_ref());
                    let retry_after = match outcome {
                        Outcome::Failure if permit.wants_retry_after() => {
                            classifier.retry_after(result.as_ref())
                        }
                        _ => None,
                    };
                    permit.record_in_place(outcome, retry_after);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion").into()))
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Kind::Called { permit, .. } => f
                .debug_struct("ResponseFuture::Called")
                .field("permit", permit)
                .finish_non_exhaustive(),
            Kind::Rejected { error } => f
                .debug_struct("ResponseFuture::Rejected")
                .field("error", error)
                .finish(),
        }
    }
}
