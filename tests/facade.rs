//! The facade: `ServiceBuilderExt` stacks, and every Portcullis error as
//! its HTTP response, through `tower_test` mocks and an axum router over
//! loopback.
#![cfg(not(loom))]
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode};
use portcullis::core::{BoxError, BreakerOpen, BulkheadFull, Elapsed, LimitExceeded, RateLimited};
use portcullis::http::{ErrorMapping, ErrorMappingLayer, error_response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

/// An application error that wraps another, as `source()`.
#[derive(Debug)]
struct Wrapped(BoxError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("while calling the upstream")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The response the mapping layer gives for a service failing with `error`.
async fn mapped(error: BoxError) -> Response<String> {
    let mut error = Some(error);
    let failing = service_fn(move |_: ()| {
        let error = error.take().expect("called once");
        async move { Err::<Response<String>, BoxError>(error) }
    });
    let answer: Result<Response<String>, Infallible> =
        ErrorMappingLayer::new().layer(failing).oneshot(()).await;
    answer.unwrap()
}

fn header<'a, B>(response: &'a Response<B>, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

fn secs(secs: u64) -> Option<Duration> {
    Some(Duration::from_secs(secs))
}

// ---- the mapping rules -------------------------------------------------

#[tokio::test]
async fn an_open_breaker_is_a_503_with_retry_after_rounded_up() {
    let error = BreakerOpen::new("payments", Some(Duration::from_millis(2_100))).into();
    let response = mapped(error).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), Some("3"));
    assert_eq!(
        header(&response, "x-portcullis-error"),
        Some("breaker-open")
    );
    assert_eq!(header(&response, "ratelimit-reset"), None);
    assert_eq!(response.body(), "", "the body is B::default()");
}

#[tokio::test]
async fn a_forced_open_breaker_has_no_retry_after() {
    let response = mapped(BreakerOpen::new("payments", None).into()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(
        header(&response, "x-portcullis-error"),
        Some("breaker-open")
    );
}

#[tokio::test]
async fn a_full_bulkhead_is_a_503() {
    let response = mapped(BulkheadFull::new("pool").into()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), None, "it carries no wait");
    assert_eq!(
        header(&response, "x-portcullis-error"),
        Some("bulkhead-full")
    );
}

#[tokio::test]
async fn a_shed_call_is_a_503_with_retry_after() {
    let response = mapped(LimitExceeded::new("api", Some(Duration::from_millis(40))).into()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("1"), "rounded up");
    assert_eq!(
        header(&response, "x-portcullis-error"),
        Some("limit-exceeded")
    );
}

#[tokio::test]
async fn a_rate_limit_is_a_429_with_retry_after_and_reset() {
    let error = RateLimited::new("api", Some(Duration::from_millis(250))).into();
    let response = mapped(error).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), Some("1"));
    assert_eq!(header(&response, "ratelimit-reset"), Some("1"));
    assert_eq!(
        header(&response, "x-portcullis-error"),
        Some("rate-limited")
    );

    let response = mapped(RateLimited::new("api", None).into()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(header(&response, "ratelimit-reset"), None);
}

#[tokio::test]
async fn a_timeout_is_a_504() {
    let response = mapped(Elapsed::new(Duration::from_secs(2)).into()).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&response, "x-portcullis-error"), Some("timeout"));
    assert_eq!(header(&response, "retry-after"), None);
}

#[tokio::test]
async fn any_other_error_is_a_502() {
    let response = mapped(std::io::Error::other("connection reset").into()).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&response, "x-portcullis-error"), Some("upstream"));
    assert_eq!(header(&response, "retry-after"), None);
}

#[tokio::test]
async fn a_rejection_deep_in_the_source_chain_is_found() {
    let deep = Wrapped(Wrapped(Wrapped(secs_open()).into()).into());
    let response = mapped(deep.into()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("7"));

    let deep = Wrapped(Wrapped(RateLimited::new("api", secs(4)).into()).into());
    let response = mapped(deep.into()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "ratelimit-reset"), Some("4"));

    let wrapped_plain = Wrapped(std::io::Error::other("refused").into());
    assert_eq!(mapped(wrapped_plain.into()).await.status(), 502);
}

fn secs_open() -> BoxError {
    BreakerOpen::new("deep", secs(7)).into()
}

#[test]
fn the_plain_function_follows_the_same_rules() {
    let error: BoxError = Wrapped(Elapsed::new(Duration::from_secs(1)).into()).into();
    let response: Response<()> = error_response(&error);
    assert_eq!(response.status(), 504);
    assert_eq!(header(&response, "x-portcullis-error"), Some("timeout"));
}

#[cfg(feature = "retry")]
mod retries_exhausted {
    use portcullis::retry::{GiveUpReason, RetriesExhausted};

    use super::*;

    #[tokio::test]
    async fn is_mapped_by_its_last_error() {
        let last = Elapsed::new(Duration::from_secs(1)).into();
        let error = RetriesExhausted::new(last, 3, GiveUpReason::MaxAttempts);
        let response = mapped(error.into()).await;
        assert_eq!(response.status(), 504);
        assert_eq!(header(&response, "x-portcullis-error"), Some("timeout"));

        let last = Wrapped(BreakerOpen::new("b", secs(5)).into()).into();
        let error = RetriesExhausted::new(last, 2, GiveUpReason::MaxAttempts);
        let response = mapped(Wrapped(error.into()).into()).await;
        assert_eq!(response.status(), 503);
        assert_eq!(header(&response, "retry-after"), Some("5"));
    }

    #[tokio::test]
    async fn of_plain_errors_is_a_502() {
        let last = std::io::Error::other("reset").into();
        let error = RetriesExhausted::new(last, 3, GiveUpReason::MaxAttempts);
        let response = mapped(error.into()).await;
        assert_eq!(response.status(), 502);
        assert_eq!(header(&response, "x-portcullis-error"), Some("upstream"));
    }
}

// ---- the layer -----------------------------------------------------------

fn assert_infallible<S, R>(service: S) -> S
where
    S: Service<R, Error = Infallible>,
{
    service
}

#[tokio::test]
async fn a_response_passes_unchanged_and_an_error_is_answered() {
    let (mut service, mut handle) =
        mock::spawn_layer::<&'static str, Response<String>, _>(ErrorMappingLayer::new());

    assert!(service.poll_ready().is_ready());
    let response = service.call("ok");
    let created = Response::builder()
        .status(201)
        .header("x-upstream", "yes")
        .body(String::from("made"))
        .unwrap();
    assert_request_eq!(handle, "ok").send_response(created);
    let response = response.await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "x-upstream"), Some("yes"));
    assert_eq!(header(&response, "x-portcullis-error"), None);
    assert_eq!(response.body(), "made");

    assert!(service.poll_ready().is_ready());
    let response = service.call("fails");
    assert_request_eq!(handle, "fails").send_error(BulkheadFull::new("pool"));
    let response = response.await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        header(&response, "x-portcullis-error"),
        Some("bulkhead-full")
    );
}

/// Fails `poll_ready` while `fail_ready` is set; counts its calls.
#[derive(Clone, Debug, Default)]
struct NotReady {
    fail_ready: bool,
    polls: usize,
    calls: usize,
}

impl Service<()> for NotReady {
    type Response = Response<String>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<String>, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls += 1;
        if self.fail_ready {
            Poll::Ready(Err(std::io::Error::other("worker gone")))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.calls += 1;
        std::future::ready(Ok(Response::new(String::from("called"))))
    }
}

#[tokio::test]
async fn a_failing_poll_ready_is_answered_by_the_next_call() {
    let inner = NotReady {
        fail_ready: true,
        ..NotReady::default()
    };
    let mut service = assert_infallible(ErrorMapping::new(inner));

    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    assert!(ready.is_ok(), "the error is kept, not returned");
    let clone = service.clone();

    let response = service.call(()).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-portcullis-error"), Some("upstream"));
    assert_eq!(
        service.get_ref().calls,
        0,
        "the inner service was not called"
    );

    // The next readiness asks the inner service again.
    service.get_mut().fail_ready = false;
    let response = service.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(response.body(), "called");
    assert_eq!(service.get_ref().polls, 2);
    assert_eq!(service.into_inner().calls, 1);

    // A clone does not inherit the kept error: it polls its own inner service.
    let mut clone = clone;
    clone.get_mut().fail_ready = false;
    let response = clone.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(response.body(), "called");
    assert_eq!(clone.get_ref().polls, 2);
}

// ---- ServiceBuilderExt ---------------------------------------------------

#[cfg(feature = "breaker")]
#[tokio::test]
async fn circuit_breaker_shares_the_handle_and_opens_to_503s() {
    use portcullis::ServiceBuilderExt;
    use portcullis::breaker::{Breaker, BreakerConfig, State};
    use tower::ServiceBuilder;

    let config = BreakerConfig::builder()
        .count_window(2)
        .minimum_calls(2)
        .wait_in_open(Duration::from_secs(20))
        .build()
        .unwrap();
    let breaker = Breaker::from_config("upstream", config).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .circuit_breaker(breaker.clone());
    let (mut service, mut handle) = mock::spawn_layer::<u32, Response<String>, _>(stack);

    for i in 0..2 {
        assert!(service.poll_ready().is_ready());
        let response = service.call(i);
        assert_request_eq!(handle, i).send_error(std::io::Error::other("down"));
        assert_eq!(response.await.unwrap().status(), 502);
    }
    assert_eq!(breaker.state(), State::Open, "the shared handle saw both");

    assert!(service.poll_ready().is_ready());
    let response = service.call(3).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("20"));
    assert_eq!(breaker.snapshot().not_permitted_calls, 1);
}

#[cfg(feature = "hedge")]
#[tokio::test(start_paused = true)]
async fn hedge_sends_a_second_attempt_after_the_delay() {
    use portcullis::ServiceBuilderExt;
    use portcullis::hedge::{DelayConfig, HedgeConfig, HedgeLayer};
    use tower::{ServiceBuilder, ServiceExt};

    let config = HedgeConfig::builder()
        .delay(DelayConfig::fixed(Duration::from_millis(10)))
        .build()
        .unwrap();
    let layer = HedgeLayer::from_config("upstream", config).unwrap();
    let (mut service, mut handle) =
        mock::spawn_layer::<u32, u32, _>(ServiceBuilder::new().hedge(layer.clone()));
    assert!(service.poll_ready().is_ready());
    let started = tokio::time::Instant::now();
    let response = tokio::spawn(service.into_inner().oneshot(7));
    let (_first, _pending) = handle.next_request().await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, 7);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(10),
        "the hedge came after the delay"
    );
    send.send_response(14);
    assert_eq!(response.await.unwrap().unwrap(), 14);
    assert_eq!(
        (layer.metrics().hedges_won, layer.metrics().cancelled),
        (1, 1)
    );
}

#[cfg(feature = "limit")]
#[tokio::test(start_paused = true)]
async fn limit_sheds_over_the_limit_and_maps_to_a_503() {
    use portcullis::ServiceBuilderExt;
    use portcullis::limit::{AimdConfig, LimitConfig, LimitLayer, Limiter};
    use tower::ServiceBuilder;

    let config = LimitConfig::builder()
        .aimd(AimdConfig {
            initial_limit: 1,
            min_limit: 1,
            ..AimdConfig::default()
        })
        .build()
        .unwrap();
    let limiter = Limiter::from_config("upstream", config).unwrap();
    let service = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .limit(LimitLayer::new(limiter.clone()))
        .service(tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, BoxError>(Response::new(String::from("ok")))
        }));
    let first = tokio::spawn(service.clone().oneshot(http::Request::new(())));
    tokio::task::yield_now().await;
    assert_eq!(limiter.inflight(), 1);
    let shed = service
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(header(&shed, "x-portcullis-error"), Some("limit-exceeded"));
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(limiter.snapshot().shed, 1);
}

#[cfg(all(feature = "retry", feature = "timeout"))]
#[tokio::test(start_paused = true)]
async fn retry_with_and_timeout_after_give_up_with_a_504() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use portcullis::ServiceBuilderExt;
    use portcullis::retry::{ConstantBackoff, NoJitter, RetryConfig, RetryLayer};
    use tower::ServiceBuilder;

    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .jitter(NoJitter)
        .fail_after_max_attempts(true)
        .build()
        .unwrap();
    let retry = RetryLayer::from_config("slow", config).unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let never = service_fn(move |_: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<Response<String>, BoxError>>()
    });
    let service = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .retry_with(retry.clone())
        .timeout_after(Duration::from_secs(1))
        .service(never);

    let started = tokio::time::Instant::now();
    let response = assert_infallible(service).oneshot(7).await.unwrap();
    assert_eq!(response.status(), 504, "RetriesExhausted of Elapsed");
    assert_eq!(header(&response, "x-portcullis-error"), Some("timeout"));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(3 * 1_000 + 2 * 100),
        "each attempt was cut at 1 s, with two waits of 100 ms"
    );
    assert_eq!(retry.metrics().failed_with_retry, 1);
}

#[cfg(feature = "retry")]
#[tokio::test(start_paused = true)]
async fn retry_with_retries_until_it_succeeds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use portcullis::ServiceBuilderExt;
    use portcullis::retry::{ConstantBackoff, NoJitter, RetryConfig, RetryLayer};
    use tower::ServiceBuilder;

    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .jitter(NoJitter)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let flaky = service_fn(move |x: u32| {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if call < 2 {
                Err(std::io::Error::other("reset"))
            } else {
                Ok(x + 1)
            }
        }
    });
    let service = ServiceBuilder::new()
        .retry_with(RetryLayer::from_config("flaky", config).unwrap())
        .service(flaky);
    assert_eq!(service.oneshot(41).await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn timeout_after_is_the_portcullis_timeout() {
    use portcullis::ServiceBuilderExt;
    use tower::ServiceBuilder;

    let slow = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, std::io::Error>("late")
    });
    let service = ServiceBuilder::new()
        .timeout_after(Duration::from_millis(300))
        .service(slow);
    // tower's `timeout` feature is on in this build, so `ServiceBuilder`
    // has an inherent `timeout`; `timeout_after` is still Portcullis's.
    let error = service.oneshot(()).await.unwrap_err();
    let elapsed = error
        .downcast_ref::<Elapsed>()
        .expect("Portcullis's Elapsed, not tower's");
    assert_eq!(elapsed.after(), Duration::from_millis(300));

    let fast = service_fn(|_: ()| async { Ok::<_, std::io::Error>("fast") });
    let service = ServiceBuilder::new()
        .timeout_after(Duration::from_millis(300))
        .service(fast);
    assert_eq!(service.oneshot(()).await.unwrap(), "fast");
}

#[cfg(feature = "bulkhead")]
#[tokio::test]
async fn bulkhead_rejects_beyond_its_permits_with_a_503() {
    use portcullis::ServiceBuilderExt;
    use portcullis::bulkhead::{Bulkhead, BulkheadConfig};
    use tower::ServiceBuilder;

    let config = BulkheadConfig::builder()
        .max_concurrent_calls(1)
        .build()
        .unwrap();
    let bulkhead = Bulkhead::from_config("pool", config).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .bulkhead(bulkhead.clone());
    let (mut service, mut handle) = mock::spawn_layer::<u32, Response<String>, _>(stack);

    assert!(service.poll_ready().is_ready());
    let first = service.call(1);
    let request = handle.next_request().await.expect("the first call goes in");
    assert_eq!(bulkhead.in_flight(), 1);

    assert!(service.poll_ready().is_ready());
    let second = service.call(2).await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(header(&second, "x-portcullis-error"), Some("bulkhead-full"));
    assert_eq!(bulkhead.rejected(), 1);

    let (seen, send) = request;
    assert_eq!(seen, 1);
    send.send_response(Response::new(String::from("one")));
    assert_eq!(first.await.unwrap().body(), "one");
    assert_eq!(bulkhead.in_flight(), 0, "the permit came back");
}

#[cfg(feature = "ratelimit")]
#[tokio::test(start_paused = true)]
async fn rate_limiter_shares_the_budget_and_answers_429() {
    use portcullis::ServiceBuilderExt;
    use portcullis::ratelimit::{RateLimitConfig, RateLimiter};
    use tower::ServiceBuilder;

    let config = RateLimitConfig::per_second(2).build().unwrap();
    let limiter = RateLimiter::from_config("api", config).unwrap();
    let service = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .rate_limiter(limiter.clone())
        .service(service_fn(|_: ()| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }));
    // Two clones, one budget of two calls.
    assert_eq!(service.clone().oneshot(()).await.unwrap().status(), 200);
    assert_eq!(service.clone().oneshot(()).await.unwrap().status(), 200);
    let refused = service.clone().oneshot(()).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-portcullis-error"), Some("rate-limited"));
    assert!(header(&refused, "retry-after").is_some());
    assert_eq!(limiter.remaining(), 0);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(service.oneshot(()).await.unwrap().status(), 200, "refilled");
}

#[cfg(feature = "fallback")]
#[tokio::test]
async fn fallback_answers_a_failure() {
    use portcullis::ServiceBuilderExt;
    use portcullis::fallback::FallbackLayer;
    use tower::ServiceBuilder;

    let failing = service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) });
    let service = ServiceBuilder::new()
        .fallback(FallbackLayer::value("cached"))
        .service(failing);
    let service = assert_infallible(service);
    assert_eq!(service.oneshot(()).await.unwrap(), "cached");
}

#[cfg(feature = "chaos")]
#[tokio::test]
async fn chaos_injects_faults_that_map_to_502_until_disabled() {
    use portcullis::ServiceBuilderExt;
    use portcullis::chaos::{Chaos, ChaosConfig};
    use tower::ServiceBuilder;

    let config = ChaosConfig::builder().error_rate(1.0).build().unwrap();
    let chaos = Chaos::from_config("game-day", config).unwrap();
    let healthy =
        service_fn(|_: ()| async { Ok::<_, Infallible>(Response::new(String::from("fine"))) });
    let service = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .chaos(chaos.clone())
        .service(healthy);

    let response = service.clone().oneshot(()).await.unwrap();
    assert_eq!(
        response.status(),
        502,
        "an injected fault is an upstream error"
    );
    assert_eq!(header(&response, "x-portcullis-error"), Some("upstream"));

    chaos.disable();
    let response = service.oneshot(()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "fine");
}

// ---- axum over loopback --------------------------------------------------

#[cfg(all(feature = "breaker", feature = "timeout"))]
#[tokio::test]
async fn an_axum_router_answers_503_with_retry_after_once_a_shared_breaker_opens() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use portcullis::ServiceBuilderExt;
    use portcullis::breaker::{Breaker, BreakerConfig, State};
    use portcullis_testing as client;
    use tokio::net::TcpListener;
    use tower::ServiceBuilder;

    let config = BreakerConfig::builder()
        .count_window(3)
        .minimum_calls(3)
        .wait_in_open(Duration::from_secs(30))
        .build()
        .unwrap();
    let shared = Breaker::from_config("upstream", config).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .circuit_breaker(shared.clone())
        .timeout_after(Duration::from_secs(30));
    let down = service_fn(|_: http::Request<Body>| async {
        Err::<Response<Body>, _>(std::io::Error::other("connection refused"))
    });

    let app = Router::new()
        // `route_service` needs `Error = Infallible`: the mapping gives it.
        .route_service("/orders", stack.clone().service(down))
        .route("/stock", get(|| async { "in stock" }).layer(stack))
        .with_state(());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let stock = client::get(addr, "/stock").await;
    assert_eq!(stock.status, 200);
    assert_eq!(stock.body, "in stock");
    for _ in 0..2 {
        let orders = client::get(addr, "/orders").await;
        assert_eq!(orders.status, 502);
        assert_eq!(orders.header("x-portcullis-error"), Some("upstream"));
    }
    assert_eq!(shared.state(), State::Open, "2 of 3 calls failed");

    let stock = client::get(addr, "/stock").await;
    assert_eq!(
        stock.status, 503,
        "the healthy route shares the open breaker"
    );
    assert_eq!(stock.header("retry-after"), Some("30"));
    assert_eq!(stock.header("x-portcullis-error"), Some("breaker-open"));
    let orders = client::get(addr, "/orders").await;
    assert_eq!(orders.status, 503);
    assert_eq!(shared.snapshot().not_permitted_calls, 2);
    server.abort();
}
