//! An HTTP call through the outlier layer allocates nothing: counted with
//! an instrumented global allocator, the requests made beforehand. (A plain
//! `main`, not the test harness, so that no other thread allocates
//! meanwhile.)
#![cfg(not(loom))]

use std::future::ready;

use portcullis_core::BoxError;
use portcullis_outlier::{Detector, OutlierConfig, OutlierLayer};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let detector = Detector::new(
        "alloc",
        ["10.0.0.1:8080", "10.0.0.2:8080", "https://10.0.0.3"],
        OutlierConfig::default(),
    )
    .unwrap();
    // Endpoint 2 answers 503 every other call: failures, successes and
    // ejections all happen inside the counted region.
    let inner = service_fn(|request: http::Request<()>| {
        let failing = request.uri().authority().unwrap().as_str() == "10.0.0.3";
        let mut response = http::Response::new(request.uri().path().len());
        if failing {
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        ready(Ok::<_, BoxError>(response))
    });
    let mut service = OutlierLayer::http(detector.clone()).unwrap().layer(inner);
    let request = || http::Request::get("/items?page=1").body(()).unwrap();
    // Warm up: each endpoint's authority is cloned once.
    for _ in 0..3 {
        call(&mut service, request());
    }
    let requests: Vec<_> = (0..10_000).map(|_| request()).collect();

    let region = Region::new(&GLOBAL);
    let mut sum = 0;
    for request in requests {
        sum += *call(&mut service, request).body();
    }
    let change = region.change();
    assert_eq!(sum, 6 * 10_000);
    assert_eq!(
        (
            change.allocations,
            change.reallocations,
            change.bytes_allocated
        ),
        (0, 0, 0),
        "a call through the outlier layer allocated"
    );
    let snapshot = detector.snapshot();
    assert_eq!(snapshot.calls, 10_003);
    assert!(snapshot.endpoints[2].ejected, "{snapshot:?}");
    println!("outlier, HTTP calls routed, failures and an ejection: no allocation per call");
}
