//! Redis slow, then killed, mid-run: each fail policy does what it says,
//! no call waits longer than the timeout, and once Redis is back the fleet
//! limit holds again within 2 s.

mod support;

use std::time::Duration;

use portcullis_redis::{FailPolicy, FleetConfig, FleetLimiter, FleetSnapshot};
use portcullis_testing::redis::RedisServer;
use support::{Call, gcra_bound, limit, limiter, offer};

const TIMEOUT: Duration = Duration::from_millis(50);
/// Far above any scheduling delay of a loaded machine, far below the
/// 1.5 s that a call would wait on a paused Redis without the timeout.
const MARGIN: Duration = Duration::from_millis(450);

fn main() {
    support::run(&[(
        "each_policy_holds_while_redis_is_away",
        each_policy_holds_while_redis_is_away,
    )]);
}

struct Limiters {
    open: FleetLimiter,
    closed: FleetLimiter,
    local: FleetLimiter,
}

impl Limiters {
    fn new(url: &str) -> Self {
        let config = |policy| {
            FleetConfig::builder(limit(100, 5))
                .timeout(TIMEOUT)
                .fail_policy(policy)
                .instances(2)
        };
        Self {
            open: limiter(url, "open", config(FailPolicy::FailOpen)),
            closed: limiter(url, "closed", config(FailPolicy::FailClosed)),
            local: limiter(url, "local", config(FailPolicy::Local)),
        }
    }

    /// 300 calls per second to each for `length`.
    async fn offer(&self, length: Duration) -> [Vec<Call>; 3] {
        let (open, closed, local) = tokio::join!(
            offer(&self.open, 300, length),
            offer(&self.closed, 300, length),
            offer(&self.local, 300, length),
        );
        [open, closed, local]
    }

    fn snapshots(&self) -> [FleetSnapshot; 3] {
        [
            self.open.snapshot(),
            self.closed.snapshot(),
            self.local.snapshot(),
        ]
    }
}

fn admitted(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.verdict.is_ok()).count()
}

fn slowest(runs: &[Vec<Call>; 3]) -> Duration {
    runs.iter().flatten().map(|c| c.took).max().unwrap()
}

/// While Redis is away: FailOpen admits every call, FailClosed rejects
/// every call (without a wait: nobody knows when Redis is back), Local
/// admits what half the limit admits (two instances expected), and no
/// call waits longer than the timeout.
fn check_policies(phase: &str, runs: &[Vec<Call>; 3], length: Duration) {
    let [open, closed, local] = runs;
    let slowest = slowest(runs);
    println!(
        "  {phase}: fail-open admitted {}/{}, fail-closed {}/{}, local {}/{}, slowest call {slowest:?}",
        admitted(open),
        open.len(),
        admitted(closed),
        closed.len(),
        admitted(local),
        local.len()
    );
    assert!(
        slowest <= TIMEOUT + MARGIN,
        "{phase}: a call waited {slowest:?}"
    );
    // The first calls of the phase may still be decided by Redis (the
    // breaker and the connection learn that it is away): skip 100 ms.
    let start = open[0].at + Duration::from_millis(100);
    fn late(calls: &[Call], start: tokio::time::Instant) -> Vec<&Call> {
        calls.iter().filter(|c| c.at >= start).collect()
    }
    assert!(
        late(open, start).iter().all(|c| c.verdict.is_ok()),
        "{phase}: fail-open admits"
    );
    for call in late(closed, start) {
        let error = call.verdict.as_ref().expect_err("fail-closed rejects");
        assert_eq!(error.retry_after(), None, "{phase}: no wait is known");
    }
    let local_admitted = late(local, start)
        .iter()
        .filter(|c| c.verdict.is_ok())
        .count();
    let half = gcra_bound(50, 2, length);
    assert!(
        local_admitted <= half && local_admitted >= half / 2,
        "{phase}: the local limit admitted {local_admitted}, half the limit is {half}"
    );
}

fn each_policy_holds_while_redis_is_away() {
    let mut server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limiters = Limiters::new(&server.url());
        let second = Duration::from_secs(1);

        // Redis up: the fleet limit decides.
        let runs = limiters.offer(second).await;
        for (calls, snapshot) in runs.iter().zip(limiters.snapshots()) {
            assert_eq!(snapshot.decided_locally, 0, "{snapshot:?}");
            assert!(admitted(calls) <= gcra_bound(100, 5, second + TIMEOUT));
        }

        // Redis slow: paused for 1.5 s, every call times out.
        server.command("CLIENT PAUSE 1500 ALL");
        let runs = limiters.offer(second).await;
        check_policies("redis paused", &runs, second);
        assert!(limiters.snapshots().iter().all(|s| s.redis_timeouts > 0));
        tokio::time::sleep(Duration::from_millis(600)).await;

        // Redis down.
        server.kill();
        let runs = limiters.offer(second).await;
        check_policies("redis killed", &runs, second);
        for snapshot in limiters.snapshots() {
            assert!(
                snapshot.redis_errors + snapshot.breaker_rejections > 0,
                "{snapshot:?}"
            );
        }

        // Redis back: within 2 s nothing is decided locally any more, and
        // the fleet limit holds.
        server.restart();
        let _ = limiters.offer(2 * second).await;
        let before = limiters.snapshots();
        let runs = limiters.offer(second).await;
        let after = limiters.snapshots();
        for ((calls, before), after) in runs.iter().zip(before).zip(after) {
            println!(
                "  {} after restart: admitted {}/{}, decided locally {}",
                after.name,
                admitted(calls),
                calls.len(),
                after.decided_locally - before.decided_locally
            );
            assert_eq!(after.decided_locally, before.decided_locally, "{after:?}");
            assert!(
                admitted(calls) <= gcra_bound(100, 5, second + TIMEOUT),
                "{after:?}"
            );
            assert!(admitted(calls) >= 80, "{after:?}");
        }
    });
    drop(server);
}
