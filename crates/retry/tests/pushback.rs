//! Server pushback never amplifies load: a server's delay is a floor under
//! the backoff, a wait past `max_retry_after` gives up, and a gRPC pushback
//! that is not a non-negative integer stops retries (gRFC A6). Paused time,
//! so the waits are exact.
#![cfg(all(not(loom), feature = "http"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use portcullis_core::BoxError;
#[cfg(feature = "grpc")]
use portcullis_retry::GrpcPolicy;
use portcullis_retry::{
    ConstantBackoff, GiveUpReason, HttpPolicy, NoJitter, ReplayBody, RetryConfig, RetryEvent,
    RetryLayer,
};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt, service_fn};

const BACKOFF: Duration = Duration::from_millis(100);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

fn config() -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(BACKOFF))
        .jitter(NoJitter)
        .max_retry_after(MAX_RETRY_AFTER)
        .build()
        .unwrap()
}

/// What one call through a retry did.
#[derive(Debug)]
struct Run {
    /// When each attempt started, from the call's start.
    attempts: Vec<Duration>,
    /// The final status (or grpc-status).
    answer: String,
    /// Why the retry gave up, if it did.
    gave_up: Option<GiveUpReason>,
}

type Server = BoxCloneService<Request<ReplayBody<String>>, Response<String>, BoxError>;

/// Calls once through `layer` in front of a server that answers the first
/// attempt with `first()` and every later one with a plain success.
async fn call_once<P, S>(
    layer: RetryLayer<P>,
    first: impl Fn() -> Response<String> + Send + Sync + 'static,
) -> Run
where
    RetryLayer<P>: Layer<Server, Service = S>,
    S: Service<Request<String>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    let mut events = layer.subscribe();
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let first = Arc::new(first);
    let server = {
        let seen = seen.clone();
        service_fn(move |_: Request<ReplayBody<String>>| {
            let mut seen = seen.lock().unwrap();
            seen.push(started.elapsed());
            let response = if seen.len() == 1 {
                first()
            } else {
                Response::builder()
                    .header("grpc-status", "0")
                    .body(String::new())
                    .unwrap()
            };
            std::future::ready(Ok::<_, BoxError>(response))
        })
    };
    let request = Request::get("/pkg.Svc/Get").body(String::new()).unwrap();
    let response = layer
        .layer(BoxCloneService::new(server))
        .oneshot(request)
        .await
        .unwrap();
    let answer = match response.headers().get("grpc-status") {
        Some(code) if response.status() == 200 => code.to_str().unwrap().to_owned(),
        _ => response.status().as_str().to_owned(),
    };
    let gave_up = std::iter::from_fn(|| events.try_recv())
        .filter_map(|event| match event {
            Ok(RetryEvent::GaveUp { reason, .. }) => Some(reason),
            _ => None,
        })
        .last();
    let attempts = seen.lock().unwrap().clone();
    Run {
        attempts,
        answer,
        gave_up,
    }
}

fn http(code: u16, retry_after: &'static str) -> Response<String> {
    Response::builder()
        .status(code)
        .header("retry-after", retry_after)
        .body(String::new())
        .unwrap()
}

fn grpc(pushback: &'static str) -> Response<String> {
    Response::builder()
        .header("grpc-status", "14")
        .header("grpc-retry-pushback-ms", pushback)
        .body(String::new())
        .unwrap()
}

fn http_layer() -> RetryLayer<HttpPolicy> {
    RetryLayer::http("api", config()).unwrap()
}

#[cfg(feature = "grpc")]
fn grpc_layer() -> RetryLayer<GrpcPolicy> {
    RetryLayer::grpc("grpc", config())
        .unwrap()
        .retry_non_idempotent(true)
}

#[tokio::test(start_paused = true)]
async fn retry_after_zero_waits_the_backoff_not_nothing() {
    let run = call_once(http_layer(), || http(503, "0")).await;
    assert_eq!(run.attempts, [Duration::ZERO, BACKOFF], "{run:?}");
    assert_eq!(run.gave_up, None);
}

#[tokio::test(start_paused = true)]
async fn a_server_delay_longer_than_the_backoff_is_waited_in_full() {
    let run = call_once(http_layer(), || http(429, "7")).await;
    assert_eq!(run.attempts, [Duration::ZERO, Duration::from_secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_bound_gives_up_instead_of_retrying_soon() {
    // Past `max_retry_after`, and past the day a breaker would accept: it
    // used to read as "no header" and be retried after the 100 ms backoff.
    let run = call_once(http_layer(), || http(503, "100000000")).await;
    assert_eq!(run.attempts, [Duration::ZERO], "{run:?}");
    assert_eq!(run.answer, "503");
    assert_eq!(
        run.gave_up,
        Some(GiveUpReason::RetryAfterTooLong {
            wait: Duration::from_secs(100_000_000)
        })
    );
    let run = call_once(http_layer(), || http(503, "99999999999999999999999999")).await;
    assert_eq!(run.attempts, [Duration::ZERO], "{run:?}");
    assert!(matches!(
        run.gave_up,
        Some(GiveUpReason::RetryAfterTooLong { .. })
    ));
}

#[cfg(feature = "grpc")]
#[tokio::test(start_paused = true)]
async fn an_invalid_grpc_pushback_means_do_not_retry() {
    for pushback in ["-1", "-250", "soon", "1.5", ""] {
        let run = call_once(grpc_layer(), move || grpc(pushback)).await;
        assert_eq!(run.attempts, [Duration::ZERO], "{pushback:?}: {run:?}");
        assert_eq!(run.answer, "14");
        assert_eq!(run.gave_up, Some(GiveUpReason::ServerRefused));
    }
}

#[cfg(feature = "grpc")]
#[tokio::test(start_paused = true)]
async fn a_valid_grpc_pushback_is_a_floor_under_the_backoff() {
    let run = call_once(grpc_layer(), || grpc("0")).await;
    assert_eq!(run.attempts, [Duration::ZERO, BACKOFF]);
    let run = call_once(grpc_layer(), || grpc("2500")).await;
    assert_eq!(run.attempts, [Duration::ZERO, Duration::from_millis(2500)]);
    assert_eq!(run.answer, "0");
}

/// What a `Retry-After` value should do, worked out independently of the
/// classifier: the wait before the second attempt, or `None` for "gave up".
fn expected(value: &str) -> Option<Duration> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(BACKOFF); // says nothing: the backoff alone
    }
    match value.parse::<u64>() {
        Ok(secs) if Duration::from_secs(secs) <= MAX_RETRY_AFTER => {
            Some(Duration::from_secs(secs).max(BACKOFF))
        }
        _ => None,
    }
}

fn paused<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs a call whose first answer is a 503 carrying `value`.
fn with_retry_after(value: String) -> Run {
    paused(call_once(http_layer(), move || {
        Response::builder()
            .status(503)
            .header("retry-after", value.as_str())
            .body(String::new())
            .unwrap()
    }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_retry_after_is_a_floor_or_a_refusal(
        value in prop_oneof![
            (0u64..=120).prop_map(|s| s.to_string()),
            any::<u64>().prop_map(|s| s.to_string()),
            "[0-9]{18,40}",
            "[ \t]{0,2}[0-9]{1,3}[ \t]{0,2}",
            "-[0-9]{1,5}",
            "[a-zA-Z0-9 .,:+-]{0,24}",
        ]
    ) {
        let run = with_retry_after(value.clone());
        match expected(&value) {
            Some(wait) => {
                prop_assert_eq!(&run.attempts, &[Duration::ZERO, wait], "{:?}", value);
                prop_assert!(run.attempts[1] >= BACKOFF);
            }
            None => {
                prop_assert_eq!(&run.attempts, &[Duration::ZERO], "{:?}", value);
                prop_assert!(
                    matches!(run.gave_up, Some(GiveUpReason::RetryAfterTooLong { .. })),
                    "{:?}", run
                );
            }
        }
    }
}

/// Runs a gRPC call whose first answer is UNAVAILABLE with `pushback`.
#[cfg(feature = "grpc")]
fn with_pushback(pushback: String) -> Run {
    paused(call_once(grpc_layer(), move || {
        Response::builder()
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", pushback.as_str())
            .body(String::new())
            .unwrap()
    }))
}

#[cfg(feature = "grpc")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_grpc_pushback_is_a_floor_a_refusal_or_a_stop(
        value in prop_oneof![
            (0u64..=60_000).prop_map(|ms| ms.to_string()),
            any::<u64>().prop_map(|ms| ms.to_string()),
            any::<i64>().prop_map(|ms| ms.to_string()),
            "[0-9]{20,30}",
            "[a-zA-Z0-9 .,:+-]{0,16}",
        ]
    ) {
        let run = with_pushback(value.clone());
        let text = value.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            // gRFC A6: not a non-negative integer, do not retry.
            prop_assert_eq!(&run.attempts, &[Duration::ZERO], "{:?}", value);
            prop_assert_eq!(run.gave_up, Some(GiveUpReason::ServerRefused));
        } else {
            let wait = text.parse::<u64>().map_or(Duration::MAX, Duration::from_millis);
            if wait <= MAX_RETRY_AFTER {
                prop_assert_eq!(&run.attempts, &[Duration::ZERO, wait.max(BACKOFF)], "{:?}", value);
            } else {
                prop_assert_eq!(&run.attempts, &[Duration::ZERO], "{:?}", value);
                prop_assert!(
                    matches!(run.gave_up, Some(GiveUpReason::RetryAfterTooLong { .. })),
                    "{:?}", run
                );
            }
        }
    }
}
