//! The stale cache under an outage, over loopback through an axum router:
//! one user's response (and cookie) never reaches another, `Vary` is
//! honoured, and a flood of query strings does not evict a real page.
#![cfg(all(not(loom), feature = "http"))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use portcullis_core::{BoxError, HttpClassifier};
use portcullis_fallback::{FallbackLayer, StaleCache, StaleCacheConfig};
use portcullis_testing::{RawResponse, request};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// An upstream that answers each request with who asked (its cookie or
/// authorization), its language and its URI, setting a session cookie on
/// `/login` — until `up` is false, then 503.
fn upstream(
    up: Arc<AtomicBool>,
) -> impl tower::Service<Request<Body>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send {
    service_fn(move |request: Request<Body>| {
        let up = up.load(Ordering::Relaxed);
        async move {
            if !up {
                return Ok(Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body(String::new())
                    .unwrap());
            }
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            let mut response = Response::builder().header("vary", "accept-language");
            if request.uri().path() == "/login" {
                response = response.header("set-cookie", "session=alice-session; HttpOnly");
            }
            let body = format!(
                "{} for cookie={} auth={} lang={}",
                request.uri(),
                header("cookie"),
                header("authorization"),
                header("accept-language"),
            );
            Ok::<_, BoxError>(response.body(body).unwrap())
        }
    })
}

struct Site {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    app: Router,
    cache: StaleCache<String>,
    server: tokio::task::JoinHandle<()>,
}

async fn site(config: StaleCacheConfig) -> Site {
    let up = Arc::new(AtomicBool::new(true));
    let cache = StaleCache::from_config(config).unwrap();
    let service = ServiceBuilder::new()
        .map_err(|error: BoxError| -> std::convert::Infallible {
            panic!("the test upstream answers every request: {error}")
        })
        .layer(FallbackLayer::stale(cache.clone()).classifier(HttpClassifier))
        .service(upstream(up.clone()));
    let app = Router::new().fallback_service(service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    let server = tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    Site {
        addr,
        up,
        app,
        cache,
        server,
    }
}

impl Site {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        request(self.addr, "GET", path, headers, "").await
    }

    fn down(&self) {
        self.up.store(false, Ordering::Relaxed);
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn stale(response: &RawResponse) -> bool {
    response.header("x-portcullis-fallback") == Some("stale")
}

#[tokio::test]
async fn one_users_response_and_cookie_never_reach_another() {
    let site = site(StaleCacheConfig::default()).await;
    // Alice logs in (anonymous, the answer sets her session cookie), then
    // reads her account with it.
    let login = site.get("/login", &[]).await;
    assert_eq!(
        login.header("set-cookie"),
        Some("session=alice-session; HttpOnly")
    );
    let account = site
        .get("/account", &[("cookie", "session=alice-session")])
        .await;
    assert!(account.body.contains("cookie=session=alice-session"));
    let bearer = site
        .get("/orders", &[("authorization", "Bearer alice")])
        .await;
    assert_eq!(bearer.status, 200);
    assert!(
        site.cache.is_empty(),
        "nothing of Alice's was stored: {:?}",
        site.cache.stats()
    );

    site.down();
    for (path, headers) in [
        ("/login", &[][..]),
        ("/account", &[("cookie", "session=bob-session")][..]),
        ("/account", &[][..]),
        ("/orders", &[("authorization", "Bearer bob")][..]),
        ("/orders", &[][..]),
    ] {
        let bob = site.get(path, headers).await;
        assert_eq!(bob.status, 503, "{path} {headers:?}: {bob:?}");
        assert!(!bob.body.contains("alice"), "{bob:?}");
        assert_eq!(bob.header("set-cookie"), None);
    }
    let stats = site.cache.stats();
    assert_eq!((stats.stored, stats.hits, stats.refused), (0, 0, 1));
    assert_eq!(
        stats.bypassed, 4,
        "two credentialed requests before, two after"
    );
}

#[tokio::test]
async fn keyed_by_credentials_each_user_gets_only_their_own_page() {
    let config = StaleCacheConfig::builder()
        .key_by_credentials(true)
        .build()
        .unwrap();
    let site = site(config).await;
    site.get("/orders", &[("authorization", "Bearer alice")])
        .await;
    site.get("/orders", &[("authorization", "Bearer carol")])
        .await;
    site.down();
    let alice = site
        .get("/orders", &[("authorization", "Bearer alice")])
        .await;
    assert!(
        stale(&alice) && alice.body.contains("auth=Bearer alice"),
        "{alice:?}"
    );
    let carol = site
        .get("/orders", &[("authorization", "Bearer carol")])
        .await;
    assert!(
        stale(&carol) && carol.body.contains("auth=Bearer carol"),
        "{carol:?}"
    );
    let bob = site
        .get("/orders", &[("authorization", "Bearer bob")])
        .await;
    assert_eq!(bob.status, 503, "{bob:?}");
    let anonymous = site.get("/orders", &[]).await;
    assert_eq!(anonymous.status, 503, "{anonymous:?}");
}

#[tokio::test]
async fn vary_keeps_each_language_to_its_own_readers() {
    let site = site(StaleCacheConfig::default()).await;
    site.get("/news", &[("accept-language", "fr")]).await;
    site.get("/news", &[]).await;
    site.down();
    let french = site.get("/news", &[("accept-language", "fr")]).await;
    assert!(
        stale(&french) && french.body.ends_with("lang=fr"),
        "{french:?}"
    );
    let plain = site.get("/news", &[]).await;
    assert!(stale(&plain) && plain.body.ends_with("lang=-"), "{plain:?}");
    let german = site.get("/news", &[("accept-language", "de")]).await;
    assert_eq!(german.status, 503, "no German page was ever stored");
}

#[tokio::test]
async fn ten_thousand_query_strings_do_not_evict_the_home_page() {
    let config = StaleCacheConfig::builder()
        .max_entries(1_000)
        .build()
        .unwrap();
    let site = site(config).await;
    assert_eq!(site.get("/home", &[]).await.status, 200);
    // The flood goes through the same router in process (10,000 loopback
    // connections would only test the kernel); the outage is checked over
    // loopback.
    for i in 0..10_000 {
        let request = Request::get(format!("/search?q={i}"))
            .body(Body::empty())
            .unwrap();
        let response = site.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    for i in 0..10_000 {
        let request = Request::get(format!("/home?utm={i}"))
            .body(Body::empty())
            .unwrap();
        site.app.clone().oneshot(request).await.unwrap();
    }
    assert!(site.cache.len() <= 16, "{:?}", site.cache.stats());
    site.down();
    let home = site.get("/home", &[]).await;
    assert!(stale(&home), "{home:?}");
    assert_eq!(home.body, "/home for cookie=- auth=- lang=-");
    let first = site.get("/search?q=0", &[]).await;
    assert!(stale(&first), "a full path keeps what it had: {first:?}");
}
