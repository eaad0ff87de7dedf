//! The response future of [`StatusMapping`](crate::grpc::StatusMapping).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use tonic::Status;

use crate::grpc::into_status;

pin_project! {
    /// Resolves to the inner response, or to the [`Status`] for the inner
    /// error.
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F) -> Self {
        Self { future }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .future
            .poll(cx)
            .map_err(|error| into_status(error.into()))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
