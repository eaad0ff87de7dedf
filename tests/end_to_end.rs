//! End to end, over loopback: the demo's chaos upstream and its Portcullis
//! gateway, real axum servers and hyper clients, in real time.
//!
//! Real sockets need real time (paused time does not drive I/O), so the
//! tests keep durations short, wait for states with a bounded deadline
//! rather than a fixed sleep, and assert on counts and states, never on
//! timings.
#![cfg(not(loom))]

#[allow(dead_code)]
#[path = "../examples/demo/gateway.rs"]
mod gateway;
#[allow(dead_code)]
#[path = "../examples/demo/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../examples/demo/upstream.rs"]
mod upstream;

use std::time::Duration;

use portcullis::breaker::{BreakerEvent, State};
use portcullis_testing as client;
use tokio::time::{Instant, sleep};

use crate::gateway::{Gateway, HEDGE_BUDGET, READ_BUDGET};
use crate::load::{Lane, Outcome, Plan, drive};
use crate::upstream::{Phase, Timeline, Upstream};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Polls `condition` every 20 ms until it holds or `within` has passed;
/// returns whether it held.
async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(MS(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_as_a_response_a_fallback_or_a_typed_error() {
    let timeline = Timeline {
        phases: vec![
            Phase::calm("calm", MS(600)),
            Phase::latency("latency spikes", MS(1_000), 0.3, MS(150), MS(400)),
            Phase::errors("error burst", MS(1_000), 0.5),
            Phase::outage("outage", MS(1_500)),
            Phase::calm("recovery", MS(500)),
        ],
        seed: 1,
    };
    let plan = Plan {
        requests: 340,
        rate: 75.0,
        concurrency: 32,
        write_every: 4,
        items: 10,
    };
    let upstream = Upstream::start(timeline.seed).await.unwrap();
    let bare = Gateway::bare(upstream.addr).await.unwrap();
    let (resilient, resilience) = Gateway::resilient(upstream.addr, 0).await.unwrap();
    let lanes = [
        Lane::new(bare.addr, &plan),
        Lane::new(resilient.addr, &plan),
    ];

    let start = Instant::now();
    let (played, ()) = tokio::join!(
        timeline.play(&upstream.chaos, start),
        drive(plan, &lanes, start)
    );
    played.unwrap();

    for (lane, name) in lanes.iter().zip(["bare", "portcullis"]) {
        let tally = lane.take();
        assert_eq!(tally.total(), plan.requests, "{name}: {tally:?}");
        assert_eq!(tally.latencies.len() as u64, plan.requests, "{name}");
        assert_eq!(tally.count(Outcome::Lost), 0, "{name}: {:?}", tally.counts);
        if name == "bare" {
            assert_eq!(
                upstream.calls_from("bare"),
                plan.requests,
                "the bare gateway sends each request once"
            );
            assert!(tally.count(Outcome::Failed) > 0, "the upstream did fail");
            continue;
        }
        // Each fallback the layer took reached the client as a stale 2xx.
        assert_eq!(
            tally.count(Outcome::Fallback),
            resilience.fallbacks.total(),
            "{:?}",
            tally.counts
        );
        assert!(tally.count(Outcome::Fallback) > 0, "{:?}", tally.counts);
        assert!(
            tally.count(Outcome::Rejected) > 0,
            "the outage opened a breaker: {:?}",
            tally.counts
        );
        assert_eq!(
            tally.count(Outcome::Fresh)
                + tally.count(Outcome::Fallback)
                + tally.count(Outcome::Rejected)
                + tally.count(Outcome::TimedOut)
                + tally.count(Outcome::Failed),
            plan.requests
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_breaker_opens_during_an_outage_and_closes_after_it() {
    let upstream = Upstream::start(2).await.unwrap();
    let (resilient, resilience) = Gateway::resilient(upstream.addr, 0).await.unwrap();
    let breaker = resilience
        .registry
        .breakers()
        .find("upstream-read", None)
        .expect("the read route's breaker is in the registry");
    let mut events = breaker.subscribe();
    let plan = Plan {
        requests: 3_000,
        rate: 60.0,
        concurrency: 16,
        write_every: 0,
        items: 5,
    };
    let lane = Lane::new(resilient.addr, &plan);
    let load = {
        let lane = lane.clone();
        tokio::spawn(async move { drive(plan, &[lane], Instant::now()).await })
    };
    let health = || async {
        let response = client::get(resilient.addr, "/admin/health").await;
        assert_eq!(response.status, 200);
        response.body
    };

    assert!(eventually(Duration::from_secs(10), || lane.done() >= 30).await);
    assert_eq!(breaker.state(), State::Closed);
    assert!(!health().await.contains("DEGRADED"));
    // Every kind the gateway uses is served, its retry budget among them.
    for section in ["breakers", "bulkheads", "budgets", "routes"] {
        let response = client::get(resilient.addr, &format!("/admin/health/{section}")).await;
        assert_eq!(response.status, 200);
        assert!(
            response.body.contains("\"upstream-read\""),
            "{section}: {}",
            response.body
        );
    }
    let routes = client::get(resilient.addr, "/admin/health/routes/upstream-read").await;
    let read: serde_json::Value = serde_json::from_str(&routes.body).unwrap();
    assert!(
        read["requests"].as_u64().unwrap() >= 30,
        "the read route counted its calls: {read}"
    );
    assert!(read["latency"]["p50_seconds"].as_f64().unwrap() > 0.0);

    upstream.chaos.outage_for(Duration::from_secs(60));
    assert!(
        eventually(Duration::from_secs(10), || breaker.state() == State::Open).await,
        "the breaker opens during the outage: {:?}",
        breaker.snapshot()
    );
    assert!(health().await.contains("DEGRADED"));

    upstream.chaos.end_outage();
    assert!(
        eventually(Duration::from_secs(20), || breaker.state() == State::Closed).await,
        "the breaker closes once the upstream is back: {:?}",
        breaker.snapshot()
    );
    assert!(!health().await.contains("DEGRADED"));
    load.abort();

    let mut seen = Vec::new();
    while let Some(Ok(event)) = events.try_recv() {
        if let BreakerEvent::Transition { from, to, .. } = event {
            seen.push((from, to));
        }
    }
    assert_eq!(
        seen.first(),
        Some(&(State::Closed, State::Open)),
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&(State::HalfOpen, State::Closed)),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_exceed_the_budget() {
    let upstream = Upstream::start(3).await.unwrap();
    // Every call fails with a retryable 503.
    upstream.chaos.set_response_rate(1.0).unwrap();
    let (resilient, resilience) = Gateway::resilient(upstream.addr, 0).await.unwrap();
    // So that nothing but the budget limits the retries.
    resilience
        .registry
        .breakers()
        .get("upstream-read")
        .disable();
    let plan = Plan {
        requests: 400,
        rate: 400.0,
        concurrency: 16,
        write_every: 0,
        items: 1_000,
    };
    let lane = Lane::new(resilient.addr, &plan);

    let start = Instant::now();
    drive(plan, std::slice::from_ref(&lane), start).await;
    let elapsed = start.elapsed();

    let tally = lane.take();
    assert_eq!(
        tally.count(Outcome::Failed),
        plan.requests,
        "{:?}",
        tally.counts
    );
    // Every attempt past the first is a retry or a hedge.
    let retries = resilience.read_retry.metrics().retries;
    let hedges = resilience.read_hedge.metrics().hedges;
    assert_eq!(
        upstream.calls_from("portcullis") - plan.requests,
        retries + hedges
    );
    // Within any window of a budget's TTL (less one of its ten buckets),
    // its spending is at most the reserve plus `ratio` of its deposits: the
    // reserve counts once per window the run spans.
    let window = READ_BUDGET.ttl().mul_f64(0.9);
    let windows = (elapsed.as_secs_f64() / window.as_secs_f64())
        .ceil()
        .max(1.0);
    let allowance = |budget: portcullis::retry::BudgetConfig, deposits: u64| {
        let reserve = f64::from(budget.min_per_second()) * budget.ttl().as_secs_f64();
        (budget.ratio() * deposits as f64 + reserve * windows).floor() as u64
    };
    let allowed = allowance(READ_BUDGET, plan.requests);
    // The hedge sits inside the retry: each attempt the retry sends is a
    // deposit in the hedge's budget.
    let hedges_allowed = allowance(HEDGE_BUDGET, plan.requests + retries);
    assert!(
        hedges <= hedges_allowed,
        "{hedges} hedges for {} attempts; the hedge budget allows {hedges_allowed}",
        plan.requests + retries
    );
    assert!(
        retries <= allowed,
        "{retries} retries for {} requests; the budget allows {allowed}",
        plan.requests
    );
    assert!(retries > 0, "the budget allowed some retries");
    assert!(
        retries < plan.requests,
        "without a budget there would be {} retries",
        2 * plan.requests
    );
}
