//! The fleet breaker against a real `redis-server`, with three instances,
//! each in a runtime on its own thread calling its breaker every 5 ms:
//! the quorum, the one prober, manual states fleet-wide, and Redis gone.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig, State};
use portcullis_redis::{FleetBreaker, FleetBreakerConfig, FleetState, Quorum};
use portcullis_testing::redis::RedisServer;
use tokio::time::Instant;

/// What an instance's calls do.
const IDLE: u8 = 0;
const FAIL: u8 = 1;
const SUCCEED: u8 = 2;
/// Succeed, one call in 200 ticks (every second).
const SUCCEED_SLOWLY: u8 = 3;

/// A wide margin over the expected times: these run over loopback on a
/// shared machine.
const WITHIN: Duration = Duration::from_secs(2);

fn main() {
    let mut server = RedisServer::start();
    let url = server.url();
    let port = server.port();
    let scenarios: [(&str, &dyn Fn()); 7] = [
        (
            "two_of_three_open_all_three_one_of_three_opens_none",
            &|| quorum(&url),
        ),
        ("exactly_one_prober_then_the_fleet_closes", &|| {
            one_prober(&url)
        }),
        ("a_prober_without_calls_keeps_the_role_alone", &|| {
            prober_without_calls(&url)
        }),
        (
            "a_manual_state_reaches_every_instance_and_so_does_clearing_it",
            &|| manual_states(&url),
        ),
        (
            "a_manual_change_during_a_round_trip_is_published_next_round",
            &|| change_during_a_round_trip(&url, port),
        ),
        ("the_sync_task_stops_with_the_last_handle", &|| {
            the_sync_task_stops_with_the_last_handle(&url, port)
        }),
        ("redis_killed_each_instance_runs_alone", &|| {
            redis_killed(&mut RedisServer::start())
        }),
    ];
    for (name, scenario) in scenarios {
        println!("test {name} ...");
        scenario();
        println!("test {name} ... ok");
    }
    println!("\n7 passed, 0 failed");
    server.kill();
}

/// One instance of the fleet: its breaker, its fleet handle, and the loop
/// that calls it.
struct Instance {
    breaker: Breaker,
    fleet: FleetBreaker,
    behaviour: Arc<AtomicU8>,
    /// Each admitted call: when, and the state it was admitted in.
    admitted: Arc<Mutex<Vec<(Instant, State)>>>,
    /// The longest a call took (acquire and record), in nanoseconds.
    slowest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn local_breaker(name: &str) -> Breaker {
    let config = BreakerConfig::builder()
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        // Longer than a period or two: see "Failure cases" in the crate
        // docs.
        .wait_in_open(Duration::from_secs(2))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    Breaker::from_config(name.to_owned(), config).unwrap()
}

impl Instance {
    fn start(url: &str, name: &str, id: &str, config: FleetBreakerConfig) -> Self {
        let (url, name, id) = (url.to_owned(), name.to_owned(), id.to_owned());
        let behaviour = Arc::new(AtomicU8::new(IDLE));
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let slowest = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (handles, receive) = mpsc::channel();
        let thread = std::thread::spawn({
            let (behaviour, admitted, slowest, stop) = (
                behaviour.clone(),
                admitted.clone(),
                slowest.clone(),
                stop.clone(),
            );
            move || {
                support::current_thread().block_on(async move {
                    let connection = support::connection(&url);
                    let breaker = local_breaker(&name);
                    let fleet =
                        FleetBreaker::with_instance(breaker.clone(), config, connection, id)
                            .unwrap();
                    handles.send((breaker.clone(), fleet)).unwrap();
                    let mut ticks = tokio::time::interval(Duration::from_millis(5));
                    let mut tick = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        ticks.tick().await;
                        tick += 1;
                        let what = behaviour.load(Ordering::Relaxed);
                        if what == IDLE || (what == SUCCEED_SLOWLY && tick % 200 != 0) {
                            continue;
                        }
                        let started = Instant::now();
                        let state = breaker.state();
                        if let Ok(permit) = breaker.try_acquire() {
                            if what == FAIL {
                                permit.failure();
                            } else {
                                permit.success();
                            }
                            admitted.lock().unwrap().push((started, state));
                        }
                        slowest.fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        let (breaker, fleet) = receive.recv().unwrap();
        Self {
            breaker,
            fleet,
            behaviour,
            admitted,
            slowest,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, behaviour: u8) {
        self.behaviour.store(behaviour, Ordering::Relaxed);
    }

    fn admitted_since(&self, since: Instant) -> Vec<(Instant, State)> {
        let admitted = self.admitted.lock().unwrap();
        admitted
            .iter()
            .filter(|(at, _)| *at >= since)
            .copied()
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            // A panic while unwinding would abort and hide the first one.
            if !std::thread::panicking() {
                joined.expect("the instance's thread ran to its end");
            }
        }
    }
}

fn three(url: &str, name: &str, config: FleetBreakerConfig) -> [Instance; 3] {
    ["a", "b", "c"].map(|id| Instance::start(url, name, id, config.clone()))
}

/// Polls `condition` every 2 ms for up to `limit` (at least once): how
/// long it took to hold, if it did.
fn wait_for(limit: Duration, condition: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn states(instances: &[Instance; 3]) -> [State; 3] {
    [0, 1, 2].map(|i| instances[i].breaker.state())
}

fn quorum(url: &str) {
    // Two of three fail: all three open, the one that only saw successes
    // by the fleet.
    let fleet = three(url, "quorum-two", FleetBreakerConfig::default());
    std::thread::sleep(Duration::from_millis(1_200)); // every instance has synced
    let [a, b, c] = &fleet;
    // a and b trip on their own after 10 failures and then reject: their
    // rejections count as failures, so c's successes do not dilute the
    // fleet's rate. Every time is taken from the switch.
    let switched = Instant::now();
    c.set(SUCCEED);
    a.set(FAIL);
    b.set(FAIL);
    let times: Vec<_> = fleet
        .iter()
        .map(|i| {
            wait_for(WITHIN.saturating_sub(switched.elapsed()), || {
                i.breaker.state() == State::Open
            })
            .map(|_| switched.elapsed())
        })
        .collect();
    let all = wait_for(WITHIN.saturating_sub(switched.elapsed()), || {
        states(&fleet) == [State::Open; 3]
    })
    .map(|_| switched.elapsed());
    println!("  two of three failing: open after {times:?} (a, b, c), all three {all:?}");
    assert!(
        times.iter().all(Option::is_some) && all.is_some(),
        "open on all three within 2 s of the switch: {times:?}, all {all:?}, states {:?}",
        states(&fleet)
    );
    let snapshot = c.fleet.snapshot();
    println!("  c: {snapshot:?}");
    assert_eq!(c.fleet.snapshot().fleet.unwrap().state, FleetState::Open);
    drop(fleet);

    // One of three fails, and the other two call little: the fleet's rate
    // is over the threshold, but with a quorum of two the other two stay
    // closed. (a's own breaker opens after 10 failures; from then on its
    // rejections count as failures.)
    let config = FleetBreakerConfig::builder()
        .quorum(Quorum::Instances(2))
        .minimum_calls(10)
        .build()
        .unwrap();
    let fleet = three(url, "quorum-one", config);
    std::thread::sleep(Duration::from_millis(1_200));
    let [a, b, c] = &fleet;
    b.set(SUCCEED_SLOWLY);
    c.set(SUCCEED_SLOWLY);
    a.set(FAIL);
    let opened = wait_for(Duration::from_secs(3), || {
        b.breaker.state() != State::Closed || c.breaker.state() != State::Closed
    });
    let view = b.fleet.snapshot().fleet.unwrap();
    println!(
        "  one of three failing: a {:?}, b {:?}, c {:?}; fleet {view:?} (rate {:.0} %)",
        a.breaker.state(),
        b.breaker.state(),
        c.breaker.state(),
        view.failures as f64 * 100.0 / view.calls as f64
    );
    assert_eq!(opened, None, "b or c left closed");
    assert_eq!(a.breaker.state(), State::Open, "a opened on its own window");
    assert_eq!(view.state, FleetState::Closed);
    assert!(
        view.failures * 2 >= view.calls && view.calls >= 10,
        "the fleet's rate is over the threshold: {view:?}"
    );
    assert_eq!(view.seeing, 1, "only a sees it");
}

fn one_prober(url: &str) {
    let fleet = three(url, "prober", FleetBreakerConfig::default());
    std::thread::sleep(Duration::from_millis(1_200));
    for instance in &fleet {
        instance.set(FAIL);
    }
    let opened = wait_for(WITHIN, || states(&fleet) == [State::Open; 3]).expect("all open");
    // Now the dependency is back: every instance calls, and only the
    // elected prober's one probe may pass before its result.
    let switched = Instant::now();
    let half_open = |i: &Instance| {
        i.breaker
            .counters()
            .transitions(State::Open, State::HalfOpen)
    };
    let earlier: Vec<u64> = fleet.iter().map(half_open).collect();
    for instance in &fleet {
        instance.set(SUCCEED);
    }
    let closed = wait_for(Duration::from_secs(6), || {
        states(&fleet) == [State::Closed; 3]
    })
    .expect("the fleet closes");
    std::thread::sleep(Duration::from_millis(50)); // a call or two after closing
    let half_opens: Vec<u64> = fleet
        .iter()
        .zip(&earlier)
        .map(|(i, earlier)| half_open(i) - earlier)
        .collect();
    let admitted: Vec<_> = fleet.iter().map(|i| i.admitted_since(switched)).collect();
    let probes: usize = admitted
        .iter()
        .map(|calls| calls.iter().filter(|(_, s)| *s == State::HalfOpen).count())
        .sum();
    let prober = half_opens.iter().position(|&n| n == 1).expect("a prober");
    assert!(
        admitted.iter().all(|calls| !calls.is_empty()),
        "every instance admitted a call after the switch: {:?}",
        admitted.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let probe_at = admitted[prober][0].0;
    let before_result: usize = admitted
        .iter()
        .map(|calls| calls.iter().filter(|(at, _)| *at <= probe_at).count())
        .sum();
    let elections: u64 = fleet.iter().map(|i| i.fleet.snapshot().elections).sum();
    let last_close = admitted.iter().map(|calls| calls[0].0).max().unwrap();
    println!(
        "  all open after {opened:?}; probe {:?} after the switch, by {}; half-open transitions {half_opens:?}, \
         probes {probes}, calls admitted up to the probe {before_result}, elections {elections}; \
         all closed {closed:?} after the switch, last instance admitting {:?} after the probe",
        probe_at - switched,
        ["a", "b", "c"][prober],
        last_close - probe_at
    );
    assert_eq!(
        half_opens.iter().sum::<u64>(),
        1,
        "one instance went half-open"
    );
    assert_eq!(probes, 1, "one probe fleet-wide");
    assert_eq!(
        before_result, 1,
        "nothing else passed before the probe's result"
    );
    assert_eq!(elections, 1);
    assert!(
        last_close - probe_at <= WITHIN,
        "closed fleet-wide within 2 s of the probe"
    );
}

fn prober_without_calls(url: &str) {
    let config = FleetBreakerConfig::builder()
        .period(Duration::from_millis(100))
        .window(Duration::from_secs(1))
        .prober_ttl(Duration::from_millis(500))
        .build()
        .unwrap();
    let fleet = three(url, "sparse", config);
    std::thread::sleep(Duration::from_millis(300));
    for instance in &fleet {
        instance.set(FAIL);
    }
    let fleet_open = |i: &Instance| {
        i.fleet
            .snapshot()
            .fleet
            .is_some_and(|view| view.state == FleetState::Open)
    };
    wait_for(WITHIN, || fleet.iter().all(fleet_open)).expect("the fleet opens");
    // The callers go quiet: the prober, once elected, has no call to probe
    // with, and stays half-open for four prober TTLs.
    for instance in &fleet {
        instance.set(IDLE);
    }
    let half_open = || {
        states(&fleet)
            .iter()
            .filter(|s| **s == State::HalfOpen)
            .count()
    };
    let elected = wait_for(Duration::from_secs(4), || half_open() > 0);
    std::thread::sleep(Duration::from_millis(2_000));
    let elections: u64 = fleet.iter().map(|i| i.fleet.snapshot().elections).sum();
    println!(
        "  prober half-open after {elected:?}; 2 s later: states {:?}, elections {elections}",
        states(&fleet)
    );
    assert!(elected.is_some(), "a prober was elected");
    assert_eq!(elections, 1, "the role did not expire and go to another");
    assert_eq!(half_open(), 1, "one instance half-open");
}

fn manual_states(url: &str) {
    let fleet = three(url, "manual", FleetBreakerConfig::default());
    std::thread::sleep(Duration::from_millis(1_200));
    for instance in &fleet {
        instance.set(SUCCEED);
    }
    let [a, b, _] = &fleet;
    // As `POST /breakers/manual/state {"state": "forced_open"}` does on a.
    a.breaker.force_open();
    let forced = wait_for(WITHIN * 2, || states(&fleet) == [State::ForcedOpen; 3]);
    println!("  forced open on a: on all three after {forced:?}");
    assert!(forced.expect("forced open everywhere") <= WITHIN);
    // Cleared on another instance.
    b.breaker.reset();
    let cleared = wait_for(WITHIN * 2, || states(&fleet) == [State::Closed; 3]);
    println!("  reset on b: closed on all three after {cleared:?}");
    assert!(cleared.expect("closed everywhere") <= WITHIN);
    // No instance echoes what it applied: nothing changes any more.
    std::thread::sleep(Duration::from_millis(2_500));
    let published: Vec<u64> = fleet
        .iter()
        .map(|i| i.fleet.snapshot().manual_published)
        .collect();
    println!(
        "  manual states published by a, b, c: {published:?}; states {:?}",
        states(&fleet)
    );
    assert_eq!(states(&fleet), [State::Closed; 3]);
    assert_eq!(
        published,
        [1, 1, 0],
        "a published the force, b the reset, c nothing"
    );
    // Disabled, and metrics-only, spread the same way.
    fleet[2].breaker.disable();
    assert!(wait_for(WITHIN * 2, || states(&fleet) == [State::Disabled; 3]).is_some());
    a.breaker.metrics_only();
    assert!(wait_for(WITHIN * 2, || states(&fleet) == [State::MetricsOnly; 3]).is_some());
    a.breaker.close();
    assert!(wait_for(WITHIN * 2, || states(&fleet) == [State::Closed; 3]).is_some());
}

fn change_during_a_round_trip(url: &str, port: u16) {
    // A timeout longer than the pause below, so that a sync waits it out.
    let config = FleetBreakerConfig::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let fleet = three(url, "in-flight", config);
    std::thread::sleep(Duration::from_millis(1_200));
    for instance in &fleet {
        instance.set(SUCCEED);
    }
    let [a, ..] = &fleet;
    // Redis holds every command for 400 ms: the sync that publishes a's
    // force (woken at once by the transition) is in flight when a is
    // reset, and its reply (the force, a new generation) comes after.
    portcullis_testing::redis::send(port, "CLIENT PAUSE 400 ALL");
    a.breaker.force_open();
    std::thread::sleep(Duration::from_millis(150));
    a.breaker.reset();
    let mode = || portcullis_testing::redis::send(port, "HGET portcullis:cb:in-flight:state mode");
    let cleared = wait_for(WITHIN * 2, || {
        states(&fleet) == [State::Closed; 3] && mode().contains("closed")
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let snapshot = a.fleet.snapshot();
    let forced = a
        .breaker
        .counters()
        .transitions(State::Closed, State::ForcedOpen);
    println!(
        "  force, reset during the round trip: cleared after {cleared:?}; states {:?}, \
         redis {:?}, a published {} manual states, forced {forced} times",
        states(&fleet),
        mode().trim(),
        snapshot.manual_published
    );
    assert_eq!(
        snapshot.manual_published, 2,
        "a published the force, then its clearing"
    );
    assert_eq!(forced, 1, "the force's reply did not force a again");
    assert!(cleared.is_some(), "the reset reached the fleet");
    assert_eq!(states(&fleet), [State::Closed; 3]);
    assert!(mode().contains("closed"), "redis holds closed");
}

fn redis_killed(server: &mut RedisServer) {
    let fleet = three(&server.url(), "killed", FleetBreakerConfig::default());
    std::thread::sleep(Duration::from_millis(1_200));
    for instance in &fleet {
        instance.set(SUCCEED);
        assert!(instance.fleet.snapshot().fleet.is_some(), "synced");
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(1_500));
    let half_open = |i: &Instance| {
        i.breaker
            .counters()
            .transitions(State::Open, State::HalfOpen)
    };
    let earlier: Vec<u64> = fleet.iter().map(half_open).collect();
    // Each breaker opens on its own window, as without a fleet.
    for instance in &fleet {
        instance.set(FAIL);
    }
    let opened = wait_for(WITHIN, || states(&fleet) == [State::Open; 3]);
    println!("  redis killed: all three open on their own after {opened:?}");
    assert!(opened.is_some());
    // And close again on their own probes.
    for instance in &fleet {
        instance.set(SUCCEED);
    }
    let closed = wait_for(Duration::from_secs(4), || {
        states(&fleet) == [State::Closed; 3]
    });
    let half_opens: Vec<u64> = fleet
        .iter()
        .zip(&earlier)
        .map(|(i, earlier)| half_open(i) - earlier)
        .collect();
    println!(
        "  and closed on their own probes after {closed:?}; half-open transitions {half_opens:?}"
    );
    assert!(closed.is_some());
    // With the fleet, one elected prober would go half-open and the others
    // stay held open: each one probing proves that each ran alone.
    assert!(
        half_opens.iter().all(|&n| n >= 1),
        "every instance went half-open on its own: {half_opens:?}"
    );
    for instance in &fleet {
        let snapshot = instance.fleet.snapshot();
        let slowest = Duration::from_nanos(instance.slowest.load(Ordering::Relaxed));
        println!(
            "  {}: slowest call {slowest:?}, unsynced rounds {}, redis errors {}, timeouts {}, redis breaker {:?} ({} rejections)",
            snapshot.instance,
            snapshot.unsynced_rounds,
            snapshot.redis.errors,
            snapshot.redis.timeouts,
            snapshot.redis.breaker,
            snapshot.redis.breaker_rejections
        );
        assert!(snapshot.unsynced_rounds >= 2, "{snapshot:?}");
        assert!(
            snapshot.redis.errors + snapshot.redis.timeouts + snapshot.redis.breaker_rejections > 0
        );
        // A call that waited on Redis would take the sync's timeout
        // (100 ms) at least, reconnecting more; wall clock on a loaded
        // machine takes the rest of the margin.
        assert!(
            slowest < Duration::from_millis(500),
            "a call waited: {slowest:?}"
        );
    }
    // Redis back: the instances sync again.
    server.restart();
    let before: Vec<u64> = fleet
        .iter()
        .map(|i| i.fleet.snapshot().unsynced_rounds)
        .collect();
    std::thread::sleep(Duration::from_millis(3_000));
    let resynced = wait_for(WITHIN, || {
        fleet
            .iter()
            .all(|i| i.fleet.snapshot().fleet.is_some_and(|v| v.live == 3))
    });
    let after: Vec<u64> = fleet
        .iter()
        .map(|i| i.fleet.snapshot().unsynced_rounds)
        .collect();
    println!("  redis back: unsynced rounds {before:?} -> {after:?}, all live again {resynced:?}");
    assert!(resynced.is_some());
}

fn the_sync_task_stops_with_the_last_handle(url: &str, port: u16) {
    let last_sync =
        || portcullis_testing::redis::send(port, "ZSCORE portcullis:cb:dropped:live solo");
    support::current_thread().block_on(async {
        let config = FleetBreakerConfig::builder()
            .period(Duration::from_millis(100))
            .build()
            .unwrap();
        let fleet = FleetBreaker::with_instance(
            Breaker::new("dropped"),
            config,
            support::connection(url),
            "solo",
        )
        .unwrap();
        let clone = fleet.clone();
        tokio::time::sleep(Duration::from_millis(350)).await;
        drop(fleet);
        let before = last_sync();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_ne!(last_sync(), before, "a clone keeps the task syncing");
        assert!(clone.snapshot().redis.syncs >= 3);
        drop(clone);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = last_sync();
        tokio::time::sleep(Duration::from_millis(400)).await;
        println!("  last sync {before:?} -> {after:?}, then none");
        assert_eq!(last_sync(), after, "no sync after the last handle is gone");
    });
}
