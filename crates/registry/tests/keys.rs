//! Keyed instances under a flood of new keys: a breaker on its way to
//! opening is never pushed out, keys past the bound share an overflow
//! instance instead of failing, and each eviction is one event.
#![cfg(not(loom))]

use portcullis_breaker::{Breaker, BreakerConfig, State};
use portcullis_core::Outcome;
use portcullis_registry::{AtKeyLimit, EventKind, OVERFLOW_KEY, Registry};

fn registry(max_keys: usize) -> Registry {
    Registry::builder()
        .max_keys(max_keys)
        .event_buffer(100_000)
        .breaker_default(
            BreakerConfig::builder()
                .count_window(10)
                .minimum_calls(5)
                .failure_rate_threshold(50.0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn record(breaker: &Breaker, outcome: Outcome, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().unwrap().record(outcome);
    }
}

#[tokio::test]
async fn a_flood_of_new_hosts_cannot_keep_a_failing_host_from_opening() {
    let registry = registry(100);
    let bad = registry
        .breakers()
        .get_keyed("upstream", "bad.example")
        .unwrap();
    // Three failures: below `minimum_calls`, still closed, on its way.
    record(&bad, Outcome::Failure, 3);
    assert_eq!(bad.state(), State::Closed);

    for i in 0..10_000 {
        let host = registry
            .breakers()
            .get_keyed("upstream", &format!("host-{i}.example"))
            .unwrap();
        record(&host, Outcome::Success, 1);
    }
    let kept = registry
        .breakers()
        .find("upstream", Some("bad.example"))
        .expect("a breaker holding failures is kept");
    assert_eq!(kept.snapshot().failed_calls, 3);
    assert_eq!(registry.breakers().len(), 100);

    // Two more failures through a fresh lookup, as a client would: it opens.
    let again = registry
        .breakers()
        .get_keyed("upstream", "bad.example")
        .unwrap();
    record(&again, Outcome::Failure, 2);
    assert_eq!(bad.state(), State::Open);
}

#[tokio::test]
async fn when_every_key_is_open_new_keys_share_the_overflow_breaker() {
    let registry = registry(4);
    for i in 0..4 {
        let host = registry
            .breakers()
            .get_keyed("upstream", &format!("down-{i}"))
            .unwrap();
        record(&host, Outcome::Failure, 5);
        assert_eq!(host.state(), State::Open);
    }
    let new = registry.breakers().get_keyed("upstream", "new-1").unwrap();
    assert_eq!(
        new.state(),
        State::Closed,
        "not refused: a breaker of its own kind"
    );
    assert!(new.try_acquire().is_ok());
    let other = registry.breakers().get_keyed("upstream", "new-2").unwrap();
    record(&other, Outcome::Failure, 5);
    assert_eq!(
        new.state(),
        State::Open,
        "new-1 and new-2 share one breaker"
    );
    let keys: Vec<_> = registry
        .breakers()
        .list()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(
        keys.last().unwrap().as_deref(),
        Some(OVERFLOW_KEY),
        "served, after the keys: {keys:?}"
    );
    assert_eq!(registry.len(), 5);

    // Once one of them closes and goes unused, a new key gets a place.
    registry
        .breakers()
        .find("upstream", Some("down-2"))
        .unwrap()
        .close();
    registry.breakers().get_keyed("upstream", "new-3").unwrap();
    assert!(
        registry
            .breakers()
            .find("upstream", Some("new-3"))
            .is_some()
    );
    assert!(
        registry
            .breakers()
            .find("upstream", Some("down-2"))
            .is_none()
    );
}

#[tokio::test]
async fn past_the_bound_a_strict_registry_refuses_with_a_typed_error() {
    let registry = Registry::builder()
        .max_keys(2)
        .at_key_limit(AtKeyLimit::Reject)
        .build()
        .unwrap();
    // Both busy: a permit held in each.
    let _held: Vec<_> = ["a", "b"]
        .map(|key| {
            registry
                .bulkheads()
                .get_keyed("db", key)
                .unwrap()
                .try_acquire()
                .unwrap()
        })
        .into();
    let error = registry.bulkheads().get_keyed("db", "c").unwrap_err();
    assert_eq!(
        error.to_string(),
        "bulkhead 'db' already has 2 keys, none of which can be evicted"
    );
    assert!(
        registry
            .bulkheads()
            .find("db", Some(OVERFLOW_KEY))
            .is_none()
    );
}

#[tokio::test]
async fn each_eviction_is_one_replaced_event() {
    let registry = registry(10);
    let mut feed = registry.watch();
    for i in 0..1_000 {
        registry
            .breakers()
            .get_keyed("upstream", &format!("h{i}"))
            .unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| feed.try_recv()).collect();
    assert_eq!(events.len(), 1_000, "one event per new key, not two");
    let added = events.iter().filter(|e| e.what == EventKind::Added).count();
    assert_eq!(added, 10);
    let last = events.last().unwrap();
    assert_eq!(last.key.as_deref(), Some("h999"));
    assert!(
        matches!(&last.what, EventKind::Replaced { evicted } if evicted.starts_with('h')),
        "{last:?}"
    );
    assert_eq!(registry.len(), 10);
}
