//! What the fleet tests share: runtimes and connections, limiters on the
//! test's Redis, and offered load with every call's verdict and latency
//! recorded.

#![allow(dead_code, unreachable_pub)] // each test binary uses its part

use std::time::Duration;

use portcullis_ratelimit::RateLimitConfig;
use portcullis_redis::{FleetConfigBuilder, FleetLimiter, RateLimited};
use tokio::time::{Instant, MissedTickBehavior};

/// One call's record.
#[derive(Debug)]
pub struct Call {
    pub at: Instant,
    pub took: Duration,
    pub verdict: Result<(), RateLimited>,
}

/// A limiter named `name` on the Redis at `url`, with its own connection.
/// Must be called inside a runtime.
pub fn limiter(url: &str, name: &str, config: FleetConfigBuilder) -> FleetLimiter {
    FleetLimiter::new(
        name,
        config.build().expect("a valid config"),
        connection(url),
    )
    .expect("a valid limiter")
}

/// A single-threaded runtime, as one instance of a fleet runs on.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A connection of the fleet types to the Redis at `url`. Must be called
/// inside a runtime.
pub fn connection(url: &str) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(url).expect("a valid URL");
    FleetLimiter::connection(client).expect("a lazy connection")
}

/// `rate` calls per second, `burst` at once.
pub fn limit(rate: u32, burst: u32) -> RateLimitConfig {
    RateLimitConfig::per_second(rate)
        .burst(burst)
        .build()
        .unwrap()
}

/// Offers `per_second` calls per second for `length`, each in its own task
/// (so that calls overlap as a server's do), and returns every call.
pub async fn offer(limiter: &FleetLimiter, per_second: u32, length: Duration) -> Vec<Call> {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let end = Instant::now() + length;
    let mut tasks = Vec::new();
    loop {
        let tick = ticks.tick().await;
        if tick >= end {
            break;
        }
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let verdict = limiter.acquire().await;
            Call {
                at,
                took: at.elapsed(),
                verdict,
            }
        }));
    }
    let mut calls = Vec::with_capacity(tasks.len());
    for task in tasks {
        calls.push(task.await.expect("a call's task"));
    }
    calls
}

/// The most admissions in any window of `window` (admission times sorted).
pub fn busiest(mut admitted: Vec<Instant>, window: Duration) -> usize {
    admitted.sort();
    let mut most = 0;
    let mut first = 0;
    for last in 0..admitted.len() {
        while admitted[last] - admitted[first] >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// The GCRA bound: the most calls a limit of `rate` per second with
/// `burst` admits in any interval of `span`.
pub fn gcra_bound(rate: u32, burst: u32, span: Duration) -> usize {
    let interval = Duration::from_secs(1) / rate;
    let tolerance = interval * (burst - 1);
    ((span + tolerance).as_nanos() / interval.as_nanos()) as usize + 1
}

/// Runs the scenarios in order, printing each, then the closing line.
pub fn run(scenarios: &[(&str, fn())]) {
    for (name, scenario) in scenarios {
        println!("test {name} ...");
        scenario();
        println!("test {name} ... ok");
    }
    println!("\n{} passed, 0 failed", scenarios.len());
}
