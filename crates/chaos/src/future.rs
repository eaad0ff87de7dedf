//! The response future of [`ChaosService`](crate::ChaosService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// Resolves to the inner response (at once, or after an injected delay)
    /// or to an injected error or response.
    ///
    /// When injection is off it is the `Passthrough` variant: the inner
    /// future, polled as is.
    pub struct ResponseFuture<F, Res, E> {
        #[pin]
        kind: Kind<F, Res, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, Res, E> {
        Passthrough {
            #[pin]
            future: F,
        },
        Delayed {
            #[pin]
            sleep: Sleep,
            #[pin]
            future: F,
        },
        Injected {
            result: Option<Result<Res, E>>,
        },
        DelayedInjected {
            #[pin]
            sleep: Sleep,
            result: Option<Result<Res, E>>,
        },
    }
}

impl<F, Res, E> ResponseFuture<F, Res, E> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            kind: Kind::Passthrough { future },
        }
    }

    pub(crate) fn delayed(sleep: Sleep, future: F) -> Self {
        Self {
            kind: Kind::Delayed { sleep, future },
        }
    }

    pub(crate) fn injected(result: Result<Res, E>, sleep: Option<Sleep>) -> Self {
        let result = Some(result);
        Self {
            kind: match sleep {
                Some(sleep) => Kind::DelayedInjected { sleep, result },
                None => Kind::Injected { result },
            },
        }
    }
}

impl<F, Res, E, IE> Future for ResponseFuture<F, Res, E>
where
    F: Future<Output = Result<Res, IE>>,
    IE: Into<E>,
{
    type Output = Result<Res, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => future.poll(cx).map_err(Into::into),
            KindProj::Delayed { sleep, future } => {
                // The inner future is polled only once the delay is over, so
                // the injected latency adds to the callee's own.
                if !sleep.is_elapsed() {
                    ready!(sleep.poll(cx));
                }
                future.poll(cx).map_err(Into::into)
            }
            KindProj::Injected { result } => {
                Poll::Ready(result.take().expect("polled after completion"))
            }
            KindProj::DelayedInjected { sleep, result } => {
                ready!(sleep.poll(cx));
                Poll::Ready(result.take().expect("polled after completion"))
            }
        }
    }
}

impl<F, Res, E> fmt::Debug for ResponseFuture<F, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, deadline) = match &self.kind {
            Kind::Passthrough { .. } => ("Passthrough", None),
            Kind::Delayed { sleep, .. } => ("Delayed", Some(sleep.deadline())),
            Kind::Injected { .. } => ("Injected", None),
            Kind::DelayedInjected { sleep, .. } => ("DelayedInjected", Some(sleep.deadline())),
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &name)
            .field("delay_until", &deadline)
            .finish_non_exhaustive()
    }
}
