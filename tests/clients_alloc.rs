//! A call through a per-authority stack whose breaker and bulkhead exist
//! allocates nothing: counted with an instrumented global allocator. (A
//! plain `main`, not the test harness, so that no other thread allocates
//! meanwhile.)
#![cfg(not(loom))]
#![cfg(all(feature = "registry", feature = "http"))]

use std::convert::Infallible;

use http::{Request, Response};
use portcullis::client::PerAuthorityLayer;
use portcullis::core::HttpClassifier;
use portcullis::registry::Registry;
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

const CALLS: usize = 10_000;

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let registry = Registry::new();
    let upstream = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let hosts = ["http://a:1/", "http://b:2/", "http://c:3/"];

    for bulkheads in [false, true] {
        let layer = PerAuthorityLayer::new(registry.clone(), "upstream").classifier(HttpClassifier);
        let layer = if bulkheads {
            layer.with_bulkheads()
        } else {
            layer
        };
        let mut client = layer.layer(upstream);
        // The requests are made before counting: parsing a URI allocates.
        let mut requests: Vec<Request<()>> = (0..CALLS + hosts.len())
            .map(|i| Request::get(hosts[i % hosts.len()]).body(()).unwrap())
            .collect();
        // First use of each host makes its breaker (and bulkhead).
        for request in requests.drain(..hosts.len()) {
            call_ready(&mut client, request);
        }

        let region = Region::new(&GLOBAL);
        let mut ok = 0;
        for request in requests.drain(..) {
            if call_ready(&mut client, request).status() == 200 {
                ok += 1;
            }
        }
        let change = region.change();
        assert_eq!(ok, CALLS);
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "a call to a known host allocated (bulkheads: {bulkheads})"
        );
    }
    assert_eq!(registry.breakers().len(), 3);
    assert_eq!(registry.bulkheads().len(), 3);

    // A new host does allocate: the counter is live.
    let mut client = PerAuthorityLayer::new(registry.clone(), "upstream").layer(upstream);
    let request = Request::get("http://d:4/").body(()).unwrap();
    let region = Region::new(&GLOBAL);
    call_ready(&mut client, request);
    assert!(region.change().allocations > 0);
    println!("calls to known hosts through per-authority breakers and bulkheads: no allocation");
}
