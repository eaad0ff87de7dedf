//! The response future of [`Timeout`](crate::Timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Elapsed};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Resolves to the inner response, or to [`Elapsed`] when the timeout
    /// fires first.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Made on the first poll that finds the inner future pending: a
        // response that is ready at once never touches the timer.
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
        after: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, after: Duration) -> Self {
        Self {
            inner,
            sleep: None,
            deadline,
            after,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner future first: a response that is ready wins.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        match crate::timer(this.sleep, *this.deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed::new(*this.after).into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
