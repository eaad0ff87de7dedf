//! Every Portcullis error as its `tonic::Status`: the mapping rules and
//! the layer. (A real tonic server and client with these stacks, over
//! loopback: the `tonic` example, run by `tests/examples.rs`.)
#![cfg(not(loom))]
#![cfg(feature = "grpc")]

use std::error::Error;
use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis::core::{BoxError, BreakerOpen, BulkheadFull, Elapsed, RateLimited};
use portcullis::grpc::{StatusMappingLayer, into_status, to_status};
use portcullis::retry::{GiveUpReason, RetriesExhausted};
use tonic::{Code, Status};
use tower::{Layer, Service, ServiceExt, service_fn};

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

fn pushback(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .map(|v| v.to_str().unwrap())
}

fn kind(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get("x-portcullis-error")
        .map(|v| v.to_str().unwrap())
}

fn exhausted(last: BoxError) -> BoxError {
    RetriesExhausted::new(last, 3, GiveUpReason::MaxAttempts).into()
}

// ---- the mapping rules -------------------------------------------------

#[test]
fn an_open_breaker_is_unavailable_with_its_pushback() {
    let error: BoxError = BreakerOpen::new("payments", Some(Duration::from_millis(1500))).into();
    let status = to_status(&error);
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "circuit breaker 'payments' is open");
    assert_eq!(pushback(&status), Some("1500"));
    assert_eq!(kind(&status), Some("breaker-open"));

    let forced: BoxError = BreakerOpen::new("payments", None).into();
    let status = to_status(&forced);
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(pushback(&status), None, "forced open: no known end");
}

#[test]
fn a_full_bulkhead_is_unavailable() {
    let error: BoxError = BulkheadFull::new("db").into();
    let status = to_status(&error);
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "bulkhead 'db' is full");
    assert_eq!(pushback(&status), None);
    assert_eq!(kind(&status), Some("bulkhead-full"));
}

#[test]
fn a_rate_limit_is_resource_exhausted_with_whole_milliseconds() {
    let error: BoxError = RateLimited::new("api", Some(Duration::from_micros(2500))).into();
    let status = to_status(&error);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(pushback(&status), Some("3"), "rounded up");
    assert_eq!(kind(&status), Some("rate-limited"));
}

#[test]
fn a_timeout_is_deadline_exceeded() {
    let error: BoxError = Elapsed::new(Duration::from_millis(250)).into();
    let status = to_status(&error);
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "request timed out after 250ms");
    assert_eq!(kind(&status), Some("timeout"));
}

#[test]
fn a_rejection_is_found_deep_in_the_chain() {
    let error: BoxError = Wrapped(Wrapped(RateLimited::new("api", None).into()).into()).into();
    let status = to_status(&error);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "rate limit 'api' exceeded",
        "the rejection's message, not the wrapper's"
    );
}

#[test]
fn retries_exhausted_take_the_last_errors_code_or_unavailable() {
    let timed_out = exhausted(Elapsed::new(Duration::from_secs(1)).into());
    assert_eq!(to_status(&timed_out).code(), Code::DeadlineExceeded);

    let plain = exhausted("bad response".into());
    let status = to_status(&plain);
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "retries exhausted after 3 attempts (max attempts reached)"
    );
    assert_eq!(kind(&status), Some("upstream"));
}

#[test]
fn connection_errors_are_unavailable_and_others_unknown() {
    let refused: BoxError =
        Wrapped(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into())
            .into();
    assert_eq!(to_status(&refused).code(), Code::Unavailable);
    let connect: BoxError = tonic::ConnectError("no route".into()).into();
    assert_eq!(to_status(&connect).code(), Code::Unavailable);

    let other: BoxError = "invalid utf-8 in the reply".into();
    let status = to_status(&other);
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(status.message(), "invalid utf-8 in the reply");
    assert_eq!(kind(&status), Some("upstream"));
}

#[test]
fn a_status_in_the_chain_is_kept() {
    let mut own = Status::not_found("no such user");
    own.metadata_mut().insert("x-trace", "abc".parse().unwrap());
    let error: BoxError = Wrapped(own.into()).into();
    let status = to_status(&error);
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such user");
    assert_eq!(status.metadata().get("x-trace").unwrap(), "abc");
    assert_eq!(kind(&status), None, "not a status of ours");

    let bare: BoxError = Status::permission_denied("no").into();
    assert_eq!(into_status(bare).code(), Code::PermissionDenied);
}

#[test]
fn into_status_keeps_the_error_as_its_source() {
    let error: BoxError = Wrapped(BulkheadFull::new("db").into()).into();
    let status = into_status(error);
    assert_eq!(status.code(), Code::Unavailable);
    let source = status.source().expect("a source");
    assert!(source.is::<Wrapped>());
}

// ---- the layer -----------------------------------------------------------

#[tokio::test]
async fn the_layer_maps_errors_and_passes_responses() {
    let service = StatusMappingLayer::new().layer(service_fn(|fail: bool| async move {
        if fail {
            Err::<&str, BoxError>(BreakerOpen::new("b", Some(Duration::from_secs(1))).into())
        } else {
            Ok("fine")
        }
    }));
    assert_eq!(service.clone().oneshot(false).await.unwrap(), "fine");
    let status: Status = service.oneshot(true).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(pushback(&status), Some("1000"));
}

/// A service whose `poll_ready` fails.
#[derive(Clone, Debug)]
struct NeverReady;

impl Service<()> for NeverReady {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err(RateLimited::new("conn", None).into()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test]
async fn a_failing_poll_ready_is_mapped_too() {
    let mut service = StatusMappingLayer::new().layer(NeverReady);
    let status = service.ready().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}
