//! What the breaker reports — its snapshot and its events — written as
//! specifications, with paused time.
#![cfg(not(loom))]

use std::time::Duration;

use portcullis_breaker::{BreakerConfig, BreakerEvent, BreakerSnapshot, State, Threshold};
use portcullis_core::Outcome;
use tokio::time;

mod common;

use common::{breaker, record};

/// The call figures of a snapshot: buffered, failed, slow, their rates, and
/// the permits in use.
fn figures(snapshot: &BreakerSnapshot) -> (u64, u64, u64, Option<f32>, Option<f32>, u32) {
    (
        snapshot.buffered_calls,
        snapshot.failed_calls,
        snapshot.slow_calls,
        snapshot.failure_rate,
        snapshot.slow_call_rate,
        snapshot.permits_in_use,
    )
}

/// A trip, then each probe's effect on the snapshot: half-open reports its
/// probes, never the window from before the trip; open reports what opened
/// it; a new half-open episode starts from nothing.
#[tokio::test(start_paused = true)]
async fn half_open_reports_its_probes() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(4)
            .failure_rate_threshold(50.0)
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(50.0)
            .permitted_calls_in_half_open(4)
            .wait_in_open(Duration::from_secs(1)),
    );
    record(&b, Outcome::Failure, 4);
    let open = b.snapshot();
    assert_eq!(open.state, State::Open);
    assert_eq!(
        figures(&open),
        (4, 4, 0, Some(100.0), Some(0.0), 0),
        "open after a trip: the window that tripped it"
    );
    assert_eq!(open.consecutive_failures, 4);
    assert_eq!(open.permitted_calls_in_half_open, 4);

    time::advance(Duration::from_secs(1)).await;
    let first = b.try_acquire().expect("the first probe");
    let half_open = b.snapshot();
    assert_eq!(half_open.state, State::HalfOpen);
    assert_eq!(
        figures(&half_open),
        (0, 0, 0, None, None, 1),
        "no probe outcome yet, one permit taken"
    );
    assert_eq!(half_open.consecutive_failures, 0);

    let second = b.try_acquire().expect("a second probe");
    assert_eq!(b.snapshot().permits_in_use, 2);
    first.success();
    assert_eq!(
        figures(&b.snapshot()),
        (1, 0, 0, Some(0.0), Some(0.0), 1),
        "one successful probe: rates over it alone"
    );

    second.failure();
    let snapshot = b.snapshot();
    assert_eq!(figures(&snapshot), (2, 1, 0, Some(50.0), Some(0.0), 0));
    assert_eq!(snapshot.consecutive_failures, 1);

    let slow = b.try_acquire().expect("a third probe");
    time::advance(Duration::from_millis(150)).await;
    slow.success();
    let snapshot = b.snapshot();
    assert_eq!(snapshot.buffered_calls, 3);
    assert_eq!(snapshot.slow_calls, 1);
    assert_eq!(snapshot.slow_call_rate, Some(100.0 / 3.0));
    assert_eq!(snapshot.consecutive_failures, 0, "a success breaks the run");

    // A cancelled probe and an ignored one give their permits back and
    // count nowhere.
    drop(b.try_acquire().expect("a fourth probe"));
    b.try_acquire()
        .expect("a fourth probe")
        .record(Outcome::Ignored);
    assert_eq!(figures(&b.snapshot()).0, 3);
    assert_eq!(b.snapshot().permits_in_use, 0);

    // The last probe fails: two of four failed, 50 % >= 50 %.
    b.try_acquire().expect("the last probe").failure();
    let reopened = b.snapshot();
    assert_eq!(reopened.state, State::Open);
    assert_eq!(
        figures(&reopened),
        (4, 2, 1, Some(50.0), Some(25.0), 0),
        "open after the probes failed: the probes"
    );

    time::advance(Duration::from_secs(1)).await;
    let probe = b.try_acquire().expect("a probe of the next episode");
    assert_eq!(
        figures(&b.snapshot()),
        (0, 0, 0, None, None, 1),
        "a new episode starts from nothing"
    );
    probe.success();
    record(&b, Outcome::Success, 3);
    let closed = b.snapshot();
    assert_eq!(closed.state, State::Closed);
    assert_eq!(
        figures(&closed),
        (0, 0, 0, None, None, 0),
        "closed: a fresh window"
    );
}

/// The manual states that record nothing report nothing: not the window
/// from before.
#[tokio::test(start_paused = true)]
async fn disabled_and_forced_open_report_no_calls() {
    let b = breaker(BreakerConfig::builder().count_window(10).minimum_calls(2));
    record(&b, Outcome::Success, 1);
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.state(), State::Open);
    b.disable();
    record(&b, Outcome::Failure, 3);
    assert_eq!(figures(&b.snapshot()), (0, 0, 0, None, None, 0));
    assert_eq!(b.snapshot().consecutive_failures, 0);
    b.force_open();
    assert_eq!(figures(&b.snapshot()), (0, 0, 0, None, None, 0));
    b.metrics_only();
    record(&b, Outcome::Failure, 1);
    assert_eq!(figures(&b.snapshot()), (1, 1, 0, None, None, 0));
}

/// The thresholds crossed in metrics-only, in order.
fn crossings(events: &mut portcullis_breaker::EventStream) -> Vec<Threshold> {
    let mut out = Vec::new();
    while let Some(event) = events.try_recv() {
        if let Ok(BreakerEvent::ThresholdCrossed { threshold, .. }) = event {
            out.push(threshold);
        }
    }
    out
}

/// In metrics-only each threshold has episodes of its own: a slow-call
/// crossing is reported while the failure rate is still above its
/// threshold, and each is reported once until its own figure falls below.
#[tokio::test(start_paused = true)]
async fn metrics_only_reports_each_threshold_once_per_episode() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(4)
            .failure_rate_threshold(50.0)
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(50.0)
            .consecutive_failures(3),
    );
    b.metrics_only();
    let mut events = b.subscribe();
    let slow_success = || {
        let permit = b.try_acquire().unwrap();
        async move {
            time::advance(Duration::from_millis(101)).await;
            permit.success();
        }
    };

    record(&b, Outcome::Failure, 3);
    assert_eq!(
        crossings(&mut events),
        [Threshold::ConsecutiveFailures { count: 3 }],
        "three in a row; the rates are undefined below four calls"
    );
    record(&b, Outcome::Failure, 3);
    assert_eq!(
        crossings(&mut events),
        [Threshold::FailureRate { rate: 100.0 }],
        "the run is still the same episode; the failure rate starts one"
    );

    for _ in 0..5 {
        slow_success().await;
    }
    assert_eq!(
        crossings(&mut events),
        [Threshold::SlowCallRate { rate: 50.0 }],
        "5 of 10 slow, while 6 of 10 failed: the slow-call crossing is not hidden"
    );
    let snapshot = b.snapshot();
    assert_eq!(
        (snapshot.failure_rate, snapshot.slow_call_rate),
        (Some(50.0), Some(50.0))
    );

    // One more slow success: 4 of 10 failed, the failure episode is over
    // (reported by nothing); the slow calls are 6 of 10.
    slow_success().await;
    assert!(crossings(&mut events).is_empty());
    assert_eq!(b.snapshot().failure_rate, Some(40.0));
    // Four failures push out the four older ones; the fifth, a success:
    // 5 of 10, a new failure episode, and a new run of failures. The slow
    // calls stay at 5 of 10: still the same slow-call episode.
    record(&b, Outcome::Failure, 5);
    assert_eq!(
        crossings(&mut events),
        [
            Threshold::ConsecutiveFailures { count: 3 },
            Threshold::FailureRate { rate: 50.0 }
        ]
    );
    assert_eq!(b.snapshot().slow_call_rate, Some(50.0));
    assert_eq!(b.state(), State::MetricsOnly, "never rejects");
}

/// A count window in metrics-only: the successes between the failures keep
/// the failure rate at or above the threshold, so the crossing is one
/// episode, reported once.
#[tokio::test(start_paused = true)]
async fn metrics_only_successes_between_failures_do_not_end_the_episode() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(4)
            .failure_rate_threshold(50.0),
    );
    b.metrics_only();
    let mut events = b.subscribe();
    record(&b, Outcome::Failure, 4);
    for _ in 0..10 {
        record(&b, Outcome::Success, 1);
        record(&b, Outcome::Failure, 1);
        assert!(b.snapshot().failure_rate >= Some(50.0));
    }
    assert_eq!(
        crossings(&mut events),
        [Threshold::FailureRate { rate: 100.0 }],
        "one crossing for the whole episode"
    );
    record(&b, Outcome::Success, 2);
    assert_eq!(b.snapshot().failure_rate, Some(25.0), "the episode is over");
    record(&b, Outcome::Failure, 1);
    assert_eq!(
        crossings(&mut events),
        [Threshold::FailureRate { rate: 50.0 }],
        "a new episode"
    );
}

/// Per-call events go only to the subscribers who asked for them, with each
/// outcome's duration, before the transition that the outcome causes.
#[tokio::test(start_paused = true)]
async fn per_call_events_for_those_who_ask() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(3)
            .minimum_calls(3)
            .slow_call_duration(Duration::from_millis(50)),
    );
    let mut plain = b.subscribe();
    let mut calls = b.subscribe_with_calls();
    for (outcome, millis) in [
        (Outcome::Success, 10),
        (Outcome::Ignored, 20),
        (Outcome::Failure, 60),
        (Outcome::Failure, 5),
    ] {
        let permit = b.try_acquire().unwrap();
        time::advance(Duration::from_millis(millis)).await;
        permit.record(outcome);
    }
    assert_eq!(b.state(), State::Open);
    let seen: Vec<_> = std::iter::from_fn(|| calls.try_recv())
        .map(Result::unwrap)
        .collect();
    let call = |outcome, millis, slow| BreakerEvent::Call {
        name: "test".into(),
        outcome,
        duration: Duration::from_millis(millis),
        slow,
    };
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        seen[..4],
        [
            call(Outcome::Success, 10, false),
            call(Outcome::Ignored, 20, false),
            call(Outcome::Failure, 60, true),
            call(Outcome::Failure, 5, false),
        ]
    );
    assert!(matches!(seen[4], BreakerEvent::ThresholdCrossed { .. }));
    assert!(matches!(
        seen[5],
        BreakerEvent::Transition {
            to: State::Open,
            ..
        }
    ));
    let plain: Vec<_> = std::iter::from_fn(|| plain.try_recv())
        .map(Result::unwrap)
        .collect();
    assert_eq!(plain[..], seen[4..], "a plain subscriber gets no call");
}
