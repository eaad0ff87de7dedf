//! The registry itself: configs from a file, live updates that keep the
//! window, and get-or-create under concurrency.
#![cfg(not(loom))]

use std::sync::{Arc, Barrier};
use std::time::Duration;

use portcullis_breaker::{Breaker, State};
use portcullis_core::Outcome;
use portcullis_registry::{EventKind, Overrides, Registry, RegistryConfig};

fn fail(breaker: &Breaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
}

const FILE: &str = r#"
max_keys = 16

[breakers.default]
sliding_window = { type = "count", size = 10 }
minimum_calls = 5
wait_in_open = "30s"

[breakers.payments]
failure_rate_threshold = 50.0
"#;

#[tokio::test]
async fn a_config_update_keeps_the_window_of_a_live_breaker() {
    let config: RegistryConfig = toml::from_str(FILE).unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let payments = registry.breaker("payments");
    let mut feed = registry.watch();

    // One failure short of opening: the rate is undefined below 5 calls.
    fail(&payments, 4);
    assert_eq!(payments.state(), State::Closed);

    let changed = registry
        .update_breaker_config(
            "payments",
            Overrides::new()
                .set("failure_rate_threshold", 75.0)
                .set("wait_in_open", "5s"),
        )
        .unwrap();
    assert_eq!(changed, 1);
    let config = payments.config();
    assert_eq!(config.failure_rate_threshold(), 75.0);
    assert_eq!(config.wait_in_open(), Duration::from_secs(5));
    assert_eq!(
        config.minimum_calls(),
        5,
        "still inherited from the default"
    );
    assert_eq!(payments.snapshot().buffered_calls, 4, "the window was kept");
    assert_eq!(feed.try_recv().unwrap().what, EventKind::Changed);

    fail(&payments, 1);
    assert_eq!(payments.state(), State::Open, "the next failure opens it");
    let rejected = payments.try_acquire().unwrap_err();
    assert!(
        rejected.retry_after().unwrap() <= Duration::from_secs(5),
        "with the new wait"
    );

    // A fresh breaker with the same config would not have opened.
    let fresh = Breaker::from_config("fresh", registry.breaker_config("payments")).unwrap();
    fail(&fresh, 1);
    assert_eq!(fresh.state(), State::Closed);
}

#[tokio::test]
async fn a_refused_update_changes_nothing_and_names_the_field() {
    let config: RegistryConfig = toml::from_str(FILE).unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let payments = registry.breaker("payments");
    let eu = registry.breaker_for("payments", "eu").unwrap();
    let before = payments.config();

    let error = registry
        .update_breaker_config(
            "payments",
            Overrides::new().set("failure_rate_threshold", 0.0),
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "breakers.payments.failure_rate_threshold: must be in (0, 100], got 0"
    );
    let error = registry
        .update_breaker_config(
            "payments",
            Overrides::new().set(
                "sliding_window",
                serde_json::json!({"type": "count", "size": 20}),
            ),
        )
        .unwrap_err();
    assert_eq!(error.field(), "breakers.payments.sliding_window");
    let error = registry
        .update_breaker_config("payments", Overrides::new().set("minimum_calls", "five"))
        .unwrap_err();
    assert_eq!(error.field(), "breakers.payments.minimum_calls");
    assert_eq!(payments.config(), before);
    assert_eq!(eu.config(), before);
    assert_eq!(
        registry.breaker_overrides("payments"),
        Some(Overrides::new().set("failure_rate_threshold", 50.0))
    );
}

#[test]
fn config_files_are_checked_when_read() {
    let error = toml::from_str::<RegistryConfig>("[breaker.x]\nminimum_calls = 1").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `breaker`"),
        "{error}"
    );
    let config: RegistryConfig =
        toml::from_str("[breakers.default]\nwait_in_open = \"never\"").unwrap();
    let error = Registry::from_config(&config).unwrap_err();
    assert_eq!(error.field(), "breakers.default.wait_in_open");
    let config: RegistryConfig = toml::from_str("max_keys = 0").unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap_err().field(),
        "max_keys"
    );
}

#[test]
fn concurrent_callers_all_get_the_one_breaker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let registry = Registry::builder().max_keys(4).build().unwrap();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let registry = registry.clone();
            let barrier = barrier.clone();
            let runtime = runtime.handle().clone();
            std::thread::spawn(move || {
                let _guard = runtime.enter();
                barrier.wait();
                let plain = registry.breaker("shared");
                let keyed = registry
                    .breaker_for("per-host", &format!("host-{}", i % 4))
                    .unwrap();
                (plain, keyed, i % 4)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    assert_eq!(registry.len(), 1 + 4);
    handles[0].0.force_open();
    for (plain, keyed, host) in &handles {
        assert_eq!(plain.state(), State::ForcedOpen, "one shared breaker");
        if *host == 0 {
            keyed.force_open();
        }
    }
    for (_, keyed, host) in &handles {
        let expected = if *host == 0 {
            State::ForcedOpen
        } else {
            State::Closed
        };
        assert_eq!(keyed.state(), expected, "one breaker per key");
    }
    let added = registry
        .recent_events()
        .iter()
        .filter(|event| event.what == EventKind::Added)
        .count();
    assert_eq!(added, 5, "each was made once");
}
