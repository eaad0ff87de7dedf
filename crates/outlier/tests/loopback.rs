//! End to end over loopback: three axum upstreams, some answering 500,
//! called through a hyper client behind the outlier layer.
//!
//! One failing endpoint of three is ejected after its fifth failure in a
//! row, gets no calls while it is out, and gets calls again after its
//! ejection time; with two failing and a cap of 50 %, only one is ejected
//! and the other keeps its share of the calls.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis_outlier::{Detector, OutlierConfig, OutlierLayer};
use tower::{Layer, Service, ServiceExt};

const EJECTION: Duration = Duration::from_millis(400);

#[derive(Default)]
struct Upstream {
    failing: AtomicBool,
    calls: AtomicU64,
}

impl Upstream {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn handler(State(upstream): State<Arc<Upstream>>) -> StatusCode {
    upstream.calls.fetch_add(1, Ordering::SeqCst);
    if upstream.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Three upstreams on loopback, each on a port of its own.
async fn upstreams() -> (Vec<String>, Vec<Arc<Upstream>>) {
    let mut addresses = Vec::new();
    let mut upstreams = Vec::new();
    for _ in 0..3 {
        let upstream = Arc::new(Upstream::default());
        let router = Router::new()
            .route("/", get(handler))
            .with_state(upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap().to_string());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        upstreams.push(upstream);
    }
    (addresses, upstreams)
}

fn detector(endpoints: &[String]) -> Detector {
    let config = OutlierConfig::builder()
        .consecutive_failures(5)
        .base_ejection_time(EJECTION)
        .max_ejection_percent(50)
        .build()
        .unwrap();
    Detector::new("upstreams", endpoints.iter().cloned(), config).unwrap()
}

/// `n` calls one after the other; the statuses seen.
async fn calls<S>(client: &mut S, n: usize) -> Vec<u16>
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: std::fmt::Debug,
{
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let request = http::Request::get("/").body(Empty::new()).unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_then_readmitted() {
    let (endpoints, upstreams) = upstreams().await;
    upstreams[1].failing.store(true, Ordering::SeqCst);
    let detector = detector(&endpoints);
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = OutlierLayer::http(detector.clone()).unwrap().layer(http);

    // In rotation, endpoint 1 gets every third call: its fifth failure in
    // a row, at the 14th call, ejects it.
    let statuses = calls(&mut client, 14).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 500).count(), 5);
    assert!(detector.is_ejected(1), "{:?}", detector.snapshot());
    assert_eq!(upstreams[1].calls(), 5, "ejected within 5 calls to it");

    // While it is out, it gets nothing and every answer is good.
    let statuses = calls(&mut client, 30).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(upstreams[1].calls(), 5);

    // After its ejection time it is back in rotation (healthy now).
    upstreams[1].failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(EJECTION + Duration::from_millis(50)).await;
    assert!(!detector.is_ejected(1));
    let statuses = calls(&mut client, 30).await;
    assert!(statuses.iter().all(|&s| s == 200));
    let back = upstreams[1].calls() - 5;
    println!("calls to the readmitted endpoint: {back} of 30");
    assert!(
        (9..=11).contains(&back),
        "it takes its third of the calls again: {back}"
    );
    let snapshot = detector.snapshot();
    assert_eq!(
        (snapshot.consecutive_ejections, snapshot.readmissions),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_failing_and_a_cap_of_half_only_one_is_ejected() {
    let (endpoints, upstreams) = upstreams().await;
    upstreams[0].failing.store(true, Ordering::SeqCst);
    upstreams[2].failing.store(true, Ordering::SeqCst);
    let detector = detector(&endpoints);
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = OutlierLayer::http(detector.clone()).unwrap().layer(http);

    calls(&mut client, 60).await;
    let snapshot = detector.snapshot();
    println!(
        "ejected {} of 3 (cap {}), refused {}, calls {:?}",
        snapshot.ejected,
        snapshot.max_ejected,
        snapshot.refused,
        upstreams.iter().map(|u| u.calls()).collect::<Vec<_>>()
    );
    assert_eq!(snapshot.ejected, 1, "{snapshot:?}");
    assert!(snapshot.endpoints[0].ejected ^ snapshot.endpoints[2].ejected);
    assert!(!snapshot.endpoints[1].ejected);
    assert!(snapshot.refused > 0, "the second outlier was refused");
    // The failing endpoint left in rotation keeps getting calls.
    let kept = if snapshot.endpoints[0].ejected { 2 } else { 0 };
    let before = upstreams[kept].calls();
    calls(&mut client, 20).await;
    assert!(
        upstreams[kept].calls() - before >= 9,
        "it gets half the calls"
    );
}
