//! The response future of [`RegistryService`](crate::RegistryService).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http::header::{self, HeaderValue};

use crate::body::ResponseBody;

/// The future of a [`RegistryService`](crate::RegistryService) response.
///
/// Ready at once for every `GET`; a control request that reads its body
/// is a boxed future (those are rare, operator-made requests, never on a
/// request path of the application).
pub struct ResponseFuture {
    state: State,
}

type Boxed = Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>;

enum State {
    Ready(Option<Response<ResponseBody>>),
    Reading(Boxed),
}

impl ResponseFuture {
    pub(crate) fn ready(response: Response<ResponseBody>) -> Self {
        Self {
            state: State::Ready(Some(response)),
        }
    }

    pub(crate) fn reading(
        future: impl Future<Output = Response<ResponseBody>> + Send + 'static,
    ) -> Self {
        Self {
            state: State::Reading(Box::pin(future)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = match &mut self.get_mut().state {
            State::Ready(response) => response
                .take()
                .expect("ResponseFuture polled after completion"),
            State::Reading(future) => ready!(future.as_mut().poll(cx)),
        };
        // No response of the service is to be read as anything but its
        // declared type (a JSON error as HTML, say).
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Poll::Ready(Ok(response))
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "state",
                &match self.state {
                    State::Ready(_) => "ready",
                    State::Reading(_) => "reading the request body",
                },
            )
            .finish()
    }
}
