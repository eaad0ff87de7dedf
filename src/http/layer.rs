use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use http::Response;
use portcullis_core::BoxError;
use tower::{Layer, Service};

use crate::http::future::ResponseFuture;

/// Wraps HTTP services in an [`ErrorMapping`]: their errors become
/// responses (see the [module docs](crate::http) for the rules) and their
/// error type becomes `Infallible`.
///
/// Put it outermost in a route's stack, above the layers whose rejections
/// it answers. It has no state: one layer serves any number of routes.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use portcullis::core::{BoxError, Elapsed};
/// use portcullis::http::ErrorMappingLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let slow = service_fn(|_: ()| async {
///     Err::<http::Response<String>, BoxError>(Elapsed::new(Duration::from_secs(1)).into())
/// });
/// let service = ErrorMappingLayer::new().layer(slow);
/// let response: Result<http::Response<String>, Infallible> = service.oneshot(()).await;
/// assert_eq!(response.unwrap().status(), 504);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorMappingLayer {
    _private: (),
}

/// An HTTP service whose errors are answered with responses: `Error =
/// Infallible`.
///
/// A response of the inner service passes unchanged; an error becomes the
/// response [`error_response`](crate::http::error_response) makes for it.
///
/// A failing `poll_ready` of the inner service is answered too: the error
/// is kept, `poll_ready` reports ready, and the next `call` answers it
/// without calling the inner service. The `poll_ready` after that polls the
/// inner service again. A clone starts without a kept error.
pub struct ErrorMapping<S> {
    inner: S,
    not_ready: Option<BoxError>,
}

impl ErrorMappingLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for ErrorMappingLayer {
    type Service = ErrorMapping<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorMapping::new(inner)
    }
}

impl<S> ErrorMapping<S> {
    /// `inner`, with its errors answered.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            not_ready: None,
        }
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

impl<S, Req, B> Service<Req> for ErrorMapping<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_none() {
            match self.inner.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => self.not_ready = Some(error.into()),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.not_ready.take() {
            Some(error) => ResponseFuture::not_ready(error),
            None => ResponseFuture::called(self.inner.call(request)),
        }
    }
}

impl<S: Clone> Clone for ErrorMapping<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorMapping<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorMapping")
            .field("inner", &self.inner)
            .field("not_ready", &self.not_ready)
            .finish()
    }
}
