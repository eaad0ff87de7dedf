//! The HTTP retry: Retry-After, the idempotency gate, body replay (with
//! trailers), bodies over the limit, and gRPC codes; with
//! `tower_test::mock` and paused time.
#![cfg(all(not(loom), feature = "http"))]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use portcullis_core::BoxError;
use portcullis_retry::{
    ConstantBackoff, GiveUpReason, NoJitter, ReplayBody, RetryConfig, RetryEvent, RetryLayer,
};
use tokio::time::{self, Instant};
use tower_test::mock;

/// A streaming body of data frames (and trailers), one per poll, with an
/// optional exact length.
struct Chunks {
    frames: VecDeque<Frame<Bytes>>,
    exact: Option<u64>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map_or_else(SizeHint::new, SizeHint::with_exact)
    }
}

/// A chunk's memory, counted while any `Bytes` of it is alive.
struct Counted {
    data: Vec<u8>,
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `count` chunks of `size` bytes whose live copies are counted in `live`.
fn counted_body(count: usize, size: usize, exact: bool, live: &Arc<AtomicUsize>) -> Chunks {
    let frames = (0..count)
        .map(|i| {
            live.fetch_add(1, Ordering::SeqCst);
            Frame::data(Bytes::from_owner(Counted {
                data: vec![i as u8; size],
                live: live.clone(),
            }))
        })
        .collect();
    Chunks {
        frames,
        exact: exact.then_some((count * size) as u64),
    }
}

fn trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "0123abcd".parse().unwrap());
    trailers
}

type Inner = Request<ReplayBody<Chunks>>;

fn config() -> portcullis_retry::RetryConfigBuilder {
    RetryConfig::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .jitter(NoJitter)
}

fn status(code: u16) -> Response<()> {
    Response::builder().status(code).body(()).unwrap()
}

fn empty() -> Chunks {
    Chunks {
        frames: VecDeque::new(),
        exact: Some(0),
    }
}

#[tokio::test(start_paused = true)]
async fn a_10_kib_body_is_replayed_byte_for_byte_with_trailers_on_every_attempt() {
    let layer = RetryLayer::http("api", config().build().unwrap()).unwrap();
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer.clone());
    let original: Vec<u8> = (0..10 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut frames: VecDeque<_> = original
        .chunks(1000)
        .map(|c| Frame::data(Bytes::copy_from_slice(c)))
        .collect();
    frames.push_back(Frame::trailers(trailers()));
    let request = Request::put("http://api/items/7")
        .header("x-tenant", "acme")
        .body(Chunks {
            frames,
            exact: None,
        })
        .unwrap();

    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(request));
    for attempt in 1..=3 {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), "PUT");
        assert_eq!(request.uri(), "http://api/items/7");
        assert_eq!(request.headers()["x-tenant"], "acme");
        let collected = request.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers()), "attempt {attempt}");
        assert_eq!(collected.to_bytes(), original, "attempt {attempt}");
        send.send_response(status(if attempt < 3 { 503 } else { 200 }));
    }
    assert_eq!(response.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(layer.metrics().successful_with_retry, 1);
}

#[tokio::test(start_paused = true)]
async fn a_1_mib_streaming_body_is_sent_once_and_never_buffered_whole() {
    let layer = RetryLayer::http("api", config().build().unwrap()).unwrap();
    let mut events = layer.subscribe();
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer.clone());
    let live = Arc::new(AtomicUsize::new(0));
    // 64 chunks of 16 KiB: the body owns all of them until they are read.
    let body = counted_body(64, 16 * 1024, false, &live);
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(Request::put("/upload").body(body).unwrap()));

    let (request, send) = handle.next_request().await.unwrap();
    let mut body = request.into_body();
    let (mut received, mut most_kept) = (0, 0);
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().unwrap().len();
        // Chunks not read yet, plus what the replay buffer keeps.
        let unread = 64 - received / (16 * 1024);
        most_kept = most_kept.max(live.load(Ordering::SeqCst) - unread);
    }
    assert_eq!(
        received,
        1024 * 1024,
        "the first attempt got the whole body"
    );
    assert!(
        most_kept <= 4,
        "at most 64 KiB was ever kept, not {most_kept} chunks"
    );
    assert_eq!(live.load(Ordering::SeqCst), 0, "nothing is kept at the end");
    drop(body);
    send.send_response(status(503));

    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 503, "returned, not retried");
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
    assert!(matches!(
        events.try_recv(),
        Some(Ok(RetryEvent::GaveUp {
            reason: GiveUpReason::NotReplayable,
            attempts: 1,
            ..
        }))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_known_length_over_the_limit_is_not_buffered_at_all() {
    let layer = RetryLayer::http("api", config().body_limit(64 * 1024).build().unwrap()).unwrap();
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer);
    let live = Arc::new(AtomicUsize::new(0));
    let body = counted_body(8, 16 * 1024, true, &live);
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(Request::put("/upload").body(body).unwrap()));
    let (request, send) = handle.next_request().await.unwrap();
    let mut body = request.into_body();
    assert_eq!(body.size_hint().exact(), Some(128 * 1024));
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        drop(frame.unwrap());
        read += 1;
        assert_eq!(live.load(Ordering::SeqCst), 8 - read, "no chunk is kept");
    }
    send.send_response(status(503));
    assert_eq!(response.await.unwrap().unwrap().status(), 503);
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_without_idempotency_key_is_sent_once() {
    let layer = RetryLayer::http("api", config().build().unwrap()).unwrap();
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer.clone());
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(Request::post("/orders").body(empty()).unwrap()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(status(503));
    assert_eq!(response.await.unwrap().unwrap().status(), 503);
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
    assert_eq!(layer.metrics().failed_without_retry, 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_with_a_key_or_on_an_opted_in_route_is_retried() {
    let keyed = Request::post("/orders")
        .header("Idempotency-Key", "7f3a")
        .body(empty())
        .unwrap();
    let plain = Request::patch("/orders/1").body(empty()).unwrap();
    let gated = RetryLayer::http("api", config().build().unwrap()).unwrap();
    let opted_in = gated.clone().retry_non_idempotent(true);
    for (layer, request) in [(gated, keyed), (opted_in, plain)] {
        let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = tokio::spawn(service.call(request));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(status(502));
        let (retried, send) = handle.next_request().await.expect("retried");
        assert!(matches!(retried.method().as_str(), "POST" | "PATCH"));
        send.send_response(status(201));
        assert_eq!(response.await.unwrap().unwrap().status(), 201);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_delay_and_past_the_cap_the_response_is_returned() {
    let layer = RetryLayer::http(
        "api",
        config()
            .max_retry_after(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut events = layer.subscribe();
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer);

    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(Request::get("/").body(empty()).unwrap()));
    let (_, send) = handle.next_request().await.unwrap();
    let asked = Instant::now();
    send.send_response(
        Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(())
            .unwrap(),
    );
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(
        asked.elapsed(),
        Duration::from_secs(7),
        "not the 100 ms backoff"
    );
    send.send_response(status(200));
    assert_eq!(response.await.unwrap().unwrap().status(), 200);
    assert!(matches!(
        events.try_recv(),
        Some(Ok(RetryEvent::Retry {
            attempt: 2,
            server_directed: true,
            ..
        }))
    ));

    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(Request::get("/").body(empty()).unwrap()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(
        Response::builder()
            .status(503)
            .header("retry-after", "120")
            .body(())
            .unwrap(),
    );
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["retry-after"],
        "120",
        "returned as it came"
    );
    assert!(
        time::timeout(Duration::from_secs(600), handle.next_request())
            .await
            .is_err()
    );
    let gave_up = std::iter::from_fn(|| events.try_recv())
        .last()
        .unwrap()
        .unwrap();
    assert!(matches!(
        gave_up,
        RetryEvent::GaveUp { reason: GiveUpReason::RetryAfterTooLong { wait }, .. }
            if wait == Duration::from_secs(120)
    ));
}

#[tokio::test(start_paused = true)]
async fn only_the_retryable_statuses_are_retried() {
    for (code, retried) in [
        (500, true),
        (504, true),
        (408, true),
        (501, false),
        (404, false),
        (400, false),
    ] {
        let layer = RetryLayer::http("api", config().build().unwrap()).unwrap();
        let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(layer);
        assert!(service.poll_ready().is_ready());
        let response = tokio::spawn(service.call(Request::get("/").body(empty()).unwrap()));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(status(code));
        let again = time::timeout(Duration::from_secs(60), handle.next_request()).await;
        assert_eq!(again.is_ok(), retried, "{code}");
        if let Ok(Some((_, send))) = again {
            send.send_response(status(200));
        }
        let expected = if retried { 200 } else { code };
        assert_eq!(response.await.unwrap().unwrap().status(), expected);
    }
}

#[cfg(feature = "grpc")]
#[tokio::test(start_paused = true)]
async fn grpc_unavailable_is_retried_only_on_idempotent_calls_after_the_pushback() {
    let unavailable = || {
        Response::builder()
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", "250")
            .body(())
            .unwrap()
    };
    let call = || Request::post("/pkg.Svc/Get").body(empty()).unwrap();

    let gated = RetryLayer::grpc("grpc", config().build().unwrap()).unwrap();
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(gated.clone());
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(call()));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(unavailable());
    assert_eq!(
        response.await.unwrap().unwrap().headers()["grpc-status"],
        "14"
    );
    assert!(
        time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );

    let idempotent = gated.retry_non_idempotent(true);
    let (mut service, mut handle) = mock::spawn_layer::<Inner, Response<()>, _>(idempotent);
    assert!(service.poll_ready().is_ready());
    let response = tokio::spawn(service.call(call()));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(unavailable());
    let pushed = Instant::now();
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(pushed.elapsed(), Duration::from_millis(250));
    send.send_response(
        Response::builder()
            .header("grpc-status", "0")
            .body(())
            .unwrap(),
    );
    assert_eq!(
        response.await.unwrap().unwrap().headers()["grpc-status"],
        "0"
    );
}
