//! The cost of the registry: finding a breaker by name, and answering the
//! read endpoints of its HTTP service.
//!
//! - `registry/lookup`: a breaker handle obtained for a call — a handle
//!   already held (a clone), a plain `RwLock<HashMap<String, Breaker>>`,
//!   and the registry by name and by `(name, key)` among 64 keys.
//! - `registry/new_key_at_limit`: a new key for a name that already has
//!   `max_keys` keys (1,000 and 100,000), each making room by evicting one,
//!   and with every key open (none can go: the overflow breaker); the cost
//!   must not grow with the number of keys.
//! - `registry/endpoints`: `GET /health`, `GET /health/breakers` and
//!   `GET /metrics` through the `RegistryService` with 10 breakers, the
//!   response built (JSON or Prometheus text) but not sent.
//! - `registry/metrics_10000`: `GET /metrics` with 10,000 breakers (one
//!   name, 10,000 keys; every 10th open), the size operators reach with a
//!   breaker per upstream host.
//!
//! Run with `cargo bench -p portcullis-benches --bench registry`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_benches::{call_ready, runtime};
use portcullis_breaker::Breaker;
use portcullis_registry::{Registry, RegistryService};

fn lookup(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let registry = Registry::new();
    let keys: Vec<String> = (0..64).map(|i| format!("host-{i}.example")).collect();
    let held = registry.breakers().get("payments");
    for key in &keys {
        registry
            .breakers()
            .get_keyed("upstream", key)
            .expect("room for 64 keys");
    }
    let map: RwLock<HashMap<String, Breaker>> =
        RwLock::new(HashMap::from([("payments".to_owned(), held.clone())]));

    let mut group = c.benchmark_group("registry/lookup");
    group.bench_function("held_handle", |b| b.iter(|| black_box(held.clone())));
    group.bench_function("rwlock_hashmap", |b| {
        b.iter(|| {
            let map = map.read().expect("not poisoned");
            black_box(map.get(black_box("payments")).cloned())
        })
    });
    group.bench_function("portcullis_by_name", |b| {
        b.iter(|| black_box(registry.breakers().get(black_box("payments"))))
    });
    let mut i = 0;
    group.bench_function("portcullis_by_key", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(
                registry
                    .breakers()
                    .get_keyed("upstream", &keys[i])
                    .expect("found"),
            )
        })
    });
    group.finish();
}

fn new_key_at_limit(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("registry/new_key_at_limit");
    for (max_keys, open) in [(1_000, false), (100_000, false), (100_000, true)] {
        let registry = Registry::builder()
            .max_keys(max_keys)
            .collect_events(false)
            .build()
            .expect("a valid registry");
        for i in 0..max_keys {
            let breaker = registry
                .breakers()
                .get_keyed("upstream", &format!("host-{i}"))
                .expect("room");
            if open {
                breaker.force_open();
            }
        }
        let mut next = max_keys;
        let name = if open {
            format!("{max_keys}_keys_all_open")
        } else {
            format!("{max_keys}_keys")
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                next += 1;
                black_box(
                    registry
                        .breakers()
                        .get_keyed("upstream", &format!("host-{next}")),
                )
            })
        });
    }
    group.finish();
}

fn endpoints(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let registry = Registry::new();
    for i in 0..10 {
        let breaker = registry.breakers().get(&format!("dependency-{i}"));
        if i % 3 == 0 {
            breaker.force_open();
        }
    }
    let mut service = RegistryService::new(registry);
    let mut group = c.benchmark_group("registry/endpoints");
    for path in ["/health", "/health/breakers", "/metrics"] {
        group.bench_function(path.trim_start_matches('/').replace('/', "_"), |b| {
            b.iter(|| {
                let request = http::Request::get(path)
                    .body(String::new())
                    .expect("a valid request");
                black_box(call_ready(&mut service, request))
            })
        });
    }
    group.finish();
}

fn metrics_at_scale(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let registry = Registry::builder()
        .max_keys(10_000)
        .build()
        .expect("a valid registry");
    for i in 0..10_000 {
        let breaker = registry
            .breakers()
            .get_keyed("upstream", &format!("host-{i:05}.example"))
            .expect("room for 10,000 keys");
        if i % 10 == 0 {
            breaker.force_open();
        }
    }
    let mut service = RegistryService::new(registry);
    let mut group = c.benchmark_group("registry");
    group.sample_size(10);
    group.bench_function("metrics_10000", |b| {
        b.iter(|| {
            let request = http::Request::get("/metrics")
                .body(String::new())
                .expect("a valid request");
            black_box(call_ready(&mut service, request))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = lookup, new_key_at_limit, endpoints, metrics_at_scale
}
criterion_main!(benches);
