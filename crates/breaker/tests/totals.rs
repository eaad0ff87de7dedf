//! The totals of a snapshot, the durations over the window, and the
//! cumulative counters, written as specifications with paused time.
#![cfg(not(loom))]

use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig, BreakerSnapshot, State};
use portcullis_core::Outcome;
use tokio::time;

mod common;

use common::{breaker, record};

const MS: Duration = Duration::from_millis(1);

/// One call that takes `took`, then records `outcome`.
async fn call_taking(breaker: &Breaker, outcome: Outcome, took: Duration) {
    let permit = breaker.try_acquire().expect("admitted");
    time::advance(took).await;
    permit.record(outcome);
}

/// Successes, ignored and rejected calls: in the current state, then since
/// the breaker was made or reset.
fn totals(snapshot: &BreakerSnapshot) -> [u64; 6] {
    [
        snapshot.successful_calls_in_state,
        snapshot.ignored_calls_in_state,
        snapshot.not_permitted_calls_in_state,
        snapshot.successful_calls_since_reset,
        snapshot.ignored_calls_since_reset,
        snapshot.not_permitted_calls,
    ]
}

/// A breaker that trips on 3 failures among 6 calls, waits 1 s in open,
/// then closes after 2 successful probes.
fn tripping() -> Breaker {
    breaker(
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(4)
            .failure_rate_threshold(50.0)
            .permitted_calls_in_half_open(2)
            .wait_in_open(Duration::from_secs(1)),
    )
}

/// Each transition starts the `*_in_state` totals again; the
/// `*_since_reset` ones carry on through a trip, half-open and closing.
#[tokio::test(start_paused = true)]
async fn totals_in_state_start_again_at_each_transition() {
    let b = tripping();
    record(&b, Outcome::Success, 3);
    record(&b, Outcome::Ignored, 1);
    assert_eq!(totals(&b.snapshot()), [3, 1, 0, 3, 1, 0]);

    record(&b, Outcome::Failure, 3);
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        totals(&b.snapshot()),
        [0, 0, 0, 3, 1, 0],
        "open: nothing yet in this state"
    );
    for _ in 0..2 {
        assert!(b.try_acquire().is_err());
    }
    assert_eq!(totals(&b.snapshot()), [0, 0, 2, 3, 1, 2]);

    time::advance(Duration::from_secs(1)).await;
    record(&b, Outcome::Success, 1);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(
        totals(&b.snapshot()),
        [1, 0, 0, 4, 1, 2],
        "half-open: its probe alone"
    );
    record(&b, Outcome::Ignored, 1);
    assert_eq!(totals(&b.snapshot()), [1, 1, 0, 4, 2, 2]);

    record(&b, Outcome::Success, 1);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(totals(&b.snapshot()), [0, 0, 0, 5, 2, 2]);
    record(&b, Outcome::Success, 2);
    assert_eq!(totals(&b.snapshot()), [2, 0, 0, 7, 2, 2]);
}

/// A manual state starts its totals again too; `Disabled` records nothing,
/// and an outcome that comes after a transition counts nowhere.
#[tokio::test(start_paused = true)]
async fn manual_states_and_late_outcomes() {
    let b = tripping();
    record(&b, Outcome::Success, 2);
    let late = b.try_acquire().unwrap();
    b.metrics_only();
    late.success();
    record(&b, Outcome::Success, 1);
    assert_eq!(
        totals(&b.snapshot()),
        [1, 0, 0, 3, 0, 0],
        "the late success is in neither"
    );
    b.disable();
    record(&b, Outcome::Success, 5);
    record(&b, Outcome::Ignored, 5);
    assert_eq!(totals(&b.snapshot()), [0, 0, 0, 3, 0, 0]);
    assert_eq!(b.counters().successful_calls, 3);
    assert_eq!(b.counters().ignored_calls, 0);
}

/// A reset zeroes every total, those since the last reset included; the
/// counters go on.
#[tokio::test(start_paused = true)]
async fn reset_zeroes_the_totals_but_not_the_counters() {
    let b = tripping();
    record(&b, Outcome::Success, 3);
    record(&b, Outcome::Ignored, 2);
    record(&b, Outcome::Failure, 3);
    assert!(b.try_acquire().is_err());
    let before = b.counters();
    assert_eq!(
        (
            before.successful_calls,
            before.failed_calls,
            before.ignored_calls,
            before.not_permitted_calls
        ),
        (3, 3, 2, 1)
    );

    b.reset();
    let snapshot = b.snapshot();
    assert_eq!(totals(&snapshot), [0; 6]);
    let after = b.counters();
    assert_eq!(
        (
            after.successful_calls,
            after.failed_calls,
            after.ignored_calls,
            after.not_permitted_calls
        ),
        (3, 3, 2, 1),
        "a reset keeps the counters"
    );
    assert_eq!(after.transitions(State::Open, State::Closed), 1);
    assert_eq!(snapshot.counters, after, "the snapshot carries them");

    record(&b, Outcome::Success, 1);
    assert_eq!(totals(&b.snapshot()), [1, 0, 0, 1, 0, 0]);
    assert_eq!(b.counters().successful_calls, 4);
}

/// Transitions are counted by the state left and the state entered.
#[tokio::test(start_paused = true)]
async fn transitions_are_counted_by_from_and_to() {
    let b = tripping();
    record(&b, Outcome::Failure, 4);
    time::advance(Duration::from_secs(1)).await;
    record(&b, Outcome::Success, 2);
    assert_eq!(b.state(), State::Closed);

    let counters = b.counters();
    let happened: Vec<_> = counters
        .all_transitions()
        .filter(|&(_, _, count)| count > 0)
        .collect();
    assert_eq!(
        happened,
        [
            (State::Closed, State::Open, 1),
            (State::Open, State::HalfOpen, 1),
            (State::HalfOpen, State::Closed, 1),
        ]
    );
    assert_eq!(counters.all_transitions().count(), 30, "every pair, once");

    // Failed probes: half-open to open, and a second trip from closed.
    record(&b, Outcome::Failure, 4);
    time::advance(Duration::from_secs(1)).await;
    record(&b, Outcome::Failure, 2);
    assert_eq!(b.state(), State::Open);
    let counters = b.counters();
    assert_eq!(counters.transitions(State::Closed, State::Open), 2);
    assert_eq!(counters.transitions(State::Open, State::HalfOpen), 2);
    assert_eq!(counters.transitions(State::HalfOpen, State::Open), 1);
    assert_eq!(counters.transitions(State::HalfOpen, State::Closed), 1);
    assert_eq!(counters.transitions(State::Open, State::Closed), 0);
    assert_eq!(
        counters.failed_calls, 10,
        "failures in the window and among the probes"
    );
}

/// Calls by outcome: a slow call is counted as what it was, and again as
/// slow.
#[tokio::test(start_paused = true)]
async fn slow_calls_are_counted_besides_their_outcome() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .slow_call_duration(Duration::from_millis(100)),
    );
    call_taking(&b, Outcome::Success, 150 * MS).await;
    call_taking(&b, Outcome::Failure, 150 * MS).await;
    call_taking(&b, Outcome::Success, 50 * MS).await;
    call_taking(&b, Outcome::Ignored, 150 * MS).await;
    let counters = b.counters();
    assert_eq!(
        (
            counters.successful_calls,
            counters.failed_calls,
            counters.slow_calls,
            counters.ignored_calls
        ),
        (2, 1, 2, 1)
    );
}

/// The durations are those of the calls in the window: an average over
/// them, which forgets the calls that left it.
#[tokio::test(start_paused = true)]
async fn the_average_duration_is_over_the_count_window() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(2)
            .record_call_durations(true),
    );
    let snapshot = b.snapshot();
    assert_eq!(
        (snapshot.timed_calls, snapshot.average_call_duration),
        (0, None)
    );
    call_taking(&b, Outcome::Success, 10 * MS).await;
    call_taking(&b, Outcome::Success, 30 * MS).await;
    let snapshot = b.snapshot();
    assert_eq!(snapshot.timed_calls, 2);
    assert_eq!(snapshot.total_call_duration, Some(40 * MS));
    assert_eq!(snapshot.average_call_duration, Some(20 * MS));

    call_taking(&b, Outcome::Success, 50 * MS).await;
    let snapshot = b.snapshot();
    assert_eq!(
        snapshot.average_call_duration,
        Some(40 * MS),
        "the 10 ms call left the window"
    );
    assert_eq!(snapshot.total_call_duration, Some(80 * MS));
}

/// A time window forgets durations with their buckets.
#[tokio::test(start_paused = true)]
async fn the_average_duration_is_over_the_time_window() {
    let b = breaker(
        BreakerConfig::builder()
            .time_window(Duration::from_secs(10), 10)
            .record_call_durations(true),
    );
    call_taking(&b, Outcome::Success, 10 * MS).await;
    call_taking(&b, Outcome::Failure, 30 * MS).await;
    assert_eq!(b.snapshot().average_call_duration, Some(20 * MS));

    time::advance(Duration::from_secs(5)).await;
    call_taking(&b, Outcome::Success, 60 * MS).await;
    assert_eq!(
        b.snapshot().average_call_duration,
        Some(Duration::from_micros(33_333))
    );

    time::advance(Duration::from_secs(5)).await;
    let snapshot = b.snapshot();
    assert_eq!(
        (snapshot.timed_calls, snapshot.average_call_duration),
        (1, Some(60 * MS)),
        "the first two calls left the window"
    );
    time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.snapshot().total_call_duration, None);
}

/// In half-open the durations are the probes'; in open after the probes
/// failed, still theirs; calls are not timed unless asked.
#[tokio::test(start_paused = true)]
async fn half_open_reports_the_durations_of_its_probes() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(2)
            .permitted_calls_in_half_open(2)
            .wait_in_open(Duration::from_secs(1))
            .record_call_durations(true),
    );
    call_taking(&b, Outcome::Failure, 100 * MS).await;
    call_taking(&b, Outcome::Failure, 300 * MS).await;
    assert_eq!(b.snapshot().average_call_duration, Some(200 * MS));

    time::advance(Duration::from_secs(1)).await;
    call_taking(&b, Outcome::Failure, 10 * MS).await;
    let snapshot = b.snapshot();
    assert_eq!(snapshot.state, State::HalfOpen);
    assert_eq!(
        (snapshot.timed_calls, snapshot.average_call_duration),
        (1, Some(10 * MS))
    );
    call_taking(&b, Outcome::Failure, 30 * MS).await;
    let snapshot = b.snapshot();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.average_call_duration, Some(20 * MS));

    b.disable();
    assert_eq!(b.snapshot().total_call_duration, None);

    let untimed = tripping();
    call_taking(&untimed, Outcome::Success, 10 * MS).await;
    let snapshot = untimed.snapshot();
    assert_eq!(
        (snapshot.timed_calls, snapshot.total_call_duration),
        (0, None),
        "without a slow-call rule calls are timed only when asked"
    );
}

/// Reconfiguring a live breaker changes no counter.
#[tokio::test(start_paused = true)]
async fn reconfigure_leaves_the_counters_alone() {
    let b = tripping();
    record(&b, Outcome::Success, 2);
    record(&b, Outcome::Failure, 2);
    assert!(b.try_acquire().is_err());
    let before = b.counters();
    let relaxed = BreakerConfig::builder()
        .count_window(10)
        .minimum_calls(2)
        .record_call_durations(true)
        .build()
        .unwrap();
    b.reconfigure(relaxed).unwrap();
    assert_eq!(b.counters(), before);
    assert_eq!(before.not_permitted_calls, 1);
}

/// The counters serialize as plain data, transitions as a list of those
/// that happened.
#[tokio::test(start_paused = true)]
async fn counters_serialize_as_plain_data() {
    let b = tripping();
    record(&b, Outcome::Failure, 4);
    let json = serde_json::to_value(b.snapshot()).unwrap();
    assert_eq!(json["counters"]["failed_calls"], 4);
    assert_eq!(
        json["counters"]["transitions"],
        serde_json::json!([{ "from": "CLOSED", "to": "OPEN", "count": 1 }])
    );
    assert_eq!(json["average_call_duration"], serde_json::Value::Null);
}
