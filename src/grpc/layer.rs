use std::fmt;
use std::task::{Context, Poll};

use portcullis_core::BoxError;
use tonic::Status;
use tower::{Layer, Service};

use crate::grpc::future::ResponseFuture;
use crate::grpc::into_status;

/// Wraps services in a [`StatusMapping`]: their errors become
/// [`tonic::Status`] (see the [module docs](crate::grpc) for the rules).
///
/// Put it outermost in a stack, above the layers whose rejections it
/// maps. On a tonic server (`Server::builder().layer(..)`), the status is
/// what the caller receives; on a client channel, it is the error
/// `tonic::client::Grpc` hands back. It has no state.
///
/// ```
/// use std::time::Duration;
/// use portcullis::core::{BoxError, BreakerOpen};
/// use portcullis::grpc::StatusMappingLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let open = service_fn(|_: ()| async {
///     Err::<(), BoxError>(BreakerOpen::new("payments", Some(Duration::from_secs(1))).into())
/// });
/// let service = StatusMappingLayer::new().layer(open);
/// let status: tonic::Status = service.oneshot(()).await.unwrap_err();
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "1000");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusMappingLayer {
    _private: (),
}

/// A service whose errors are [`tonic::Status`]: responses pass unchanged,
/// errors (of `poll_ready` too) are mapped by
/// [`into_status`](crate::grpc::into_status).
#[derive(Clone)]
pub struct StatusMapping<S> {
    inner: S,
}

impl StatusMappingLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for StatusMappingLayer {
    type Service = StatusMapping<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusMapping::new(inner)
    }
}

impl<S> StatusMapping<S> {
    /// `inner`, with its errors mapped.
    pub const fn new(inner: S) -> Self {
        Self { inner }
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

impl<S, Req> Service<Req> for StatusMapping<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Status;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| into_status(error.into()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(request))
    }
}

impl<S: fmt::Debug> fmt::Debug for StatusMapping<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusMapping")
            .field("inner", &self.inner)
            .finish()
    }
}
