//! The cost of outlier ejection on a call to a healthy set of endpoints.
//!
//! - `outlier/healthy`: one `u64` request through a `tower::Service` that
//!   is ready at once, for the bare service, tower's own power-of-two-
//!   choices balancer (`balance::p2c::Balance` over three services, each
//!   with a `PendingRequests` load), and Portcullis's outlier layer over
//!   three endpoints (the rotation, the outcome recorded for the endpoint,
//!   the sweep check).
//!
//! The two balancers do different jobs (tower's picks by load and ejects
//! nothing; Portcullis's picks in rotation and ejects outliers); both sit
//! where a client picks one endpoint of an upstream for each call.
//!
//! Run with `cargo bench -p portcullis-benches --bench outlier`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, inner, runtime};
use portcullis_core::BoxError;
use portcullis_outlier::{Detector, Endpoint, OutlierConfig, OutlierLayer};
use tower::Layer;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};

fn healthy(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("outlier/healthy");

    let mut bare = inner();
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_ready(&mut bare, black_box(1))));
    });

    let services: Vec<_> = (0..3)
        .map(|_| PendingRequests::new(inner(), CompleteOnResponse::default()))
        .collect();
    let mut tower_p2c = Balance::new(ServiceList::new(services));
    group.bench_function("tower_p2c", |b| {
        b.iter(|| black_box(call_ready(&mut tower_p2c, black_box(1))));
    });

    let detector = Detector::new("bench", ["a", "b", "c"], OutlierConfig::default())
        .expect("a valid configuration");
    let route = |_: &mut u64, _: &Endpoint| -> Result<(), BoxError> { Ok(()) };
    let mut portcullis = OutlierLayer::new(detector, route).layer(inner());
    group.bench_function("portcullis", |b| {
        b.iter(|| black_box(call_ready(&mut portcullis, black_box(1))));
    });
    group.finish();
}

criterion_group!(benches, healthy);
criterion_main!(benches);
