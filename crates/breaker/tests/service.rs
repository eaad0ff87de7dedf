//! The breaker as a tower service, driven with `tower_test::mock`.
#![cfg(not(loom))]

use std::time::Duration;

use http::{Response, StatusCode};
use portcullis_breaker::{
    Breaker, BreakerConfig, BreakerOpen, CircuitBreakerLayer, State, TransitionReason,
};
use portcullis_core::{BoxError, BulkheadFull, HttpClassifier};
use tokio::time;
use tower::{Layer, ServiceExt};
use tower_test::{assert_request_eq, mock};

fn breaker(config: portcullis_breaker::BreakerConfigBuilder) -> Breaker {
    Breaker::from_config("svc", config.build().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn failures_open_it_and_then_calls_fail_fast_without_reaching_the_service() {
    let b = breaker(BreakerConfig::builder().count_window(2).minimum_calls(2));
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(CircuitBreakerLayer::new(b.clone()));

    for i in 0..2 {
        assert!(service.poll_ready().is_ready());
        let response = service.call(i);
        assert_request_eq!(handle, i).send_error(std::io::Error::other("down"));
        let error = response.await.unwrap_err();
        assert!(
            error.is::<std::io::Error>(),
            "the inner error passes through: {error}"
        );
    }
    assert_eq!(b.state(), State::Open);

    assert!(
        service.poll_ready().is_ready(),
        "open reports ready: it fails fast in call"
    );
    let error = service.call(9).await.unwrap_err();
    let open = error.downcast_ref::<BreakerOpen>().expect("a rejection");
    assert_eq!(open.name(), "svc");
    let reached = time::timeout(Duration::from_secs(1), handle.next_request()).await;
    assert!(
        reached.is_err(),
        "the rejected call never reached the service"
    );
    assert_eq!(b.snapshot().not_permitted_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_future_gives_the_permit_back() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(1)
            .minimum_calls(1)
            .permitted_calls_in_half_open(1)
            .wait_in_open(Duration::from_secs(1)),
    );
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(CircuitBreakerLayer::new(b.clone()));
    b.open_for(Duration::from_secs(1)).unwrap();
    time::advance(Duration::from_secs(1)).await;

    assert!(service.poll_ready().is_ready());
    let probe = service.call(1);
    let (_request, _send) = handle
        .next_request()
        .await
        .expect("the probe reached the service");
    assert_eq!(b.state(), State::HalfOpen);
    drop(probe); // cancelled, e.g. by a client disconnect or an outer timeout

    assert!(service.poll_ready().is_ready());
    let second = service.call(2);
    assert_request_eq!(handle, 2).send_response(2);
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_response_that_completes_after_a_transition_is_not_counted() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(1)
            .wait_in_open(Duration::from_secs(1)),
    );
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(CircuitBreakerLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let slow = service.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    b.open_for(Duration::from_secs(1)).unwrap();
    time::advance(Duration::from_secs(1)).await;
    b.half_open().unwrap();
    b.close();
    send.send_error(std::io::Error::other("late"));
    assert!(slow.await.is_err());
    assert_eq!(b.snapshot().buffered_calls, 0);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn rejections_of_inner_layers_are_ignored() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(2)
            .minimum_calls(1)
            .consecutive_failures(1),
    );
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(CircuitBreakerLayer::new(b.clone()));
    for _ in 0..5 {
        assert!(service.poll_ready().is_ready());
        let response = service.call(0);
        assert_request_eq!(handle, 0).send_error(BulkheadFull::new("inner"));
        assert!(response.await.unwrap_err().is::<BulkheadFull>());
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().buffered_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn http_classifier_and_retry_after_open_it_for_the_asked_wait() {
    let b = breaker(
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(10)
            .open_on_retry_after(Duration::from_secs(60)),
    );
    let layer = CircuitBreakerLayer::new(b.clone()).classifier(HttpClassifier);
    let (mut service, mut handle) = mock::spawn_layer::<(), Response<()>, _>(layer);
    let mut events = b.subscribe();

    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(())
            .unwrap(),
    );
    assert_eq!(response.await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        b.snapshot().failed_calls,
        0,
        "a 404 is the caller's problem"
    );

    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("retry-after", "120")
            .body(())
            .unwrap(),
    );
    assert_eq!(
        response.await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(60)),
        "capped at the configured maximum"
    );
    let reason = std::iter::from_fn(|| events.try_recv()).find_map(|e| match e {
        Ok(portcullis_breaker::BreakerEvent::Transition { reason, .. }) => Some(reason),
        _ => None,
    });
    assert_eq!(
        reason,
        Some(TransitionReason::RetryAfter {
            wait: Duration::from_secs(60)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_layer_from_a_handle_shares_and_one_from_a_config_does_not() {
    let shared = breaker(BreakerConfig::builder().count_window(1).minimum_calls(1));
    let layer = CircuitBreakerLayer::new(shared.clone());
    let failing = tower::service_fn(|_: ()| async { Err::<(), BoxError>("down".into()) });
    let ok = tower::service_fn(|_: ()| async { Ok::<(), BoxError>(()) });

    let a = layer.layer(failing);
    let b = layer.layer(ok);
    assert!(a.clone().oneshot(()).await.is_err());
    let error = b.oneshot(()).await.unwrap_err();
    assert!(
        error.is::<BreakerOpen>(),
        "the other service shares the open breaker"
    );

    let per_service = CircuitBreakerLayer::per_service(
        "route",
        BreakerConfig::builder()
            .count_window(1)
            .minimum_calls(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    let x = per_service.layer(failing);
    let y = per_service.layer(ok);
    assert!(x.breaker().name() == "route" && y.breaker().name() == "route");
    assert!(x.oneshot(()).await.is_err());
    assert!(
        y.oneshot(()).await.is_ok(),
        "each layer() call made its own breaker"
    );
}

#[test]
fn per_service_layers_validate_their_config_up_front() {
    let config: BreakerConfig = toml::from_str("failure_rate_threshold = 0.0").unwrap();
    let error = CircuitBreakerLayer::per_service("x", config).unwrap_err();
    assert_eq!(error.field(), "failure_rate_threshold");
}
