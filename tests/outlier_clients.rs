//! Outlier ejection outside per-authority breakers: the route writes each
//! endpoint's authority into the URI, so each endpoint has its own breaker
//! in the registry, and a failing endpoint is both ejected (no calls go to
//! it) and open in the registry.
#![cfg(not(loom))]
#![cfg(all(feature = "outlier", feature = "registry", feature = "http"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use portcullis::ServiceBuilderExt;
use portcullis::breaker::{BreakerConfig, State};
use portcullis::client::PerAuthorityLayer;
use portcullis::core::{BoxError, HttpClassifier};
use portcullis::outlier::{Detector, OutlierConfig, OutlierLayer};
use portcullis::registry::Registry;
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_ejected_and_its_own_breaker_opens() {
    // Both decide on the same two failures; the ejection outlasts the
    // breaker's open wait, so that a readmitted endpoint finds its breaker
    // half-open and its first call is a probe.
    let registry = Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(2)
                .minimum_calls(2)
                .wait_in_open(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let config = OutlierConfig::builder()
        .consecutive_failures(2)
        .base_ejection_time(Duration::from_secs(10))
        .max_ejection_percent(50)
        .build()
        .unwrap();
    let detector = Detector::new("inventory", ["a:80", "bad:81", "c:82"], config).unwrap();
    let bad_calls = Arc::new(AtomicUsize::new(0));
    let counted = bad_calls.clone();
    let client = ServiceBuilder::new()
        .outlier(OutlierLayer::http(detector.clone()).unwrap())
        .layer(PerAuthorityLayer::new(registry.clone(), "inventory").classifier(HttpClassifier))
        .service(service_fn(move |request: Request<()>| {
            let bad = request.uri().authority().unwrap().as_str() == "bad:81";
            if bad {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let mut response = Response::new(());
                if bad {
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                }
                Ok::<_, BoxError>(response)
            }
        }));
    let call = || {
        let client = client.clone();
        async move {
            let request = Request::get("/stock").body(()).unwrap();
            client.oneshot(request).await.unwrap().status()
        }
    };

    // Six calls: two reach bad:81 and fail.
    for _ in 0..6 {
        call().await;
    }
    assert_eq!(bad_calls.load(Ordering::SeqCst), 2);
    assert!(detector.is_ejected(1));
    let state = |key: &str| {
        registry
            .breakers()
            .get_keyed("inventory", key)
            .unwrap()
            .state()
    };
    assert_eq!(state("bad:81"), State::Open);
    assert_eq!(state("a:80"), State::Closed);
    // While ejected, every call goes to the healthy endpoints and succeeds.
    for _ in 0..10 {
        assert_eq!(call().await, StatusCode::OK);
    }
    assert_eq!(bad_calls.load(Ordering::SeqCst), 2);

    // Past the ejection time, the endpoint is back and its breaker lets its
    // call through as a probe (it still fails, so both act again).
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call().await);
    }
    assert_eq!(bad_calls.load(Ordering::SeqCst), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| s.is_server_error()).count(), 1);
}
