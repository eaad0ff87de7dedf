//! Client stacks from a config file, against real servers on loopback: an
//! upstream with `per_host = true` has one breaker (and bulkhead) per host,
//! each made with the file's defaults and the upstream's profile, so a
//! failing host's breaker opens while a healthy host's stays closed, and a
//! reload reaches every host's breaker.
#![cfg(not(loom))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use portcullis::breaker::{SlidingWindow, State};
use portcullis::config::Routes;
use portcullis::core::{BoxError, BreakerOpen};
use portcullis::registry::Registry;
use portcullis::retry::ReplayBody;
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

const CONFIG: &str = r#"
    [defaults.breaker]
    sliding_window = { type = "count", size = 4 }
    minimum_calls = 3
    wait_in_open = "30s"

    [profiles.api.breaker]
    failure_rate_threshold = 50.0
    [profiles.api.bulkhead]
    max_concurrent_calls = 7
    [profiles.api.attempt_timeout]
    timeout = "5s"

    [upstreams.inventory]
    profile = "api"
    per_host = true
"#;

type Client = BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Bytes>, BoxError>;

/// An axum server on loopback answering `status` and counting requests.
async fn serve(status: StatusCode) -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app: Router = Router::new()
        .route(
            "/stock",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { (status, "stock") }
            }),
        )
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// A reqwest client behind the upstream's layer from the file.
fn client(routes: &Routes, upstream: &str) -> Client {
    let reqwest = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = service_fn(move |request: http::Request<ReplayBody<Full<Bytes>>>| {
        let reqwest = reqwest.clone();
        async move {
            let request = reqwest::Request::try_from(request.map(reqwest::Body::wrap))?;
            let response = http::Response::from(reqwest.execute(request).await?);
            let (parts, body) = response.into_parts();
            let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
            Ok::<_, BoxError>(http::Response::from_parts(parts, body))
        }
    });
    routes.upstream_layer(upstream).unwrap().layer(send)
}

async fn get_stock(client: &Client, addr: SocketAddr) -> Result<u16, BoxError> {
    let request = http::Request::get(format!("http://{addr}/stock"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.clone().oneshot(request).await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn per_host_breakers_take_the_files_config_and_open_alone() {
    let (healthy, healthy_hits) = serve(StatusCode::OK).await;
    let (failing, failing_hits) = serve(StatusCode::INTERNAL_SERVER_ERROR).await;
    let routes = Routes::from_toml(CONFIG, Registry::new()).unwrap();
    assert!(routes.config().is_per_host("inventory"));
    let client = client(&routes, "inventory");

    for _ in 0..3 {
        assert_eq!(get_stock(&client, healthy).await.unwrap(), 200);
        assert_eq!(get_stock(&client, failing).await.unwrap(), 500);
    }
    // The failing host's breaker opened at its third failure (the file's
    // minimum_calls): its next call is refused before it is sent.
    let refused = get_stock(&client, failing).await.unwrap_err();
    assert!(refused.is::<BreakerOpen>(), "{refused}");
    assert_eq!(get_stock(&client, healthy).await.unwrap(), 200);
    assert_eq!(healthy_hits.load(Ordering::SeqCst), 4);
    assert_eq!(failing_hits.load(Ordering::SeqCst), 3);

    let registry = routes.registry();
    let healthy_key = healthy.to_string();
    let failing_key = failing.to_string();
    let healthy_breaker = registry
        .breakers()
        .find("inventory", Some(&healthy_key))
        .expect("a breaker for the healthy host");
    let failing_breaker = registry
        .breakers()
        .find("inventory", Some(&failing_key))
        .expect("a breaker for the failing host");
    assert_eq!(healthy_breaker.state(), State::Closed);
    assert_eq!(failing_breaker.state(), State::Open);
    assert!(
        registry.breakers().find("inventory", None).is_none(),
        "no breaker for the whole upstream"
    );
    for breaker in [&healthy_breaker, &failing_breaker] {
        let config = breaker.config();
        // From [defaults.breaker] ...
        assert_eq!(config.sliding_window(), SlidingWindow::Count { size: 4 });
        assert_eq!(config.minimum_calls(), 3);
        assert_eq!(config.wait_in_open(), Duration::from_secs(30));
        // ... and from the profile.
        assert_eq!(config.failure_rate_threshold(), 50.0);
    }
    for key in [&healthy_key, &failing_key] {
        let bulkhead = registry
            .bulkheads()
            .find("inventory", Some(key))
            .expect("a bulkhead per host");
        assert_eq!(bulkhead.config().max_concurrent_calls(), 7);
    }
    let listed: Vec<_> = registry
        .breakers()
        .list()
        .into_iter()
        .map(|b| (b.snapshot.name, b.key))
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|(name, key)| name == "inventory" && key.is_some())
    );
}

#[tokio::test]
async fn a_reload_reaches_every_hosts_breaker() {
    let (healthy, _) = serve(StatusCode::OK).await;
    let (failing, failing_hits) = serve(StatusCode::INTERNAL_SERVER_ERROR).await;
    let routes = Routes::from_toml(CONFIG, Registry::new()).unwrap();
    let client = client(&routes, "inventory");
    for _ in 0..3 {
        get_stock(&client, healthy).await.unwrap();
        get_stock(&client, failing).await.unwrap();
    }
    let registry = routes.registry();
    let failing_breaker = registry
        .breakers()
        .find("inventory", Some(&failing.to_string()))
        .unwrap();
    let healthy_breaker = registry
        .breakers()
        .find("inventory", Some(&healthy.to_string()))
        .unwrap();
    assert_eq!(failing_breaker.state(), State::Open);

    let reload = routes
        .reload(&CONFIG.replace(
            "failure_rate_threshold = 50.0",
            "failure_rate_threshold = 80.0",
        ))
        .unwrap();
    assert_eq!(reload.breakers, 2, "both hosts' breakers");
    assert!(reload.not_live.is_empty(), "{reload:?}");
    for breaker in [&healthy_breaker, &failing_breaker] {
        assert_eq!(breaker.config().failure_rate_threshold(), 80.0);
        assert_eq!(breaker.config().minimum_calls(), 3, "defaults kept");
    }
    assert_eq!(failing_breaker.state(), State::Open, "state kept");
    assert!(
        get_stock(&client, failing)
            .await
            .unwrap_err()
            .is::<BreakerOpen>()
    );
    assert_eq!(failing_hits.load(Ordering::SeqCst), 3);

    // A window shape a live host's breaker cannot take is refused by path,
    // and nothing changes.
    let errors = routes
        .reload(&CONFIG.replace("size = 4", "size = 8"))
        .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "profiles.api.breaker.sliding_window: cannot change on the live breaker 'inventory', \
         which keeps its window"
    );
    assert_eq!(failing_breaker.config().failure_rate_threshold(), 80.0);

    // Turning per_host off applies to stacks built afterwards.
    let reload = routes
        .reload(&CONFIG.replace("per_host = true", "per_host = false"))
        .unwrap();
    assert_eq!(reload.not_live, ["upstreams.inventory.per_host"]);
    assert!(!routes.config().is_per_host("inventory"));
}

/// `HttpClient`: a reqwest client behind the upstream's stack, kept in an
/// axum state. The POST is retried (it carries an `Idempotency-Key`) with
/// its body replayed, each attempt is recorded by the host's breaker, and
/// bad input is a typed error before anything is sent.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn an_http_client_in_axum_state_retries_with_its_body() {
    use axum::extract::State;
    use portcullis::client::{HttpClient, InvalidRequest};

    // Answers 503 to its first request, then echoes the body.
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let upstream: Router = Router::new()
        .route(
            "/echo",
            axum::routing::post(move |body: Bytes| {
                let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        (StatusCode::SERVICE_UNAVAILABLE, Bytes::new())
                    } else {
                        (StatusCode::OK, body)
                    }
                }
            }),
        )
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });

    let routes = Routes::from_toml(
        &format!(
            "{CONFIG}\n[profiles.api.retry]\nmax_attempts = 2\n\
             backoff = {{ type = \"constant\", delay = \"0s\" }}\njitter = {{ type = \"none\" }}\n"
        ),
        Registry::new(),
    )
    .unwrap();
    let reqwest = reqwest::Client::builder().no_proxy().build().unwrap();
    let inventory = HttpClient::new(&routes, "inventory", reqwest).unwrap();

    // The gateway keeps the client in its state.
    let gateway: Router = Router::new()
        .route(
            "/order",
            get(move |State(inventory): State<HttpClient>| async move {
                let url = format!("http://{upstream_addr}/echo");
                match inventory
                    .post(url)
                    .header("idempotency-key", "order-1")
                    .body("two apples")
                    .send()
                    .await
                {
                    Ok(response) => (response.status(), response.into_body()),
                    Err(error) => (StatusCode::BAD_GATEWAY, Bytes::from(error.to_string())),
                }
            }),
        )
        .with_state(inventory.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, gateway).await.unwrap() });

    let order = portcullis_testing::get(gateway_addr, "/order").await;
    assert_eq!((order.status, order.body.as_str()), (200, "two apples"));
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one retry");
    let breaker = routes
        .registry()
        .breakers()
        .find("inventory", Some(&upstream_addr.to_string()))
        .expect("the host's breaker");
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.buffered_calls, 2, "each attempt is recorded");
    assert_eq!(snapshot.failed_calls, 1);

    // Bad input: typed errors, and nothing sent.
    for error in [
        inventory.get("not a url").send().await.unwrap_err(),
        inventory
            .get("ftp://example.com/")
            .send()
            .await
            .unwrap_err(),
        inventory
            .get(format!("http://{upstream_addr}/echo"))
            .header("bad header", "x")
            .send()
            .await
            .unwrap_err(),
        inventory
            .get(format!("http://{upstream_addr}/echo"))
            .header("x-note", "line\nbreak")
            .send()
            .await
            .unwrap_err(),
    ] {
        assert!(error.is::<InvalidRequest>(), "{error}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(breaker.snapshot().buffered_calls, 2, "not counted");
}

/// The client types can be stored in shared state.
#[cfg(feature = "reqwest")]
#[test]
fn the_clients_can_be_stored() {
    fn storable<T: Clone + Send + Sync + 'static>() {}
    storable::<portcullis::client::HttpClient>();
    storable::<portcullis::client::BoxClient<Full<Bytes>, Bytes>>();
}
