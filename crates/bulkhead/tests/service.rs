//! The bulkhead as a tower service, driven with `tower_test::mock` and
//! paused time.
#![cfg(not(loom))]

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use portcullis_bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadConfigBuilder, BulkheadFull, BulkheadLayer, KeyedBulkhead,
    KeyedBulkheadLayer,
};
use portcullis_core::BoxError;
use tokio::time;
use tower::Layer;
use tower_test::{assert_request_eq, mock};

fn bulkhead(config: BulkheadConfigBuilder) -> Bulkhead {
    Bulkhead::from_config("svc", config.build().unwrap()).unwrap()
}

fn one_permit() -> BulkheadConfigBuilder {
    BulkheadConfig::builder().max_concurrent_calls(1)
}

fn waiting(wait: Duration) -> BulkheadConfigBuilder {
    one_permit().max_wait(wait)
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

fn is_full(error: &BoxError) -> bool {
    error
        .downcast_ref::<BulkheadFull>()
        .is_some_and(|full| full.name() == "svc")
}

/// Whether the mock received a request within a second of paused time.
async fn reached<T, U>(handle: &mut mock::Handle<T, U>) -> bool {
    time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .is_ok()
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_rejects_at_once_without_calling_the_service() {
    let b = bulkhead(one_permit());
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let first = service.call(1);
    let (_, send) = handle.next_request().await.expect("admitted");

    assert!(
        service.poll_ready().is_ready(),
        "full reports ready: it fails fast in call"
    );
    let error = service.call(2).await.unwrap_err();
    assert!(is_full(&error), "{error}");
    assert!(
        !reached(&mut handle).await,
        "the rejected call never reached it"
    );
    assert_eq!(b.rejected(), 1);

    send.send_response(1);
    assert_eq!(first.await.unwrap(), 1);
    assert!(service.poll_ready().is_ready());
    let third = service.call(3);
    assert_request_eq!(handle, 3).send_response(3);
    assert_eq!(third.await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_the_order_they_called() {
    let b = bulkhead(waiting(Duration::from_secs(10)));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let first = service.call(0);
    let (_, send) = handle.next_request().await.unwrap();
    let mut waiters = Vec::new();
    for i in 1..=3 {
        assert!(service.poll_ready().is_ready());
        waiters.push(service.call(i));
    }
    assert_eq!(b.queued(), 3);
    // Spawned (and so first polled) in the reverse order: the queue's order
    // is the order of the calls.
    let tasks: Vec<_> = waiters.into_iter().rev().map(tokio::spawn).collect();
    tokio::task::yield_now().await;
    assert!(!reached(&mut handle).await, "all wait for the one permit");

    send.send_response(0);
    assert_eq!(first.await.unwrap(), 0);
    for i in 1..=3 {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request, i, "served first come, first served");
        assert_eq!(b.in_flight(), 1);
        send.send_response(i * 10);
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    assert_eq!(answers, [30, 20, 10]);
    assert_eq!((b.in_flight(), b.queued(), b.rejected()), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_expires_gives_bulkhead_full() {
    let b = bulkhead(waiting(Duration::from_millis(100)));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let _first = service.call(1);
    let _held = handle.next_request().await.unwrap();

    assert!(service.poll_ready().is_ready());
    let mut second = pin!(service.call(2));
    assert!(poll_once(second.as_mut()).is_pending());
    time::advance(Duration::from_millis(99)).await;
    assert!(
        poll_once(second.as_mut()).is_pending(),
        "still within max_wait"
    );
    assert_eq!(b.queued(), 1);

    time::advance(Duration::from_millis(1)).await;
    let error = second.await.unwrap_err();
    assert!(is_full(&error), "{error}");
    assert_eq!((b.queued(), b.rejected()), (0, 1));
    assert!(!reached(&mut handle).await, "it never reached the service");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_gives_its_permit_back() {
    let b = bulkhead(one_permit());
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let first = service.call(1);
    let _request = handle.next_request().await.unwrap();
    assert_eq!(b.in_flight(), 1);
    drop(first); // cancelled, e.g. by a client that hung up
    assert_eq!(b.in_flight(), 0);

    assert!(service.poll_ready().is_ready());
    let second = service.call(2);
    assert_request_eq!(handle, 2).send_response(2);
    assert_eq!(second.await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_passes_through_and_gives_the_permit_back() {
    let b = bulkhead(one_permit());
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let response = service.call(1);
    assert_request_eq!(handle, 1).send_error(std::io::Error::other("down"));
    let error = response.await.unwrap_err();
    assert!(error.is::<std::io::Error>(), "{error}");
    assert_eq!((b.in_flight(), b.rejected()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_future_leaves_the_queue() {
    let b = bulkhead(waiting(Duration::from_secs(10)));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let first = service.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    assert!(service.poll_ready().is_ready());
    let mut second = Box::pin(service.call(2));
    assert!(poll_once(second.as_mut()).is_pending());
    assert!(service.poll_ready().is_ready());
    let third = service.call(3);
    assert_eq!(b.queued(), 2);

    drop(second);
    assert_eq!(b.queued(), 1, "the dropped waiter left the queue");
    send.send_response(1);
    first.await.unwrap();
    let third = tokio::spawn(third);
    assert_request_eq!(handle, 3).send_response(3);
    assert_eq!(third.await.unwrap().unwrap(), 3);
    assert_eq!((b.in_flight(), b.queued(), b.rejected()), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_just_after_it_was_handed_a_permit_passes_it_on() {
    let b = bulkhead(waiting(Duration::from_secs(10)));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let first = service.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    assert!(service.poll_ready().is_ready());
    let second = service.call(2);
    assert!(service.poll_ready().is_ready());
    let third = service.call(3);

    send.send_response(1);
    first.await.unwrap();
    assert_eq!(
        (b.in_flight(), b.queued()),
        (1, 1),
        "the permit went to the second call, not yet polled"
    );
    drop(second);
    assert_eq!((b.in_flight(), b.queued()), (1, 0), "and on to the third");
    let third = tokio::spawn(third);
    assert_request_eq!(handle, 3).send_response(3);
    assert_eq!(third.await.unwrap().unwrap(), 3);
    assert!(!reached(&mut handle).await, "the second call never ran");
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_at_once() {
    let b = bulkhead(waiting(Duration::from_secs(10)).max_queued_calls(1));
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));

    assert!(service.poll_ready().is_ready());
    let _first = service.call(1);
    let _held = handle.next_request().await.unwrap();
    assert!(service.poll_ready().is_ready());
    let _second = service.call(2);
    assert!(service.poll_ready().is_ready());
    let error = service.call(3).await.unwrap_err();
    assert!(is_full(&error), "{error}");
    assert_eq!((b.queued(), b.rejected()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_the_calls() {
    let b = bulkhead(
        BulkheadConfig::builder()
            .max_concurrent_calls(2)
            .max_wait(Duration::from_millis(50)),
    );
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(b.clone()));
    let figures = |b: &Bulkhead| {
        let s = b.snapshot();
        (s.in_flight, s.available, s.queued, s.rejected)
    };
    assert_eq!(figures(&b), (0, 2, 0, 0));
    assert_eq!(b.max_concurrent_calls(), 2);

    let mut calls = Vec::new();
    for i in 0..2 {
        assert!(service.poll_ready().is_ready());
        calls.push(service.call(i));
        let _ = handle.next_request().await.unwrap();
    }
    assert_eq!(figures(&b), (2, 0, 0, 0));

    assert!(service.poll_ready().is_ready());
    let waiting = tokio::spawn(service.call(9));
    tokio::task::yield_now().await;
    assert_eq!(figures(&b), (2, 0, 1, 0));

    time::advance(Duration::from_millis(50)).await;
    assert!(is_full(&waiting.await.unwrap().unwrap_err()));
    assert_eq!(figures(&b), (2, 0, 0, 1));

    drop(calls);
    let snapshot = b.snapshot();
    assert_eq!(
        (snapshot.in_flight, snapshot.available, snapshot.rejected),
        (0, 2, 1)
    );
    assert_eq!(snapshot.name, "svc");
    assert_eq!(snapshot.max_wait, Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn the_handle_hands_out_permits_without_tower() {
    let b = bulkhead(waiting(Duration::from_secs(1)));
    let held = b.try_acquire().unwrap();
    assert!(is_full(&b.try_acquire().unwrap_err().into()));

    let first = tokio::spawn(b.acquire());
    let second = tokio::spawn(b.acquire());
    tokio::task::yield_now().await;
    assert_eq!(b.queued(), 2);
    assert!(
        b.try_acquire().is_err(),
        "a newcomer does not overtake the waiters"
    );

    drop(held);
    let first = first.await.unwrap().expect("the first waiter got it");
    assert_eq!(b.queued(), 1);
    drop(first);
    let second = second.await.unwrap().expect("then the second");
    assert_eq!(second.bulkhead().name(), "svc");
    assert_eq!((b.in_flight(), b.rejected()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_per_service_layer_makes_a_bulkhead_per_service() {
    let layer = BulkheadLayer::per_service("route", one_permit().build().unwrap()).unwrap();
    let (a, mut handle_a) = mock::pair::<u32, u32>();
    let (b, mut handle_b) = mock::pair::<u32, u32>();
    let mut a = mock::Spawn::new(layer.layer(a));
    let mut b = mock::Spawn::new(layer.layer(b));
    assert!(a.poll_ready().is_ready() && b.poll_ready().is_ready());
    let _a1 = a.call(1);
    let _b1 = b.call(1);
    assert!(reached(&mut handle_a).await && reached(&mut handle_b).await);
    assert!(a.poll_ready().is_ready());
    let error = a.call(2).await.unwrap_err();
    let full = error
        .downcast_ref::<BulkheadFull>()
        .expect("a is full on its own");
    assert_eq!(full.name(), "route");
    assert!(layer.bulkhead().is_none());
}

#[tokio::test(start_paused = true)]
async fn keyed_pools_are_independent_and_bounded() {
    let config = one_permit().max_keys(2).build().unwrap();
    let keyed = KeyedBulkhead::<u32>::from_config("svc", config).unwrap();
    let layer = KeyedBulkheadLayer::new(keyed.clone(), |request: &u32| request / 10);
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);

    assert!(service.poll_ready().is_ready());
    let ten = service.call(10);
    let (_, send_ten) = handle.next_request().await.unwrap();
    assert!(service.poll_ready().is_ready());
    let error = service.call(11).await.unwrap_err();
    assert!(is_full(&error), "key 1 has used its permit: {error}");

    assert!(service.poll_ready().is_ready());
    let _twenty = service.call(20);
    assert_request_eq!(handle, 20);
    assert_eq!(keyed.len(), 2);

    assert!(service.poll_ready().is_ready());
    let error = service.call(30).await.unwrap_err();
    assert!(is_full(&error), "two keys, both busy: no pool for key 3");
    assert_eq!(keyed.rejected_keys(), 1);
    assert_eq!(keyed.len(), 2, "the table stays bounded");

    send_ten.send_response(10);
    assert_eq!(ten.await.unwrap(), 10);
    assert!(service.poll_ready().is_ready());
    let thirty = service.call(30);
    assert_request_eq!(handle, 30).send_response(30);
    assert_eq!(thirty.await.unwrap(), 30, "key 1's idle pool made room");
    assert_eq!(keyed.len(), 2);
    assert!(keyed.get(&1).is_none(), "evicted");

    let snapshot = keyed.snapshot();
    assert_eq!(
        (snapshot.keys, snapshot.max_keys, snapshot.in_flight),
        (2, 2, 1)
    );
    let mut pools = keyed.pools();
    pools.sort_by_key(|(key, _)| *key);
    let in_flight: Vec<_> = pools.iter().map(|(k, s)| (*k, s.in_flight)).collect();
    assert_eq!(in_flight, [(2, 1), (3, 0)]);
}

#[tokio::test(start_paused = true)]
async fn a_pool_that_someone_holds_is_not_evicted() {
    let config = one_permit().max_keys(1).build().unwrap();
    let keyed = KeyedBulkhead::<&'static str>::from_config("svc", config).unwrap();
    drop(keyed.try_acquire("a").unwrap());
    let pool = keyed.get(&"a").expect("a has a pool");
    assert!(keyed.try_acquire("b").is_err(), "a's pool is held: no room");
    drop(pool);
    assert!(keyed.try_acquire("b").is_ok());
    assert!(keyed.get(&"a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_keyed_waiter_waits_in_its_own_pool() {
    let config = waiting(Duration::from_secs(1)).build().unwrap();
    let keyed = KeyedBulkhead::<u32>::from_config("svc", config).unwrap();
    let held = keyed.try_acquire(1u32).unwrap();
    let waiting = tokio::spawn(keyed.acquire(1u32));
    tokio::task::yield_now().await;
    assert!(
        keyed.try_acquire(2u32).is_ok(),
        "key 2 does not wait for key 1"
    );
    assert_eq!(keyed.get(&1).unwrap().queued(), 1);
    drop(held);
    assert!(waiting.await.unwrap().is_ok());
}

#[cfg(feature = "http")]
mod body {
    use super::*;

    use bytes::Bytes;
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body whose chunks the test sends one by one; it ends when the
    /// sender is dropped.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn response() -> (mpsc::Sender<Bytes>, http::Response<ChannelBody>) {
        let (tx, rx) = mpsc::channel(4);
        (tx, http::Response::new(ChannelBody(rx)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_holds_its_permit_until_it_ends() {
        let b = bulkhead(one_permit());
        let layer = BulkheadLayer::new(b.clone()).hold_until_body_end();
        let (mut service, mut handle) =
            mock::spawn_layer::<u32, http::Response<ChannelBody>, _>(layer);

        assert!(service.poll_ready().is_ready());
        let call = service.call(1);
        let (tx, response) = response();
        assert_request_eq!(handle, 1).send_response(response);
        let mut body = call.await.unwrap().into_body();
        assert!(body.holds_permit());
        assert_eq!(b.in_flight(), 1, "the headers are in, the body still flows");

        tx.send(Bytes::from_static(b"chunk")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "chunk");
        assert_eq!(b.in_flight(), 1, "a chunk is not the end");
        assert!(service.poll_ready().is_ready());
        assert!(is_full(&service.call(2).await.unwrap_err()));

        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(!body.holds_permit());
        assert_eq!(b.in_flight(), 0, "given back at the end of the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_body_gives_its_permit_back() {
        let b = bulkhead(one_permit());
        let layer = BulkheadLayer::new(b.clone()).hold_until_body_end();
        let (mut service, mut handle) =
            mock::spawn_layer::<u32, http::Response<ChannelBody>, _>(layer);

        assert!(service.poll_ready().is_ready());
        let call = service.call(1);
        let (_tx, response) = response();
        assert_request_eq!(handle, 1).send_response(response);
        let body = call.await.unwrap().into_body();
        assert_eq!(b.in_flight(), 1);
        drop(body);
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_option_the_permit_ends_with_the_headers() {
        let b = bulkhead(one_permit());
        let (mut service, mut handle) =
            mock::spawn_layer::<u32, http::Response<ChannelBody>, _>(BulkheadLayer::new(b.clone()));
        assert!(service.poll_ready().is_ready());
        let call = service.call(1);
        let (_tx, response) = response();
        assert_request_eq!(handle, 1).send_response(response);
        let _response = call.await.unwrap();
        assert_eq!(b.in_flight(), 0);
    }
}
