//! The rate limit as a tower service, driven with `tower_test::mock` and
//! paused time.
#![cfg(not(loom))]

use std::time::Duration;

use portcullis_core::BoxError;
use portcullis_ratelimit::{
    ByKey, KeyedRateLimiter, RateLimitConfig, RateLimitConfigBuilder, RateLimitLayer, RateLimited,
    RateLimiter,
};
use tokio::time::{self, Instant, timeout};
use tower::{Layer, ServiceExt};
use tower_test::{assert_request_eq, mock};

fn limiter(config: RateLimitConfigBuilder) -> RateLimiter {
    RateLimiter::from_config("svc", config.build().unwrap()).unwrap()
}

fn rejection(error: BoxError) -> RateLimited {
    match error.downcast::<RateLimited>() {
        Ok(limited) => *limited,
        Err(other) => panic!("expected a rate-limit rejection, got {other}"),
    }
}

/// Nothing reached the inner service (auto-advancing paused time by `for`).
async fn assert_no_request<T, U>(handle: &mut mock::Handle<T, U>, wait: Duration) {
    assert!(
        timeout(wait, handle.next_request()).await.is_err(),
        "a request reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn the_burst_passes_then_calls_fail_fast_without_reaching_the_service() {
    let l = limiter(RateLimitConfig::per_second(10).burst(3));
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(RateLimitLayer::new(l.clone()));

    for i in 0..3 {
        assert!(service.poll_ready().is_ready());
        let response = service.call(i);
        assert_request_eq!(handle, i).send_response(i * 10);
        assert_eq!(response.await.unwrap(), i * 10);
    }
    assert_eq!(l.remaining(), 0);

    assert!(
        service.poll_ready().is_ready(),
        "an exhausted limit reports ready: it fails fast in call"
    );
    let limited = rejection(service.call(3).await.unwrap_err());
    assert_eq!(limited.name(), "svc");
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(100)));
    assert_no_request(&mut handle, Duration::from_millis(50)).await;
    let snapshot = l.snapshot();
    assert_eq!((snapshot.available, snapshot.rejected), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn one_call_more_conforms_after_each_emission_interval() {
    let l = limiter(RateLimitConfig::per_second(10).burst(2));
    let service = RateLimitLayer::new(l.clone()).layer(tower::service_fn(|x: u32| async move {
        Ok::<_, BoxError>(x)
    }));
    for _ in 0..2 {
        service.clone().oneshot(0).await.unwrap();
    }
    time::advance(Duration::from_millis(99)).await;
    let limited = rejection(service.clone().oneshot(0).await.unwrap_err());
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(1)));

    time::advance(Duration::from_millis(1)).await;
    assert_eq!(l.remaining(), 1);
    service.clone().oneshot(1).await.unwrap();
    assert!(
        service.clone().oneshot(2).await.is_err(),
        "one interval buys one call"
    );

    // After a quiet spell the whole burst is back, and no more.
    time::advance(Duration::from_secs(60)).await;
    assert_eq!(l.remaining(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_exact_time_until_the_call_would_conform() {
    // 3 per second: one call per 333,333,334 ns (rounded up).
    let l = limiter(RateLimitConfig::per_second(3).burst(1));
    l.try_acquire().unwrap();
    let interval = Duration::from_nanos(333_333_334);
    assert_eq!(l.try_acquire().unwrap_err().retry_after(), Some(interval));
    time::advance(Duration::from_millis(100)).await;
    let left = interval - Duration::from_millis(100);
    assert_eq!(l.try_acquire().unwrap_err().retry_after(), Some(left));
    time::advance(left - Duration::from_nanos(1)).await;
    assert_eq!(
        l.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_nanos(1))
    );
    time::advance(Duration::from_nanos(1)).await;
    assert!(l.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_bounded_wait_admits_within_the_wait_and_rejects_beyond() {
    let l = limiter(
        RateLimitConfig::per_second(10)
            .burst(1)
            .max_wait(Duration::from_millis(250)),
    );
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(RateLimitLayer::new(l.clone()));
    let start = Instant::now();

    assert!(service.poll_ready().is_ready());
    let first = service.call(0);
    assert_request_eq!(handle, 0).send_response(0);
    assert_eq!(first.await.unwrap(), 0);

    // Two calls whose slots come in 100 and 200 ms: they wait for them.
    let mut waiting = Vec::new();
    for i in 1..3 {
        assert!(service.poll_ready().is_ready());
        waiting.push(tokio::spawn(service.call(i)));
    }
    // A third would wait 300 ms, more than 250: rejected at once.
    assert!(service.poll_ready().is_ready());
    let limited = rejection(service.call(3).await.unwrap_err());
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(300)));
    assert_eq!(Instant::now(), start, "the rejection did not wait");

    assert_no_request(&mut handle, Duration::from_millis(99)).await;
    for (i, at) in [(1, 100), (2, 200)] {
        let (request, send) = handle.next_request().await.expect("the waiting call");
        assert_eq!(request, i);
        assert_eq!(Instant::now() - start, Duration::from_millis(at));
        send.send_response(i * 10);
    }
    for (i, call) in waiting.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), (i as u32 + 1) * 10);
    }
    assert_eq!(l.snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_gives_its_slot_back() {
    let l = limiter(
        RateLimitConfig::per_second(10)
            .burst(1)
            .max_wait(Duration::from_millis(250)),
    );
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(RateLimitLayer::new(l.clone()));
    l.try_acquire().unwrap();

    assert!(service.poll_ready().is_ready());
    let cancelled = service.call(1);
    assert_eq!(
        l.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_millis(200))
    );
    drop(cancelled); // e.g. the client went away
    assert_eq!(
        l.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_millis(100)),
        "the slot at 100 ms is free again"
    );

    assert!(service.poll_ready().is_ready());
    let next = tokio::spawn(service.call(2));
    assert_request_eq!(handle, 2).send_response(20);
    assert_eq!(next.await.unwrap().unwrap(), 20);
    assert_no_request(&mut handle, Duration::from_secs(1)).await;
}

#[derive(Clone, Debug, PartialEq)]
struct Order {
    tenant: Option<&'static str>,
    id: u32,
}

fn order(tenant: &'static str, id: u32) -> Order {
    Order {
        tenant: Some(tenant),
        id,
    }
}

fn keyed(config: RateLimitConfigBuilder) -> KeyedRateLimiter<&'static str> {
    KeyedRateLimiter::from_config("tenants", config.build().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn keyed_limits_are_independent_and_keyless_requests_share_one() {
    let k = keyed(RateLimitConfig::per_second(10).burst(1));
    let layer = RateLimitLayer::keyed(k.clone(), |o: &Order| o.tenant);
    let (mut service, mut handle) = mock::spawn_layer::<Order, u32, _>(layer);

    assert!(service.poll_ready().is_ready());
    let a = service.call(order("acme", 1));
    assert_request_eq!(handle, order("acme", 1)).send_response(1);
    assert_eq!(a.await.unwrap(), 1);

    assert!(service.poll_ready().is_ready());
    let limited = rejection(service.call(order("acme", 2)).await.unwrap_err());
    assert_eq!(limited.name(), "tenants");
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(100)));

    assert!(service.poll_ready().is_ready());
    let b = service.call(order("globex", 3));
    assert_request_eq!(handle, order("globex", 3)).send_response(3);
    assert_eq!(b.await.unwrap(), 3, "another key has its own budget");

    let anonymous = Order {
        tenant: None,
        id: 4,
    };
    assert!(service.poll_ready().is_ready());
    let c = service.call(anonymous.clone());
    assert_request_eq!(handle, anonymous.clone()).send_response(4);
    assert_eq!(c.await.unwrap(), 4);
    assert!(service.poll_ready().is_ready());
    assert!(
        service.call(anonymous).await.is_err(),
        "requests without a key share one budget"
    );

    assert_eq!(k.keys(), 2);
    assert_eq!((k.remaining(&"acme"), k.remaining(&"initech")), (0, 1));
    assert_eq!(k.snapshot().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_by_new_keys_without_any_task() {
    // 64 keys fit in one shard: which key lands where is deterministic.
    let config = RateLimitConfig::per_second(10).burst(1).max_keys(64);
    let k = KeyedRateLimiter::<u32>::from_config("ids", config.build().unwrap()).unwrap();
    for key in 0..64 {
        k.try_acquire(&key).unwrap();
    }
    assert_eq!(k.keys(), 64);
    assert!(k.try_acquire(&64).is_err(), "full of busy keys");

    // 100 ms later every key is idle; nothing ran in between.
    time::advance(Duration::from_millis(100)).await;
    for key in 64..128 {
        k.try_acquire(&key).unwrap();
    }
    assert_eq!(k.keys(), 64, "the idle keys made room for the new ones");
    assert_eq!(k.remaining(&0), 1, "an evicted key lost nothing");
    assert_eq!(k.remaining(&64), 0);
    let snapshot = k.snapshot();
    assert_eq!(
        (snapshot.keys, snapshot.max_keys, snapshot.refused_keys),
        (64, 64, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn max_keys_is_enforced_and_known_keys_keep_their_budget() {
    // One call per second, two at once: a key goes idle 1 s after its call.
    let k = keyed(RateLimitConfig::per_second(1).burst(2).max_keys(3));
    k.try_acquire(&"a").unwrap();
    time::advance(Duration::from_millis(200)).await;
    k.try_acquire(&"b").unwrap();
    time::advance(Duration::from_millis(200)).await;
    k.try_acquire(&"c").unwrap();

    // Now t = 400 ms: "a" goes idle at 1 s, "b" at 1.2 s, "c" at 1.4 s.
    let refused = k.try_acquire(&"d").unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(600)));
    assert_eq!(k.keys(), 3);
    assert!(k.try_acquire(&"a").is_ok(), "a known key is still served");
    assert_eq!(k.snapshot().refused_keys, 1);

    // "a" was used again: it is busy until 2 s; "b" goes idle at 1.2 s.
    time::advance(Duration::from_millis(800)).await;
    assert!(k.try_acquire(&"d").is_ok(), "room was made by the idle key");
    assert_eq!(k.keys(), 3);
    assert_eq!(k.remaining(&"a"), 1, "the busy key kept its state");
    assert_eq!(k.remaining(&"d"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_layer_from_a_handle_shares_and_one_from_a_config_does_not() {
    let config = RateLimitConfig::per_second(1).burst(1).build().unwrap();
    let shared = RateLimiter::from_config("shared", config.clone()).unwrap();
    let layer = RateLimitLayer::new(shared.clone());
    let echo = tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });

    let (a, b) = (layer.layer(echo), layer.layer(echo));
    assert!(a.clone().oneshot(1).await.is_ok());
    assert!(
        b.oneshot(2).await.is_err(),
        "the other service shares the budget"
    );
    assert!(a.oneshot(3).await.is_err(), "and so do clones");
    assert!(layer.limit().is_some());

    let per_service = RateLimitLayer::per_service("route", config).unwrap();
    assert!(per_service.limit().is_none());
    let (x, y) = (per_service.layer(echo), per_service.layer(echo));
    assert_eq!(x.limit().name(), "route");
    assert!(x.oneshot(1).await.is_ok());
    assert!(
        y.oneshot(2).await.is_ok(),
        "each layer() call made its own limiter"
    );
}

#[test]
fn layers_and_handles_validate_their_config_up_front() {
    let config: RateLimitConfig = toml::from_str("rate = 0").unwrap();
    let error = RateLimitLayer::per_service("x", config.clone()).unwrap_err();
    assert_eq!(error.to_string(), "rate: must be in [1, 1000000000], got 0");
    let config: RateLimitConfig = toml::from_str("rate = 5\nburst = 0").unwrap();
    assert_eq!(
        KeyedRateLimiter::<u8>::from_config("k", config)
            .unwrap_err()
            .field(),
        "burst"
    );
    let config: RateLimitConfig = toml::from_str("rate = 5\nmax_keys = 0").unwrap();
    assert_eq!(
        RateLimitLayer::<ByKey<_, u8>>::keyed_per_service("k", config, |_: &u8| Some(0u8))
            .unwrap_err()
            .field(),
        "max_keys"
    );
    let config: RateLimitConfig = toml::from_str("rate = 5\nperiod = \"0s\"").unwrap();
    assert_eq!(
        RateLimiter::from_config("p", config)
            .unwrap_err()
            .to_string(),
        "period: must be greater than zero"
    );
}

#[tokio::test(start_paused = true)]
async fn snapshots_are_plain_serde_data() {
    let l = limiter(RateLimitConfig::per_minute(120).burst(5));
    l.try_acquire().unwrap();
    let json = serde_json::to_value(l.snapshot()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "svc", "limit": 120, "period": "1m", "burst": 5,
            "available": 4, "rejected": 0
        })
    );
}

#[tokio::test(start_paused = true)]
async fn acquire_on_the_handle_waits_within_max_wait() {
    let l = limiter(
        RateLimitConfig::per_second(2)
            .burst(1)
            .max_wait(Duration::from_millis(500)),
    );
    let start = Instant::now();
    l.acquire().await.unwrap();
    l.acquire().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(500));
    let queued = l.acquire();
    let limited = l.acquire().await.unwrap_err();
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(1000)));
    queued.await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(1000));
}

#[cfg(feature = "http")]
mod over_http {
    use super::*;
    use ::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
    use portcullis_ratelimit::key::ClientIp;
    use std::net::SocketAddr;

    fn header<B>(response: &Response<B>, name: &str) -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn rate_headers<B>(response: &Response<B>) -> [Option<String>; 4] {
        [
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
        ]
        .map(|name| header(response, name))
    }

    fn some(values: [&str; 3]) -> [Option<String>; 4] {
        [
            Some(values[0].into()),
            Some(values[1].into()),
            Some(values[2].into()),
            None,
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_is_a_429_with_retry_after_and_ratelimit_headers() {
        // Two per 10 s: one call costs 5 s.
        let l = limiter(RateLimitConfig::per_second(2).period(Duration::from_secs(10)));
        let layer = RateLimitLayer::new(l.clone())
            .into_http()
            .admitted_headers(true);
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(layer);

        for expected in [["2", "1", "5"], ["2", "0", "10"]] {
            assert!(service.poll_ready().is_ready());
            let response = service.call(Request::new(()));
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(Response::new("ok".to_owned()));
            let response = response.await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(rate_headers(&response), some(expected));
        }

        time::advance(Duration::from_millis(1_500)).await;
        assert!(service.poll_ready().is_ready());
        let response = service.call(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.body(), "");
        assert_eq!(
            rate_headers(&response),
            [
                Some("2".into()),
                Some("0".into()),
                Some("9".into()),
                Some("4".into())
            ],
            "3.5 s until this call conforms, 8.5 s until the burst is back: rounded up"
        );
        assert_no_request(&mut handle, Duration::from_millis(10)).await;
        assert_eq!(l.snapshot().rejected, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn admitted_responses_carry_no_headers_unless_asked() {
        let l = limiter(RateLimitConfig::per_second(1));
        let layer = RateLimitLayer::new(l).into_http();
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = service.call(Request::new(()));
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(Response::default());
        assert_eq!(
            rate_headers(&response.await.unwrap()),
            [None, None, None, None]
        );
        assert!(service.poll_ready().is_ready());
        let response = service.call(Request::new(())).await.unwrap();
        assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
        assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("1"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_inner_error_passes_through_unchanged() {
        let l = limiter(RateLimitConfig::per_second(1));
        let layer = RateLimitLayer::new(l).into_http();
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = service.call(Request::new(()));
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_error(std::io::Error::other("upstream down"));
        let error = response.await.unwrap_err();
        assert!(error.is::<std::io::Error>(), "{error}");
    }

    fn from(peer: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        request
    }

    #[tokio::test(start_paused = true)]
    async fn client_ip_keys_limit_each_client_on_its_own() {
        let config = RateLimitConfig::per_second(1).build().unwrap();
        let k = KeyedRateLimiter::from_config("clients", config).unwrap();
        let layer = RateLimitLayer::keyed(k.clone(), ClientIp::new()).into_http();
        let (mut service, mut handle) = mock::spawn_layer::<Request<()>, Response<()>, _>(layer);

        for peer in ["192.0.2.1:1000", "192.0.2.2:1000"] {
            assert!(service.poll_ready().is_ready());
            let response = service.call(from(peer));
            handle
                .next_request()
                .await
                .unwrap()
                .1
                .send_response(Response::new(()));
            assert_eq!(response.await.unwrap().status(), StatusCode::OK, "{peer}");
        }
        assert!(service.poll_ready().is_ready());
        let again = service.call(from("192.0.2.1:2000")).await.unwrap();
        assert_eq!(
            again.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "same IP, another port"
        );
        assert_eq!(k.remaining(&"192.0.2.2".parse().unwrap()), 0);
        assert_eq!(k.keys(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_new_key_is_a_429_too() {
        let config = RateLimitConfig::per_second(1).max_keys(1).build().unwrap();
        let k = KeyedRateLimiter::from_config("keys", config).unwrap();
        let key = portcullis_ratelimit::key::Header::new(HeaderName::from_static("x-api-key"));
        let layer = RateLimitLayer::keyed(k, key).into_http();
        let (mut service, mut handle) = mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
        let with_key = |value: &'static str| {
            let mut request = Request::new(());
            request
                .headers_mut()
                .insert("x-api-key", HeaderValue::from_static(value));
            request
        };
        assert!(service.poll_ready().is_ready());
        let response = service.call(with_key("one"));
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(Response::new(()));
        assert_eq!(response.await.unwrap().status(), StatusCode::OK);
        assert!(service.poll_ready().is_ready());
        let refused = service.call(with_key("two")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    }
}
