//! Two gateways, one Redis: a rate limit shared by the fleet, next to the
//! same limit kept by each gateway alone.
//!
//! `cargo run --release --example fleet` starts a `redis-server` on a free
//! loopback port (install Debian's `redis-server` package if there is
//! none: the example then says so and exits with code 2), and two axum
//! gateways, `A` and `B`, on loopback, as two replicas of one service
//! would run. Each has two routes with the same limit, 50 requests a
//! second with a burst of 5:
//!
//! - `/fleet`: a [`FleetRateLimitLayer`], each gateway with its own
//!   [`FleetLimiter`] and its own Redis connection, on the same key: the
//!   limit holds for the two together;
//! - `/local`: a [`RateLimitLayer`] of the gateway's own: each gateway
//!   admits its 50 a second, the pair twice the limit.
//!
//! Each route of each gateway then gets 60 requests a second for 5
//! seconds, and the example prints, side by side, what each gateway
//! admitted and rejected (429), the pair's total against the limit, and
//! the Redis commands the fleet limit took. It exits with an error if the
//! fleet's total is not within 10 % of the limit over the run. Its
//! `redis-server` is stopped on every way out, a panic included.

use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use portcullis::core::BoxError;
use portcullis::http::ErrorMappingLayer;
use portcullis::ratelimit::{RateLimitConfig, RateLimitLayer, RateLimiter};
use portcullis::redis::{FailPolicy, FleetConfig, FleetLimiter, FleetRateLimitLayer};
use portcullis_testing::redis::RedisServer;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval, timeout};
use tower::ServiceBuilder;

/// The limit of each route: requests a second, and the burst.
const RATE: u32 = 50;
const BURST: u32 = 5;
/// Requests a second to each route of each gateway.
const LOAD: u32 = 60;
/// How far the fleet's total may be from `RATE × seconds`.
const TOLERANCE: f64 = 0.10;

/// What a run saw, for `main` to print and check.
#[derive(Debug)]
pub(crate) struct Summary {
    /// How long the load ran.
    pub(crate) seconds: u32,
    /// Gateway A's then B's counts.
    pub(crate) gateways: [Counts; 2],
    /// Each gateway's fleet limiter: the scripts it sent to Redis, and
    /// the calls its fail policy decided (Redis slow or away).
    pub(crate) redis_calls: [u64; 2],
    pub(crate) decided_locally: [u64; 2],
    /// What Redis itself ran, from `INFO commandstats`: `EVALSHA`, and
    /// `SCRIPT LOAD` (when an `EVALSHA` found the script not loaded yet,
    /// and was sent again after it).
    pub(crate) evalsha: u64,
    pub(crate) script: u64,
}

/// One gateway's answers, by route.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) fleet: Answers,
    pub(crate) local: Answers,
}

/// The answers of one route.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Any other status, or no answer within a second.
    pub(crate) other: AtomicU64,
}

fn main() -> ExitCode {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!(
            "fleet: this example needs `redis-server` on the PATH; install Debian's \
             `redis-server` package (apt-get install redis-server) and run it again"
        );
        return ExitCode::from(2);
    }
    // Dropped at the end of this function, or while a panic unwinds: the
    // server is killed either way.
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(run(&redis, 5));
    drop(runtime);
    match outcome {
        Ok(summary) => {
            print(&summary);
            match check(&summary) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("fleet: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("fleet: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the two gateways against `redis` under `seconds` of load.
pub(crate) async fn run(redis: &RedisServer, seconds: u32) -> Result<Summary, BoxError> {
    let limit = RateLimitConfig::per_second(RATE).burst(BURST).build()?;
    let fleet = FleetConfig::builder(limit.clone())
        // Generous for loopback: a busy machine should not send calls to
        // the fail policy.
        .timeout(Duration::from_millis(50))
        // Redis away: each of the 2 gateways keeps 50 / 2 a second.
        .fail_policy(FailPolicy::Local)
        .instances(2)
        .build()?;

    let mut addresses = Vec::new();
    let mut limiters = Vec::new();
    for _ in 0..2 {
        // One connection per gateway, as two processes would have.
        let connection = FleetLimiter::connection(redis::Client::open(redis.url())?)?;
        let limiter = FleetLimiter::new("api", fleet.clone(), connection)?;
        let local = RateLimiter::from_config("api", limit.clone())?;
        let app = Router::new()
            .route(
                "/fleet",
                get(|| async { "ok" }).route_layer(
                    ServiceBuilder::new()
                        .layer(ErrorMappingLayer::new())
                        .layer(FleetRateLimitLayer::new(limiter.clone())),
                ),
            )
            .route(
                "/local",
                get(|| async { "ok" }).route_layer(
                    ServiceBuilder::new()
                        .layer(ErrorMappingLayer::new())
                        .layer(RateLimitLayer::new(local)),
                ),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addresses.push(listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        limiters.push(limiter);
    }

    let gateways: Arc<[Counts; 2]> = Arc::default();
    let mut load = JoinSet::new();
    for (gateway, &address) in addresses.iter().enumerate() {
        for path in ["/fleet", "/local"] {
            load.spawn(drive(address, path, seconds, gateways.clone(), gateway));
        }
    }
    while let Some(done) = load.join_next().await {
        done?;
    }

    let snapshots = [limiters[0].snapshot(), limiters[1].snapshot()];
    Ok(Summary {
        seconds,
        gateways: Arc::into_inner(gateways).expect("the load is over"),
        redis_calls: snapshots.clone().map(|s| s.redis_calls),
        decided_locally: snapshots.map(|s| s.decided_locally),
        evalsha: redis.calls_of("evalsha"),
        script: redis.calls_of("script|load"),
    })
}

/// `LOAD` requests a second to `path` of `address` for `seconds`, each
/// answer counted in `counts[gateway]`; returns when every answer is in.
async fn drive(
    address: SocketAddr,
    path: &'static str,
    seconds: u32,
    counts: Arc<[Counts; 2]>,
    gateway: usize,
) {
    let mut ticks = interval(Duration::from_secs(1) / LOAD);
    // A late tick is sent at once: the count of requests is exact.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    for _ in 0..LOAD * seconds {
        ticks.tick().await;
        let counts = counts.clone();
        requests.spawn(async move {
            let answers = match path {
                "/fleet" => &counts[gateway].fleet,
                _ => &counts[gateway].local,
            };
            let status = timeout(
                Duration::from_secs(1),
                portcullis_testing::get(address, path),
            )
            .await
            .map(|response| response.status);
            let counter = match status {
                Ok(200) => &answers.admitted,
                Ok(429) => &answers.rejected,
                _ => &answers.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
    while requests.join_next().await.is_some() {}
}

/// The table.
fn print(summary: &Summary) {
    let seconds = summary.seconds;
    let [a, b] = &summary.gateways;
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let allowed = u64::from(RATE * seconds);
    println!(
        "Two gateways, one Redis: {RATE} requests/s (burst {BURST}) on each route, \
         {LOAD} requests/s to each route of each gateway for {seconds} s\n"
    );
    println!(
        "{:<24}{:>11}{:>11}{:>9}{:>18}",
        "", "gateway A", "gateway B", "total", "limit x seconds"
    );
    for (label, route_a, route_b, limit) in [
        (
            "/fleet (shared, Redis)",
            &a.fleet,
            &b.fleet,
            allowed.to_string(),
        ),
        (
            "/local (each its own)",
            &a.local,
            &b.local,
            format!("{allowed} each"),
        ),
    ] {
        let admitted = [read(&route_a.admitted), read(&route_b.admitted)];
        let rejected = [read(&route_a.rejected), read(&route_b.rejected)];
        println!("{label}");
        println!(
            "{:<24}{:>11}{:>11}{:>9}{:>18}",
            "  admitted (200)",
            admitted[0],
            admitted[1],
            admitted[0] + admitted[1],
            limit
        );
        println!(
            "{:<24}{:>11}{:>11}{:>9}",
            "  rejected (429)",
            rejected[0],
            rejected[1],
            rejected[0] + rejected[1]
        );
        let other = [read(&route_a.other), read(&route_b.other)];
        if other != [0, 0] {
            println!(
                "{:<24}{:>11}{:>11}{:>9}",
                "  other / no answer",
                other[0],
                other[1],
                other[0] + other[1]
            );
        }
    }
    println!(
        "{:<24}{:>11}{:>11}{:>9}",
        "Redis scripts sent",
        summary.redis_calls[0],
        summary.redis_calls[1],
        summary.redis_calls[0] + summary.redis_calls[1]
    );
    println!(
        "{:<24}{:>11}{:>11}{:>9}",
        "decided without Redis",
        summary.decided_locally[0],
        summary.decided_locally[1],
        summary.decided_locally[0] + summary.decided_locally[1]
    );
    println!(
        "\nRedis ran {} EVALSHA and {} SCRIPT LOAD. A call is rejected without \
         Redis while the gateway's last \"no\" from Redis holds.",
        summary.evalsha, summary.script
    );
    let local = read(&a.local.admitted) + read(&b.local.admitted);
    println!(
        "The fleet admitted {} against a limit of {allowed}; two local limits admitted {local}.",
        read(&a.fleet.admitted) + read(&b.fleet.admitted),
    );
}

/// Whether the fleet kept its limit: within [`TOLERANCE`] of `RATE ×
/// seconds`, every request answered 200 or 429.
pub(crate) fn check(summary: &Summary) -> Result<(), String> {
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let [a, b] = &summary.gateways;
    let total = read(&a.fleet.admitted) + read(&b.fleet.admitted);
    let allowed = f64::from(RATE * summary.seconds);
    let (low, high) = (allowed * (1.0 - TOLERANCE), allowed * (1.0 + TOLERANCE));
    if !(low..=high).contains(&(total as f64)) {
        return Err(format!(
            "the fleet admitted {total}, outside [{low}, {high}] (the limit over the run ± 10 %)"
        ));
    }
    let other: u64 = summary
        .gateways
        .iter()
        .flat_map(|counts| [&counts.fleet.other, &counts.local.other])
        .map(read)
        .sum();
    if other > 0 {
        return Err(format!("{other} requests got neither a 200 nor a 429"));
    }
    Ok(())
}
