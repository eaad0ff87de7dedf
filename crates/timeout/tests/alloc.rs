//! Neither timeout allocates per call, whether the inner future is ready at
//! once or has to wait (so that the timer really registers). A plain `main`,
//! not the test harness, so that no other thread allocates meanwhile.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::time::Duration;

use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::{PendingOnce, call};
use portcullis_timeout::{HttpTimeoutLayer, TimeoutLayer};
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let mut ready = TimeoutLayer::new(Duration::from_secs(5)).layer(service_fn(|x: u64| {
        std::future::ready(Ok::<_, Infallible>(x))
    }));
    let mut waits =
        TimeoutLayer::new(Duration::from_secs(5)).layer(service_fn(|x: u64| PendingOnce::new(x)));
    let mut http =
        HttpTimeoutLayer::new(Duration::from_secs(5)).layer(service_fn(|_: http::Request<()>| {
            PendingOnce::new(http::Response::new(()))
        }));
    // Warm up: the timer wheel is set up on first use.
    call(&mut ready, 0, 1);
    call(&mut waits, 0, 2);
    call(&mut http, http::Request::new(()), 2);

    let region = Region::new(&GLOBAL);
    let mut sum = 0;
    for i in 0..1_000 {
        sum += call(&mut ready, i, 1);
        sum += call(&mut waits, i, 2);
    }
    let timeouts = region.change();
    let requests: Vec<_> = (0..1_000).map(|_| http::Request::new(())).collect();
    let region = Region::new(&GLOBAL);
    for request in requests {
        assert_eq!(call(&mut http, request, 2).status(), 200);
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
