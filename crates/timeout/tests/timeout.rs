//! Timeouts driven with `tower_test::mock` and paused time.
#![cfg(not(loom))]

use std::future::Future;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use portcullis_timeout::{Deadline, Elapsed, HttpTimeoutLayer, RequestTimeout, TimeoutLayer};
use tokio::time::{self, Instant};
use tower_test::{assert_request_eq, mock};

#[tokio::test(start_paused = true)]
async fn a_slow_call_fails_with_elapsed_carrying_the_timeout() {
    let (mut service, mut handle) =
        mock::spawn_layer::<u8, u8, _>(TimeoutLayer::new(Duration::from_secs(2)));
    assert!(service.poll_ready().is_ready());
    let started = Instant::now();
    let response = service.call(1);
    let (_request, _keep_pending) = handle.next_request().await.unwrap();
    let error = response.await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        error.downcast_ref::<Elapsed>(),
        Some(&Elapsed::new(Duration::from_secs(2)))
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_finishes_in_time_passes_through() {
    let (mut service, mut handle) =
        mock::spawn_layer::<u8, u8, _>(TimeoutLayer::new(Duration::from_secs(2)));
    assert!(service.poll_ready().is_ready());
    let response = service.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    time::advance(Duration::from_millis(1_999)).await;
    send.send_response(7);
    assert_eq!(response.await.unwrap(), 7);

    assert!(service.poll_ready().is_ready());
    let response = service.call(2);
    assert_request_eq!(handle, 2).send_error(std::io::Error::other("refused"));
    assert!(
        response.await.unwrap_err().is::<std::io::Error>(),
        "inner errors pass through"
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_starts_at_the_first_poll_that_finds_the_call_pending() {
    let (mut service, mut handle) =
        mock::spawn_layer::<u8, u8, _>(TimeoutLayer::new(Duration::from_secs(2)));
    assert!(service.poll_ready().is_ready());
    let response = service.call(1);
    let (_request, _keep_pending) = handle.next_request().await.unwrap();
    // Not polled yet: this time does not count.
    time::advance(Duration::from_secs(5)).await;
    let mut response = Box::pin(response);
    let mut poll = move || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        response.as_mut().poll(&mut cx)
    };
    assert!(poll().is_pending(), "the timer starts now");
    let started = Instant::now();
    time::advance(Duration::from_millis(1_999)).await;
    assert!(poll().is_pending());
    time::advance(Duration::from_millis(1)).await;
    let error = match poll() {
        std::task::Poll::Ready(result) => result.unwrap_err(),
        std::task::Poll::Pending => panic!("the timeout has passed"),
    };
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(error.is::<Elapsed>());
}

fn http_layer() -> HttpTimeoutLayer {
    HttpTimeoutLayer::new(Duration::from_secs(5))
}

#[tokio::test(start_paused = true)]
async fn http_answers_504_or_the_configured_status() {
    for (layer, status) in [
        (http_layer(), StatusCode::GATEWAY_TIMEOUT),
        (
            http_layer().status(StatusCode::SERVICE_UNAVAILABLE),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = service.call(Request::new(()));
        let _pending = handle.next_request().await.unwrap();
        let response = response.await.expect("a response, not an error");
        assert_eq!(response.status(), status);
        assert_eq!(response.body(), "");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_extension_overrides_the_timeout() {
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, Response<()>, _>(http_layer());
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(300)));
    let started = Instant::now();
    assert!(service.poll_ready().is_ready());
    let response = service.call(request);
    let _pending = handle.next_request().await.unwrap();
    assert_eq!(
        response.await.unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn the_callee_is_told_the_time_that_remains() {
    let layer = http_layer().propagate_header(http::HeaderName::from_static("x-timeout-ms"));
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, Response<()>, _>(layer);

    // An outer deadline 1.5 s away is earlier than this timeout's 5 s.
    let mut request = Request::new(());
    let outer = {
        let (mut outer, mut outer_handle) =
            mock::spawn_layer::<Request<()>, Response<()>, _>(http_layer().propagate_grpc());
        assert!(outer.poll_ready().is_ready());
        let _response = outer.call(Request::new(()));
        let (seen, _send) = outer_handle.next_request().await.unwrap();
        assert_eq!(seen.headers()["grpc-timeout"], "5000000u");
        *seen.extensions().get::<Deadline>().unwrap()
    };
    time::advance(Duration::from_millis(3_500)).await;
    request.extensions_mut().insert(outer);

    assert!(service.poll_ready().is_ready());
    let started = Instant::now();
    let response = service.call(request);
    let (seen, _send) = handle.next_request().await.unwrap();
    assert_eq!(seen.headers()["x-timeout-ms"], "1500");
    assert_eq!(
        seen.extensions().get::<Deadline>().unwrap().remaining(),
        Duration::from_millis(1_500)
    );
    assert_eq!(
        response.await.unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(1_500),
        "never past the outer deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_mode_answers_deadline_exceeded() {
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, Response<()>, _>(
        HttpTimeoutLayer::new(Duration::from_millis(100)).grpc(),
    );
    assert!(service.poll_ready().is_ready());
    let response = service.call(Request::new(()));
    let (seen, _send) = handle.next_request().await.unwrap();
    assert_eq!(seen.headers()["grpc-timeout"], "100000u");
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(response.headers()["content-type"], "application/grpc");
}

#[test]
fn layers_from_config() {
    let config: portcullis_timeout::TimeoutConfig =
        toml::from_str("timeout = \"250ms\"\nstatus = 503\npropagate = { header = \"x-budget\" }")
            .unwrap();
    assert!(HttpTimeoutLayer::from_config(&config).is_ok());
    assert!(TimeoutLayer::from_config(&config).is_ok());
    let bad: portcullis_timeout::TimeoutConfig = toml::from_str("status = 99").unwrap();
    assert_eq!(
        HttpTimeoutLayer::from_config(&bad).unwrap_err().field(),
        "status"
    );
}

/// A timeout longer than the clock can add to `now` waits "forever" (as
/// tokio's own timers do) instead of panicking in `call`.
#[tokio::test(start_paused = true)]
async fn a_timeout_too_long_for_the_clock_never_panics() {
    for (layer, extension) in [
        (HttpTimeoutLayer::new(Duration::MAX), None),
        (http_layer(), Some(RequestTimeout(Duration::MAX))),
        (
            HttpTimeoutLayer::new(Duration::MAX).propagate_grpc(),
            Some(RequestTimeout(Duration::from_secs(u64::MAX / 2))),
        ),
    ] {
        let (mut service, mut handle) = mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
        let mut request = Request::new(());
        if let Some(extension) = extension {
            request.extensions_mut().insert(extension);
        }
        assert!(service.poll_ready().is_ready());
        let response = service.call(request);
        let (seen, send) = handle.next_request().await.unwrap();
        if let Some(value) = seen.headers().get("grpc-timeout") {
            assert_eq!(value, "15768000M", "thirty years: the far future");
        }
        time::advance(Duration::from_secs(10 * 365 * 24 * 60 * 60)).await;
        let mut answer = Response::new(());
        *answer.status_mut() = StatusCode::ACCEPTED;
        send.send_response(answer);
        assert_eq!(response.await.unwrap().status(), StatusCode::ACCEPTED);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the duration, a layer made with it and a request carrying
    /// it as its own timeout are served without a panic, and a call still
    /// in flight after the timeout is answered 504.
    #[test]
    fn no_timeout_duration_panics(
        secs in proptest::prop_oneof![0u64..3_600, proptest::prelude::any::<u64>()],
        nanos in 0u32..1_000_000_000,
    ) {
        let timeout = Duration::new(secs, nanos);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            for (layer, extension) in [
                (HttpTimeoutLayer::new(timeout), None),
                (http_layer().propagate_grpc(), Some(RequestTimeout(timeout))),
                (http_layer().propagate_header(http::HeaderName::from_static("x-ms")), Some(RequestTimeout(timeout))),
            ] {
                let (mut service, mut handle) =
                    mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
                let mut request = Request::new(());
                if let Some(extension) = extension {
                    request.extensions_mut().insert(extension);
                }
                assert!(service.poll_ready().is_ready());
                let started = Instant::now();
                let response = service.call(request);
                let (_seen, _keep_pending) = handle.next_request().await.unwrap();
                if timeout <= Duration::from_secs(3600) {
                    let response = response.await.unwrap();
                    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
                    // Paused time moves in whole milliseconds.
                    let waited = started.elapsed();
                    assert!(waited >= timeout && waited <= timeout + Duration::from_millis(1), "{waited:?} for {timeout:?}");
                } else {
                    drop(response);
                }
            }
        });
    }
}
