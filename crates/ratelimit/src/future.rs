//! The response futures of [`RateLimit`](crate::RateLimit) and (feature
//! `http`) [`HttpRateLimit`](crate::http::HttpRateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, RateLimited};
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::limiter::{Refund, Verdict};

pin_project! {
    /// Resolves to the inner response, after the call's slot if it had to
    /// wait for one, or to the limiter's [`RateLimited`] rejection.
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
        Admitted {
            #[pin]
            call: Admitted<S, Req>,
        },
        Rejected {
            error: Option<RateLimited>,
        },
    }
}

pin_project! {
    /// An admitted call: called at once, or waiting for its slot with the
    /// ready inner service and the request. The waiting state is boxed: it
    /// is large (a timer, a service, a request), and inline it would make
    /// every admitted call's future as large, and measurably slower to
    /// build. A call that waits for milliseconds can afford the allocation.
    #[project = AdmittedProj]
    pub(crate) enum Admitted<S, Req>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        Waiting {
            waiting: Pin<Box<Waiting<S, Req>>>,
        },
    }
}

pin_project! {
    /// A call waiting for its slot.
    pub(crate) struct Waiting<S, Req> {
        #[pin]
        sleep: Sleep,
        call: Option<(S, Req)>,
        refund: Option<Refund>,
    }
}

/// How a call starts, once its limit has decided.
pub(crate) enum Start<S: Service<Req>, Req> {
    Admitted(Admitted<S, Req>),
    Rejected(RateLimited),
}

/// Starts a call on `inner` (ready) as `verdict` says. A call that must
/// wait takes the ready service with it and leaves a clone in its place,
/// which will be made ready by the next `poll_ready`.
#[inline]
pub(crate) fn start<S, Req>(inner: &mut S, request: Req, verdict: Verdict) -> Start<S, Req>
where
    S: Service<Req> + Clone,
{
    match verdict {
        Verdict::Now { .. } => Start::Admitted(Admitted::Called {
            future: inner.call(request),
        }),
        Verdict::Later { at, refund, .. } => {
            let clone = inner.clone();
            let ready = std::mem::replace(inner, clone);
            Start::Admitted(Admitted::waiting(at, ready, request, refund))
        }
        Verdict::Rejected { error, .. } => Start::Rejected(error),
    }
}

impl<S: Service<Req>, Req> Admitted<S, Req> {
    fn waiting(at: Instant, service: S, request: Req, refund: Refund) -> Self {
        Admitted::Waiting {
            waiting: Box::pin(Waiting {
                sleep: sleep_until(at),
                call: Some((service, request)),
                refund: Some(refund),
            }),
        }
    }
}

impl<S: Service<Req>, Req> Future for Admitted<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                AdmittedProj::Called { future } => return future.poll(cx),
                AdmittedProj::Waiting { waiting } => {
                    let waiting = waiting.as_mut().project();
                    ready!(waiting.sleep.poll(cx));
                    if let Some(refund) = waiting.refund.take() {
                        refund.disarm();
                    }
                    let (mut service, request) =
                        waiting.call.take().expect("polled after completion");
                    let future = service.call(request);
                    self.set(Admitted::Called { future });
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    /// Starts a call on `inner` (ready) as `verdict` says, as [`start`]
    /// does, but builds the response future in place: the inner future is
    /// written once, where it stays, instead of being moved from one
    /// wrapper to the next (a copy of the whole future each time).
    #[inline]
    pub(crate) fn start(inner: &mut S, request: Req, verdict: Verdict) -> Self
    where
        S: Clone,
    {
        match verdict {
            Verdict::Now { .. } => Self {
                kind: Kind::Admitted {
                    call: Admitted::Called {
                        future: inner.call(request),
                    },
                },
            },
            verdict => Self::start_slow(inner, request, verdict),
        }
    }

    #[cold]
    #[inline(never)]
    fn start_slow(inner: &mut S, request: Req, verdict: Verdict) -> Self
    where
        S: Clone,
    {
        let kind = match start(inner, request, verdict) {
            Start::Admitted(call) => Kind::Admitted { call },
            Start::Rejected(error) => Kind::Rejected { error: Some(error) },
        };
        Self { kind }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { call } => call.poll(cx).map_err(Into::into),
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion").into()))
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Admitted { call } => f
                .debug_struct("ResponseFuture::Admitted")
                .field("call", call)
                .finish(),
            Kind::Rejected { error } => f
                .debug_struct("ResponseFuture::Rejected")
                .field("error", error)
                .finish(),
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for Admitted<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Admitted::Called { .. } => f.write_str("Called"),
            Admitted::Waiting { waiting } => f
                .debug_struct("Waiting")
                .field("until", &waiting.sleep.deadline())
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_future::HttpResponseFuture;

#[cfg(feature = "http")]
mod http_future {
    use super::*;
    use crate::http::RateHeaders;
    use http::Response;

    pin_project! {
        /// Resolves to the inner response (with `RateLimit-*` headers when
        /// configured), or to a `429 Too Many Requests` response for a
        /// rejected call. Errors are the inner service's.
        pub struct HttpResponseFuture<S, Req>
        where
            S: Service<Req>,
        {
            #[pin]
            kind: HttpKind<S, Req>,
        }
    }

    pin_project! {
        #[project = HttpKindProj]
        enum HttpKind<S, Req>
        where
            S: Service<Req>,
        {
            Admitted {
                #[pin]
                call: Admitted<S, Req>,
                headers: Option<RateHeaders>,
            },
            Rejected {
                response: Option<S::Response>,
            },
        }
    }

    impl<S: Service<Req>, Req> HttpResponseFuture<S, Req> {
        pub(crate) fn admitted(call: Admitted<S, Req>, headers: Option<RateHeaders>) -> Self {
            Self {
                kind: HttpKind::Admitted { call, headers },
            }
        }

        pub(crate) fn rejected(response: S::Response) -> Self {
            Self {
                kind: HttpKind::Rejected {
                    response: Some(response),
                },
            }
        }
    }

    impl<S, Req, B> Future for HttpResponseFuture<S, Req>
    where
        S: Service<Req, Response = Response<B>>,
    {
        type Output = Result<Response<B>, S::Error>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project().kind.project() {
                HttpKindProj::Admitted { call, headers } => {
                    let mut response = ready!(call.poll(cx))?;
                    if let Some(headers) = headers.take() {
                        headers.insert_into(response.headers_mut());
                    }
                    Poll::Ready(Ok(response))
                }
                HttpKindProj::Rejected { response } => {
                    Poll::Ready(Ok(response.take().expect("polled after completion")))
                }
            }
        }
    }

    impl<S: Service<Req>, Req> fmt::Debug for HttpResponseFuture<S, Req> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.kind {
                HttpKind::Admitted { call, headers } => f
                    .debug_struct("HttpResponseFuture::Admitted")
                    .field("call", call)
                    .field("headers", headers)
                    .finish(),
                HttpKind::Rejected { .. } => f.write_str("HttpResponseFuture::Rejected"),
            }
        }
    }
}
