//! The response future of [`Timeout`](crate::Timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Elapsed};
use tokio::time::Sleep;

pin_project! {
    /// Resolves to the inner response, or to [`Elapsed`] when the timeout
    /// fires first.
    ///
    /// The timeout starts on the first poll that finds the inner future
    /// pending: the deadline is the clock read right after that poll, plus
    /// the timeout. A response that is ready on its first poll never reads
    /// the clock nor touches the timer.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Made on the first poll that finds the inner future pending.
        #[pin]
        sleep: Option<Sleep>,
        after: Duration,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, after: Duration) -> Self {
        Self {
            inner,
            sleep: None,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The inner future first: a response that is ready wins.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.after)));
        }
        let sleep = this.sleep.as_pin_mut().expect("the timer was just made");
        match sleep.poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(after = ?*this.after, "timed out");
                Poll::Ready(Err(Elapsed::new(*this.after).into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
