//! An adaptive concurrency limit from a config file: the route's stack
//! sheds what is over the limit with a 503, the limiter is the registry's
//! under the route's name, its errors name their path, and a reload that
//! would change a live limiter is refused.
#![cfg(not(loom))]

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use portcullis::config::Routes;
use portcullis::registry::{Registry, RegistryService};
use portcullis_testing as client;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

const CONFIG: &str = r#"
    [defaults.limit]
    algorithm = "aimd"

    [profiles.guarded.breaker]
    [profiles.guarded.limit]
    aimd = { initial_limit = 1, min_limit = 1, backoff_ratio = 0.5 }
    [profiles.guarded.bulkhead]
    max_concurrent_calls = 8

    [routes.work]
    profile = "guarded"
"#;

#[tokio::test]
async fn a_route_limit_sheds_over_its_limit_and_is_served_by_the_registry() {
    let routes = Routes::from_toml(CONFIG, Registry::new()).unwrap();
    let admin = RegistryService::new(routes.registry().clone());
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let handler = {
        let (entered, release) = (entered.clone(), release.clone());
        move || async move {
            entered.add_permits(1);
            release.notified().await;
            "done"
        }
    };
    let app = Router::new()
        .route(
            "/work",
            get(handler).route_layer(routes.route_layer("work").unwrap()),
        )
        .nest_service("/admin", admin)
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let held = tokio::spawn(async move { client::get(addr, "/work").await.status });
    entered.acquire().await.unwrap().forget();
    let shed = client::get(addr, "/work").await;
    assert_eq!(shed.status, 503, "over the limit of 1");
    release.notify_one();
    assert_eq!(held.await.unwrap(), 200);

    let limiter = routes.registry().limiters().find("work", None).unwrap();
    assert_eq!(limiter.config().aimd().backoff_ratio, 0.5);
    let figures = client::get(addr, "/admin/health/limiters/work").await;
    assert_eq!(figures.status, 200);
    let figures: serde_json::Value = serde_json::from_str(&figures.body).unwrap();
    assert_eq!(figures["algorithm"], "aimd", "from defaults.limit");
    assert_eq!(figures["limit"], 1);
    assert_eq!(figures["shed"], 1);
    assert_eq!(figures["inflight"], 0);

    // A reload that would change the live limiter is refused, naming it,
    // and the limiter keeps its config.
    let errors = routes
        .reload(&CONFIG.replace("backoff_ratio = 0.5", "backoff_ratio = 0.75"))
        .unwrap_err();
    let fields: Vec<_> = errors.errors().iter().map(|e| e.field()).collect();
    assert_eq!(fields, ["profiles.guarded.limit"], "{errors}");
    assert_eq!(limiter.config().aimd().backoff_ratio, 0.5);
    assert!(
        routes.reload(CONFIG).is_ok(),
        "the same config again is fine"
    );
    server.abort();
}

#[test]
fn a_bad_limit_names_its_path() {
    let errors = Routes::from_toml(
        &CONFIG
            .replace("backoff_ratio = 0.5", "backoff_ratio = 1.5")
            .replace(
                "algorithm = \"aimd\"",
                "algorithm = \"aimd\"\nwindow = \"2m\"",
            ),
        Registry::new(),
    )
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("profiles.guarded.limit.aimd.backoff_ratio: must be in [0.5, 1), got 1.5"),
        "{text}"
    );
    assert!(
        text.contains("defaults.limit.window: must be at most 1m, got 2m"),
        "{text}"
    );
}
