//! Keyed client stacks: one breaker (and bulkhead) per upstream authority,
//! from the registry.
#![cfg(not(loom))]
#![cfg(all(feature = "registry", feature = "http"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use portcullis::breaker::{BreakerConfig, State};
use portcullis::bulkhead::BulkheadConfig;
use portcullis::client::{NoAuthority, PerAuthorityLayer};
use portcullis::core::{BoxError, BreakerOpen, BulkheadFull, HttpClassifier};
use portcullis::registry::{AtKeyLimit, KeyLimitReached, OVERFLOW_KEY, Registry};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

/// Opens after two calls of which both failed.
fn quick_registry() -> portcullis::registry::RegistryBuilder {
    Registry::builder().breaker_default(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(2)
            .build()
            .unwrap(),
    )
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// An upstream pair behind one client: `bad:81` answers 500, anything else
/// 200; `calls` counts the calls that reached it.
fn upstreams(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |request: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let status = match request.uri().authority().map(|a| a.as_str()) {
            Some("bad:81") => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        };
        async move {
            let mut response = Response::new(());
            *response.status_mut() = status;
            Ok::<_, BoxError>(response)
        }
    })
}

#[tokio::test]
async fn the_failing_host_opens_its_breaker_and_the_other_stays_closed() {
    let registry = quick_registry().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let client = PerAuthorityLayer::new(registry.clone(), "upstream")
        .classifier(HttpClassifier)
        .layer(upstreams(calls.clone()));

    for _ in 0..2 {
        let response = client
            .clone()
            .oneshot(get("http://bad:81/x"))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let response = client
            .clone()
            .oneshot(get("http://good:80/x"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // `bad:81` is open now: its calls fail fast, without reaching it.
    let error = client
        .clone()
        .oneshot(get("http://bad:81/y"))
        .await
        .unwrap_err();
    let open = error.downcast_ref::<BreakerOpen>().expect("breaker open");
    assert_eq!(open.name(), "upstream");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // `good:80` still flows.
    let response = client
        .clone()
        .oneshot(get("http://good:80/y"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    let breakers = registry.breakers().list();
    let seen: Vec<_> = breakers
        .iter()
        .map(|b| (b.snapshot.name.as_str(), b.key.as_deref(), b.snapshot.state))
        .collect();
    assert_eq!(
        seen,
        [
            ("upstream", Some("bad:81"), State::Open),
            ("upstream", Some("good:80"), State::Closed),
        ]
    );
    assert_eq!(
        registry
            .breakers()
            .find("upstream", Some("bad:81"))
            .unwrap()
            .state(),
        State::Open
    );
}

#[tokio::test]
async fn every_clone_and_every_layer_on_the_registry_shares_the_breakers() {
    let registry = quick_registry().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let one = PerAuthorityLayer::new(registry.clone(), "upstream")
        .classifier(HttpClassifier)
        .layer(upstreams(calls.clone()));
    let other = PerAuthorityLayer::new(registry.clone(), "upstream")
        .classifier(HttpClassifier)
        .layer(upstreams(calls.clone()));
    one.oneshot(get("http://bad:81/")).await.unwrap();
    other.clone().oneshot(get("http://bad:81/")).await.unwrap();
    let error = other.oneshot(get("http://bad:81/")).await.unwrap_err();
    assert!(error.is::<BreakerOpen>());
    assert_eq!(registry.breakers().len(), 1);
}

#[tokio::test]
async fn user_information_is_not_part_of_the_key() {
    let registry = Registry::new();
    let client = PerAuthorityLayer::new(registry.clone(), "db")
        .layer(upstreams(Arc::new(AtomicUsize::new(0))));
    client
        .clone()
        .oneshot(get("http://user:secret@db:5432/"))
        .await
        .unwrap();
    client.oneshot(get("http://db:5432/")).await.unwrap();
    let breakers = registry.breakers().list();
    assert_eq!(breakers.len(), 1);
    assert_eq!(breakers[0].key.as_deref(), Some("db:5432"));
}

#[tokio::test]
async fn a_relative_uri_is_a_typed_error_and_is_not_sent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let client =
        PerAuthorityLayer::new(Registry::new(), "upstream").layer(upstreams(calls.clone()));
    let error = client.oneshot(get("/no-host")).await.unwrap_err();
    assert!(error.is::<NoAuthority>(), "{error}");
    assert_eq!(
        error.to_string(),
        "request uri has no authority to key a breaker by"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A client on `registry` (of one key) whose one key, `bad:81`, is open:
/// an open breaker is not evicted. Returns it and its upstream's calls.
async fn one_key_taken_by_an_open_breaker(
    registry: &Registry,
) -> (
    impl Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let client = PerAuthorityLayer::new(registry.clone(), "upstream")
        .classifier(HttpClassifier)
        .layer(upstreams(calls.clone()));
    for _ in 0..2 {
        client.clone().oneshot(get("http://bad:81/")).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    (client, calls)
}

#[tokio::test]
async fn past_the_key_bound_new_hosts_share_the_overflow_breaker() {
    let registry = quick_registry().max_keys(1).build().unwrap();
    let (client, calls) = one_key_taken_by_an_open_breaker(&registry).await;
    let response = client
        .clone()
        .oneshot(get("http://good:80/"))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "served through the overflow breaker"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let keys: Vec<_> = registry
        .breakers()
        .list()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(
        keys,
        [Some("bad:81".to_owned()), Some(OVERFLOW_KEY.to_owned())]
    );

    // Once `bad:81` closes and goes unused, `good:80` gets its own.
    registry
        .breakers()
        .find("upstream", Some("bad:81"))
        .unwrap()
        .close();
    client.oneshot(get("http://good:80/")).await.unwrap();
    let keys: Vec<_> = registry
        .breakers()
        .list()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(
        keys,
        [Some("good:80".to_owned()), Some(OVERFLOW_KEY.to_owned())]
    );
}

#[tokio::test]
async fn past_the_key_bound_a_strict_registry_fails_the_call_with_a_typed_error() {
    let registry = quick_registry()
        .max_keys(1)
        .at_key_limit(AtKeyLimit::Reject)
        .build()
        .unwrap();
    let (client, calls) = one_key_taken_by_an_open_breaker(&registry).await;
    let error = client.oneshot(get("http://good:80/")).await.unwrap_err();
    let limit = error
        .downcast_ref::<KeyLimitReached>()
        .expect("key limit reached");
    assert_eq!((limit.name(), limit.limit()), ("upstream", 1));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "not sent");
}

#[tokio::test]
async fn with_bulkheads_each_host_has_its_own_permits() {
    let registry = Registry::builder()
        .bulkhead_default(
            BulkheadConfig::builder()
                .max_concurrent_calls(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut client = PerAuthorityLayer::new(registry.clone(), "upstream")
        .with_bulkheads()
        .layer(inner);

    // One call to `a:1` holds its host's only permit.
    client.ready().await.unwrap();
    let first = client.call(get("http://a:1/"));
    let (_, respond) = handle.next_request().await.unwrap();

    // A second call to `a:1` is refused; `b:2` has its own permit.
    client.ready().await.unwrap();
    let error = client.call(get("http://a:1/")).await.unwrap_err();
    assert!(error.is::<BulkheadFull>(), "{error}");
    client.ready().await.unwrap();
    let other = client.call(get("http://b:2/"));
    let (request, respond_b) = handle.next_request().await.unwrap();
    assert_eq!(request.uri(), "http://b:2/");
    respond_b.send_response(Response::new(()));
    other.await.unwrap();

    respond.send_response(Response::new(()));
    first.await.unwrap();
    let bulkheads: Vec<_> = registry
        .bulkheads()
        .list()
        .into_iter()
        .map(|b| (b.key, b.snapshot.rejected))
        .collect();
    assert_eq!(
        bulkheads,
        [(Some("a:1".to_owned()), 1), (Some("b:2".to_owned()), 0)]
    );
    // The breaker ignored the rejection: nothing failed.
    let breaker = registry.breakers().find("upstream", Some("a:1")).unwrap();
    let figures = breaker.snapshot();
    assert_eq!((figures.buffered_calls, figures.failed_calls), (1, 0));
}
