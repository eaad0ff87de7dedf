//! Fallbacks in a real axum Router over loopback: the routes' error type is
//! `Infallible` because the fallback answers every error.
#![cfg(all(not(loom), feature = "http"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use portcullis_core::{BoxError, BreakerOpen, HttpClassifier};
use portcullis_fallback::{Failure, FallbackLayer, StaleCache};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};

/// Sends `GET path`; returns the status, the stale mark and the body.
async fn get_page(addr: std::net::SocketAddr, path: &str) -> (u16, bool, String) {
    let response = portcullis_testing::get(addr, path).await;
    let marked = response.header("x-portcullis-fallback") == Some("stale");
    (response.status, marked, response.body)
}

#[tokio::test]
async fn routes_behind_failing_services_answer_from_their_fallbacks() {
    // Always rejected, as if a breaker below were open.
    let rejected = service_fn(|_: Request<Body>| async {
        Err::<Response<Body>, BoxError>(BreakerOpen::new("recommendations", None).into())
    });
    let recommendations = ServiceBuilder::new()
        .layer(FallbackLayer::from_parts(
            |failure: Failure<Response<Body>>, parts: http::request::Parts| {
                Response::new(Body::from(format!(
                    "bestsellers for {} ({})",
                    parts.uri.path(),
                    failure.cause()
                )))
            },
        ))
        .service(rejected);

    // Up, then down with 503s: served stale; what was never seen gets the
    // default.
    let up = Arc::new(AtomicBool::new(true));
    let upstream = {
        let up = up.clone();
        service_fn(move |request: Request<Body>| {
            let up = up.load(Ordering::Relaxed);
            async move {
                let response = if up {
                    Response::new(format!("catalog at {}", request.uri()))
                } else {
                    Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(String::new())
                        .unwrap()
                };
                Ok::<_, BoxError>(response)
            }
        })
    };
    let cache = StaleCache::new();
    let catalog = ServiceBuilder::new()
        // The same classifier outside: a miss comes out as the 503 itself.
        .layer(
            FallbackLayer::from_error(|_: Failure<Response<String>>| {
                Response::new("default catalog".to_owned())
            })
            .classifier(HttpClassifier),
        )
        .layer(FallbackLayer::stale(cache.clone()).classifier(HttpClassifier))
        .service(upstream);

    // `route_service` requires `Error = Infallible`: the fallbacks give it.
    let app = Router::new()
        .route_service("/recommendations", recommendations)
        .route_service("/catalog", catalog)
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(
        get_page(addr, "/recommendations").await,
        (
            200,
            false,
            "bestsellers for /recommendations (breaker_open)".into()
        )
    );

    assert_eq!(
        get_page(addr, "/catalog?page=1").await,
        (200, false, "catalog at /catalog?page=1".into())
    );
    up.store(false, Ordering::Relaxed);
    assert_eq!(
        get_page(addr, "/catalog?page=1").await,
        (200, true, "catalog at /catalog?page=1".into()),
        "down: the last good response, marked stale"
    );
    assert_eq!(
        get_page(addr, "/catalog?page=2").await,
        (200, false, "default catalog".into()),
        "never seen: the outer default"
    );
    let stats = cache.stats();
    assert_eq!((stats.stored, stats.hits, stats.misses), (1, 1, 1));
    server.abort();
}
