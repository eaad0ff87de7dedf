//! Neither timeout allocates per call, whether the inner future is ready at
//! once or has to wait (so that the timer really registers). A plain `main`,
//! not the test harness, so that no other thread allocates meanwhile.
#![cfg(not(loom))]

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use portcullis_timeout::{HttpTimeoutLayer, TimeoutLayer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Pending on its first poll, ready on the second.
struct PendingOnce<T>(Option<T>, bool);

impl<T: Unpin> Future for PendingOnce<T> {
    type Output = Result<T, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.1 {
            return Poll::Ready(Ok(self.0.take().expect("polled after completion")));
        }
        self.1 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn drive<S: Service<R>, R>(service: &mut S, request: R, polls: usize) -> S::Response
where
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = pin!(service.call(request));
    for _ in 1..polls {
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result.expect("in time"),
        Poll::Pending => panic!("still pending"),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut ready = TimeoutLayer::new(Duration::from_secs(5)).layer(service_fn(|x: u64| {
        std::future::ready(Ok::<_, Infallible>(x))
    }));
    let mut waits = TimeoutLayer::new(Duration::from_secs(5))
        .layer(service_fn(|x: u64| PendingOnce(Some(x), false)));
    let mut http =
        HttpTimeoutLayer::new(Duration::from_secs(5)).layer(service_fn(|_: http::Request<()>| {
            PendingOnce(Some(http::Response::new(())), false)
        }));
    // Warm up: the timer wheel is set up on first use.
    drive(&mut ready, 0, 1);
    drive(&mut waits, 0, 2);
    drive(&mut http, http::Request::new(()), 2);

    let region = Region::new(GLOBAL);
    let mut sum = 0;
    for i in 0..1_000 {
        sum += drive(&mut ready, i, 1);
        sum += drive(&mut waits, i, 2);
    }
    let timeouts = region.change();
    let requests: Vec<_> = (0..1_000).map(|_| http::Request::new(())).collect();
    let region = Region::new(GLOBAL);
    for request in requests {
        assert_eq!(drive(&mut http, request, 2).status(), 200);
    }
    let http = region.change();
    assert_eq!(sum, 2 * (0..1_000).sum::<u64>());
    assert_eq!(
        (timeouts.allocations, timeouts.reallocations),
        (0, 0),
        "Timeout allocated"
    );
    assert_eq!(
        (http.allocations, http.reallocations),
        (0, 0),
        "HttpTimeout allocated"
    );
    println!("Timeout and HttpTimeout, ready and pending once: no allocation per call");
}
