//! The registry itself: configs from a file, live updates that keep the
//! window, get-or-create under concurrency, and bulkheads beside breakers.
#![cfg(not(loom))]

use std::sync::{Arc, Barrier};
use std::time::Duration;

use portcullis_breaker::{Breaker, State};
use portcullis_bulkhead::Bulkhead;
use portcullis_core::Outcome;
use portcullis_registry::{EventKind, OVERFLOW_KEY, Overrides, Registry, RegistryConfig};

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
    let payments = registry.breakers().get("payments");
    let mut feed = registry.watch();

    // One failure short of opening: the rate is undefined below 5 calls.
    fail(&payments, 4);
    assert_eq!(payments.state(), State::Closed);

    let changed = registry
        .breakers()
        .update_config(
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
    let fresh = Breaker::from_config("fresh", registry.breakers().config("payments")).unwrap();
    fail(&fresh, 1);
    assert_eq!(fresh.state(), State::Closed);
}

#[tokio::test]
async fn a_refused_update_changes_nothing_and_names_the_field() {
    let config: RegistryConfig = toml::from_str(FILE).unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let payments = registry.breakers().get("payments");
    let eu = registry.breakers().get_keyed("payments", "eu").unwrap();
    let before = payments.config();

    let error = registry
        .breakers()
        .update_config(
            "payments",
            Overrides::new().set("failure_rate_threshold", 0.0),
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "breakers.payments.failure_rate_threshold: must be in (0, 100], got 0"
    );
    let error = registry
        .breakers()
        .update_config(
            "payments",
            Overrides::new().set(
                "sliding_window",
                serde_json::json!({"type": "count", "size": 20}),
            ),
        )
        .unwrap_err();
    assert_eq!(error.field(), "breakers.payments.sliding_window");
    let error = registry
        .breakers()
        .update_config("payments", Overrides::new().set("minimum_calls", "five"))
        .unwrap_err();
    assert_eq!(error.field(), "breakers.payments.minimum_calls");
    assert_eq!(payments.config(), before);
    assert_eq!(eu.config(), before);
    assert_eq!(
        registry.breakers().overrides("payments"),
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
                let plain = registry.breakers().get("shared");
                let keyed = registry
                    .breakers()
                    .get_keyed("per-host", &format!("host-{}", i % 4))
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

const BULKHEADS: &str = r#"
[bulkheads.default]
max_concurrent_calls = 4

[bulkheads.db]
max_wait = "1s"
"#;

#[tokio::test]
async fn a_named_bulkhead_inherits_what_it_does_not_set() {
    let config: RegistryConfig = toml::from_str(BULKHEADS).unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let db = registry.bulkheads().get("db");
    assert_eq!(db.config().max_concurrent_calls(), 4, "from the default");
    assert_eq!(db.config().max_wait(), Duration::from_secs(1), "its own");
    let other = registry.bulkheads().get("search");
    assert_eq!(other.config().max_concurrent_calls(), 4);
    assert_eq!(other.config().max_wait(), Duration::ZERO);

    let config: RegistryConfig =
        toml::from_str("[bulkheads.db]\nmax_concurrent_calls = 0").unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap_err().to_string(),
        "bulkheads.db.max_concurrent_calls: must be in [1, 1000000], got 0"
    );
    let error = toml::from_str::<RegistryConfig>("[bulkhead.db]\nmax_wait = \"1s\"").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `bulkhead`"),
        "{error}"
    );
}

#[tokio::test]
async fn every_caller_gets_the_one_bulkhead() {
    let registry = Registry::builder()
        .bulkhead_config("db", Overrides::new().set("max_concurrent_calls", 2))
        .build()
        .unwrap();
    let a = registry.bulkheads().get("db");
    let b = registry.clone().bulkheads().get("db");
    let _permit = a.try_acquire().unwrap();
    assert_eq!(b.in_flight(), 1, "one pool of permits");
    assert_eq!(
        registry.bulkheads().find("db", None).unwrap().in_flight(),
        1
    );
    assert!(registry.bulkheads().find("other", None).is_none());

    let eu = registry.bulkheads().get_keyed("db", "eu").unwrap();
    assert_eq!(eu.in_flight(), 0, "a keyed bulkhead is its own pool");
    assert_eq!(eu.max_concurrent_calls(), 2, "with the config of its name");
    let again = registry.bulkheads().get_keyed("db", "eu").unwrap();
    let _held = again.try_acquire().unwrap();
    assert_eq!(eu.in_flight(), 1);

    // Breakers and bulkheads of the same name are apart, and both counted.
    registry.breakers().get("db");
    assert_eq!(registry.len(), 3);
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.breakers.len(), 1);
    let bulkheads: Vec<_> = snapshot
        .bulkheads
        .iter()
        .map(|keyed| {
            (
                keyed.snapshot.name.as_str(),
                keyed.key.as_deref(),
                keyed.snapshot.in_flight,
            )
        })
        .collect();
    assert_eq!(bulkheads, [("db", None, 1), ("db", Some("eu"), 1)]);

    registry
        .bulkheads()
        .register(Bulkhead::new("outside"))
        .unwrap();
    let error = registry
        .bulkheads()
        .register(Bulkhead::new("outside"))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "bulkhead 'outside' is already registered"
    );
    assert!(registry.bulkheads().remove("db", Some("eu")).is_some());
    assert!(registry.bulkheads().find("db", Some("eu")).is_none());
    assert_eq!(eu.in_flight(), 1, "a removed bulkhead keeps working");
    assert_eq!(registry.len(), 3);
}

#[tokio::test]
async fn a_live_bulkhead_refuses_a_changed_config() {
    let config: RegistryConfig = toml::from_str(BULKHEADS).unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let db = registry.bulkheads().get("db");
    let _permit = db.try_acquire().unwrap();

    let error = registry
        .bulkheads()
        .update_config("db", Overrides::new().set("max_concurrent_calls", 8))
        .unwrap_err();
    assert_eq!(error.field(), "bulkheads.db.max_concurrent_calls");
    assert!(
        error.message().contains("cannot be reconfigured yet"),
        "{error}"
    );
    let error = registry
        .bulkheads()
        .update_config("default", Overrides::new().set("max_concurrent_calls", 8))
        .unwrap_err();
    assert_eq!(error.field(), "bulkheads.db.max_concurrent_calls");
    assert_eq!(
        registry.bulkheads().config("db").max_concurrent_calls(),
        4,
        "unchanged"
    );
    assert_eq!(db.max_concurrent_calls(), 4);
    assert_eq!(db.in_flight(), 1, "the permit is still held");

    // The same config again is fine, and so is a change with no live one.
    assert_eq!(
        registry
            .bulkheads()
            .update_config("db", Overrides::new().set("max_wait", "1s"))
            .unwrap(),
        0
    );
    registry
        .bulkheads()
        .update_config("search", Overrides::new().set("max_concurrent_calls", 9))
        .unwrap();
    assert_eq!(registry.bulkheads().get("search").max_concurrent_calls(), 9);
}

const LIMITS: &str = r#"
max_keys = 2

[ratelimiters.default]
rate = 50
period = "1m"

[ratelimiters.search]
burst = 5

[budgets.default]
ratio = 0.1

[budgets.db]
min_per_second = 1
ttl = "30s"
"#;

#[tokio::test]
async fn rate_limiters_and_budgets_inherit_from_their_defaults() {
    let config: RegistryConfig = toml::from_str(LIMITS).unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let search = registry.rate_limiters().get("search").config();
    assert_eq!(search.rate(), 50, "from the default");
    assert_eq!(search.period(), Duration::from_secs(60), "from the default");
    assert_eq!(search.burst(), 5, "its own");
    let other = registry.rate_limiters().get("other").config();
    assert_eq!((other.rate(), other.burst()), (50, 50));
    let db = registry.budgets().get("db").config();
    assert_eq!(db.ratio(), 0.1);
    assert_eq!(db.min_per_second(), 1);
    assert_eq!(db.ttl(), Duration::from_secs(30));
    assert_eq!(registry.budgets().get("db").name(), "db");

    // Without a section, the documented defaults.
    let plain = Registry::new();
    assert_eq!(
        plain.rate_limiters().get("api").config(),
        portcullis_ratelimit::RateLimitConfig::default()
    );
    assert_eq!(plain.rate_limiters().get("api").config().rate(), 100);
    assert_eq!(
        plain.budgets().get("db").config(),
        portcullis_retry::BudgetConfig::default()
    );

    for (file, message) in [
        (
            "[ratelimiters.api]\nrate = 0",
            "ratelimiters.api.rate: must be in [1, 1000000000], got 0",
        ),
        (
            "[budgets.db]\nttl = \"2h\"",
            "budgets.db.ttl: must be in [1s, 1h], got 2h",
        ),
    ] {
        let config: RegistryConfig = toml::from_str(file).unwrap();
        assert_eq!(
            Registry::from_config(&config).unwrap_err().to_string(),
            message
        );
    }
    let config: RegistryConfig = toml::from_str("[ratelimiters.api]\nrat = 5").unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap_err().field(),
        "ratelimiters.api.rat"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_update_keeps_the_limiters_state() {
    let registry = Registry::builder()
        .rate_limiter_config("api", Overrides::new().set("rate", 10).set("burst", 4))
        .build()
        .unwrap();
    let api = registry.rate_limiters().get("api");
    let keyed = registry.rate_limiters().get_keyed("api", "acme").unwrap();
    for _ in 0..4 {
        api.try_acquire().unwrap();
    }
    assert!(api.try_acquire().is_err());
    keyed.try_acquire().unwrap();
    let mut feed = registry.watch();

    // A larger burst: the four calls admitted still count, so only the
    // difference is available, not a fresh burst of eight.
    let changed = registry
        .rate_limiters()
        .update_config("api", Overrides::new().set("rate", 10).set("burst", 8))
        .unwrap();
    assert_eq!(changed, 2, "the plain limiter and the keyed one");
    assert_eq!(api.config().burst(), 8);
    assert_eq!(api.remaining(), 4, "8 - 4 admitted");
    assert_eq!(keyed.remaining(), 7, "8 - 1 admitted");
    assert_eq!(api.snapshot().rejected, 1, "the count is kept");
    assert!(
        registry
            .rate_limiters()
            .find("api", None)
            .unwrap()
            .remaining()
            == 4,
        "the registry holds the same limiter"
    );
    let mut seen = Vec::new();
    while let Some(event) = feed.try_recv() {
        seen.push((event.what, event.key));
    }
    assert_eq!(
        seen,
        [
            (EventKind::Changed, None),
            (EventKind::Changed, Some("acme".to_owned()))
        ]
    );

    // An invalid update changes nothing.
    let error = registry
        .rate_limiters()
        .update_config("api", Overrides::new().set("rate", 0))
        .unwrap_err();
    assert_eq!(error.field(), "ratelimiters.api.rate");
    assert_eq!(api.config().burst(), 8);

    // A slower rate: the debt is paid back at the new rate.
    registry
        .rate_limiters()
        .update_config("api", Overrides::new().set("rate", 1).set("burst", 8))
        .unwrap();
    for _ in 0..4 {
        api.try_acquire().unwrap();
    }
    assert!(api.try_acquire().is_err());
    tokio::time::advance(Duration::from_millis(900)).await;
    assert!(api.try_acquire().is_err(), "one call a second now");
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(api.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_budget_update_keeps_the_balance_but_not_a_new_window() {
    let registry = Registry::builder()
        .budget_config(
            "db",
            Overrides::new().set("ratio", 0.5).set("min_per_second", 0),
        )
        .build()
        .unwrap();
    let db = registry.budgets().get("db");
    for _ in 0..4 {
        db.deposit();
    }
    assert_eq!(db.available(), 2);
    let changed = registry
        .budgets()
        .update_config(
            "db",
            Overrides::new().set("ratio", 1.0).set("min_per_second", 0),
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(db.available(), 2, "the balance is kept");
    db.deposit();
    assert_eq!(
        db.available(),
        3,
        "the new ratio counts from the next deposit"
    );

    let error = registry
        .budgets()
        .update_config("db", Overrides::new().set("ttl", "20s"))
        .unwrap_err();
    assert_eq!(error.field(), "budgets.db.ttl");
    assert!(
        error.message().contains("cannot change on a live budget"),
        "{error}"
    );
    assert_eq!(db.config().ttl(), Duration::from_secs(10), "unchanged");
    assert_eq!(db.config().ratio(), 1.0, "unchanged");

    // Once it is removed, the new window is taken by the next one.
    registry.budgets().remove("db", None).unwrap();
    registry
        .budgets()
        .update_config("db", Overrides::new().set("ttl", "20s"))
        .unwrap();
    assert_eq!(
        registry.budgets().get("db").config().ttl(),
        Duration::from_secs(20)
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_rate_limiters_are_bounded_and_a_busy_one_is_kept() {
    let registry = Registry::builder()
        .max_keys(2)
        .rate_limiter_config(
            "per-client",
            Overrides::new().set("rate", 1).set("burst", 1),
        )
        .build()
        .unwrap();
    let a = registry
        .rate_limiters()
        .get_keyed("per-client", "a")
        .unwrap();
    let b = registry
        .rate_limiters()
        .get_keyed("per-client", "b")
        .unwrap();
    a.try_acquire().unwrap();
    b.try_acquire().unwrap();
    // Both have spent their burst: neither may be forgotten, and `c`
    // shares the overflow limiter.
    let c = registry
        .rate_limiters()
        .get_keyed("per-client", "c")
        .unwrap();
    assert!(c.try_acquire().is_ok());
    let d = registry
        .rate_limiters()
        .get_keyed("per-client", "d")
        .unwrap();
    assert!(d.try_acquire().is_err(), "one overflow limiter for c and d");
    assert!(
        registry
            .rate_limiters()
            .find("per-client", Some(OVERFLOW_KEY))
            .is_some()
    );
    assert!(
        registry
            .rate_limiters()
            .find("per-client", Some("c"))
            .is_none()
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    // Both have it back: the least recently used one makes room.
    registry
        .rate_limiters()
        .get_keyed("per-client", "c")
        .unwrap();
    assert!(
        registry
            .rate_limiters()
            .find("per-client", Some("a"))
            .is_none()
    );
    assert!(
        registry
            .rate_limiters()
            .find("per-client", Some("b"))
            .is_some()
    );
    let same = registry
        .rate_limiters()
        .get_keyed("per-client", "b")
        .unwrap();
    assert!(same.try_acquire().is_ok());
    assert!(b.try_acquire().is_err(), "one limiter for every caller");
    assert_eq!(registry.len(), 3, "c, b and the overflow limiter");
}
