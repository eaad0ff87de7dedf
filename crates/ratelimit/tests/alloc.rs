//! The admitted path of a single limiter allocates nothing: counted with an
//! instrumented global allocator. (A plain `main`, not the test harness, so
//! that no other thread allocates meanwhile.)
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use portcullis_ratelimit::{RateLimitConfig, RateLimitLayer, RateLimiter};
use portcullis_testing::alloc::{Counting, Region};
use portcullis_testing::call_ready as call;
use tower::{Layer, service_fn};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    let runtime = portcullis_testing::runtime();
    let _guard = runtime.enter();
    // A billion calls a year, all at once if need be: every call is
    // admitted, and each one shows in the budget.
    let config = RateLimitConfig::per_second(1_000_000_000)
        .period(Duration::from_secs(365 * 86_400))
        .build()
        .unwrap();
    let limiter = RateLimiter::from_config("fast", config).unwrap();
    let inner = service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)));
    let mut service = RateLimitLayer::new(limiter.clone()).layer(inner);
    #[cfg(feature = "http")]
    let mut http_service = RateLimitLayer::new(limiter.clone())
        .into_http()
        .layer(service_fn(|_: http::Request<()>| {
            ready(Ok::<_, Infallible>(http::Response::new(())))
        }));
    // Warm up (lazy statics, the clock).
    assert_eq!(call(&mut service, 1), 1);
    #[cfg(feature = "http")]
    assert_eq!(
        call(&mut http_service, http::Request::new(())).status(),
        200
    );

    // The test harness's own thread may still be allocating (its
    // bookkeeping for this test) while the first round runs, when the
    // machine is busy: so three rounds, of which one must be clean. An
    // allocation per call would show in every round.
    const ROUNDS: u64 = 3;
    const CALLS: u64 = 10_000;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let region = Region::new(&GLOBAL);
        let mut sum = 0;
        for i in 0..CALLS {
            sum += call(&mut service, i);
            limiter.try_acquire().expect("admitted");
            #[cfg(feature = "http")]
            assert_eq!(
                call(&mut http_service, http::Request::new(())).status(),
                200
            );
        }
        let change = region.change();
        assert_eq!(sum, (0..CALLS).sum::<u64>());
        rounds.push((change.allocations, change.reallocations));
    }
    assert!(
        rounds.contains(&(0, 0)),
        "the admitted path allocated: {rounds:?} (allocations, reallocations) per round"
    );
    assert_eq!(limiter.snapshot().rejected, 0, "every call was admitted");
    let per_round = if cfg!(feature = "http") { 3 } else { 2 };
    let calls = ROUNDS * CALLS * per_round + (per_round - 1); // and the warm-up
    let refilled = 1_000; // one per 31.5 ms: far more than the test takes
    assert!(
        limiter.remaining() <= 1_000_000_000 - calls + refilled,
        "and every call was counted: {}",
        limiter.remaining()
    );
    println!(
        "rate limiter, admitted path (RateLimit, try_acquire, HttpRateLimit): no allocation per call"
    );
    #[cfg(feature = "http")]
    long_header_keys_cost_a_fixed_size();
}

/// A flood of 16 KiB header values as keys keeps a fixed size per key: the
/// limiter holds a bounded digest, not the value (nor the buffer the
/// request was read into).
#[cfg(feature = "http")]
fn long_header_keys_cost_a_fixed_size() {
    use portcullis_ratelimit::KeyExtractor;
    use portcullis_ratelimit::key::{BoundedKey, Header};

    const KEYS: usize = 1_000;
    // One call an hour: no key goes idle (and is swept) during the test.
    let config = RateLimitConfig::per_second(1)
        .period(Duration::from_secs(3600))
        .max_keys(100_000)
        .build()
        .unwrap();
    let keyed =
        portcullis_ratelimit::KeyedRateLimiter::<BoundedKey>::from_config("keys", config).unwrap();
    let extractor = Header::new(http::HeaderName::from_static("x-api-key"));
    let region = Region::new(&GLOBAL);
    for i in 0..KEYS {
        let request = http::Request::builder()
            .header("x-api-key", format!("{i:016}").repeat(1024))
            .body(())
            .unwrap();
        let key = extractor.extract(&request).expect("a key");
        keyed.try_acquire(&key).expect("a new key is admitted");
    }
    let change = region.change();
    let retained = change.net_bytes();
    assert_eq!(keyed.keys(), KEYS);
    let per_key = retained / KEYS as isize;
    assert!(
        per_key <= 512,
        "{per_key} bytes retained per 16 KiB key: the value was kept"
    );
    println!("keyed rate limiter: {per_key} bytes per 16 KiB header key");
}
