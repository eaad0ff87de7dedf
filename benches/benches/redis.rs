//! The cost of a fleet rate limit per call, against a real `redis-server`
//! on loopback (started by the benchmark, stopped at its end).
//!
//! - `redis/round_trip`: every call is one script call (no leases; a limit
//!   so high that every call is admitted).
//! - `redis/leases`: the same limit with leases of 1,000 tokens: most calls
//!   take a leased token, one in about a thousand goes to Redis.
//! - `redis/denied_cache`: a spent limit: calls are rejected by the local
//!   "denied until" cache.
//!
//! After the timings it prints the Redis commands per 1,000 calls of each,
//! from Redis's own `INFO commandstats` and from the limiter's counter.
//!
//! Run with `cargo bench -p portcullis-benches --bench redis`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_ratelimit::RateLimitConfig;
use portcullis_redis::{FailPolicy, FleetConfig, FleetLimiter};
use portcullis_testing::redis::RedisServer;

fn limiter(url: &str, name: &str, limit: RateLimitConfig, leases: u32) -> FleetLimiter {
    let client = redis::Client::open(url).unwrap();
    let connection = FleetLimiter::connection(client).unwrap();
    let mut config = FleetConfig::builder(limit)
        .timeout(Duration::from_millis(100))
        .fail_policy(FailPolicy::FailClosed);
    if leases > 0 {
        config = config.leases(leases, Duration::from_millis(100));
    }
    FleetLimiter::new(name, config.build().unwrap(), connection).unwrap()
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let high = RateLimitConfig::per_second(1_000_000)
        .burst(1_000_000)
        .build()
        .unwrap();
    let spent = RateLimitConfig::per_minute(1).burst(1).build().unwrap();
    let plain = limiter(&server.url(), "bench-plain", high.clone(), 0);
    let leased = limiter(&server.url(), "bench-leases", high, 1_000);
    let denied = limiter(&server.url(), "bench-denied", spent, 0);
    runtime.block_on(async {
        assert!(plain.acquire().await.is_ok());
        assert!(leased.acquire().await.is_ok());
        assert!(denied.acquire().await.is_ok());
        assert!(denied.acquire().await.is_err());
    });

    let mut group = c.benchmark_group("redis");
    group.bench_function("round_trip", |b| {
        b.iter(|| black_box(runtime.block_on(plain.acquire())))
    });
    group.bench_function("leases", |b| {
        b.iter(|| black_box(runtime.block_on(leased.acquire())))
    });
    group.bench_function("denied_cache", |b| {
        b.iter(|| black_box(runtime.block_on(denied.acquire())))
    });
    group.finish();

    for (name, limiter) in [
        ("round_trip", &plain),
        ("leases", &leased),
        ("denied_cache", &denied),
    ] {
        let before = (server.calls_of("evalsha"), limiter.snapshot().redis_calls);
        runtime.block_on(async {
            for _ in 0..10_000 {
                let _ = black_box(limiter.acquire().await);
            }
        });
        let after = (server.calls_of("evalsha"), limiter.snapshot().redis_calls);
        println!(
            "redis/{name}: {:.1} EVALSHA per 1,000 calls (Redis's count), {:.1} script calls (the limiter's)",
            (after.0 - before.0) as f64 / 10.0,
            (after.1 - before.1) as f64 / 10.0
        );
    }
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
