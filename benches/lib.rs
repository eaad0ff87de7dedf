//! Helpers shared by the benchmarks in `benches/`: drive a `tower` service
//! through one call without an executor, so that a benchmark measures the
//! layer and not a runtime.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

/// Calls `service` once and polls the response future until it is ready,
/// at most `polls` times, with a no-op waker. Panics if the service is not
/// ready or the future is still pending after `polls` polls.
pub fn call<S, R>(service: &mut S, request: R, polls: usize) -> S::Response
where
    S: tower::Service<R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        service.poll_ready(&mut cx).is_ready(),
        "the service is not ready"
    );
    let mut future = pin!(service.call(request));
    for _ in 0..polls {
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            return result.expect("the call succeeds");
        }
    }
    panic!("the response future is still pending after {polls} polls")
}

/// [`call`] for a response future that is ready on its first poll.
pub fn call_ready<S, R>(service: &mut S, request: R) -> S::Response
where
    S: tower::Service<R>,
    S::Error: std::fmt::Debug,
{
    call(service, request, 1)
}

/// A future that is pending on its first poll (waking itself) and ready
/// with its value on the second: the shape of a call that really waits, so
/// that a timeout's timer registers.
#[derive(Debug)]
pub struct PendingOnce<T> {
    value: Option<T>,
    polled: bool,
}

impl<T> PendingOnce<T> {
    /// A future that yields once, then returns `Ok(value)`.
    pub fn new(value: T) -> Self {
        Self {
            value: Some(value),
            polled: false,
        }
    }
}

impl<T: Unpin> Future for PendingOnce<T> {
    type Output = Result<T, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.polled, true) {
            return Poll::Ready(Ok(self.value.take().expect("polled after completion")));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
