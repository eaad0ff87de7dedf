//! Every endpoint of the registry service over loopback, with a real hyper
//! server, including every bad input; and the service mounted in axum.
#![cfg(not(loom))]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Sse, get, send, serve};
use portcullis_breaker::{Breaker, BreakerConfig, State};
use portcullis_core::Outcome;
use portcullis_registry::{Overrides, Registry, RegistryService, RouteOutcome};

const TOKEN: &str = "s3cr3t-t0ken-0123456789";

fn registry() -> Registry {
    Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(4)
                .minimum_calls(2)
                .wait_in_open(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn fail(breaker: &Breaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
}

async fn controlled(registry: &Registry) -> std::net::SocketAddr {
    serve(
        RegistryService::builder(registry.clone())
            .control_token(TOKEN)
            .build()
            .unwrap(),
    )
    .await
}

async fn post_state(addr: std::net::SocketAddr, path: &str, body: &str) -> common::Reply {
    let auth = format!("Bearer {TOKEN}");
    send(
        addr,
        "POST",
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn health_is_up_degraded_or_down_for_a_critical_breaker() {
    let registry = registry();
    let addr = serve(
        RegistryService::builder(registry.clone())
            .critical_breakers(["payments"])
            .build()
            .unwrap(),
    )
    .await;

    let reply = get(addr, "/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["status"], "UP");
    assert_eq!(reply.json()["breakers"]["total"], 0);

    let search = registry.breakers().get("search");
    let payments = registry.breakers().get("payments");
    assert_eq!(get(addr, "/health").await.json()["status"], "UP");

    search.force_open();
    let reply = get(addr, "/health").await;
    assert_eq!(reply.status, 200);
    let health = reply.json();
    assert_eq!(health["status"], "DEGRADED");
    assert_eq!(health["breakers"]["total"], 2);
    assert_eq!(
        health["breakers"]["not_closed"],
        serde_json::json!([{"name": "search", "key": null, "state": "FORCED_OPEN", "critical": false}])
    );

    // A manual state that lets traffic through still counts as not closed.
    search.disable();
    assert_eq!(get(addr, "/health").await.json()["status"], "DEGRADED");

    fail(&payments, 2);
    assert_eq!(payments.state(), State::Open);
    let reply = get(addr, "/health").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["status"], "DOWN");

    // Probing is not down.
    payments.half_open().unwrap();
    let reply = get(addr, "/health").await;
    assert_eq!(
        (reply.status, reply.json()["status"].clone()),
        (200, "DEGRADED".into())
    );

    search.close();
    payments.close();
    assert_eq!(get(addr, "/health").await.json()["status"], "UP");
}

#[tokio::test]
async fn live_is_always_up_and_ready_follows_the_named_breakers() {
    let registry = registry();
    let addr = serve(
        RegistryService::builder(registry.clone())
            .readiness_breakers(["db"])
            .build()
            .unwrap(),
    )
    .await;
    let other = registry.breakers().get("other");
    other.force_open();
    let live = get(addr, "/health/live").await;
    assert_eq!(
        (live.status, live.json()),
        (200, serde_json::json!({"status": "UP"}))
    );

    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 200, "another breaker does not matter");
    assert_eq!(ready.json()["status"], "UP");

    let db_eu = registry.breakers().get_keyed("db", "eu").unwrap();
    registry.breakers().get("db");
    let ready = get(addr, "/health/ready").await.json();
    assert_eq!(ready["breakers"].as_array().unwrap().len(), 2);
    db_eu.force_open();
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status, 503, "a keyed db breaker is open");
    assert_eq!(ready.json()["status"], "DOWN");
    assert_eq!(ready.json()["breakers"][1]["key"], "eu");
    assert_eq!(get(addr, "/health/live").await.status, 200);
}

#[tokio::test]
async fn breakers_are_served_with_their_figures() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    fail(&payments, 2);
    let _ = payments.try_acquire();
    registry.breakers().get("inventory");
    registry
        .breakers()
        .get_keyed("upstream", "api.example/v1")
        .unwrap();
    let addr = serve(RegistryService::new(registry.clone())).await;

    let all = get(addr, "/health/breakers").await;
    assert_eq!(all.status, 200);
    let list = all.json()["breakers"].as_array().unwrap().clone();
    let names: Vec<_> = list
        .iter()
        .map(|b| (b["name"].clone(), b["key"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("inventory".into(), serde_json::Value::Null),
            ("payments".into(), serde_json::Value::Null),
            ("upstream".into(), "api.example/v1".into()),
        ]
    );
    let one = get(addr, "/health/breakers/payments").await;
    assert_eq!(one.status, 200);
    let figures = one.json();
    assert_eq!(figures["state"], "OPEN");
    assert_eq!(figures["failure_rate"], 100.0);
    assert_eq!(figures["slow_call_rate"], 0.0);
    assert_eq!(figures["buffered_calls"], 2);
    assert_eq!(figures["failed_calls"], 2);
    assert_eq!(figures["slow_calls"], 0);
    assert_eq!(figures["not_permitted_calls"], 1);
    assert_eq!(figures["failure_rate_threshold"], 50.0);
    assert_eq!(figures["slow_call_rate_threshold"], 100.0);
    assert_eq!(figures["minimum_calls"], 2);
    let wait = portcullis_core::duration::parse(figures["retry_after"].as_str().unwrap()).unwrap();
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    let without_wait = |mut value: serde_json::Value| {
        value.as_object_mut().unwrap().remove("retry_after");
        value
    };
    assert_eq!(without_wait(figures), without_wait(list[1].clone()));

    let keyed = get(addr, "/health/breakers/upstream/api.example%2Fv1").await;
    assert_eq!(keyed.status, 200);
    assert_eq!(keyed.json()["key"], "api.example/v1");
    assert_eq!(keyed.json()["state"], "CLOSED");

    let missing = get(addr, "/health/breakers/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no circuit breaker named 'nope'");
    let missing = get(addr, "/health/breakers/upstream/other").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"],
        "no circuit breaker named 'upstream' with key 'other'"
    );
    assert_eq!(
        get(addr, "/health/breakers/upstream").await.status,
        404,
        "only keyed ones"
    );
    assert_eq!(get(addr, "/health/breakers/%FF").await.status, 400);
    assert_eq!(registry.len(), 3, "serving never makes a breaker");
}

/// Rates are served with two decimals and measured waits to the
/// millisecond, not as `33.33333206176758` and `"59s999ms412us"`.
#[tokio::test]
async fn figures_are_served_rounded_for_people() {
    let registry = Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(3)
                .minimum_calls(3)
                .failure_rate_threshold(30.0)
                .wait_in_open(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let thirds = registry.breakers().get("thirds");
    fail(&thirds, 1);
    for _ in 0..2 {
        thirds.try_acquire().unwrap().record(Outcome::Success);
    }
    let addr = serve(RegistryService::new(registry.clone())).await;
    // Real time passes between the trip and the read: the wait is not a
    // whole number of milliseconds any more.
    tokio::time::sleep(Duration::from_micros(1_300)).await;
    let figures = get(addr, "/health/breakers/thirds").await.json();
    assert_eq!(figures["state"], "OPEN");
    assert_eq!(figures["failure_rate"], serde_json::json!(33.33));
    let wait = figures["retry_after"].as_str().unwrap().to_owned();
    assert!(
        wait.ends_with("ms") && !wait.contains("us") && !wait.contains("ns"),
        "{wait}"
    );
}

#[tokio::test]
async fn bulkheads_are_served_with_their_figures() {
    let registry = Registry::builder()
        .bulkhead_config("db", Overrides::new().set("max_concurrent_calls", 2))
        .bulkhead_config("tight", Overrides::new().set("max_concurrent_calls", 1))
        .build()
        .unwrap();
    let db = registry.bulkheads().get("db");
    let _permit = db.try_acquire().unwrap();
    let tight = registry.bulkheads().get("tight");
    let _only = tight.try_acquire().unwrap();
    assert!(tight.try_acquire().is_err());
    registry
        .bulkheads()
        .get_keyed("upstream", "api.example/v1")
        .unwrap();
    let addr = serve(RegistryService::new(registry.clone())).await;

    let all = get(addr, "/health/bulkheads").await;
    assert_eq!(all.status, 200);
    let list = all.json()["bulkheads"].as_array().unwrap().clone();
    let names: Vec<_> = list
        .iter()
        .map(|b| (b["name"].clone(), b["key"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("db".into(), serde_json::Value::Null),
            ("tight".into(), serde_json::Value::Null),
            ("upstream".into(), "api.example/v1".into()),
        ]
    );
    let one = get(addr, "/health/bulkheads/db").await;
    assert_eq!(one.status, 200);
    let figures = one.json();
    assert_eq!(figures["in_flight"], 1, "the permit held");
    assert_eq!(figures["available"], 1);
    assert_eq!(figures["max_concurrent_calls"], 2);
    assert_eq!(figures["queued"], 0);
    assert_eq!(figures["rejected"], 0);
    assert_eq!(figures["max_wait"], "0s");
    assert_eq!(figures, list[0]);
    let full = get(addr, "/health/bulkheads/tight").await.json();
    assert_eq!(full["in_flight"], 1);
    assert_eq!(full["available"], 0);
    assert_eq!(full["rejected"], 1);

    let keyed = get(addr, "/health/bulkheads/upstream/api.example%2Fv1").await;
    assert_eq!(keyed.status, 200);
    assert_eq!(keyed.json()["key"], "api.example/v1");
    assert_eq!(keyed.json()["in_flight"], 0);

    let missing = get(addr, "/health/bulkheads/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no bulkhead named 'nope'");
    let missing = get(addr, "/health/bulkheads/upstream/other").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"],
        "no bulkhead named 'upstream' with key 'other'"
    );
    assert_eq!(
        get(addr, "/health/bulkheads/upstream").await.status,
        404,
        "only keyed ones"
    );
    assert_eq!(
        get(addr, "/health/breakers/db").await.status,
        404,
        "a bulkhead is not a breaker"
    );
    for deep in ["/health/bulkheads/db/a/b", "/health/breakers/x/a/b"] {
        assert_eq!(get(addr, deep).await.status, 404, "too deep: {deep}");
    }
    assert_eq!(registry.len(), 3, "serving never makes a bulkhead");
    let health = get(addr, "/health").await;
    assert_eq!(
        health.json()["status"],
        "UP",
        "bulkheads do not degrade health"
    );
}

/// One sample of a Prometheus exposition.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the Prometheus text format (0.0.4): every sample
/// belongs to a family declared by `# TYPE` before it, families are not
/// interleaved, a family has one HELP and one TYPE, counters end in
/// `_total`, names and label names are well formed, label values are
/// escaped, values parse, and no series appears twice.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = HashSet::new();
    let mut finished = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').expect("HELP has a text");
            assert!(is_name(name, true), "{line}");
            assert!(helps.insert(name.to_owned()), "second HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(is_name(name, true), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second TYPE: {line}"
            );
            if let Some(previous) = current.replace(name.to_owned()) {
                finished.insert(previous);
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line: {line:?}"
        );
        let name_end = line.find(['{', ' ']).expect("a value");
        let name = &line[..name_end];
        assert!(is_name(name, true), "{line}");
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample outside its family: {line}"
        );
        assert!(!finished.contains(name), "family interleaved: {line}");
        if types[name] == "counter" {
            assert!(name.ends_with("_total"), "{line}");
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            loop {
                let start = chars.peek().unwrap().0;
                let mut eq = start;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        eq = i;
                        break;
                    }
                }
                let label = &after[start..eq];
                assert!(is_name(label, false), "label name {label:?} in {line}");
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("an unterminated label value").1 {
                        '\\' => match chars.next().unwrap().1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw line feed in {line}"),
                        c => value.push(c),
                    }
                }
                assert!(
                    labels.insert(label.to_owned(), value).is_none(),
                    "label twice: {line}"
                );
                match chars.next().unwrap() {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &after[i + 1..];
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?} in {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("a space before the value");
        let value = value.split(' ').next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        assert!(
            series.insert(format!("{name}{labels:?}")),
            "series twice: {line}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for name in types.keys() {
        assert!(helps.contains(name), "{name} has no HELP");
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?}"))
        .value
}

#[tokio::test]
async fn metrics_parse_back_as_prometheus_text() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    fail(&payments, 2);
    for _ in 0..3 {
        assert!(payments.try_acquire().is_err());
    }
    let odd = "we\"ird\\name\nwith lines";
    registry.breakers().get(odd);
    registry
        .breakers()
        .get_keyed("upstream", "a.example")
        .unwrap()
        .metrics_only();
    let addr = serve(RegistryService::new(registry.clone())).await;

    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_prometheus(&reply.body);
    let state = "portcullis_circuitbreaker_state";
    let open = |name: &str, state_label: &str| {
        value(&samples, state, &[("name", name), ("state", state_label)])
    };
    assert_eq!(open("payments", "open"), 1.0);
    for other in [
        "closed",
        "half_open",
        "disabled",
        "forced_open",
        "metrics_only",
    ] {
        assert_eq!(open("payments", other), 0.0, "{other}");
    }
    assert_eq!(
        open(odd, "closed"),
        1.0,
        "label values round-trip through escaping"
    );
    assert_eq!(
        value(
            &samples,
            state,
            &[
                ("name", "upstream"),
                ("key", "a.example"),
                ("state", "metrics_only")
            ]
        ),
        1.0
    );
    let payments_only = [("name", "payments")];
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_buffered_calls",
            &[("name", "payments"), ("kind", "failed")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_buffered_calls",
            &[("name", "payments"), ("kind", "successful")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_not_permitted_calls_total",
            &payments_only
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_failure_rate",
            &payments_only
        ),
        100.0
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_slow_call_rate",
            &payments_only
        ),
        0.0
    );
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "portcullis_circuitbreaker_failure_rate"
                && s.labels.get("name").map(String::as_str) == Some(odd)),
        "no rate series below the minimum number of calls"
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_consecutive_failures",
            &payments_only
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_failure_rate_threshold",
            &payments_only
        ),
        50.0
    );
    assert_eq!(
        value(&samples, "portcullis_registry_event_subscribers", &[]),
        0.0
    );
    assert_eq!(
        samples.iter().filter(|s| s.name == state).count(),
        3 * 6,
        "six state series per breaker"
    );
}

#[tokio::test]
async fn bulkhead_metrics_parse_back_as_prometheus_text() {
    let registry = Registry::builder()
        .bulkhead_config("db", Overrides::new().set("max_concurrent_calls", 1))
        .build()
        .unwrap();
    registry.breakers().get("payments");
    let db = registry.bulkheads().get("db");
    let _permit = db.try_acquire().unwrap();
    for _ in 0..2 {
        assert!(db.try_acquire().is_err());
    }
    let eu = registry.bulkheads().get_keyed("upstream", "eu").unwrap();
    assert_eq!(eu.max_concurrent_calls(), 25);
    let addr = serve(RegistryService::new(registry.clone())).await;

    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    let samples = parse_prometheus(&reply.body);
    let db_only = [("name", "db")];
    let eu_labels = [("name", "upstream"), ("key", "eu")];
    for (family, db_value, eu_value) in [
        ("portcullis_bulkhead_available_concurrent_calls", 0.0, 25.0),
        (
            "portcullis_bulkhead_max_allowed_concurrent_calls",
            1.0,
            25.0,
        ),
        ("portcullis_bulkhead_in_flight", 1.0, 0.0),
        ("portcullis_bulkhead_queued", 0.0, 0.0),
        ("portcullis_bulkhead_rejected_calls_total", 2.0, 0.0),
    ] {
        assert_eq!(value(&samples, family, &db_only), db_value, "{family}");
        assert_eq!(value(&samples, family, &eu_labels), eu_value, "{family}");
        assert_eq!(
            samples.iter().filter(|s| s.name == family).count(),
            2,
            "{family}: one series per bulkhead"
        );
    }
    assert!(
        reply
            .body
            .contains("# TYPE portcullis_bulkhead_rejected_calls_total counter\n")
    );
    assert!(
        reply
            .body
            .contains("# TYPE portcullis_bulkhead_in_flight gauge\n")
    );
    assert_eq!(
        value(
            &samples,
            "portcullis_circuitbreaker_state",
            &[("name", "payments"), ("state", "closed")]
        ),
        1.0,
        "the breaker families are still there"
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.name.starts_with("portcullis_circuitbreaker_"))
            .all(|s| s.labels["name"] == "payments"),
        "no bulkhead in a breaker family"
    );
}

/// A registry with a spent rate limiter `api`, a keyed one, and a budget
/// `db` that paid for one retry and refused another. The periods are long
/// so that nothing refills while the test runs.
fn limited_registry() -> Registry {
    let registry = Registry::builder()
        .rate_limiter_config(
            "api",
            Overrides::new()
                .set("rate", 2)
                .set("period", "1h")
                .set("burst", 2),
        )
        .rate_limiter_config(
            "clients",
            Overrides::new().set("rate", 5).set("period", "1h"),
        )
        .budget_config(
            "db",
            Overrides::new()
                .set("ratio", 0.25)
                .set("min_per_second", 0)
                .set("ttl", "1h"),
        )
        .build()
        .unwrap();
    let api = registry.rate_limiters().get("api");
    api.try_acquire().unwrap();
    api.try_acquire().unwrap();
    for _ in 0..3 {
        assert!(api.try_acquire().is_err());
    }
    let client = registry
        .rate_limiters()
        .get_keyed("clients", "10.0.0.1/32")
        .unwrap();
    client.try_acquire().unwrap();
    let db = registry.budgets().get("db");
    for _ in 0..4 {
        db.deposit();
    }
    assert!(db.try_withdraw());
    assert!(!db.try_withdraw());
    registry
}

/// The `name` and `key` of each instance of a listing.
fn names_and_keys(list: &[serde_json::Value]) -> Vec<(serde_json::Value, serde_json::Value)> {
    list.iter()
        .map(|r| (r["name"].clone(), r["key"].clone()))
        .collect()
}

#[tokio::test]
async fn rate_limiters_and_budgets_are_served_with_their_figures() {
    let registry = limited_registry();
    let addr = serve(RegistryService::new(registry.clone())).await;

    let all = get(addr, "/health/ratelimiters").await;
    assert_eq!(all.status, 200);
    let list = all.json()["ratelimiters"].as_array().unwrap().clone();
    assert_eq!(
        names_and_keys(&list),
        [
            ("api".into(), serde_json::Value::Null),
            ("clients".into(), "10.0.0.1/32".into()),
        ]
    );
    let api = get(addr, "/health/ratelimiters/api").await;
    assert_eq!(api.status, 200);
    let figures = api.json();
    assert_eq!(figures["limit"], 2);
    assert_eq!(figures["period"], "1h");
    assert_eq!(figures["burst"], 2);
    assert_eq!(figures["available"], 0, "the burst is spent");
    assert_eq!(figures["rejected"], 3);
    assert_eq!(figures, list[0]);
    let keyed = get(addr, "/health/ratelimiters/clients/10.0.0.1%2F32").await;
    assert_eq!(keyed.status, 200);
    assert_eq!(keyed.json()["key"], "10.0.0.1/32");
    assert_eq!(keyed.json()["available"], 4);
    assert_eq!(keyed.json()["burst"], 5, "the burst defaults to the rate");

    let missing = get(addr, "/health/ratelimiters/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no rate limiter named 'nope'");
    let missing = get(addr, "/health/ratelimiters/clients/other").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"],
        "no rate limiter named 'clients' with key 'other'"
    );

    let budgets = get(addr, "/health/budgets").await;
    assert_eq!(budgets.status, 200);
    let list = budgets.json()["budgets"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    let db = get(addr, "/health/budgets/db").await;
    assert_eq!(db.status, 200);
    let figures = db.json();
    assert_eq!(figures["name"], "db");
    assert_eq!(figures["ratio"], 0.25);
    assert_eq!(figures["ttl"], "1h");
    assert_eq!(figures["available"], 0);
    assert_eq!(figures["deposits"], 4);
    assert_eq!(figures["withdrawals"], 1);
    assert_eq!(figures["refused"], 1);
    assert_eq!(figures, list[0]);
    let missing = get(addr, "/health/budgets/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no retry budget named 'nope'");
    assert_eq!(get(addr, "/health/budgets/db/eu").await.status, 404);
    assert_eq!(
        get(addr, "/health/ratelimiters/db").await.status,
        404,
        "a budget is not a rate limiter"
    );
    for deep in ["/health/ratelimiters/api/a/b", "/health/budgets/db/a/b"] {
        assert_eq!(get(addr, deep).await.status, 404, "too deep: {deep}");
    }
    let post = send(addr, "POST", "/health/ratelimiters", &[], b"").await;
    assert_eq!(post.status, 405);
    assert_eq!(registry.len(), 3, "serving never makes an instance");
    assert_eq!(get(addr, "/health").await.json()["status"], "UP");
}

#[tokio::test]
async fn route_statistics_are_served_with_their_figures() {
    use portcullis_registry::RouteOutcome;

    let registry = Registry::new();
    let checkout = registry.routes().get("checkout");
    checkout.record(RouteOutcome::Success, Duration::from_millis(3));
    checkout.record(RouteOutcome::Rejected, Duration::ZERO);
    let keyed = registry.routes().get_keyed("upstream", "db:5432").unwrap();
    keyed.record(RouteOutcome::Timeout, Duration::from_secs(1));
    let addr = serve(RegistryService::new(registry.clone())).await;

    let all = get(addr, "/health/routes").await;
    assert_eq!(all.status, 200);
    let list = all.json()["routes"].as_array().unwrap().clone();
    assert_eq!(
        names_and_keys(&list),
        [
            ("checkout".into(), serde_json::Value::Null),
            ("upstream".into(), "db:5432".into()),
        ]
    );
    let one = get(addr, "/health/routes/checkout").await;
    assert_eq!(one.status, 200);
    let figures = one.json();
    assert_eq!(figures, list[0]);
    assert_eq!(figures["requests"], 2);
    assert_eq!(figures["successes"], 1);
    assert_eq!(figures["rejections"], 1);
    assert_eq!(figures["latency"]["count"], 2);
    assert_eq!(figures["latency"]["buckets"][0]["count"], 2);
    let keyed = get(addr, "/health/routes/upstream/db%3A5432").await;
    assert_eq!(keyed.status, 200);
    assert_eq!(keyed.json()["timeouts"], 1);
    assert_eq!(keyed.json()["latency"]["buckets"][7]["le"], 1.0);
    assert_eq!(keyed.json()["latency"]["buckets"][7]["count"], 1);

    let missing = get(addr, "/health/routes/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no route named 'nope'");
    assert_eq!(registry.snapshot().routes.len(), 2);
    assert_eq!(registry.len(), 2, "serving never makes an instance");
}

/// The breaker's cumulative counters are Prometheus counters that move with
/// the calls, and a reset of the breaker does not take them back.
#[tokio::test]
async fn breaker_counters_are_prometheus_counters_that_only_go_up() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let keyed = registry
        .breakers()
        .get_keyed("upstream", "a.example")
        .unwrap();
    let addr = serve(RegistryService::new(registry.clone())).await;

    let before = parse_prometheus(&get(addr, "/metrics").await.body);
    let payments_labels = [("name", "payments")];
    let calls = |samples: &[Sample], outcome: &str| {
        value(
            samples,
            "portcullis_circuitbreaker_calls_total",
            &[("name", "payments"), ("outcome", outcome)],
        )
    };
    let transitions = |samples: &[Sample], from: &str, to: &str| {
        value(
            samples,
            "portcullis_circuitbreaker_transitions_total",
            &[("name", "payments"), ("from", from), ("to", to)],
        )
    };
    for outcome in ["success", "failure", "ignored"] {
        assert_eq!(calls(&before, outcome), 0.0, "{outcome}");
    }
    assert_eq!(
        transitions(&before, "closed", "open"),
        0.0,
        "a series from the start"
    );
    assert_eq!(transitions(&before, "half_open", "closed"), 0.0);
    assert_eq!(
        value(
            &before,
            "portcullis_circuitbreaker_calls_total",
            &[
                ("name", "upstream"),
                ("key", "a.example"),
                ("outcome", "success")
            ]
        ),
        0.0,
        "a keyed breaker has its key"
    );

    for outcome in [Outcome::Success, Outcome::Success, Outcome::Ignored] {
        payments.try_acquire().unwrap().record(outcome);
    }
    fail(&payments, 2);
    for _ in 0..3 {
        assert!(payments.try_acquire().is_err());
    }
    keyed.try_acquire().unwrap().record(Outcome::Success);
    payments.reset();

    let reply = get(addr, "/metrics").await;
    let after = parse_prometheus(&reply.body);
    assert_eq!(calls(&after, "success"), 2.0);
    assert_eq!(calls(&after, "failure"), 2.0);
    assert_eq!(calls(&after, "ignored"), 1.0);
    assert_eq!(
        value(
            &after,
            "portcullis_circuitbreaker_not_permitted_calls_total",
            &payments_labels
        ),
        3.0,
        "a reset does not take the rejections back"
    );
    assert_eq!(
        payments.snapshot().not_permitted_calls,
        0,
        "while the since-reset figure, in /health, starts again"
    );
    assert!(
        !reply.body.contains("portcullis_breaker_"),
        "one prefix for the breaker's families"
    );
    assert_eq!(
        value(
            &after,
            "portcullis_circuitbreaker_slow_calls_total",
            &payments_labels
        ),
        0.0
    );
    assert_eq!(transitions(&after, "closed", "open"), 1.0);
    assert_eq!(
        transitions(&after, "open", "closed"),
        1.0,
        "the reset, once it happened"
    );
    assert!(
        before.iter().all(
            |s| !(s.name == "portcullis_circuitbreaker_transitions_total"
                && s.labels.get("from").map(String::as_str) == Some("open")
                && s.labels.get("to").map(String::as_str) == Some("closed"))
        ),
        "no series for a manual transition that never happened"
    );
    for family in [
        "portcullis_circuitbreaker_calls_total",
        "portcullis_circuitbreaker_slow_calls_total",
        "portcullis_circuitbreaker_not_permitted_calls_total",
        "portcullis_circuitbreaker_transitions_total",
    ] {
        assert!(
            reply.body.contains(&format!("# TYPE {family} counter\n")),
            "{family} is a counter"
        );
    }
}

#[tokio::test]
async fn rate_limiter_and_budget_metrics_parse_back_as_prometheus_text() {
    let registry = limited_registry();
    let addr = serve(RegistryService::new(registry.clone())).await;
    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    let samples = parse_prometheus(&reply.body);
    let api = [("name", "api")];
    let client = [("name", "clients"), ("key", "10.0.0.1/32")];
    for (family, api_value, client_value) in [
        ("portcullis_ratelimiter_available_permissions", 0.0, 4.0),
        ("portcullis_ratelimiter_limit", 2.0, 5.0),
        ("portcullis_ratelimiter_period_seconds", 3600.0, 3600.0),
        ("portcullis_ratelimiter_burst", 2.0, 5.0),
        ("portcullis_ratelimiter_rejected_calls_total", 3.0, 0.0),
    ] {
        assert_eq!(value(&samples, family, &api), api_value, "{family}");
        assert_eq!(value(&samples, family, &client), client_value, "{family}");
        assert_eq!(
            samples.iter().filter(|s| s.name == family).count(),
            2,
            "{family}: one series per rate limiter"
        );
    }
    let db = [("name", "db")];
    for (family, expected) in [
        ("portcullis_retry_budget_available_retries", 0.0),
        ("portcullis_retry_budget_ratio", 0.25),
        ("portcullis_retry_budget_deposits_total", 4.0),
        ("portcullis_retry_budget_withdrawals_total", 1.0),
        ("portcullis_retry_budget_refused_total", 1.0),
    ] {
        assert_eq!(value(&samples, family, &db), expected, "{family}");
    }
    for (family, kind) in [
        ("portcullis_ratelimiter_rejected_calls_total", "counter"),
        ("portcullis_ratelimiter_available_permissions", "gauge"),
        ("portcullis_retry_budget_refused_total", "counter"),
        ("portcullis_retry_budget_available_retries", "gauge"),
    ] {
        assert!(
            reply.body.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} is a {kind}"
        );
    }
}

#[test]
fn the_prometheus_reader_rejects_what_a_scraper_would() {
    for bad in [
        "x 1\n",                                                              // no TYPE
        "# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n",                           // unterminated
        "# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",                       // bad escape
        "# HELP x h\n# TYPE x gauge\nx one\n",                                // bad value
        "# HELP x h\n# TYPE x counter\nx 1\n", // counter without _total
        "# HELP x h\n# TYPE x gauge\nx 1\nx 2\n", // duplicate series
        "# HELP x h\n# TYPE x gauge\n# HELP y h\n# TYPE y gauge\ny 1\nx 1\n", // interleaved
    ] {
        let result = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(result.is_err(), "accepted {bad:?}");
    }
    assert_eq!(
        parse_prometheus("# HELP x h\n# TYPE x gauge\nx{a=\"\\\"\"} +Inf\n").len(),
        1
    );
}

#[tokio::test]
async fn events_stream_transitions_and_the_recent_ones_are_kept() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let addr = serve(RegistryService::new(registry.clone())).await;

    let mut sse = Sse::connect(addr, "/events", &[]).await;
    assert_eq!(sse.status, 200);
    fail(&payments, 2);
    let crossed = sse.next().await.unwrap();
    assert_eq!(crossed.event, "threshold_crossed");
    let transition = sse.next().await.unwrap();
    assert_eq!(transition.event, "transition");
    let data = transition.json();
    assert_eq!(data["type"], "transition");
    assert_eq!(data["kind"], "breaker");
    assert_eq!(data["name"], "payments");
    assert_eq!(data["from"], "CLOSED");
    assert_eq!(data["to"], "OPEN");
    assert_eq!(data["reason"], "failure rate 100.0% reached the threshold");
    assert_eq!(transition.id, Some(data["id"].as_u64().unwrap()));

    payments.reset();
    let closed = sse.next().await.unwrap();
    assert_eq!(closed.json()["to"], "CLOSED");
    let reset = sse.next().await.unwrap();
    assert_eq!(
        (reset.event.as_str(), reset.id),
        ("reset", Some(transition.id.unwrap() + 2))
    );

    let recent = get(addr, "/events/recent").await;
    assert_eq!(recent.status, 200);
    let types: Vec<String> = recent.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "added",
            "threshold_crossed",
            "transition",
            "transition",
            "reset"
        ]
    );

    // A client that comes back with Last-Event-ID is replayed what it missed.
    let last = crossed.id.unwrap().to_string();
    let mut again = Sse::connect(addr, "/events", &[("last-event-id", &last)]).await;
    assert_eq!(again.next().await.unwrap().json()["to"], "OPEN");
    assert_eq!(again.next().await.unwrap().json()["to"], "CLOSED");
    assert_eq!(again.next().await.unwrap().event, "reset");
    payments.force_open();
    assert_eq!(again.next().await.unwrap().json()["to"], "FORCED_OPEN");
    assert_eq!(registry.event_stats().subscribers, 2);
}

#[tokio::test]
async fn event_streams_are_capped_and_a_closed_one_frees_its_place() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let addr = serve(
        RegistryService::builder(registry.clone())
            .max_event_streams(2)
            .events_retry(Duration::from_millis(2500))
            .build()
            .unwrap(),
    )
    .await;
    let first = Sse::connect(addr, "/events", &[]).await;
    let mut second = Sse::connect(addr, "/events", &[]).await;

    let refused = Sse::try_connect(addr, "/events", &[]).await.err().unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.header("retry-after"),
        Some("3"),
        "2.5 s, rounded up"
    );
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(
        refused.json()["error"],
        "too many event streams are open (at most 2); retry later"
    );
    // Other endpoints are not affected.
    assert_eq!(get(addr, "/health").await.status, 200);

    // The client goes away: its place is given back once the server sees
    // the connection closed (a bound, not a measurement).
    drop(first);
    let mut third = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match Sse::try_connect(addr, "/events", &[]).await {
                Ok(sse) => break sse,
                Err(reply) => assert_eq!(reply.status, 503),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed stream's place was given back");
    assert_eq!(third.status, 200);
    assert_eq!(
        Sse::try_connect(addr, "/events", &[])
            .await
            .err()
            .unwrap()
            .status,
        503,
        "still two at most"
    );

    payments.force_open();
    for sse in [&mut second, &mut third] {
        assert_eq!(sse.next().await.unwrap().json()["to"], "FORCED_OPEN");
    }
}

#[tokio::test]
async fn control_does_not_exist_without_a_token() {
    let registry = registry();
    registry.breakers().get("payments");
    let addr = serve(RegistryService::new(registry.clone())).await;
    let reply = send(
        addr,
        "POST",
        "/breakers/payments/state",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        br#"{"state":"FORCED_OPEN"}"#,
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(get(addr, "/breakers/payments/state").await.status, 404);
    assert_eq!(registry.breakers().get("payments").state(), State::Closed);
}

#[tokio::test]
async fn control_wants_the_right_bearer_token() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let addr = controlled(&registry).await;
    let body = br#"{"state":"FORCED_OPEN"}"#;
    let same_length_wrong = format!("Bearer {}", TOKEN.replace('0', "1"));
    let longer = format!("Bearer {TOKEN}x");
    let shorter = format!("Bearer {}", &TOKEN[1..]);
    let basic = format!("Basic {TOKEN}");
    let no_space = format!("Bearer{TOKEN}");
    for headers in [
        vec![],
        vec![("authorization", same_length_wrong.as_str())],
        vec![("authorization", longer.as_str())],
        vec![("authorization", shorter.as_str())],
        vec![("authorization", basic.as_str())],
        vec![("authorization", no_space.as_str())],
        vec![("authorization", "Bearer ")],
    ] {
        let reply = send(addr, "POST", "/breakers/payments/state", &headers, body).await;
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"portcullis\"")
        );
        assert_eq!(reply.json()["error"], "a valid bearer token is required");
    }
    // Unauthenticated requests learn nothing about the names.
    let reply = send(addr, "POST", "/breakers/unknown/state", &[], body).await;
    assert_eq!(reply.status, 401);
    assert_eq!(payments.state(), State::Closed);

    let lower = format!("bearer {TOKEN}");
    let reply = send(
        addr,
        "POST",
        "/breakers/payments/state",
        &[("authorization", &lower)],
        body,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(payments.state(), State::ForcedOpen);
}

#[tokio::test]
async fn control_changes_state_and_says_what_is_wrong() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let eu = registry.breakers().get_keyed("payments", "eu").unwrap();
    let addr = controlled(&registry).await;

    for (state, expected) in [
        ("FORCED_OPEN", State::ForcedOpen),
        ("DISABLED", State::Disabled),
        ("METRICS_ONLY", State::MetricsOnly),
        ("CLOSED", State::Closed),
    ] {
        let reply = post_state(
            addr,
            "/breakers/payments/state",
            &format!(r#"{{"state":"{state}"}}"#),
        )
        .await;
        assert_eq!(reply.status, 200, "{state}: {}", reply.body);
        assert_eq!(reply.json()["state"], state);
        assert_eq!(reply.json()["name"], "payments");
        assert_eq!(payments.state(), expected);
    }

    fail(&payments, 2);
    assert!(payments.try_acquire().is_err());
    assert_eq!(payments.snapshot().not_permitted_calls, 1);
    let reply = post_state(addr, "/breakers/payments/state", r#"{"state":"RESET"}"#).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["state"], "CLOSED");
    assert_eq!(
        reply.json()["not_permitted_calls"],
        0,
        "a reset clears the counts"
    );

    let reply = post_state(
        addr,
        "/breakers/payments/state",
        r#"{"state":"OPEN","wait":"90s"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["state"], "OPEN");
    let wait =
        portcullis_core::duration::parse(reply.json()["retry_after"].as_str().unwrap()).unwrap();
    assert!(
        wait > Duration::from_secs(80) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
    let reply = post_state(addr, "/breakers/payments/state", r#"{"state":"HALF_OPEN"}"#).await;
    assert_eq!(reply.status, 200);
    assert_eq!(payments.state(), State::HalfOpen);

    // The keyed one, by its own path.
    let reply = post_state(
        addr,
        "/breakers/payments/eu/state",
        r#"{"state":"FORCED_OPEN"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["key"], "eu");
    assert_eq!(eu.state(), State::ForcedOpen);
    assert_eq!(payments.state(), State::HalfOpen);

    // An illegal transition: 409 with the breaker's own words.
    let reply = post_state(addr, "/breakers/payments/eu/state", r#"{"state":"OPEN"}"#).await;
    assert_eq!(reply.status, 409);
    assert_eq!(
        reply.json()["error"],
        "circuit breaker 'payments' cannot go from ForcedOpen to Open: it is under manual control; close or reset it first"
    );
    payments.close();
    let reply = post_state(addr, "/breakers/payments/state", r#"{"state":"HALF_OPEN"}"#).await;
    assert_eq!(reply.status, 409);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("from Closed to HalfOpen")
    );
    assert_eq!(payments.state(), State::Closed);

    // Unknown names.
    let reply = post_state(addr, "/breakers/nope/state", r#"{"state":"CLOSED"}"#).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "no circuit breaker named 'nope'");
    let reply = post_state(addr, "/breakers/payments/us/state", r#"{"state":"CLOSED"}"#).await;
    assert_eq!(reply.status, 404);

    // Bad bodies.
    for (body, says) in [
        ("", "EOF while parsing"),
        ("not json", "expected ident"),
        ("{\"state\":", "EOF while parsing"),
        ("[]", "the body must be a JSON object"),
        (r#"["CLOSED"]"#, "the body must be a JSON object"),
        (r#"{"state":3}"#, "invalid type"),
        (r#"{}"#, "missing field `state`"),
        (r#"{"state":"OPENED"}"#, "unknown variant `OPENED`"),
        (r#"{"state":"closed"}"#, "unknown variant `closed`"),
        (
            r#"{"state":"CLOSED","force":true}"#,
            "unknown field `force`",
        ),
        (r#"{"state":"OPEN","wait":"soon"}"#, "\"soon\""),
        (
            r#"{"state":"CLOSED","wait":"5s"}"#,
            "`wait` applies to OPEN only",
        ),
        (
            r#"{"state":"OPEN","wait":"0s"}"#,
            "`wait` must be greater than zero",
        ),
    ] {
        let reply = post_state(addr, "/breakers/payments/state", body).await;
        assert_eq!(reply.status, 400, "{body}");
        let message = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(
        payments.state(),
        State::Closed,
        "no bad body changed anything"
    );

    // Too large: declared, and streamed without a length.
    let big = format!(r#"{{"state":"CLOSED","pad":"{}"}}"#, "x".repeat(5000));
    let reply = post_state(addr, "/breakers/payments/state", &big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "the body must be at most 4096 bytes");
    let auth = format!("Bearer {TOKEN}");
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 2000, "y".repeat(2000)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = send(
        addr,
        "POST",
        "/breakers/payments/state",
        &[("authorization", &auth), ("transfer-encoding", "chunked")],
        &chunked,
    )
    .await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn control_refuses_a_wait_over_a_year_duplicate_keys_and_two_authorizations() {
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let addr = controlled(&registry).await;

    let reply = post_state(
        addr,
        "/breakers/payments/state",
        r#"{"state":"OPEN","wait":"366d"}"#,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.json()["error"],
        "`wait` must be at most 365d, got 366d"
    );
    let reply = post_state(
        addr,
        "/breakers/payments/state",
        r#"{"state":"OPEN","wait":"99999999999d"}"#,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(payments.state(), State::Closed);
    let reply = post_state(
        addr,
        "/breakers/payments/state",
        r#"{"state":"OPEN","wait":"365d"}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "a year is allowed: {}", reply.body);
    assert_eq!(payments.state(), State::Open);
    payments.close();

    // serde would take the last of duplicate keys; a proxy or an audit log
    // may well take the first.
    for body in [
        r#"{"state":"CLOSED","state":"FORCED_OPEN"}"#,
        r#"{"state":"OPEN","wait":"1s","wait":"300d"}"#,
    ] {
        let reply = post_state(addr, "/breakers/payments/state", body).await;
        assert_eq!(reply.status, 400, "{body}");
        let message = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains("duplicate key `"), "{body}: {message}");
    }
    let reply = post_state(
        addr,
        "/breakers/payments/state",
        r#"{"state":"CLOSED","state":"FORCED_OPEN"}"#,
    )
    .await;
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("duplicate key `state`")
    );
    assert_eq!(payments.state(), State::Closed);

    // Which of two Authorization headers counts depends on who reads them.
    let right = format!("Bearer {TOKEN}");
    for second in [right.as_str(), "Bearer wrong-wrong-wrong-wrong"] {
        let reply = send(
            addr,
            "POST",
            "/breakers/payments/state",
            &[("authorization", &right), ("authorization", second)],
            br#"{"state":"FORCED_OPEN"}"#,
        )
        .await;
        assert_eq!(reply.status, 400, "{second}");
        assert_eq!(
            reply.json()["error"],
            "a request may carry one Authorization header, not several"
        );
    }
    assert_eq!(payments.state(), State::Closed);
}

#[tokio::test]
async fn every_response_says_nosniff() {
    let registry = registry();
    registry.breakers().get("payments");
    let addr = controlled(&registry).await;
    let auth = format!("Bearer {TOKEN}");
    let mut replies = Vec::new();
    for path in [
        "/",
        "/health",
        "/health/live",
        "/health/ready",
        "/health/breakers",
        "/health/breakers/payments",
        "/health/breakers/nope",
        "/metrics",
        "/events/recent",
        "/nope",
        "/%ff",
    ] {
        replies.push((path, get(addr, path).await));
    }
    replies.push((
        "DELETE /health",
        send(addr, "DELETE", "/health", &[], b"").await,
    ));
    replies.push(("GET control", get(addr, "/breakers/payments/state").await));
    for (what, headers, body) in [
        ("unauthorized", vec![], r#"{"state":"CLOSED"}"#),
        ("bad body", vec![("authorization", auth.as_str())], "{"),
        (
            "controlled",
            vec![("authorization", auth.as_str())],
            r#"{"state":"CLOSED"}"#,
        ),
    ] {
        let reply = send(
            addr,
            "POST",
            "/breakers/payments/state",
            &headers,
            body.as_bytes(),
        )
        .await;
        replies.push((what, reply));
    }
    let statuses: HashSet<u16> = replies.iter().map(|(_, reply)| reply.status).collect();
    assert_eq!(
        statuses,
        HashSet::from([200, 400, 401, 404, 405]),
        "a variety of answers"
    );
    for (what, reply) in &replies {
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{what}: {reply:?}"
        );
    }
    let sse = Sse::connect(addr, "/events", &[]).await;
    assert_eq!(
        sse.headers
            .get("x-content-type-options")
            .map(String::as_str),
        Some("nosniff")
    );
}

#[tokio::test]
async fn a_read_token_guards_every_endpoint_but_control() {
    const READ: &str = "r3ad-t0ken-0123456789";
    let registry = registry();
    let payments = registry.breakers().get("payments");
    let addr = serve(
        RegistryService::builder(registry.clone())
            .control_token(TOKEN)
            .read_token(READ)
            .build()
            .unwrap(),
    )
    .await;
    let read = format!("Bearer {READ}");
    let control = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}", READ.replace('0', "1"));
    for (path, found) in [
        ("/", 200),
        ("/health", 200),
        ("/health/live", 200),
        ("/health/ready", 200),
        ("/health/breakers", 200),
        ("/health/breakers/payments", 200),
        ("/health/bulkheads", 200),
        ("/health/ratelimiters", 200),
        ("/health/budgets", 200),
        ("/metrics", 200),
        ("/events/recent", 200),
        ("/nope", 404),
    ] {
        for headers in [
            vec![],
            vec![("authorization", wrong.as_str())],
            vec![("authorization", "Basic cjNhZDp0MGtlbg==")],
        ] {
            let reply = send(addr, "GET", path, &headers, b"").await;
            assert_eq!(reply.status, 401, "{path} {headers:?}");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer realm=\"portcullis\"")
            );
            assert_eq!(reply.json()["error"], "a valid bearer token is required");
        }
        let twice = send(
            addr,
            "GET",
            path,
            &[("authorization", &read), ("authorization", &read)],
            b"",
        )
        .await;
        assert_eq!(twice.status, 400, "{path}");
        for token in [&read, &control] {
            let reply = send(addr, "GET", path, &[("authorization", token)], b"").await;
            assert_eq!(reply.status, found, "{path} with {token}");
        }
    }

    let refused = Sse::try_connect(addr, "/events", &[]).await.err().unwrap();
    assert_eq!(refused.status, 401);
    let mut events = Sse::connect(addr, "/events", &[("authorization", &read)]).await;
    assert_eq!(events.status, 200);

    // The read token does not control; the control token still does.
    let body = br#"{"state":"FORCED_OPEN"}"#;
    let reply = send(
        addr,
        "POST",
        "/breakers/payments/state",
        &[("authorization", &read)],
        body,
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(payments.state(), State::Closed);
    let reply = send(
        addr,
        "POST",
        "/breakers/payments/state",
        &[("authorization", &control)],
        body,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(events.next().await.unwrap().json()["to"], "FORCED_OPEN");
}

#[test]
fn a_read_token_is_checked_like_the_control_token() {
    let builder = || RegistryService::builder(Registry::new());
    for (token, message) in [
        ("short", "must be 16 to 4096 characters long, got 5"),
        (
            "a token with spaces",
            "must be visible ASCII characters only",
        ),
        (
            "t\u{f6}ken-0123456789",
            "must be visible ASCII characters only",
        ),
    ] {
        let error = builder().read_token(token).build().unwrap_err();
        assert_eq!(error.field(), "read_token", "{token}");
        assert_eq!(error.message(), message, "{token}");
    }
    let long = "x".repeat(4097);
    assert_eq!(
        builder().read_token(long).build().unwrap_err().field(),
        "read_token"
    );
    let error = builder()
        .control_token(TOKEN)
        .read_token(TOKEN)
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "read_token: must differ from control_token, or readers could also control"
    );
    let service = builder()
        .control_token(TOKEN)
        .read_token("r3ad-t0ken-0123456789")
        .build()
        .unwrap();
    let debug = format!("{service:?}");
    assert!(
        !debug.contains("r3ad-t0ken") && !debug.contains(TOKEN),
        "{debug}"
    );
    assert!(debug.contains(r#"read: Some("<token>")"#), "{debug}");
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths() {
    let registry = registry();
    registry.breakers().get("payments");
    let addr = controlled(&registry).await;
    for path in [
        "/",
        "/health",
        "/health/live",
        "/health/breakers/payments",
        "/health/bulkheads",
        "/health/bulkheads/db",
        "/metrics",
        "/events",
        "/events/recent",
    ] {
        let reply = send(addr, "DELETE", path, &[], b"").await;
        assert_eq!(reply.status, 405, "{path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{path}");
    }
    let reply = get(addr, "/breakers/payments/state").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    for path in [
        "/nope",
        "/health/nope",
        "/breakers/payments",
        "/breakers/payments/a/b/state",
        "/events/recent/x",
    ] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error"], "not found");
    }
    let head = send(addr, "HEAD", "/health", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page() {
    let addr = serve(RegistryService::new(registry())).await;
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(page.body.contains("<style>") && page.body.contains("<script>"));
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
}

#[tokio::test]
async fn mounted_in_axum_under_a_prefix() {
    let registry = registry();
    registry.breakers().get("payments").force_open();
    let service = RegistryService::builder(registry.clone())
        .control_token(TOKEN)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi" }))
        .nest_service("/resilience", service)
        .with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(get(addr, "/hello").await.body, "hi");
    let health = get(addr, "/resilience/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "DEGRADED");
    let one = get(addr, "/resilience/health/breakers/payments").await;
    assert_eq!(one.json()["state"], "FORCED_OPEN");
    assert!(
        get(addr, "/resilience/")
            .await
            .body
            .contains("new EventSource(")
    );
    assert!(
        get(addr, "/resilience")
            .await
            .body
            .contains("new EventSource(")
    );
    let reply = post_state(
        addr,
        "/resilience/breakers/payments/state",
        r#"{"state":"CLOSED"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(registry.breakers().get("payments").state(), State::Closed);
    let mut sse = Sse::connect(addr, "/resilience/events", &[]).await;
    registry.breakers().get("payments").force_open();
    assert_eq!(sse.next().await.unwrap().json()["to"], "FORCED_OPEN");
    assert_eq!(
        get(addr, "/health").await.status,
        404,
        "only under the prefix"
    );
    server.abort();
}

/// Prometheus's own checker, `promtool check metrics` (Debian's
/// `prometheus` package), finds nothing wrong with `GET /metrics`: every
/// kind, keyed instances, a label that needs escaping, counters and gauges.
#[tokio::test]
async fn promtool_finds_the_metrics_clean() {
    let registry = limited_registry();
    let payments = registry.breakers().get("payments");
    fail(&payments, 2);
    payments.force_open();
    assert!(payments.try_acquire().is_err());
    registry.breakers().get("we\"ird\\name\nwith lines");
    registry
        .breakers()
        .get_keyed("upstream", "a.example")
        .unwrap();
    registry.bulkheads().get("pool");
    let search = registry.routes().get("search");
    search.record(RouteOutcome::Success, Duration::from_millis(30));
    search.record(RouteOutcome::Success, Duration::from_millis(40));
    search.record(RouteOutcome::Timeout, Duration::from_secs(20));
    let addr = serve(RegistryService::new(registry)).await;
    let body = get(addr, "/metrics").await.body;
    assert!(body.contains("portcullis_bulkhead_in_flight{name=\"pool\"}"));
    // The latency histogram: cumulative buckets, the sum and the count.
    for line in [
        "# TYPE portcullis_route_request_duration_seconds histogram",
        "portcullis_route_request_duration_seconds_bucket{name=\"search\",le=\"0.025\"} 0",
        "portcullis_route_request_duration_seconds_bucket{name=\"search\",le=\"0.05\"} 2",
        "portcullis_route_request_duration_seconds_bucket{name=\"search\",le=\"10\"} 2",
        "portcullis_route_request_duration_seconds_bucket{name=\"search\",le=\"+Inf\"} 3",
        "portcullis_route_request_duration_seconds_sum{name=\"search\"} 20.07",
        "portcullis_route_request_duration_seconds_count{name=\"search\"} 3",
        "portcullis_route_requests_total{name=\"search\",outcome=\"timeout\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line} in\n{body}");
    }

    let mut promtool = tokio::process::Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian's prometheus package; .ci/run installs it)");
    let mut stdin = promtool.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, body.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = promtool.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}");
    assert_eq!(said.trim(), "", "promtool has remarks");
}

/// A scraper that asks for OpenMetrics (as Prometheus does) gets it, with
/// its `# EOF`; anything else gets the Prometheus text format.
#[tokio::test]
async fn metrics_are_openmetrics_when_asked_for() {
    let registry = registry();
    registry.breakers().get("payments");
    let addr = serve(RegistryService::new(registry)).await;
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let reply = send(addr, "GET", "/metrics", &[("accept", accept)], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
    assert!(
        reply
            .body
            .contains("# TYPE portcullis_circuitbreaker_calls counter\n")
    );
    assert!(reply.body.contains(
        "portcullis_circuitbreaker_calls_total{name=\"payments\",outcome=\"success\"} 0\n"
    ));
    let plain = get(addr, "/metrics").await;
    assert!(!plain.body.contains("# EOF"));
}

#[tokio::test]
async fn limiters_are_served_with_their_figures_and_metrics() {
    let config: portcullis_registry::RegistryConfig = toml::from_str(
        r#"
        [limiters.default]
        algorithm = "aimd"
        aimd = { initial_limit = 2, min_limit = 1 }

        [limiters.inventory]
        aimd = { initial_limit = 1, min_limit = 1, backoff_ratio = 0.5 }
        queue = { max_queued = 4, max_wait = "20ms" }
        "#,
    )
    .unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let inventory = registry.limiters().get("inventory");
    assert_eq!(inventory.config().aimd().backoff_ratio, 0.5, "overridden");
    assert_eq!(
        inventory.config().algorithm(),
        portcullis_limit::AlgorithmKind::Aimd,
        "inherited from the default"
    );
    assert_eq!(inventory.config().queue().unwrap().max_queued, 4);
    let _held = inventory.try_acquire(None).unwrap();
    for _ in 0..2 {
        assert!(inventory.try_acquire(None).is_err());
    }
    let search = registry.limiters().get("search");
    assert_eq!(search.limit(), 2, "the default's initial limit");
    let addr = serve(RegistryService::new(registry.clone())).await;

    let all = get(addr, "/health/limiters").await;
    assert_eq!(all.status, 200);
    let list = all.json()["limiters"].as_array().unwrap().clone();
    let names: Vec<_> = list.iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names, ["inventory", "search"]);
    let one = get(addr, "/health/limiters/inventory").await;
    assert_eq!(one.status, 200);
    let figures = one.json();
    assert_eq!(figures["algorithm"], "aimd");
    assert_eq!(figures["limit"], 1);
    assert_eq!(figures["inflight"], 1, "the permit held");
    assert_eq!(figures["shed"], 2);
    assert_eq!(figures["key"], serde_json::Value::Null);
    assert_eq!(figures, list[0]);
    let missing = get(addr, "/health/limiters/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"],
        "no concurrency limiter named 'nope'"
    );

    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    let samples = parse_prometheus(&reply.body);
    let inventory_only = [("name", "inventory")];
    let search_only = [("name", "search")];
    for (family, inventory_value, search_value) in [
        ("portcullis_concurrency_limiter_limit", 1.0, 2.0),
        ("portcullis_concurrency_limiter_in_flight", 1.0, 0.0),
        ("portcullis_concurrency_limiter_queued", 0.0, 0.0),
        (
            "portcullis_concurrency_limiter_admitted_calls_total",
            1.0,
            0.0,
        ),
        ("portcullis_concurrency_limiter_shed_calls_total", 2.0, 0.0),
        (
            "portcullis_concurrency_limiter_dropped_calls_total",
            0.0,
            0.0,
        ),
    ] {
        assert_eq!(
            value(&samples, family, &inventory_only),
            inventory_value,
            "{family}"
        );
        assert_eq!(
            value(&samples, family, &search_only),
            search_value,
            "{family}"
        );
    }
    assert!(
        reply
            .body
            .contains("# TYPE portcullis_concurrency_limiter_shed_calls_total counter\n")
    );
    assert!(
        reply
            .body
            .contains("# TYPE portcullis_concurrency_limiter_limit gauge\n")
    );
}

#[test]
fn a_bad_limiter_config_names_its_path_and_overrides_are_laid_over_the_default() {
    let config: portcullis_registry::RegistryConfig = toml::from_str(
        r#"
        [limiters.inventory]
        aimd = { backoff_ratio = 1.5 }
        "#,
    )
    .unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap_err().to_string(),
        "limiters.inventory.aimd.backoff_ratio: must be in [0.5, 1), got 1.5"
    );
    let registry = Registry::builder()
        .limiter_config("inventory", Overrides::new().set("min_samples", 5))
        .build()
        .unwrap();
    let inventory = registry.limiters().get("inventory");
    assert_eq!(inventory.config().min_samples(), 5);
}
