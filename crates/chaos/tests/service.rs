//! The chaos layer as a tower service, driven with `tower_test::mock` and
//! paused time.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::time::Duration;

use http::{Response, StatusCode};
use portcullis_chaos::{Chaos, ChaosConfig, ChaosConfigBuilder, ChaosError, ChaosLayer};
use tokio::time::{self, Instant};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn chaos(config: ChaosConfigBuilder) -> Chaos {
    Chaos::from_config("test", config.build().unwrap()).unwrap()
}

fn echo() -> impl Service<
    u32,
    Response = u32,
    Error = Infallible,
    Future = std::future::Ready<Result<u32, Infallible>>,
> + Clone {
    service_fn(|x: u32| std::future::ready(Ok(x)))
}

/// Which of `calls` calls were failed, as a string of `x` and `.`.
async fn pattern(chaos: &Chaos, calls: u32) -> String {
    let mut service = ChaosLayer::new(chaos.clone()).layer(echo());
    let mut out = String::new();
    for i in 0..calls {
        let result = service.ready().await.unwrap().call(i).await;
        out.push(if result.is_err() { 'x' } else { '.' });
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_sequence() {
    let config = || ChaosConfig::builder().seed(1234).error_rate(0.5);
    let a = pattern(&chaos(config()), 200).await;
    let b = pattern(&chaos(config()), 200).await;
    assert_eq!(a, b, "same seed, same faults");
    assert!(a.contains('x') && a.contains('.'), "{a}");

    let other = pattern(
        &chaos(ChaosConfig::builder().seed(4321).error_rate(0.5)),
        200,
    )
    .await;
    assert_ne!(a, other, "another seed, other faults");

    let replay = chaos(config());
    let first = pattern(&replay, 50).await;
    replay.reseed(1234);
    assert_eq!(pattern(&replay, 50).await, first, "reseeding replays");
    assert_eq!(&a[..50], first);
}

#[tokio::test(start_paused = true)]
async fn changing_the_latency_rate_does_not_shift_the_error_sequence() {
    let errors_only = pattern(&chaos(ChaosConfig::builder().seed(9).error_rate(0.3)), 100).await;
    let with_latency = chaos(
        ChaosConfig::builder()
            .seed(9)
            .error_rate(0.3)
            .latency(0.5, Duration::from_millis(10)),
    );
    assert_eq!(pattern(&with_latency, 100).await, errors_only);
    assert!(with_latency.stats().delays > 0);
}

#[tokio::test(start_paused = true)]
async fn rate_zero_never_injects() {
    let c = chaos(ChaosConfig::builder().seed(1));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(ChaosLayer::new(c.clone()));
    for i in 0..200 {
        assert!(service.poll_ready().is_ready());
        let response = service.call(i);
        assert_request_eq!(handle, i).send_response(i * 2);
        assert_eq!(response.await.unwrap(), i * 2);
    }
    let stats = c.stats();
    assert_eq!((stats.calls, stats.errors, stats.delays), (200, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn rate_one_always_injects_and_never_reaches_the_service() {
    let c = chaos(ChaosConfig::builder().error_rate(1.0));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(ChaosLayer::new(c.clone()));
    for i in 0..100 {
        assert!(service.poll_ready().is_ready());
        let error = service.call(i).await.unwrap_err();
        let injected = error
            .downcast_ref::<ChaosError>()
            .expect("an injected fault");
        assert_eq!(error.to_string(), "injected fault");
        assert!(!injected.is_outage());
    }
    let reached = time::timeout(Duration::from_secs(1), handle.next_request()).await;
    assert!(reached.is_err(), "no call reached the service");
    assert_eq!(c.stats().errors, 100);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_response_by_the_configured_amount() {
    let c = chaos(ChaosConfig::builder().latency(1.0, Duration::from_millis(300)));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(ChaosLayer::new(c.clone()));

    assert!(service.poll_ready().is_ready());
    let mut response = std::pin::pin!(service.call(1));
    assert_request_eq!(handle, 1).send_response(10);
    let early = time::timeout(Duration::from_millis(299), response.as_mut()).await;
    assert!(early.is_err(), "not before 300ms");
    let start = Instant::now();
    assert_eq!(response.await.unwrap(), 10);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(1),
        "at 300ms exactly"
    );
    assert_eq!(c.stats().delays, 1);
}

#[tokio::test(start_paused = true)]
async fn a_latency_range_delays_within_its_ends_and_adds_to_the_callee() {
    let c = chaos(ChaosConfig::builder().seed(77).latency_range(
        1.0,
        Duration::from_millis(100),
        Duration::from_millis(200),
    ));
    let slow = service_fn(|x: u32| async move {
        time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Infallible>(x)
    });
    let mut service = ChaosLayer::new(c).layer(slow);
    let mut seen = Vec::new();
    for i in 0..20 {
        let start = Instant::now();
        assert_eq!(service.ready().await.unwrap().call(i).await.unwrap(), i);
        let took = start.elapsed();
        assert!(
            (Duration::from_millis(150)..=Duration::from_millis(250)).contains(&took),
            "the delay (100..=200ms) adds to the callee's 50ms: {took:?}"
        );
        seen.push(took);
    }
    seen.dedup();
    assert!(seen.len() > 1, "the delays vary: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn an_injected_error_can_be_slow_too() {
    let c = chaos(
        ChaosConfig::builder()
            .error_rate(1.0)
            .latency(1.0, Duration::from_secs(2)),
    );
    let mut service = ChaosLayer::new(c).layer(echo());
    let start = Instant::now();
    let error = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(error.is::<ChaosError>());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn switching_off_at_runtime_stops_injection() {
    let c = chaos(ChaosConfig::builder().error_rate(1.0));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(ChaosLayer::new(c.clone()));

    assert!(service.poll_ready().is_ready());
    assert!(service.call(1).await.is_err());

    c.disable();
    for i in 0..10 {
        assert!(service.poll_ready().is_ready());
        let response = service.call(i);
        assert_request_eq!(handle, i).send_response(i);
        assert_eq!(response.await.unwrap(), i, "off: passed through");
    }
    assert_eq!(c.stats().calls, 1, "nothing is counted while off");

    c.enable();
    assert!(service.poll_ready().is_ready());
    assert!(service.call(2).await.is_err(), "on again");

    c.set_error_rate(0.0).unwrap();
    assert!(service.poll_ready().is_ready());
    let response = service.call(3);
    assert_request_eq!(handle, 3).send_response(3);
    assert_eq!(response.await.unwrap(), 3, "a rate changed at runtime");
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services() {
    let c = Chaos::new("x");
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(ChaosLayer::new(c));
    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_user_error_factory() {
    let c = chaos(ChaosConfig::builder().error_rate(1.0));
    let layer =
        ChaosLayer::new(c).error_with(|| std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    let error = layer.layer(echo()).oneshot(1).await.unwrap_err();
    let io = error
        .downcast_ref::<std::io::Error>()
        .expect("the user's error");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn a_response_factory_and_no_errors_keep_the_inner_error_type() {
    let c = chaos(ChaosConfig::builder().error_rate(1.0).response_rate(1.0));
    let layer = ChaosLayer::new(c.clone())
        .without_errors()
        .respond_with(|| {
            Response::builder()
                .status(429)
                .header("retry-after", "3")
                .body(String::new())
                .unwrap()
        });
    let inner = service_fn(|_: ()| async { Ok::<_, Infallible>(Response::new("ok".to_owned())) });
    let service = layer.layer(inner);
    let result: Result<Response<String>, Infallible> = service.oneshot(()).await;
    let response = result.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");
    let stats = c.stats();
    assert_eq!(
        (stats.errors, stats.responses),
        (0, 1),
        "the error rate is ignored without errors"
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_window_fails_everything_between_two_instants() {
    let c = chaos(ChaosConfig::builder().latency(1.0, Duration::from_secs(5)));
    let now = Instant::now();
    c.outage(now + Duration::from_secs(10), now + Duration::from_secs(20))
        .unwrap();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(ChaosLayer::new(c.clone()));
    c.set_latency_rate(0.0).unwrap();

    assert!(service.poll_ready().is_ready());
    let response = service.call(1);
    assert_request_eq!(handle, 1).send_response(1);
    assert_eq!(response.await.unwrap(), 1, "before the window");

    time::advance(Duration::from_secs(10)).await;
    c.set_latency_rate(1.0).unwrap();
    for i in 0..5 {
        assert!(service.poll_ready().is_ready());
        let start = Instant::now();
        let error = service.call(i).await.unwrap_err();
        assert!(error.downcast_ref::<ChaosError>().unwrap().is_outage());
        assert_eq!(start.elapsed(), Duration::ZERO, "an outage fails at once");
    }
    let reached = time::timeout(Duration::from_millis(1), handle.next_request()).await;
    assert!(reached.is_err());

    time::advance(Duration::from_secs(10)).await;
    c.set_latency_rate(0.0).unwrap();
    assert!(service.poll_ready().is_ready());
    let response = service.call(9);
    assert_request_eq!(handle, 9).send_response(9);
    assert_eq!(response.await.unwrap(), 9, "after the window");
    assert_eq!(c.stats().outage, 5);
}

#[test]
fn config_errors_name_the_field() {
    let error = Chaos::from_config(
        "x",
        toml::from_str::<ChaosConfig>("error_rate = 1.5").unwrap(),
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "error_rate: must be in [0, 1], got 1.5");
    assert!(format!("{:?}", Chaos::new("dbg")).contains("dbg"));
}

/// Injected HTTP responses of a status (feature `http`).
#[cfg(feature = "http")]
mod status_responses {
    use super::*;
    use portcullis_chaos::StatusResponse;
    use portcullis_core::BoxError;

    #[tokio::test(start_paused = true)]
    async fn http_responses_are_injected_with_a_status_and_a_mark() {
        let c = chaos(ChaosConfig::builder().response_rate(1.0));
        let layer = ChaosLayer::new(c.clone()).respond_with_status(StatusCode::SERVICE_UNAVAILABLE);
        let (mut service, mut handle) = mock::spawn_layer::<(), Response<String>, _>(layer);

        assert!(service.poll_ready().is_ready());
        let response = service.call(()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[StatusResponse::HEADER], "injected");
        assert_eq!(response.body(), "");
        let reached = time::timeout(Duration::from_secs(1), handle.next_request()).await;
        assert!(
            reached.is_err(),
            "the injected response did not reach the service"
        );

        c.set_response_rate(0.0).unwrap();
        assert!(service.poll_ready().is_ready());
        let response = service.call(());
        assert_request_eq!(handle, ()).send_response(Response::new("real".to_owned()));
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(StatusResponse::HEADER).is_none());
        assert_eq!(c.stats().responses, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_answers_with_the_injected_response_when_there_is_one() {
        let c = Chaos::new("x");
        c.outage_for(Duration::from_secs(60));
        let layer = ChaosLayer::new(c).respond_with_status(StatusCode::BAD_GATEWAY);
        let inner = service_fn(|_: ()| async { Ok::<_, BoxError>(Response::new(String::new())) });
        let response = layer.layer(inner).oneshot(()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
}
