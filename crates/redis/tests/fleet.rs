//! The fleet limit against a real `redis-server`: shared by three
//! instances, with and without leases; coalescing, the denial cache, key
//! TTLs, keyed limits, shadow mode, the caller's time and the tower layer.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use portcullis_core::{ErrorKind, RateLimited};
use portcullis_ratelimit::RateLimitConfig;
use portcullis_redis::{FailPolicy, FleetConfig, FleetLimiter, FleetRateLimitLayer, TimeSource};
use portcullis_testing::redis::RedisServer;
use support::{Call, busiest, gcra_bound, limit, limiter, offer};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

static SERVER: OnceLock<(String, u16)> = OnceLock::new();

fn url() -> &'static str {
    &SERVER.get().expect("the server is started").0
}

fn command(command: &str) -> String {
    portcullis_testing::redis::send(SERVER.get().expect("started").1, command)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let server = RedisServer::start();
    SERVER.set((server.url(), server.port())).unwrap();
    support::run(&[
        (
            "three_instances_share_the_fleet_limit",
            three_instances_share_the_fleet_limit,
        ),
        (
            "leases_stay_within_their_bound",
            leases_stay_within_their_bound,
        ),
        (
            "concurrent_calls_of_a_key_share_round_trips",
            concurrent_calls_of_a_key_share_round_trips,
        ),
        (
            "a_denial_is_cached_until_a_token_conforms",
            a_denial_is_cached_until_a_token_conforms,
        ),
        (
            "keys_are_written_with_a_ttl_and_keyed_limits_are_apart",
            keys_are_written_with_a_ttl_and_keyed_limits_are_apart,
        ),
        (
            "shadow_mode_counts_and_never_rejects",
            shadow_mode_counts_and_never_rejects,
        ),
        (
            "the_callers_time_decides_as_redis_time_does",
            the_callers_time_decides_as_redis_time_does,
        ),
        (
            "the_layer_rejects_with_the_rate_limit_kind",
            the_layer_rejects_with_the_rate_limit_kind,
        ),
    ]);
    drop(server);
}

/// The fleet of the issue: 200/s with a burst of 10, shared by three
/// instances in three runtimes, each offered 300 calls per second for 5 s.
/// Returns every instance's calls and its limiter's snapshot.
fn fleet(
    name: &'static str,
    leases: Option<(u32, Duration)>,
) -> Vec<(Vec<Call>, portcullis_redis::FleetSnapshot)> {
    let instances: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let mut config = FleetConfig::builder(limit(200, 10))
                        .timeout(Duration::from_millis(100))
                        .fail_policy(FailPolicy::FailClosed)
                        .instances(3);
                    if let Some((size, lifetime)) = leases {
                        config = config.leases(size, lifetime);
                    }
                    let limiter = limiter(url(), name, config);
                    let calls = offer(&limiter, 300, Duration::from_secs(5)).await;
                    (calls, limiter.snapshot())
                })
            })
        })
        .collect();
    instances.into_iter().map(|i| i.join().unwrap()).collect()
}

fn admitted(runs: &[(Vec<Call>, portcullis_redis::FleetSnapshot)]) -> Vec<Instant> {
    runs.iter()
        .flat_map(|(calls, _)| calls.iter().filter(|c| c.verdict.is_ok()).map(|c| c.at))
        .collect()
}

fn three_instances_share_the_fleet_limit() {
    let runs = fleet("fleet-plain", None);
    let admitted = admitted(&runs);
    let offered: usize = runs.iter().map(|(calls, _)| calls.len()).sum();
    let redis_calls: u64 = runs.iter().map(|(_, s)| s.redis_calls).sum();
    let local: u64 = runs.iter().map(|(_, s)| s.decided_locally).sum();
    let window = busiest(admitted.clone(), Duration::from_secs(1));
    println!(
        "  offered {offered}, admitted {} (target 1000 ± 5 %), busiest second {window}, redis calls {redis_calls}, decided locally {local}",
        admitted.len()
    );
    assert!(offered >= 4_400, "the load was offered: {offered}");
    assert!(
        (950..=1_050).contains(&admitted.len()),
        "admitted {} of a fleet limit of 1,000 in 5 s",
        admitted.len()
    );
    // Without leases a token is used when its round trip answers: within
    // the timeout of its grant.
    let bound = gcra_bound(200, 10, Duration::from_millis(1_110));
    assert!(window <= bound, "busiest second {window} > {bound}");
}

fn leases_stay_within_their_bound() {
    let lifetime = Duration::from_millis(50);
    let runs = fleet("fleet-leases", Some((5, lifetime)));
    let admitted = admitted(&runs);
    let calls: u64 = runs.iter().map(|(_, s)| s.calls).sum();
    let redis_calls: u64 = runs.iter().map(|(_, s)| s.redis_calls).sum();
    let leased: u64 = runs.iter().map(|(_, s)| s.lease_admissions).sum();
    let window = busiest(admitted.clone(), Duration::from_secs(1));
    let plain = gcra_bound(200, 10, Duration::from_secs(1));
    // The documented bound: a token is used at most max(lifetime,
    // timeout) after its grant, plus the coarse clock's lag (10 ms here,
    // generously).
    let bound = gcra_bound(
        200,
        10,
        Duration::from_secs(1) + Duration::from_millis(100 + 10),
    );
    println!(
        "  admitted {} (target 1000 ± 5 %), leased {leased}, busiest second {window} (limit's {plain}, over by {}, bound {bound}), redis calls per 1,000 calls {:.0}",
        admitted.len(),
        window.saturating_sub(plain),
        redis_calls as f64 * 1_000.0 / calls as f64
    );
    assert!(
        (950..=1_050).contains(&admitted.len()),
        "admitted {} of a fleet limit of 1,000 in 5 s",
        admitted.len()
    );
    assert!(leased > 0, "leases were used");
    assert!(window <= bound, "busiest second {window} > {bound}");
}

fn concurrent_calls_of_a_key_share_round_trips() {
    runtime().block_on(async {
        let config =
            FleetConfig::builder(RateLimitConfig::per_minute(1).burst(20).build().unwrap())
                .timeout(Duration::from_millis(500));
        let limiter = limiter(url(), "coalesce", config);
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        let mut admitted = 0;
        for call in calls {
            admitted += usize::from(call.await.unwrap().is_ok());
        }
        let snapshot = limiter.snapshot();
        println!("  {snapshot:?}");
        assert_eq!(admitted, 20, "exactly the burst");
        assert!(
            snapshot.redis_calls < 25,
            "50 concurrent calls shared their round trips: {} sent",
            snapshot.redis_calls
        );
        assert!(snapshot.coalesced > 0);
        assert_eq!(snapshot.decided_locally, 0);
    });
}

fn a_denial_is_cached_until_a_token_conforms() {
    runtime().block_on(async {
        let config =
            FleetConfig::builder(RateLimitConfig::per_minute(60).burst(2).build().unwrap())
                .timeout(Duration::from_millis(500));
        let limiter = limiter(url(), "cache", config);
        assert!(limiter.acquire().await.is_ok());
        assert!(limiter.acquire().await.is_ok());
        let rejected = limiter.acquire().await.unwrap_err();
        let wait = rejected.retry_after().unwrap();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        let sent = limiter.snapshot().redis_calls;
        for _ in 0..100 {
            assert!(limiter.acquire().await.is_err());
        }
        let snapshot = limiter.snapshot();
        assert_eq!(snapshot.redis_calls, sent, "decided by the cache");
        // The second call's answer already said the burst was spent: the
        // third was rejected by the cache too.
        assert_eq!(snapshot.cache_rejections, 101);
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert!(limiter.acquire().await.is_ok(), "a token conforms again");
    });
}

fn keys_are_written_with_a_ttl_and_keyed_limits_are_apart() {
    runtime().block_on(async {
        let config = FleetConfig::builder(limit(10, 3)).timeout(Duration::from_millis(500));
        let limiter = limiter(url(), "keyed", config);
        for _ in 0..3 {
            assert!(limiter.acquire_key("alice").await.is_ok());
        }
        assert!(limiter.acquire_key("alice").await.is_err());
        assert!(limiter.acquire_key("bob").await.is_ok(), "a budget per key");
        assert!(
            limiter.acquire().await.is_ok(),
            "and one for the limit itself"
        );
        let ttl: i64 = command("PTTL portcullis:rl:keyed:alice")[1..]
            .trim()
            .parse()
            .unwrap();
        // Three tokens at 100 ms: the TAT is 300 ms ahead; the key lives
        // as long as it is ahead, and 1 ms more.
        assert!(
            ttl > 0 && ttl <= 301,
            "the key expires with its TAT: {ttl} ms"
        );
        let tat = command("GET portcullis:rl:keyed:bob");
        assert!(tat.starts_with('$'), "the key holds the TAT: {tat:?}");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            command("EXISTS portcullis:rl:keyed:alice"),
            ":0\r\n",
            "expired"
        );
    });
}

fn shadow_mode_counts_and_never_rejects() {
    runtime().block_on(async {
        let config = FleetConfig::builder(RateLimitConfig::per_minute(1).burst(5).build().unwrap())
            .timeout(Duration::from_millis(500))
            .shadow(true);
        let limiter = limiter(url(), "shadow", config);
        for _ in 0..20 {
            assert!(limiter.acquire().await.is_ok());
        }
        let snapshot = limiter.snapshot();
        assert_eq!(snapshot.admitted, 20);
        assert_eq!(snapshot.rejected, 0);
        assert_eq!(
            snapshot.shadow_rejections, 15,
            "what enforcing would have rejected"
        );
    });
}

fn the_callers_time_decides_as_redis_time_does() {
    runtime().block_on(async {
        let config = FleetConfig::builder(RateLimitConfig::per_minute(1).burst(3).build().unwrap())
            .timeout(Duration::from_millis(500))
            .time(TimeSource::Caller);
        let limiter = limiter(url(), "caller-time", config);
        let mut admitted = 0;
        for _ in 0..5 {
            admitted += usize::from(limiter.acquire().await.is_ok());
        }
        assert_eq!(admitted, 3);
        let wait = limiter.acquire().await.unwrap_err().retry_after().unwrap();
        assert!(wait > Duration::from_secs(55), "{wait:?}");
    });
}

fn the_layer_rejects_with_the_rate_limit_kind() {
    runtime().block_on(async {
        let config = FleetConfig::builder(RateLimitConfig::per_minute(1).burst(2).build().unwrap())
            .timeout(Duration::from_millis(500));
        let limiter: FleetLimiter = limiter(url(), "layer", config);
        let mut service = ServiceBuilder::new()
            .layer(FleetRateLimitLayer::new(limiter))
            .service(service_fn(|x: u32| async move {
                Ok::<_, std::io::Error>(x * 2)
            }));
        for x in 0..2 {
            assert_eq!(service.ready().await.unwrap().call(x).await.unwrap(), x * 2);
        }
        let error = service.ready().await.unwrap().call(7).await.unwrap_err();
        assert!(error.is::<RateLimited>());
        let kind = ErrorKind::of(error.as_ref());
        assert_eq!(kind.status_code(), 429);
        assert!(kind.retry_after().unwrap() > Duration::from_secs(25));
    });
}
