//! Timeouts beside the bare service and tower's own `Timeout`, with an
//! inner future that is ready at once and with one that is pending once (so
//! that the timer really registers).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{PendingOnce, call};
use portcullis_timeout::{HttpTimeoutLayer, TimeoutLayer};
use tower::{Layer, service_fn};

const TIMEOUT: Duration = Duration::from_secs(30);

fn timeouts(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let mut group = c.benchmark_group("timeout/ready");
    let inner = service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)));
    let mut bare = inner;
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(TIMEOUT).layer(inner);
    let mut ours = TimeoutLayer::new(TIMEOUT).layer(inner);
    group.bench_function("bare", |b| b.iter(|| call(&mut bare, black_box(1), 1)));
    group.bench_function("tower", |b| {
        b.iter(|| call(&mut tower_timeout, black_box(1), 1))
    });
    group.bench_function("portcullis", |b| {
        b.iter(|| call(&mut ours, black_box(1), 1))
    });
    group.finish();

    let mut group = c.benchmark_group("timeout/pending_once");
    let inner = service_fn(|x: u64| PendingOnce::new(x));
    let mut bare = inner;
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(TIMEOUT).layer(inner);
    let mut ours = TimeoutLayer::new(TIMEOUT).layer(inner);
    let mut http = HttpTimeoutLayer::new(TIMEOUT).layer(service_fn(|_: http::Request<()>| {
        PendingOnce::new(http::Response::new(()))
    }));
    group.bench_function("bare", |b| b.iter(|| call(&mut bare, black_box(1), 2)));
    group.bench_function("tower", |b| {
        b.iter(|| call(&mut tower_timeout, black_box(1), 2))
    });
    group.bench_function("portcullis", |b| {
        b.iter(|| call(&mut ours, black_box(1), 2))
    });
    group.bench_function("portcullis_http", |b| {
        b.iter(|| call(&mut http, http::Request::new(()), 2))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = timeouts }
criterion_main!(benches);
