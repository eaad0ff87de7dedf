//! The breaker's rules, driven through its handle with paused time.
#![cfg(not(loom))]

use std::time::Duration;

use portcullis_breaker::{
    Breaker, BreakerConfig, BreakerEvent, State, Threshold, TransitionReason,
};
use portcullis_core::Outcome;
use tokio::time;

mod common;

use common::{breaker, record};

fn transitions(
    events: &mut portcullis_breaker::EventStream,
) -> Vec<(State, State, TransitionReason)> {
    let mut out = Vec::new();
    while let Some(event) = events.try_recv() {
        if let Ok(BreakerEvent::Transition {
            from, to, reason, ..
        }) = event
        {
            out.push((from, to, reason));
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_count_window_really_slides() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .failure_rate_threshold(50.0),
    );
    record(&b, Outcome::Success, 1_000);
    record(&b, Outcome::Failure, 4);
    assert_eq!(b.state(), State::Closed, "4 of the last 10 failed: 40 %");
    record(&b, Outcome::Failure, 1);
    assert_eq!(
        b.state(),
        State::Open,
        "5 of the last 10 failed: 50 % >= 50 %"
    );
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_calls_older_than_its_span() {
    let b = breaker(
        BreakerConfig::builder()
            .time_window(Duration::from_secs(10), 10)
            .minimum_calls(4)
            .failure_rate_threshold(50.0),
    );
    record(&b, Outcome::Failure, 3);
    time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        b.snapshot().buffered_calls,
        0,
        "the failures left the window"
    );
    record(&b, Outcome::Success, 3);
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.state(), State::Closed, "1 of 4 in the window failed");
    let snapshot = b.snapshot();
    assert_eq!((snapshot.buffered_calls, snapshot.failed_calls), (4, 1));
    assert_eq!(snapshot.failure_rate, Some(25.0));
}

#[tokio::test(start_paused = true)]
async fn rates_are_undefined_below_minimum_calls() {
    let b = breaker(BreakerConfig::builder().count_window(10).minimum_calls(5));
    record(&b, Outcome::Failure, 4);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().failure_rate, None);
    record(&b, Outcome::Success, 1);
    // The fifth call makes the rate defined: 80 % >= 50 %, even though it succeeded.
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_means_longer_than_the_threshold() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(4)
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(50.0),
    );
    for _ in 0..4 {
        let permit = b.try_acquire().unwrap();
        time::advance(Duration::from_millis(100)).await;
        permit.success();
    }
    assert_eq!(
        b.snapshot().slow_calls,
        0,
        "exactly the threshold is not slow"
    );
    let mut events = b.subscribe();
    for _ in 0..2 {
        let permit = b.try_acquire().unwrap();
        time::advance(Duration::from_millis(101)).await;
        permit.success();
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        transitions(&mut events),
        vec![(
            State::Closed,
            State::Open,
            TransitionReason::SlowCallRate { rate: 50.0 }
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_whatever_the_rate() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(100)
            .minimum_calls(100)
            .consecutive_failures(3),
    );
    record(&b, Outcome::Failure, 2);
    record(&b, Outcome::Success, 1);
    record(&b, Outcome::Failure, 2);
    assert_eq!(b.state(), State::Closed, "a success breaks the run");
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_never_count() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(1)
            .consecutive_failures(1),
    );
    record(&b, Outcome::Ignored, 100);
    let snapshot = b.snapshot();
    assert_eq!(snapshot.buffered_calls, 0);
    assert_eq!(b.state(), State::Closed);

    // In half-open an ignored probe gives its permit back.
    b.open_for(Duration::from_secs(1)).unwrap();
    time::advance(Duration::from_secs(1)).await;
    let b = b.clone();
    for _ in 0..10 {
        b.try_acquire()
            .expect("the permit came back")
            .record(Outcome::Ignored);
    }
    assert_eq!(b.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_name_and_retry_after_then_probes_lazily() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(2)
            .wait_in_open(Duration::from_secs(10))
            .permitted_calls_in_half_open(2),
    );
    record(&b, Outcome::Failure, 2);
    time::advance(Duration::from_secs(4)).await;
    let open = b.try_acquire().unwrap_err();
    assert_eq!(open.name(), "test");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(b.snapshot().not_permitted_calls, 1);

    time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        b.state(),
        State::Open,
        "no timer: still open until a call comes"
    );
    let first = b.try_acquire().expect("a probe");
    assert_eq!(b.state(), State::HalfOpen);
    let second = b.try_acquire().expect("a second probe");
    assert!(b.try_acquire().is_err(), "only two probes");
    first.success();
    assert_eq!(b.state(), State::HalfOpen, "judged over both probes");
    second.success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn probes_are_judged_over_all_their_outcomes() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(2)
            .permitted_calls_in_half_open(4)
            .failure_rate_threshold(50.0)
            .wait_in_open(Duration::from_secs(1)),
    );
    record(&b, Outcome::Failure, 2);
    time::advance(Duration::from_secs(1)).await;
    let mut events = b.subscribe();
    record(&b, Outcome::Success, 2);
    record(&b, Outcome::Failure, 2);
    assert_eq!(b.state(), State::Open, "2 of 4 probes failed: 50 %");
    let log = transitions(&mut events);
    assert_eq!(
        log[0],
        (
            State::Open,
            State::HalfOpen,
            TransitionReason::OpenWaitElapsed
        )
    );
    assert_eq!(
        log[1],
        (
            State::HalfOpen,
            State::Open,
            TransitionReason::ProbesFailed {
                failure_rate: 50.0,
                slow_call_rate: 0.0
            }
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_permit_back() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(1)
            .minimum_calls(1)
            .permitted_calls_in_half_open(1)
            .wait_in_open(Duration::from_secs(1)),
    );
    record(&b, Outcome::Failure, 1);
    time::advance(Duration::from_secs(1)).await;
    let probe = b.try_acquire().expect("probe");
    assert!(b.try_acquire().is_err(), "the one permit is taken");
    drop(probe);
    b.try_acquire().expect("the permit came back").success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn max_wait_in_half_open_opens_again() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(1)
            .minimum_calls(1)
            .permitted_calls_in_half_open(1)
            .wait_in_open(Duration::from_secs(1))
            .max_wait_in_half_open(Duration::from_secs(5)),
    );
    record(&b, Outcome::Failure, 1);
    time::advance(Duration::from_secs(1)).await;
    let _stuck = b.try_acquire().expect("probe");
    time::advance(Duration::from_secs(5)).await;
    let mut events = b.subscribe();
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        transitions(&mut events),
        vec![(
            State::HalfOpen,
            State::Open,
            TransitionReason::HalfOpenTimeout
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_result_from_before_a_transition_is_not_counted() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(1)
            .wait_in_open(Duration::from_secs(1)),
    );
    let late = b.try_acquire().unwrap();
    b.open_for(Duration::from_secs(1)).unwrap();
    time::advance(Duration::from_secs(1)).await;
    record(&b, Outcome::Success, 5);
    assert_eq!(b.state(), State::Closed);
    late.failure();
    assert_eq!(
        b.state(),
        State::Closed,
        "the closed-generation failure was dropped"
    );
    assert_eq!(b.snapshot().failed_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn open_waits_grow_exponentially_and_reset_on_close() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(1)
            .minimum_calls(1)
            .permitted_calls_in_half_open(1)
            .wait_in_open(Duration::from_secs(1))
            .open_wait_backoff(2.0, Duration::from_secs(5)),
    );
    record(&b, Outcome::Failure, 1);
    let mut waits = vec![b.try_acquire().unwrap_err().retry_after().unwrap()];
    for _ in 0..4 {
        time::advance(*waits.last().unwrap()).await;
        b.try_acquire().expect("probe").failure();
        waits.push(b.try_acquire().unwrap_err().retry_after().unwrap());
    }
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, vec![1, 2, 4, 5, 5], "doubles up to the cap");

    time::advance(Duration::from_secs(5)).await;
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), State::Closed);
    record(&b, Outcome::Failure, 1);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_its_bounds_and_is_seeded() {
    let waits = |seed| {
        let b = breaker(
            BreakerConfig::builder()
                .count_window(1)
                .minimum_calls(1)
                .wait_in_open(Duration::from_secs(10))
                .open_wait_jitter(0.2)
                .jitter_seed(seed),
        );
        (0..20)
            .map(|_| {
                b.reset();
                record(&b, Outcome::Failure, 1);
                b.try_acquire().unwrap_err().retry_after().unwrap()
            })
            .collect::<Vec<_>>()
    };
    let a = waits(7);
    assert_eq!(a, waits(7), "the same seed gives the same waits");
    assert_ne!(a, waits(8));
    for wait in &a {
        assert!(
            *wait >= Duration::from_secs(8) && *wait <= Duration::from_secs(10),
            "{wait:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn manual_states() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(1)
            .consecutive_failures(1),
    );
    let mut events = b.subscribe();

    b.disable();
    record(&b, Outcome::Failure, 10);
    assert_eq!(b.state(), State::Disabled);
    assert_eq!(b.snapshot().buffered_calls, 0, "disabled records nothing");
    let illegal = b.open_for(Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        (illegal.from(), illegal.to()),
        (State::Disabled, State::Open)
    );
    assert!(
        illegal.to_string().contains("close or reset it first"),
        "{illegal}"
    );
    assert!(b.half_open().is_err());

    b.force_open();
    let open = b.try_acquire().unwrap_err();
    assert_eq!(
        open.retry_after(),
        None,
        "forced open never leaves by itself"
    );
    time::advance(Duration::from_secs(3600)).await;
    assert!(b.try_acquire().is_err());
    b.force_open();

    b.metrics_only();
    record(&b, Outcome::Failure, 5);
    assert_eq!(b.state(), State::MetricsOnly, "metrics-only never rejects");
    assert_eq!(b.snapshot().failed_calls, 2);

    b.close();
    b.close();
    assert_eq!(b.state(), State::Closed);
    let log = transitions(&mut events);
    let states: Vec<_> = log.iter().map(|(from, to, _)| (*from, *to)).collect();
    assert_eq!(
        states,
        vec![
            (State::Closed, State::Disabled),
            (State::Disabled, State::ForcedOpen),
            (State::ForcedOpen, State::MetricsOnly),
            (State::MetricsOnly, State::Closed),
        ],
        "same-state transitions are silent"
    );
    assert!(
        log.iter()
            .all(|(_, _, reason)| *reason == TransitionReason::Manual)
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_only_reports_a_crossing_once_per_episode() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(4)
            .failure_rate_threshold(50.0),
    );
    b.metrics_only();
    let mut events = b.subscribe();
    let crossings = |events: &mut portcullis_breaker::EventStream| {
        let mut n = 0;
        while let Some(event) = events.try_recv() {
            if matches!(event, Ok(BreakerEvent::ThresholdCrossed { .. })) {
                n += 1;
            }
        }
        n
    };
    record(&b, Outcome::Failure, 8);
    assert_eq!(crossings(&mut events), 1);
    record(&b, Outcome::Success, 4);
    record(&b, Outcome::Failure, 4);
    assert_eq!(
        crossings(&mut events),
        1,
        "a new episode after the rate fell"
    );
}

#[tokio::test(start_paused = true)]
async fn open_for_half_open_and_reset() {
    let b = breaker(BreakerConfig::builder().count_window(2).minimum_calls(1));
    b.open_for(Duration::from_secs(30)).unwrap();
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(30))
    );
    b.open_for(Duration::from_secs(60)).unwrap();
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(60))
    );
    b.half_open().unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    let mut events = b.subscribe();
    b.reset();
    assert_eq!(b.state(), State::Closed);
    let snapshot = b.snapshot();
    assert_eq!(snapshot.not_permitted_calls, 0);
    let reset = std::iter::from_fn(|| events.try_recv())
        .any(|e| matches!(e, Ok(BreakerEvent::Reset { .. })));
    assert!(reset);
    assert!(b.half_open().is_err(), "half-open only from open");
}

#[tokio::test(start_paused = true)]
async fn a_crossing_is_reported_with_the_transition() {
    let b = breaker(BreakerConfig::builder().count_window(2).minimum_calls(2));
    let mut events = b.subscribe();
    record(&b, Outcome::Failure, 2);
    let all: Vec<_> = std::iter::from_fn(|| events.try_recv())
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(matches!(
        &all[0],
        BreakerEvent::ThresholdCrossed { threshold: Threshold::FailureRate { rate }, .. } if *rate == 100.0
    ));
    assert!(matches!(
        &all[1],
        BreakerEvent::Transition {
            to: State::Open,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn snapshots_are_plain_serde_data() {
    let b = breaker(BreakerConfig::builder().count_window(4).minimum_calls(2));
    record(&b, Outcome::Success, 1);
    record(&b, Outcome::Failure, 1);
    let json = serde_json::to_value(b.snapshot()).unwrap();
    assert_eq!(json["name"], "test");
    assert_eq!(json["state"], "OPEN");
    assert_eq!(json["failure_rate"], 50.0);
    assert_eq!(json["buffered_calls"], 2);
    assert_eq!(json["retry_after"], "30s");
    assert_eq!(json["minimum_calls"], 2);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_the_window_and_refuses_a_new_window_shape() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .wait_in_open(Duration::from_secs(5)),
    );
    record(&b, Outcome::Failure, 4);
    let looser = BreakerConfig::builder()
        .count_window(10)
        .minimum_calls(5)
        .wait_in_open(Duration::from_secs(9))
        .build()
        .unwrap();
    b.reconfigure(looser.clone()).unwrap();
    assert_eq!(b.config(), looser);
    assert_eq!(b.snapshot().minimum_calls, 5);
    assert_eq!(b.state(), State::Closed);
    record(&b, Outcome::Failure, 1);
    assert_eq!(
        b.state(),
        State::Open,
        "the four earlier failures were kept"
    );
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(9))
    );

    let other_shape = BreakerConfig::builder().count_window(20).build().unwrap();
    let error = b.reconfigure(other_shape).unwrap_err();
    assert_eq!(error.field(), "sliding_window");
    assert_eq!(b.config(), looser, "a refused update changes nothing");
    let invalid: BreakerConfig = toml::from_str("failure_rate_threshold = 101.0").unwrap();
    assert_eq!(
        b.reconfigure(invalid).unwrap_err().field(),
        "failure_rate_threshold"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_rejections_is_reported_in_batches_before_the_next_transition() {
    let b = breaker(BreakerConfig::builder().wait_in_open(Duration::from_secs(1)));
    let mut events = b.subscribe();
    b.force_open();
    // A thousand rejections within one report span: the first is reported
    // at once, the rest wait for the next report.
    for _ in 0..1_000 {
        assert!(b.try_acquire().is_err());
    }
    time::advance(Duration::from_millis(10)).await;
    for _ in 0..500 {
        assert!(b.try_acquire().is_err());
    }
    b.close();
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(event.expect("nothing lost"));
    }
    let counts: Vec<u64> = seen
        .iter()
        .filter_map(|event| match event {
            BreakerEvent::Rejected { count, .. } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(counts, [1, 1_000, 499], "batched, none lost: {seen:?}");
    assert!(
        matches!(
            seen.last(),
            Some(BreakerEvent::Transition {
                to: State::Closed,
                ..
            })
        ),
        "the pending rejections went out before the transition: {seen:?}"
    );
    assert_eq!(seen.len(), 5, "forced open, three reports, closed");
}

#[tokio::test(start_paused = true)]
async fn pending_rejections_are_reported_on_request() {
    let b = breaker(BreakerConfig::builder());
    b.force_open();
    let mut events = b.subscribe();
    for _ in 0..3 {
        assert!(b.try_acquire().is_err());
    }
    let first = events.try_recv().expect("the first at once").unwrap();
    assert!(
        matches!(first, BreakerEvent::Rejected { count: 1, .. }),
        "{first:?}"
    );
    assert!(events.try_recv().is_none(), "the other two wait");
    b.report_rejections();
    let rest = events.try_recv().expect("reported on request").unwrap();
    assert!(
        matches!(rest, BreakerEvent::Rejected { count: 2, .. }),
        "{rest:?}"
    );
    b.report_rejections();
    assert!(events.try_recv().is_none(), "nothing twice");
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_failures_in_a_row_with_its_buckets() {
    let b = breaker(
        BreakerConfig::builder()
            .time_window(Duration::from_secs(10), 10)
            .minimum_calls(100)
            .consecutive_failures(3),
    );
    record(&b, Outcome::Failure, 1);
    time::advance(Duration::from_secs(5)).await;
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        b.snapshot().consecutive_failures,
        1,
        "the first failure left the window with its bucket"
    );
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.state(), State::Closed, "two in a row within the window");
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.state(), State::Open, "three in a row within the window");

    b.reset();
    record(&b, Outcome::Failure, 2);
    time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        b.snapshot().consecutive_failures,
        0,
        "hours apart: forgotten"
    );
    record(&b, Outcome::Failure, 2);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_count_window_keeps_failures_in_a_row_until_a_success() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(100)
            .minimum_calls(100)
            .consecutive_failures(3),
    );
    record(&b, Outcome::Failure, 2);
    time::advance(Duration::from_secs(3600)).await;
    record(&b, Outcome::Ignored, 5);
    assert_eq!(
        b.snapshot().consecutive_failures,
        2,
        "no time, and ignored outcomes do not break a run"
    );
    record(&b, Outcome::Failure, 1);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn initial_states() {
    let start = |state| {
        breaker(
            BreakerConfig::builder()
                .initial_state(state)
                .wait_in_open(Duration::from_secs(3)),
        )
    };
    let open = start(State::Open);
    assert_eq!(open.state(), State::Open);
    assert_eq!(
        open.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(3)),
        "the open wait starts when the breaker is made"
    );
    time::advance(Duration::from_secs(3)).await;
    drop(open.try_acquire().expect("then it probes"));
    assert_eq!(open.state(), State::HalfOpen);

    let forced = start(State::ForcedOpen);
    time::advance(Duration::from_secs(3600)).await;
    assert!(forced.try_acquire().is_err());

    let disabled = start(State::Disabled);
    record(&disabled, Outcome::Failure, 100);
    assert_eq!(disabled.snapshot().buffered_calls, 0);

    let metrics = start(State::MetricsOnly);
    record(&metrics, Outcome::Failure, 100);
    assert_eq!(metrics.state(), State::MetricsOnly);
    assert_eq!(metrics.snapshot().failed_calls, 100);
    metrics.reset();
    assert_eq!(metrics.state(), State::Closed, "reset closes");
}

#[tokio::test(start_paused = true)]
async fn max_wait_in_half_open_can_close_instead() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(1)
            .permitted_calls_in_half_open(1)
            .wait_in_open(Duration::from_secs(1))
            .max_wait_in_half_open(Duration::from_secs(5))
            .state_after_max_wait_in_half_open(State::Closed),
    );
    record(&b, Outcome::Failure, 1);
    time::advance(Duration::from_secs(1)).await;
    let stuck = b.try_acquire().expect("probe");
    time::advance(Duration::from_secs(5)).await;
    let mut events = b.subscribe();
    b.try_acquire().expect("closed again").success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        transitions(&mut events),
        vec![(
            State::HalfOpen,
            State::Closed,
            TransitionReason::HalfOpenTimeout
        )]
    );
    stuck.failure();
    assert_eq!(b.snapshot().failed_calls, 0, "the late probe is stale");
    assert_eq!(b.snapshot().buffered_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn manual_open_until_and_open_with_the_configured_wait() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(2)
            .permitted_calls_in_half_open(1)
            .wait_in_open(Duration::from_secs(2))
            .open_wait_backoff(3.0, Duration::from_secs(30)),
    );
    let retry_after = |b: &Breaker| b.try_acquire().unwrap_err().retry_after();
    b.open_until(time::Instant::now() + Duration::from_secs(42))
        .unwrap();
    assert_eq!(retry_after(&b), Some(Duration::from_secs(42)));
    b.close();
    b.open().unwrap();
    assert_eq!(
        retry_after(&b),
        Some(Duration::from_secs(2)),
        "the base wait"
    );
    time::advance(Duration::from_secs(2)).await;
    let _probe = b.try_acquire().expect("a probe");
    b.open().unwrap();
    assert_eq!(
        retry_after(&b),
        Some(Duration::from_secs(6)),
        "from half-open: a re-open"
    );
    // A failed probe after a manual re-open grows the wait further.
    time::advance(Duration::from_secs(6)).await;
    b.try_acquire().expect("a probe").failure();
    assert_eq!(retry_after(&b), Some(Duration::from_secs(18)));
    b.open_until(time::Instant::now()).unwrap();
    drop(
        b.try_acquire()
            .expect("a past deadline lets the next call probe"),
    );
    b.force_open();
    assert!(b.open().is_err(), "not from a manual state");
}
