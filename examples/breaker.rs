//! A circuit breaker in front of an upstream that goes down and comes back.
//!
//! Run it with `cargo run --release --example breaker`. The upstream is an
//! in-process service: healthy for a while, then down (every call fails
//! after a delay), then healthy again. The same calls go through a breaker,
//! and the example prints every state change as it happens and, at the end,
//! how many calls the breaker spared the upstream while it was down. It
//! exits with an error if the breaker did not open and close again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis::breaker::{
    Breaker, BreakerConfig, BreakerEvent, BreakerOpen, CircuitBreakerLayer, State,
};
use portcullis::core::BoxError;
use tokio::time::{Instant, sleep};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The upstream is down between these two moments after the start.
const OUTAGE: (Duration, Duration) = (Duration::from_millis(500), Duration::from_millis(1_700));

#[derive(Default)]
struct Tally {
    reached_upstream: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = BreakerConfig::builder()
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_millis(300))
        .permitted_calls_in_half_open(3)
        .build()?;
    let breaker = Breaker::from_config("inventory", config)?;

    let start = Instant::now();
    let mut events = breaker.subscribe();
    let printer = tokio::spawn(async move {
        let mut transitions = Vec::new();
        while let Ok(event) = events.recv().await {
            if let BreakerEvent::Transition {
                from, to, reason, ..
            } = event
            {
                println!(
                    "{:>6} ms  {from:?} -> {to:?}: {reason}",
                    start.elapsed().as_millis()
                );
                transitions.push(to);
            }
        }
        transitions
    });

    let tally = Arc::new(Tally::default());
    let upstream = {
        let tally = tally.clone();
        service_fn(move |_request: u32| {
            let tally = tally.clone();
            async move {
                tally.reached_upstream.fetch_add(1, Ordering::Relaxed);
                let now = start.elapsed();
                if now >= OUTAGE.0 && now < OUTAGE.1 {
                    // A dependency that is down is usually slow to say so.
                    sleep(Duration::from_millis(20)).await;
                    Err::<&'static str, BoxError>("upstream unavailable".into())
                } else {
                    Ok("in stock")
                }
            }
        })
    };
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(upstream);

    println!(
        "calling every 5 ms an upstream that is down from {} ms to {} ms\n",
        OUTAGE.0.as_millis(),
        OUTAGE.1.as_millis()
    );
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(2_500) {
        calls += 1;
        match service.clone().oneshot(calls).await {
            Ok(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
            Err(error) if error.is::<BreakerOpen>() => {
                tally.rejected.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => tally.failed.fetch_add(1, Ordering::Relaxed),
        };
        sleep(Duration::from_millis(5)).await;
    }

    let snapshot = breaker.snapshot();
    drop(service);
    drop(breaker);
    let transitions = printer.await?;

    let reached = tally.reached_upstream.load(Ordering::Relaxed);
    println!();
    println!("calls made            {calls:>6}");
    println!(
        "succeeded             {:>6}",
        tally.ok.load(Ordering::Relaxed)
    );
    println!(
        "failed at upstream    {:>6}",
        tally.failed.load(Ordering::Relaxed)
    );
    println!(
        "rejected (fast)       {:>6}",
        tally.rejected.load(Ordering::Relaxed)
    );
    println!("spared the upstream   {:>6}", u64::from(calls) - reached);
    println!("final state           {:?}", snapshot.state);

    let opened = transitions.contains(&State::Open);
    let closed_again = transitions.last() == Some(&State::Closed);
    if !(opened && closed_again && tally.rejected.load(Ordering::Relaxed) > 0) {
        return Err("the breaker did not open during the outage and close after it".into());
    }
    println!("\nthe breaker opened during the outage and closed once the upstream was back");
    Ok(())
}
