//! The fleet retry budget against a real `redis-server`: three instances,
//! each in a runtime on its own thread, share one budget, and the retries
//! of the whole fleet stay within the fleet's allowance.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use portcullis_redis::{FleetBudget, FleetBudgetConfig, FleetBudgetSnapshot};
use portcullis_retry::BudgetConfig;
use portcullis_testing::redis::RedisServer;

const RATIO: f64 = 0.2;
const MIN_PER_SECOND: u32 = 5;
/// Longer than the run: every deposit and withdrawal stays in the window.
const TTL: Duration = Duration::from_secs(10);
const RUN: Duration = Duration::from_secs(4);

fn main() {
    let server = RedisServer::start();
    println!("test three_instances_share_the_fleet_budget ...");
    three_instances_share_the_fleet_budget(&server.url());
    println!("test three_instances_share_the_fleet_budget ... ok");
    println!("test redis_gone_the_local_budget_knows_the_fleet_spend ...");
    redis_gone_the_local_budget_knows_the_fleet_spend();
    println!("test redis_gone_the_local_budget_knows_the_fleet_spend ... ok");
    println!("\n2 passed, 0 failed");
    drop(server);
}

/// One instance spends its grants, then Redis goes away: the local budget,
/// which now decides, has seen those retries and allows no new window.
fn redis_gone_the_local_budget_knows_the_fleet_spend() {
    let mut server = RedisServer::start();
    let url = server.url();
    support::current_thread().block_on(async move {
        let config = FleetBudgetConfig::new(BudgetConfig::new(RATIO, MIN_PER_SECOND, TTL))
            .with_period(Duration::from_millis(100));
        let budget =
            FleetBudget::with_instance("alone", config, support::connection(&url), "solo").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(budget.snapshot().fleet.is_some(), "synced");
        let mut ticks = tokio::time::interval(Duration::from_millis(5));
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        while ticks.tick().await < end {
            budget.deposit();
            let _ = budget.try_withdraw();
        }
        let spent = budget.snapshot();
        assert_eq!(spent.decided_locally, 0, "the grants decided");
        server.kill();
        // The grant goes stale after two periods without an answer.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let alone = (0..1_000).filter(|_| budget.try_withdraw()).count() as u64;
        let snapshot = budget.snapshot();
        println!(
            "  retries on grants {} of {} deposits; Redis gone: {alone} more allowed (decided locally {})",
            spent.withdrawals, spent.deposits, snapshot.decided_locally
        );
        assert!(snapshot.decided_locally >= 1_000, "the local budget decided");
        assert!(spent.withdrawals >= 50, "the grants were spent: {spent:?}");
        assert!(
            alone * 4 <= spent.withdrawals,
            "the local budget allowed {alone} on top of the {} spent",
            spent.withdrawals
        );
    });
}

/// One instance: every 5 ms a request (a deposit) that fails, and asks
/// for a retry; far more retries than any budget allows.
fn instance(url: String, id: &'static str, start: mpsc::Receiver<()>) -> FleetBudgetSnapshot {
    support::current_thread().block_on(async move {
        let connection = support::connection(&url);
        let config =
            FleetBudgetConfig::new(BudgetConfig::new(RATIO, MIN_PER_SECOND, TTL)).with_instances(3);
        let budget = FleetBudget::with_instance("orders", config, connection, id).unwrap();
        // Every instance has synced once: from now on the fleet decides.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(budget.snapshot().fleet.is_some());
        let _ = tokio::task::spawn_blocking(move || start.recv()).await;
        let mut ticks = tokio::time::interval(Duration::from_millis(5));
        let end = tokio::time::Instant::now() + RUN;
        while ticks.tick().await < end {
            budget.deposit();
            let _ = budget.try_withdraw();
        }
        budget.snapshot()
    })
}

fn three_instances_share_the_fleet_budget(url: &str) {
    let (starts, threads): (Vec<_>, Vec<_>) = ["a", "b", "c"]
        .into_iter()
        .map(|id| {
            let (start, receive) = mpsc::channel();
            let url = url.to_owned();
            (
                start,
                std::thread::spawn(move || instance(url, id, receive)),
            )
        })
        .unzip();
    std::thread::sleep(Duration::from_millis(1_500));
    for start in starts {
        start.send(()).unwrap();
    }
    let snapshots: Vec<FleetBudgetSnapshot> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let deposits: u64 = snapshots.iter().map(|s| s.deposits).sum();
    let withdrawals: u64 = snapshots.iter().map(|s| s.withdrawals).sum();
    let refused: u64 = snapshots.iter().map(|s| s.refused).sum();
    let local: u64 = snapshots.iter().map(|s| s.decided_locally).sum();
    let reserve = u64::from(MIN_PER_SECOND) * TTL.as_secs();
    let allowance = (deposits as f64 * RATIO).floor() as u64 + reserve;
    let separate: u64 = snapshots
        .iter()
        .map(|s| (s.deposits as f64 * RATIO).floor() as u64 + reserve)
        .sum();
    for snapshot in &snapshots {
        println!(
            "  {}: deposits {}, retries {}, refused {}, fleet {:?}",
            snapshot.instance,
            snapshot.deposits,
            snapshot.withdrawals,
            snapshot.refused,
            snapshot.fleet
        );
    }
    println!(
        "  fleet: deposits {deposits}, retries {withdrawals} (refused {refused}, decided locally {local}); \
         fleet allowance floor({RATIO} x {deposits}) + {MIN_PER_SECOND}/s x {}s = {allowance}; \
         three separate budgets would allow {separate}",
        TTL.as_secs()
    );
    assert!(deposits >= 1_500, "the load was offered: {deposits}");
    assert_eq!(local, 0, "Redis decided every retry");
    assert!(
        withdrawals <= allowance,
        "retries {withdrawals} within the fleet allowance {allowance}"
    );
    assert!(
        withdrawals * 10 >= allowance * 6,
        "the fleet used its allowance: {withdrawals} of {allowance}"
    );
    assert!(
        snapshots.iter().all(|s| s.withdrawals > 0),
        "every instance got a share"
    );
}
