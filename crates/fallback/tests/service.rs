//! The fallback as a tower service, driven with `tower_test::mock` and
//! paused time.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use http::{Response, StatusCode};
use portcullis_core::{BoxError, HttpClassifier, Outcome};
use portcullis_fallback::{
    BreakerOpen, BulkheadFull, Cause, Elapsed, Failure, Fallback, FallbackLayer, OnFailure,
    OnRejection, RateLimited, Value,
};
use tokio::time;
use tower::{Layer, Service};
use tower_test::{assert_request_eq, mock};

/// Nothing reached the mock behind `handle` (within a second of paused time).
async fn nothing_reached<T, U>(handle: &mut mock::Handle<T, U>) -> bool {
    time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn a_value_answers_errors_and_the_error_type_is_infallible() {
    let layer = FallbackLayer::value(99u32);
    let counters = layer.counters().clone();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);

    let ready: Poll<Result<(), Infallible>> = service.poll_ready();
    assert!(ready.is_ready());
    let response = service.call(1);
    assert_request_eq!(handle, 1).send_error(std::io::Error::other("reset"));
    assert_eq!(response.await.unwrap(), 99);

    assert!(service.poll_ready().is_ready());
    let response = service.call(2);
    assert_request_eq!(handle, 2).send_response(2);
    assert_eq!(response.await.unwrap(), 2, "a success passes untouched");
    assert_eq!((counters.get(Cause::Error), counters.total()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn rejections_of_other_layers_are_answered_and_counted_by_cause() {
    let layer = FallbackLayer::value(0u32);
    let counters = layer.counters().clone();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    let rejections: [BoxError; 4] = [
        BreakerOpen::new("b", Some(Duration::from_secs(5))).into(),
        BulkheadFull::new("k").into(),
        RateLimited::new("r", None).into(),
        Elapsed::new(Duration::from_millis(100)).into(),
    ];
    for (i, rejection) in rejections.into_iter().enumerate() {
        assert!(service.poll_ready().is_ready());
        let response = service.call(i as u32);
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(rejection);
        assert_eq!(response.await.unwrap(), 0);
    }
    for cause in [
        Cause::BreakerOpen,
        Cause::BulkheadFull,
        Cause::RateLimited,
        Cause::Elapsed,
    ] {
        assert_eq!(counters.get(cause), 1, "{cause}");
    }
    assert_eq!(counters.get(Cause::Error), 0);
}

#[tokio::test(start_paused = true)]
async fn a_closure_of_the_error_sees_what_failed() {
    let layer = FallbackLayer::from_error(|failure: Failure<String>| {
        let error = failure.error().expect("an error");
        format!("{}: {error}", failure.cause())
    });
    let (mut service, mut handle) = mock::spawn_layer::<(), String, _>(layer);
    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    assert_request_eq!(handle, ()).send_error(BreakerOpen::new("payments", None));
    assert_eq!(
        response.await.unwrap(),
        "breaker_open: circuit breaker 'payments' is open"
    );
}

#[derive(Clone, Debug, PartialEq)]
struct Order {
    id: u64,
    payload: Vec<u8>,
}

#[tokio::test(start_paused = true)]
async fn a_closure_of_the_error_and_of_what_was_taken_from_the_request() {
    // Take only the id: the payload is not cloned.
    let layer = FallbackLayer::from_request(
        |order: &Order| order.id,
        |failure: Failure<String>, id: u64| format!("order {id} queued ({})", failure.cause()),
    );
    let (mut service, mut handle) = mock::spawn_layer::<Order, String, _>(layer);
    let order = Order {
        id: 42,
        payload: vec![0; 1024],
    };
    assert!(service.poll_ready().is_ready());
    let response = service.call(order.clone());
    assert_request_eq!(handle, order).send_error(Elapsed::new(Duration::from_secs(1)));
    assert_eq!(response.await.unwrap(), "order 42 queued (elapsed)");
}

fn status(code: u16, body: &str) -> Response<String> {
    Response::builder()
        .status(code)
        .body(body.to_owned())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn classified_failures_of_ok_responses_trigger_it() {
    let layer = FallbackLayer::from_error(|failure: Failure<Response<String>>| {
        let failed = failure.response().expect("a failed response").status();
        status(200, &format!("instead of {}", failed.as_u16()))
    })
    .classifier(HttpClassifier);
    let counters = layer.counters().clone();
    let (mut service, mut handle) = mock::spawn_layer::<(), Response<String>, _>(layer);

    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    assert_request_eq!(handle, ()).send_response(status(503, "busy"));
    assert_eq!(response.await.unwrap().body(), "instead of 503");

    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    assert_request_eq!(handle, ()).send_response(status(404, "missing"));
    let response = response.await.unwrap();
    assert_eq!(
        (response.status(), response.body().as_str()),
        (StatusCode::NOT_FOUND, "missing"),
        "a 404 is not a failure"
    );
    assert_eq!(counters.get(Cause::Response), 1);
}

#[tokio::test(start_paused = true)]
async fn only_the_selected_rejections_trigger_it() {
    let layer = FallbackLayer::value(7u32).on(OnRejection::new().breaker_open().elapsed());
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    let mut send = |error: BoxError| {
        assert!(service.poll_ready().is_ready());
        let response = service.call(0);
        let (_, reply) = handle.poll_request().map(|r| r.unwrap()).into_ready();
        reply.send_error(error);
        response
    };
    assert_eq!(send(BreakerOpen::new("b", None).into()).await.unwrap(), 7);
    assert_eq!(send(Elapsed::new(Duration::ZERO).into()).await.unwrap(), 7);
    let error = send(BulkheadFull::new("k").into()).await.unwrap_err();
    assert!(error.is::<BulkheadFull>(), "not selected: passed through");
    let error = send("plain".into()).await.unwrap_err();
    assert_eq!(error.to_string(), "plain");
}

trait IntoReady<T> {
    fn into_ready(self) -> T;
}

impl<T> IntoReady<T> for Poll<T> {
    fn into_ready(self) -> T {
        match self {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("the request was sent in call"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_closure_decides() {
    let zero_is_a_failure = |result: Result<&u32, &BoxError>| matches!(result, Ok(0));
    let layer = FallbackLayer::value(1u32).on(zero_is_a_failure);
    let (mut service, mut handle) = mock::spawn_layer::<(), u32, _>(layer);

    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    assert_request_eq!(handle, ()).send_response(0);
    assert_eq!(response.await.unwrap(), 1);

    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    assert_request_eq!(handle, ()).send_error(std::io::Error::other("x"));
    assert!(response.await.is_err(), "errors pass under this closure");
}

#[tokio::test(start_paused = true)]
async fn a_secondary_service_gets_a_clone_of_the_request() {
    let (secondary, mut backup) = mock::pair::<u32, u32>();
    let (mut service, mut primary) =
        mock::spawn_layer::<u32, u32, _>(FallbackLayer::service(secondary));

    assert!(service.poll_ready().is_ready());
    let response = service.call(5);
    assert_request_eq!(primary, 5).send_response(50);
    assert_eq!(response.await.unwrap(), 50);
    assert!(nothing_reached(&mut backup).await, "no fallback on success");

    assert!(service.poll_ready().is_ready());
    let response = service.call(6);
    assert_request_eq!(primary, 6).send_error(BreakerOpen::new("primary", None));
    let (answer, ()) = tokio::join!(response, async {
        assert_request_eq!(backup, 6).send_response(60);
    });
    assert_eq!(answer.unwrap(), 60);
}

#[tokio::test(start_paused = true)]
async fn a_chain_tries_each_service_in_order_and_returns_the_last_failure() {
    let (second, mut second_handle) = mock::pair::<u32, u32>();
    let (third, mut third_handle) = mock::pair::<u32, u32>();
    let layer = FallbackLayer::chain([second, third]).unwrap().classifier(
        |result: Result<&u32, &BoxError>| match result {
            Ok(code) if *code >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        },
    );
    let (mut service, mut first_handle) = mock::spawn_layer::<u32, u32, _>(layer);

    // The first fails, the second answers with a classified failure, the
    // third answers.
    assert!(service.poll_ready().is_ready());
    let response = service.call(1);
    assert_request_eq!(first_handle, 1).send_error(std::io::Error::other("first"));
    let (answer, ()) = tokio::join!(response, async {
        assert_request_eq!(second_handle, 1).send_response(503);
        assert_request_eq!(third_handle, 1).send_response(200);
    });
    assert_eq!(answer.unwrap(), 200);

    // Every one fails: the last failure comes out.
    assert!(service.poll_ready().is_ready());
    let response = service.call(2);
    assert_request_eq!(first_handle, 2).send_response(500);
    let (answer, ()) = tokio::join!(response, async {
        assert_request_eq!(second_handle, 2).send_error(std::io::Error::other("second"));
        assert_request_eq!(third_handle, 2).send_error(std::io::Error::other("third"));
    });
    assert_eq!(answer.unwrap_err().to_string(), "third");

    // The second answers: the third is not asked.
    assert!(service.poll_ready().is_ready());
    let response = service.call(3);
    assert_request_eq!(first_handle, 3).send_error(std::io::Error::other("first"));
    let (answer, ()) = tokio::join!(response, async {
        assert_request_eq!(second_handle, 3).send_response(201);
    });
    assert_eq!(answer.unwrap(), 201);
    assert!(nothing_reached(&mut third_handle).await);
}

#[tokio::test(start_paused = true)]
async fn a_secondary_that_is_not_ready_is_a_failure_too() {
    let (second, mut second_handle) = mock::pair::<u32, u32>();
    let (third, mut third_handle) = mock::pair::<u32, u32>();
    second_handle.send_error(std::io::Error::other("second is dead"));
    let layer = FallbackLayer::chain([second, third]).unwrap();
    let (mut service, mut first_handle) = mock::spawn_layer::<u32, u32, _>(layer);
    assert!(service.poll_ready().is_ready());
    let response = service.call(1);
    assert_request_eq!(first_handle, 1).send_error(std::io::Error::other("first"));
    let (answer, ()) = tokio::join!(response, async {
        assert_request_eq!(third_handle, 1).send_response(3);
    });
    assert_eq!(answer.unwrap(), 3);
}

#[test]
fn a_chain_must_not_be_empty() {
    let error = FallbackLayer::chain(Vec::<mock::Mock<u32, u32>>::new()).unwrap_err();
    assert_eq!(error.to_string(), "services: must not be empty");
}

#[tokio::test(start_paused = true)]
async fn a_failing_poll_ready_falls_back_and_clones_start_clean() {
    let (inner, mut handle) = mock::pair::<u32, u32>();
    let mut service = Fallback::new(inner, OnFailure::new(), Value::new(5u32));
    handle.send_error(std::io::Error::other("worker gone"));

    let ready: Result<(), Infallible> = poll_fn(|cx| service.poll_ready(cx)).await;
    ready.unwrap();
    let mut clone = service.clone();
    assert_eq!(service.call(1).await.unwrap(), 5, "answered, not sent");
    assert!(nothing_reached(&mut handle).await);
    assert_eq!(service.counters().get(Cause::Error), 1);

    poll_fn(|cx| clone.poll_ready(cx)).await.unwrap();
    let response = clone.call(2);
    assert_request_eq!(handle, 2).send_response(20);
    assert_eq!(
        response.await.unwrap(),
        20,
        "the clone did not inherit the failure"
    );
}

#[test]
fn everything_is_debug() {
    let layer = FallbackLayer::value(1u8).on(OnRejection::all());
    let text = format!("{layer:?}");
    assert!(
        text.contains("FallbackLayer") && text.contains("OnRejection"),
        "{text}"
    );
    let service = layer.layer(tower::service_fn(|_: ()| async { Ok::<u8, BoxError>(0) }));
    assert!(format!("{service:?}").contains("a fixed value"));
}

/// Request parts and the stale cache (feature `http`).
#[cfg(feature = "http")]
mod http_sources {
    use super::*;
    use http::{Method, Request};
    use portcullis_fallback::{STALE_HEADER, StaleCache, StaleCacheConfig};

    #[tokio::test(start_paused = true)]
    async fn http_request_parts_are_kept_for_the_answer() {
        let layer = FallbackLayer::from_parts(
            |_: Failure<Response<String>>, parts: http::request::Parts| {
                Response::new(format!(
                    "{} {} for {}",
                    parts.method,
                    parts.uri,
                    parts.headers["x-tenant"].to_str().unwrap()
                ))
            },
        );
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<String>, Response<String>, _>(layer);
        let request = Request::post("/orders?id=7")
            .header("x-tenant", "acme")
            .body("a large body".to_owned())
            .unwrap();
        assert!(service.poll_ready().is_ready());
        let response = service.call(request);
        let (sent, send) = handle.next_request().await.unwrap();
        assert_eq!(sent.body(), "a large body", "the request went out whole");
        send.send_error(std::io::Error::other("refused"));
        assert_eq!(response.await.unwrap().body(), "POST /orders?id=7 for acme");
    }

    fn get(path: &str) -> Request<String> {
        Request::get(path).body(String::new()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_good_response_is_served_stale_until_its_ttl() {
        let cache = StaleCache::from_config(
            StaleCacheConfig::builder()
                .ttl(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .unwrap();
        let layer = FallbackLayer::stale(cache.clone()).classifier(HttpClassifier);
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<String>, Response<String>, _>(layer);
        let mut call = |request: Request<String>, reply: Result<Response<String>, &'static str>| {
            assert!(service.poll_ready().is_ready());
            let response = service.call(request);
            let (_, send) = handle.poll_request().map(|r| r.unwrap()).into_ready();
            match reply {
                Ok(response) => send.send_response(response),
                Err(error) => send.send_error(error),
            }
            response
        };

        let fresh = call(get("/catalog"), Ok(status(200, "v1"))).await.unwrap();
        assert!(fresh.headers().get(STALE_HEADER).is_none());
        assert_eq!(cache.len(), 1);

        let stale = call(get("/catalog"), Err("down")).await.unwrap();
        assert_eq!(stale.body(), "v1");
        assert_eq!(stale.headers()[STALE_HEADER], "stale");

        let stale = call(get("/catalog"), Ok(status(503, "busy")))
            .await
            .unwrap();
        assert_eq!(
            (stale.status(), stale.body().as_str()),
            (StatusCode::OK, "v1")
        );

        let miss = call(get("/other"), Err("down")).await.unwrap_err();
        assert_eq!(miss.to_string(), "down", "no entry: the failure as it was");
        let miss = call(get("/other"), Ok(status(502, "bad"))).await.unwrap();
        assert_eq!(miss.status(), StatusCode::BAD_GATEWAY);

        let post = Request::post("/catalog").body(String::new()).unwrap();
        let error = call(post, Err("down")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "down",
            "only GET and HEAD are served stale"
        );
        let head = Request::head("/catalog").body(String::new()).unwrap();
        assert!(
            call(head, Err("down")).await.is_err(),
            "HEAD has its own entries"
        );

        time::advance(Duration::from_secs(30)).await;
        let expired = call(get("/catalog"), Err("down")).await.unwrap_err();
        assert_eq!(expired.to_string(), "down", "past the TTL");
        let stats = cache.stats();
        assert_eq!((stats.stored, stats.hits), (1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn responses_to_other_methods_and_failures_are_not_stored() {
        let cache = StaleCache::new();
        let layer = FallbackLayer::stale(cache.clone()).classifier(HttpClassifier);
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<String>, Response<String>, _>(layer);
        for (method, code) in [
            (Method::POST, 200),
            (Method::PUT, 201),
            (Method::GET, 500),
            (Method::GET, 404),
        ] {
            assert!(service.poll_ready().is_ready());
            let request = Request::builder()
                .method(method)
                .uri("/x")
                .body(String::new())
                .unwrap();
            let response = service.call(request);
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(status(code, ""));
            assert_eq!(response.await.unwrap().status().as_u16(), code);
        }
        assert!(cache.is_empty(), "{:?}", cache.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_outside_the_stale_cache_answers_what_it_cannot() {
        let stale = FallbackLayer::stale(StaleCache::new()).classifier(HttpClassifier);
        let last_resort =
            FallbackLayer::from_error(|_: Failure<Response<String>>| status(200, "default"));
        let (inner, mut handle) = mock::pair::<Request<String>, Response<String>>();
        let mut service = last_resort.layer(stale.layer(inner));

        let ready: Result<(), Infallible> = poll_fn(|cx| service.poll_ready(cx)).await;
        ready.unwrap();
        let response = service.call(get("/never-seen"));
        let (sent, send) = handle.next_request().await.unwrap();
        assert_eq!(sent.uri(), "/never-seen");
        send.send_error(std::io::Error::other("down"));
        let response: Response<String> = response.await.unwrap();
        assert_eq!(response.body(), "default");
    }

    #[test]
    fn stale_cache_config_errors_name_the_field() {
        let zero = StaleCacheConfig::builder()
            .max_entries(0)
            .build()
            .unwrap_err();
        assert_eq!(
            zero.to_string(),
            "max_entries: must be in [1, 1000000], got 0"
        );
        let ttl: StaleCacheConfig = toml::from_str("ttl = \"0s\"").unwrap();
        let error = StaleCache::<String>::from_config(ttl).unwrap_err();
        assert_eq!(error.to_string(), "ttl: must be greater than zero");
    }

    #[test]
    fn the_stale_cache_is_debug() {
        assert!(format!("{:?}", StaleCache::<String>::new()).contains("max_entries: 1000"));
    }
}
