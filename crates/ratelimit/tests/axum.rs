//! Rate limits in a real axum router over loopback: per client IP (from
//! `ConnectInfo`), per route (from `MatchedPath`), answered with 429s.
#![cfg(not(loom))]
#![cfg(feature = "axum")]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use portcullis_ratelimit::key::{ClientIp, Route};
use portcullis_ratelimit::{KeyedRateLimiter, RateLimitConfig, RateLimitLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` from the loopback address `from` and reads the reply.
async fn get_from(server: SocketAddr, from: [u8; 4], path: &str) -> Reply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply { status, headers }
}

#[tokio::test]
async fn per_client_ip_and_per_route_limits_answer_429_with_headers() {
    // A long period, so that no budget comes back while the test runs.
    let config = RateLimitConfig::per_minute(2);
    let clients =
        KeyedRateLimiter::from_config("clients", config.clone().build().unwrap()).unwrap();
    let routes = KeyedRateLimiter::from_config("routes", config.burst(1).build().unwrap()).unwrap();
    let by_client = RateLimitLayer::keyed(clients.clone(), ClientIp::new())
        .into_http()
        .admitted_headers(true);
    let by_route = RateLimitLayer::keyed(routes.clone(), Route).into_http();

    let app = Router::new()
        .route("/search", get(|| async { "results" }).layer(by_client))
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { format!("item {id}") }).layer(by_route),
        )
        // Give the router its state now: a handler's layers are applied then,
        // once (a layer from a handle would be shared anyway).
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });

    let first = get_from(server, [127, 0, 0, 1], "/search").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-limit"), Some("2"));
    assert_eq!(first.header("ratelimit-remaining"), Some("1"));
    assert_eq!(first.header("ratelimit-reset"), Some("30"));
    assert_eq!(
        get_from(server, [127, 0, 0, 1], "/search").await.status,
        200
    );

    let limited = get_from(server, [127, 0, 0, 1], "/search").await;
    assert_eq!(limited.status, 429);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert_eq!(limited.header("ratelimit-limit"), Some("2"));

    // Another client address (still loopback) has its own budget.
    let other = get_from(server, [127, 0, 0, 2], "/search").await;
    assert_eq!(other.status, 200, "another client IP");
    assert_eq!(clients.keys(), 2);
    let one: IpAddr = [127, 0, 0, 1].into();
    assert_eq!(clients.remaining(&one), 0);
    assert_eq!(clients.snapshot().rejected, 1);

    // The route key is the matched route, not the path: /items/1 and
    // /items/2 share one budget.
    assert_eq!(
        get_from(server, [127, 0, 0, 1], "/items/1").await.status,
        200
    );
    let same_route = get_from(server, [127, 0, 0, 3], "/items/2").await;
    assert_eq!(same_route.status, 429);
    assert!(same_route.header("retry-after").is_some());
    assert_eq!(routes.remaining(&"/items/{id}".into()), 0);
    assert_eq!(routes.keys(), 1);

    serving.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), serving).await;
}
