//! Per-route stacks from a config file, in an axum app served over
//! loopback: each route behaves as its profile says, its breaker is served
//! by the registry under the route's name, and a reload takes effect on the
//! live breaker. Each route's and upstream's statistics count its calls by
//! outcome, its fallbacks by cause and its retries.
#![cfg(not(loom))]

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use portcullis::breaker::State;
use portcullis::config::Routes;
use portcullis::registry::{Registry, RegistryService};
use portcullis_testing as client;
use tokio::net::TcpListener;

const CONFIG: &str = r#"
    [defaults.breaker]
    sliding_window = { type = "count", size = 3 }
    minimum_calls = 3
    wait_in_open = "30s"

    [profiles.fragile.breaker]
    failure_rate_threshold = 100.0

    [profiles.steady.breaker]
    [profiles.steady.bulkhead]
    max_concurrent_calls = 8

    [profiles.quick.timeout]
    timeout = "50ms"

    [profiles.metered.rate_limit]
    rate = 2
    period = "1h"
    burst = 2

    [routes.pay]
    profile = "fragile"
    [routes.stock]
    profile = "steady"
    [routes.slow]
    profile = "quick"
    [routes.search]
    profile = "metered"
"#;

#[tokio::test]
async fn routes_behave_as_their_profiles_say() {
    let routes = Routes::from_toml(CONFIG, Registry::new()).unwrap();
    let admin = RegistryService::new(routes.registry().clone());
    let app = Router::new()
        .route(
            "/pay",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR })
                .route_layer(routes.route_layer("pay").unwrap()),
        )
        .route(
            "/stock",
            get(|| async { "in stock" }).route_layer(routes.route_layer("stock").unwrap()),
        )
        .route(
            "/slow",
            get(std::future::pending::<&'static str>)
                .route_layer(routes.route_layer("slow").unwrap()),
        )
        .route(
            "/search",
            get(|| async { "found" }).route_layer(routes.route_layer("search").unwrap()),
        )
        .nest_service("/admin", admin)
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The fragile route's breaker opens after its 3 configured failures.
    for _ in 0..3 {
        assert_eq!(client::get(addr, "/pay").await.status, 500);
    }
    let rejected = client::get(addr, "/pay").await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.header("retry-after"), Some("30"));
    assert_eq!(rejected.header("x-portcullis-error"), Some("breaker-open"));

    // The other routes are unaffected.
    let stock = client::get(addr, "/stock").await;
    assert_eq!((stock.status, stock.body.as_str()), (200, "in stock"));
    assert_eq!(
        routes
            .registry()
            .breakers()
            .find("stock", None)
            .unwrap()
            .state(),
        State::Closed
    );

    // The quick route times out.
    let slow = client::get(addr, "/slow").await;
    assert_eq!(slow.status, 504);
    assert_eq!(slow.header("x-portcullis-error"), Some("timeout"));

    // The metered route allows its burst of 2, then answers 429.
    assert_eq!(client::get(addr, "/search").await.status, 200);
    assert_eq!(client::get(addr, "/search").await.status, 200);
    let limited = client::get(addr, "/search").await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());

    // The registry serves the breakers under the route names.
    let pay = client::get(addr, "/admin/health/breakers/pay").await;
    assert_eq!(pay.status, 200);
    assert!(pay.body.contains(r#""state":"OPEN""#), "{}", pay.body);
    let all = client::get(addr, "/admin/health/breakers").await;
    for name in [r#""name":"pay""#, r#""name":"stock""#] {
        assert!(all.body.contains(name), "{}", all.body);
    }
    let bulkheads = client::get(addr, "/admin/health/bulkheads").await;
    assert!(
        bulkheads.body.contains(r#""name":"stock""#),
        "{}",
        bulkheads.body
    );

    // A reload lowers the threshold of /stock's breaker: the live breaker
    // takes it and stays closed (it has seen only successes), and the
    // /pay breaker stays open: its state is kept.
    let reloaded = CONFIG.replace(
        "[profiles.steady.breaker]",
        "[profiles.steady.breaker]\nfailure_rate_threshold = 30.0",
    );
    let reload = routes.reload(&reloaded).unwrap();
    assert_eq!(reload.breakers, 1);
    let stock = routes.registry().breakers().find("stock", None).unwrap();
    assert_eq!(stock.config().failure_rate_threshold(), 30.0);
    assert_eq!(stock.state(), State::Closed);
    assert_eq!(client::get(addr, "/pay").await.status, 503);

    server.abort();
}

#[tokio::test]
async fn a_config_with_errors_reports_them_all() {
    let errors = Routes::from_toml(
        &CONFIG
            .replace("rate = 2", "rate = 0")
            .replace("timeout = \"50ms\"", "timeout = \"0s\"")
            .replace("profile = \"steady\"", "profile = \"stable\""),
        Registry::new(),
    )
    .unwrap_err();
    let fields: Vec<_> = errors.errors().iter().map(|e| e.field()).collect();
    assert_eq!(
        fields,
        [
            "profiles.metered.rate_limit.rate",
            "profiles.quick.timeout.timeout",
            "routes.stock.profile"
        ],
        "{errors}"
    );
}

/// The README's `payments` profile: a breaker, a bulkhead and a timeout.
const PAYMENTS: &str = r#"
    [defaults.breaker]
    sliding_window = { type = "count", size = 20 }
    minimum_calls = 5

    [profiles.payments.breaker]
    failure_rate_threshold = 50.0
    [profiles.payments.bulkhead]
    max_concurrent_calls = 10
    [profiles.payments.timeout]
    timeout = "2s"

    [routes.checkout]
    profile = "payments"
"#;

#[tokio::test(start_paused = true)]
async fn a_hanging_handler_behind_the_readme_profile_opens_its_breaker() {
    use tower::ServiceExt;

    let registry = Registry::new();
    let routes = Routes::from_toml(PAYMENTS, registry.clone()).unwrap();
    let app: Router = Router::new()
        .route(
            "/checkout",
            get(std::future::pending::<&'static str>)
                .route_layer(routes.route_layer("checkout").unwrap()),
        )
        .with_state(());
    let call = || {
        let request = axum::http::Request::get("/checkout")
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(request)
    };
    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        let response = call().await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
    }
    let breaker = registry.breakers().get("checkout");
    assert_eq!(breaker.snapshot().failed_calls, 5, "every timeout counted");
    assert_eq!(breaker.state(), State::Open);
    let started = tokio::time::Instant::now();
    let response = call().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "fails fast"
    );
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    assert!(response.headers().contains_key("retry-after"));
}

#[test]
fn an_upstream_whose_breaker_could_not_see_its_timeout_is_refused() {
    let config = PAYMENTS.replace("[routes.checkout]", "[upstreams.provider]");
    let errors = Routes::from_toml(&config, Registry::new()).unwrap_err();
    let error = &errors.errors()[0];
    assert_eq!(error.field(), "upstreams.provider.profile", "{errors}");
    assert!(error.message().contains("no attempt_timeout"), "{errors}");
    let fixed = config.replace(
        "[upstreams.provider]",
        "[profiles.payments.attempt_timeout]\ntimeout = \"1s\"\n[upstreams.provider]",
    );
    Routes::from_toml(&fixed, Registry::new()).expect("with an attempt timeout it is taken");
}

#[test]
fn a_config_file_names_its_path_and_a_typo_its_nearest_name() {
    let missing = Routes::from_file("no/such/routes.toml", Registry::new()).unwrap_err();
    assert_eq!(missing.errors()[0].field(), "no/such/routes.toml");
    assert!(missing.to_string().contains("cannot be read"), "{missing}");

    let dir = std::env::temp_dir().join(format!("portcullis-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[routes.r\nprofile = 1\n").unwrap();
    let errors = Routes::from_file(&broken, Registry::new()).unwrap_err();
    assert_eq!(errors.errors()[0].field(), broken.display().to_string());
    assert!(
        errors.to_string().contains('^'),
        "the caret diagram is kept: {errors}"
    );

    let typos = dir.join("typos.toml");
    std::fs::write(
        &typos,
        r#"
        [profiles.p.braker]
        [profiles.q.breaker]
        minimum_callz = 5
        [profiles.q.bulkhead]
        max_concurrent_calls = -3
        [routes.r]
        profil = "q"
        "#,
    )
    .unwrap();
    let errors = Routes::from_file(&typos, Registry::new()).unwrap_err();
    let text = errors.to_string();
    for expected in [
        "profiles.p.braker: unknown layer (did you mean `breaker`?)",
        "profiles.q.breaker.minimum_callz: unknown field `minimum_callz` (did you mean `minimum_calls`?)",
        "profiles.q.bulkhead.max_concurrent_calls: invalid value: integer `-3`, expected a whole number, 0 or more",
        "routes.r.profil: unknown field (did you mean `profile`?)",
    ] {
        assert!(text.contains(expected), "{expected}\nnot in\n{text}");
    }
    assert!(!text.contains("u32"), "no Rust type names: {text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

const KEYED: &str = r#"
    [profiles.per_key.rate_limit]
    rate = 1
    period = "1h"
    key = { header = "x-api-key" }
    max_keys = 1000

    [profiles.per_client.rate_limit]
    rate = 1
    period = "1h"
    key = "client_ip"

    [routes.api]
    profile = "per_key"
    [routes.pages]
    profile = "per_client"
"#;

#[tokio::test]
async fn a_rate_limit_from_the_file_can_be_keyed_by_header_or_client() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    use tower::ServiceExt;

    let routes = Routes::from_toml(KEYED, Registry::new()).unwrap();
    let app: Router = Router::new()
        .route(
            "/api",
            get(|| async { "ok" }).route_layer(routes.route_layer("api").unwrap()),
        )
        .route(
            "/pages",
            get(|| async { "ok" }).route_layer(routes.route_layer("pages").unwrap()),
        )
        .with_state(());
    let status = |path: &str, key: Option<&str>, client: Option<[u8; 4]>| {
        let mut request = axum::http::Request::get(path);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let mut request = request.body(axum::body::Body::empty()).unwrap();
        if let Some(ip) = client {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        }
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    // One call an hour per API key, each key its own budget.
    assert_eq!(status("/api", Some("alice"), None).await, 200);
    assert_eq!(status("/api", Some("alice"), None).await, 429);
    assert_eq!(status("/api", Some("bob"), None).await, 200, "another key");
    // Requests without the header share one more budget.
    assert_eq!(status("/api", None, None).await, 200);
    assert_eq!(status("/api", None, None).await, 429);
    // Per client address.
    assert_eq!(status("/pages", None, Some([10, 0, 0, 1])).await, 200);
    assert_eq!(status("/pages", None, Some([10, 0, 0, 1])).await, 429);
    assert_eq!(status("/pages", None, Some([10, 0, 0, 2])).await, 200);

    // A keyed limit is the route's own: a change takes a rebuild.
    let reload = routes
        .reload(&KEYED.replace(
            "rate = 1\n    period = \"1h\"\n    key = { header",
            "rate = 5\n    period = \"1h\"\n    key = { header",
        ))
        .unwrap();
    assert_eq!(reload.not_live, ["routes.api.rate_limit"]);
}

#[test]
fn a_bad_rate_limit_key_and_max_keys_without_a_key_name_their_field() {
    let errors = Routes::from_toml(
        r#"
        [profiles.a.rate_limit]
        rate = 1
        key = "cookie"
        [profiles.b.rate_limit]
        rate = 1
        key = { header = "not a header" }
        [profiles.c.rate_limit]
        rate = 1
        max_keys = 10
        [routes.a]
        profile = "a"
        [routes.b]
        profile = "b"
        [routes.c]
        profile = "c"
        "#,
        Registry::new(),
    )
    .unwrap_err();
    let fields: Vec<_> = errors.errors().iter().map(|e| e.field()).collect();
    assert_eq!(
        fields,
        [
            "profiles.a.rate_limit.key",
            "profiles.b.rate_limit.key.header",
            "profiles.c.rate_limit.max_keys"
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert!(
        text.contains("expected \"client_ip\", \"route\" or { header = \"<name>\" }"),
        "{text}"
    );
    assert!(text.contains("has no effect without a `key`"), "{text}");
}

const GUARDED: &str = r#"
    [profiles.guarded.rate_limit]
    rate = 5
    period = "1h"

    [profiles.guarded.timeout]
    timeout = "100ms"

    [profiles.guarded.fallback]
    status = 200
    body = "cached"
    on = "failure"

    [routes.catalog]
    profile = "guarded"

    [profiles.api.retry]
    max_attempts = 3
    backoff = { type = "constant", delay = "100ms" }
    jitter = { type = "none" }

    [upstreams.inventory]
    profile = "api"
"#;

/// A route with a timeout and a fallback, whose handler is slow, fails or
/// answers at once: its statistics, read from the registry and at
/// `/health/routes/catalog`, count each outcome, the fallbacks by cause,
/// and the latencies the handler took under paused time.
#[tokio::test(start_paused = true)]
async fn a_route_counts_its_timeouts_failures_rejections_and_fallbacks() {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, Uri};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let registry = Registry::new();
    let routes = Routes::from_toml(GUARDED, registry.clone()).unwrap();
    let handler = |uri: Uri| async move {
        match uri.query() {
            Some("slow") => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                (StatusCode::OK, "late")
            }
            Some("fail") => (StatusCode::INTERNAL_SERVER_ERROR, "broken"),
            _ => (StatusCode::OK, "fresh"),
        }
    };
    let app: Router = Router::new()
        .route(
            "/catalog",
            get(handler).route_layer(routes.route_layer("catalog").unwrap()),
        )
        .nest_service("/admin", RegistryService::new(registry.clone()))
        .with_state(());
    let call = |uri: &'static str| {
        let app = app.clone();
        async move {
            let request = Request::get(uri).body(Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };

    let ok = (StatusCode::OK, "fresh".to_owned());
    let cached = (StatusCode::OK, "cached".to_owned());
    assert_eq!(call("/catalog").await, ok);
    assert_eq!(call("/catalog?slow").await, cached, "timed out");
    assert_eq!(call("/catalog?slow").await, cached, "timed out");
    assert_eq!(call("/catalog?fail").await, cached, "a 500");
    assert_eq!(call("/catalog").await, ok);
    // The rate limit's burst of 5 is spent: rejected, then answered.
    assert_eq!(call("/catalog").await, cached, "rate limited");

    let stats = registry.routes().find("catalog", None).unwrap().snapshot();
    assert_eq!(stats.requests, 6);
    assert_eq!(
        (
            stats.successes,
            stats.failures,
            stats.timeouts,
            stats.rejections
        ),
        (2, 1, 2, 1)
    );
    assert_eq!(stats.retries, 0, "no retry on a route");
    assert_eq!(stats.fallbacks, 4);
    assert_eq!(stats.fallbacks_by_cause["elapsed"], 2);
    assert_eq!(stats.fallbacks_by_cause["response"], 1);
    assert_eq!(stats.fallbacks_by_cause["rate_limited"], 1);
    assert_eq!(stats.fallbacks_by_cause["error"], 0);
    // Paused time: the two timeouts took exactly 100 ms, the rest nothing.
    assert_eq!(stats.latency.count, 6);
    assert!((stats.latency.sum_seconds - 0.2).abs() < 1e-9);
    assert_eq!(stats.latency.buckets[0].count, 4, "at most 5 ms");
    assert_eq!(stats.latency.buckets[3].count, 4, "at most 50 ms");
    assert_eq!(stats.latency.buckets[4].le, Some(0.1));
    assert_eq!(stats.latency.buckets[4].count, 6, "at most 100 ms");

    let (status, body) = call("/admin/health/routes/catalog").await;
    assert_eq!(status, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served["name"], "catalog");
    assert_eq!(served["requests"], 6);
    assert_eq!(served["timeouts"], 2);
    assert_eq!(served["rejections"], 1);
    assert_eq!(served["fallbacks"], 4);
    assert_eq!(served["fallbacks_by_cause"]["elapsed"], 2);
    assert_eq!(served["latency"]["count"], 6);
}

/// An upstream's statistics count one outcome per call, its retries
/// included, and the retries its retry layer made.
#[tokio::test(start_paused = true)]
async fn an_upstream_counts_its_calls_and_retries() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::body::Body;
    use axum::http::{Request, Response};
    use portcullis::retry::ReplayBody;
    use tower::{Layer, ServiceExt, service_fn};

    let registry = Registry::new();
    let routes = Routes::from_toml(GUARDED, registry.clone()).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    // Answers 503 twice, then 200; then 503 for good.
    let client = service_fn(move |_: Request<ReplayBody<Body>>| {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(Body::empty());
            if call != 2 {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let service = routes.upstream_layer("inventory").unwrap().layer(client);
    let response = service
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    let stats = registry.routes().get("inventory").snapshot();
    assert_eq!(stats.requests, 2, "one per call, not per attempt");
    assert_eq!((stats.successes, stats.failures), (1, 1));
    assert_eq!(stats.retries, 4);
    assert_eq!(stats.fallbacks, 0);
    // Each call waited two backoffs of 100 ms.
    assert!((stats.latency.sum_seconds - 0.4).abs() < 1e-9);
    assert_eq!(stats.latency.buckets[5].le, Some(0.25));
    assert_eq!(stats.latency.buckets[4].count, 0);
    assert_eq!(stats.latency.buckets[5].count, 2);
}
