//! Looking up a breaker that exists, by name or by `(name, key)`, allocates
//! nothing, and neither does a call through a rate limiter or a retry
//! budget from the registry: counted with an instrumented global allocator. (A plain `main`,
//! not the test harness, so that no other thread allocates meanwhile.)
#![cfg(not(loom))]

use portcullis_breaker::State;
use portcullis_registry::Registry;
use portcullis_testing::alloc::{Counting, Region};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    let registry = Registry::new();
    let keys: Vec<String> = (0..64).map(|i| format!("host-{i}")).collect();
    registry.breakers().get("payments");
    for key in &keys {
        registry.breakers().get_keyed("upstream", key).unwrap();
    }
    let before = registry.len();

    let region = Region::new(&GLOBAL);
    let mut closed = 0;
    for i in 0..10_000 {
        if registry.breakers().get("payments").state() == State::Closed {
            closed += 1;
        }
        let keyed = registry
            .breakers()
            .get_keyed("upstream", &keys[i % keys.len()])
            .unwrap();
        if keyed.state() == State::Closed {
            closed += 1;
        }
    }
    let change = region.change();
    assert_eq!(closed, 20_000);
    assert_eq!(registry.len(), before, "every lookup found its breaker");
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "looking up an existing breaker allocated"
    );
    // And making one does allocate: the counter is live.
    let region = Region::new(&GLOBAL);
    registry.breakers().get("new");
    assert!(region.change().allocations > 0);
    println!("looking up existing breakers, plain and keyed: no allocation");

    // A rate limiter and a budget from the registry are the crates' own
    // handles: a call costs no allocation (nor lock), as when made directly.
    let limiter = registry.rate_limiters().get("api");
    let keyed = registry.rate_limiters().get_keyed("api", "acme").unwrap();
    let budget = registry.budgets().get("db");
    let region = Region::new(&GLOBAL);
    let mut admitted = 0;
    for _ in 0..10_000 {
        admitted += usize::from(limiter.try_acquire().is_ok());
        admitted += usize::from(keyed.try_acquire().is_ok());
        budget.deposit();
        admitted += usize::from(budget.try_withdraw());
    }
    let change = region.change();
    assert!(admitted >= 200, "calls were admitted: {admitted}");
    assert!(limiter.snapshot().rejected > 0, "and some were rejected");
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "a call through a registry rate limiter or budget allocated"
    );
    println!("calls through registry rate limiters and budgets: no allocation");

    // Recording through a `RouteStatsLayer`: the outcome, the bucket and
    // the sum are atomics; the future is named, not boxed.
    route_stats_record_without_allocating(&registry);
    println!("calls through a route statistics layer: no allocation");
}

fn route_stats_record_without_allocating(registry: &Registry) {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use portcullis_core::{BoxError, HttpClassifier};
    use portcullis_registry::RouteStatsLayer;
    use tower::{Layer, Service};

    let stats = registry.routes().get("checkout");
    // An error of no size: boxing it allocates nothing, so that what is
    // counted is the layer's own cost (a real error's box is the callee's).
    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused")
        }
    }
    impl std::error::Error for Refused {}

    let handler = tower::service_fn(|status: u16| async move {
        if status == 0 {
            return Err::<http::Response<()>, BoxError>(Box::new(Refused));
        }
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(response)
    });
    let mut service = RouteStatsLayer::new(stats.clone())
        .classifier(HttpClassifier)
        .layer(handler);
    let mut cx = Context::from_waker(Waker::noop());
    let mut call = |status: u16| {
        assert!(service.poll_ready(&mut cx).is_ready());
        let future = pin!(service.call(status));
        assert!(matches!(future.poll(&mut cx), Poll::Ready(_)));
    };
    // Warm up: the runtime's and the clock's first use.
    for status in [200, 500, 0] {
        call(status);
    }
    let region = Region::new(&GLOBAL);
    for i in 0..10_000u32 {
        call([200, 500, 200, 0][i as usize % 4]);
    }
    let change = region.change();
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.requests, 10_003);
    assert_eq!(
        (snapshot.successes, snapshot.failures),
        (5_001, 2_501 + 2_501),
        "a 5xx and an error are failures"
    );
    assert_eq!(
        (
            change.allocations,
            change.reallocations,
            change.bytes_allocated
        ),
        (0, 0, 0),
        "recording through a RouteStatsLayer allocated"
    );
}
