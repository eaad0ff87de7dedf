//! The response future of [`ErrorMapping`](crate::http::ErrorMapping).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use portcullis_core::BoxError;

use crate::http::error_response;

pin_project! {
    /// Resolves to the inner response, or to the response for the inner
    /// error; never to an error.
    pub struct ResponseFuture<F> {
        #[pin]
        state: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
        },
        NotReady {
            error: Option<BoxError>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F) -> Self {
        Self {
            state: Kind::Called { future },
        }
    }

    pub(crate) fn not_ready(error: BoxError) -> Self {
        Self {
            state: Kind::NotReady { error: Some(error) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            KindProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(response) => response,
                Err(error) => error_response(&error.into()),
            },
            KindProj::NotReady { error } => {
                error_response(&error.take().expect("polled after completion"))
            }
        };
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Kind::Called { .. } => f
                .debug_struct("ResponseFuture::Called")
                .finish_non_exhaustive(),
            Kind::NotReady { error } => f
                .debug_struct("ResponseFuture::NotReady")
                .field("error", error)
                .finish(),
        }
    }
}
