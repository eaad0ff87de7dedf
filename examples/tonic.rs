//! A tonic server and a tonic client on loopback, each with a Portcullis
//! stack, and no `protoc`: the messages are `prost` derives and the
//! service glue is written out by hand.
//!
//! Run it with `cargo run --example tonic`.
//!
//! - The server's stack is a bulkhead of one call and a 1 s timeout,
//!   under [`StatusMappingLayer`], so that their rejections reach the
//!   caller as gRPC statuses (`UNAVAILABLE`, `DEADLINE_EXCEEDED`) with
//!   `x-portcullis-error` and `grpc-retry-pushback-ms`, where tonic alone
//!   would reset the stream.
//! - The client's stack over the `Channel` is a retry (gRPC rules: only
//!   calls marked idempotent; the request body is replayed) and a breaker
//!   classified by `grpc-status`, under [`StatusMappingLayer`] too, so that
//!   `tonic::client::Grpc` hands back a `Status` for the breaker's
//!   rejection as well.
//!
//! Four calls show each of them; the example prints what the client got
//! and exits with an error if it was not what it should be.

use std::collections::HashMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use portcullis::ServiceBuilderExt;
use portcullis::breaker::{Breaker, BreakerConfig, CircuitBreakerLayer};
use portcullis::bulkhead::{Bulkhead, BulkheadConfig};
use portcullis::core::{BoxError, GrpcClassifier};
use portcullis::grpc::StatusMappingLayer;
use portcullis::retry::{
    ConstantBackoff, Idempotent, NoJitter, ReplayBody, RetryConfig, RetryLayer,
};
use tokio::sync::Notify;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tower::{ServiceBuilder, service_fn};

/// `demo.Inventory/Reserve`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ReserveRequest {
    /// Which order: the server counts attempts per order.
    #[prost(string, tag = "1")]
    pub(crate) order: String,
    /// How many attempts of this order the server fails with `UNAVAILABLE`.
    #[prost(uint32, tag = "2")]
    pub(crate) fail_first: u32,
    /// Whether the server holds the call until it is released.
    #[prost(bool, tag = "3")]
    pub(crate) hold: bool,
}

/// `demo.Inventory/Reserve`'s reply.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ReserveReply {
    /// The attempt of the order that succeeded, from 1.
    #[prost(uint32, tag = "1")]
    pub(crate) attempt: u32,
}

/// What the client got from each step, for `main` to print and the tests
/// to check.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// A call that failed twice and was retried: the attempt that succeeded.
    pub(crate) retried: u32,
    /// A call while the server's one permit was taken: its code and
    /// `x-portcullis-error`.
    pub(crate) bulkhead: Option<(Code, String)>,
    /// A call longer than the server's timeout.
    pub(crate) timeout: Option<(Code, String)>,
    /// The calls of an order that always fails: what the client got for
    /// each (its code and `x-portcullis-error`).
    pub(crate) breaker: Vec<(Code, String)>,
    /// The pushback of the breaker's rejection, in milliseconds.
    pub(crate) pushback_ms: Option<u64>,
    /// How many calls of that order reached the server.
    pub(crate) breaker_reached: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let summary = run().await?;
    println!("retried call: succeeded on attempt {}", summary.retried);
    println!("while the server was busy: {:?}", summary.bulkhead);
    println!("a call too slow for the server: {:?}", summary.timeout);
    for (n, (code, kind)) in summary.breaker.iter().enumerate() {
        let from = if kind.is_empty() {
            "the server's own"
        } else {
            kind
        };
        println!("failing order, call {}: {code:?} ({from})", n + 1);
    }
    println!(
        "the server saw {} of them; the breaker asks to come back in {:?} ms",
        summary.breaker_reached, summary.pushback_ms
    );
    check(&summary)
}

/// Serves `demo.Inventory` and calls it through the client stack.
pub(crate) async fn run() -> Result<Summary, BoxError> {
    let state = Arc::new(State::default());
    let addr = serve(state.clone()).await?;

    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let breaker = Breaker::from_config(
        "inventory",
        BreakerConfig::builder()
            .count_window(3)
            .minimum_calls(3)
            .failure_rate_threshold(100.0)
            .wait_in_open(Duration::from_secs(10))
            .build()?,
    )?;
    let retry = RetryLayer::grpc(
        "inventory",
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(ConstantBackoff::new(Duration::from_millis(10)))
            .jitter(NoJitter)
            .build()?,
    )?;
    let stack = ServiceBuilder::new()
        .layer(StatusMappingLayer::new())
        .retry_with(retry)
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(GrpcClassifier))
        // The retry hands on a replayable body; the channel takes tonic's.
        .map_request(|request: http::Request<ReplayBody<Body>>| request.map(Body::new))
        .service(channel);
    let mut client = tonic::client::Grpc::new(stack);
    let mut summary = Summary::default();

    // 1. Fails twice, marked idempotent: retried, with the same body.
    let reply = reserve(&mut client, "a", 2, false, true).await?;
    summary.retried = reply.attempt;

    // 2. The server's one permit is taken by a held call: the next one is
    //    refused by its bulkhead (not retried: not idempotent).
    let held = {
        let mut client = client.clone();
        tokio::spawn(async move { reserve(&mut client, "held", 0, true, false).await })
    };
    state.entered.notified().await;
    let status = reserve(&mut client, "b", 0, false, false)
        .await
        .unwrap_err();
    summary.bulkhead = Some(code_and_kind(&status));
    state.release.notify_waiters();
    // It got its reply, or the server's timeout if this machine is slow
    // enough to take a second for the call above: either is fine here.
    let _ = held.await?;

    // 3. A call that the server holds past its timeout.
    let status = reserve(&mut client, "slow", 0, true, false)
        .await
        .unwrap_err();
    summary.timeout = Some(code_and_kind(&status));

    // 4. An order that always fails: the breaker (which opens when its
    //    last three calls failed), reset after the steps above, opens after
    //    three failures and refuses the fourth call.
    breaker.reset();
    for _ in 0..4 {
        let status = reserve(&mut client, "down", u32::MAX, false, false)
            .await
            .unwrap_err();
        summary.pushback_ms = status
            .metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        summary.breaker.push(code_and_kind(&status));
    }
    summary.breaker_reached = state.attempts("down");
    Ok(summary)
}

/// Every step ended as it should.
pub(crate) fn check(summary: &Summary) -> Result<(), BoxError> {
    let unavailable = (Code::Unavailable, String::new());
    let open = (Code::Unavailable, "breaker-open".to_owned());
    if summary.retried != 3
        || summary.bulkhead != Some((Code::Unavailable, "bulkhead-full".to_owned()))
        || summary.timeout != Some((Code::DeadlineExceeded, "timeout".to_owned()))
        || summary.breaker != [unavailable.clone(), unavailable.clone(), unavailable, open]
        || summary.breaker_reached != 3
        || summary.pushback_ms.unwrap_or(0) == 0
    {
        return Err(format!("unexpected outcome: {summary:?}").into());
    }
    Ok(())
}

/// One `Reserve` call.
async fn reserve<T>(
    client: &mut tonic::client::Grpc<T>,
    order: &str,
    fail_first: u32,
    hold: bool,
    idempotent: bool,
) -> Result<ReserveReply, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as hyper::body::Body>::Error: Into<BoxError>,
{
    let mut request = tonic::Request::new(ReserveRequest {
        order: order.to_owned(),
        fail_first,
        hold,
    });
    if idempotent {
        request.extensions_mut().insert(Idempotent);
    }
    client
        .ready()
        .await
        .map_err(|error| Status::unavailable(error.into().to_string()))?;
    let path = PathAndQuery::from_static("/demo.Inventory/Reserve");
    let reply = client.unary(request, path, ProstCodec::default()).await?;
    Ok(reply.into_inner())
}

fn code_and_kind(status: &Status) -> (Code, String) {
    let kind = status
        .metadata()
        .get("x-portcullis-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (status.code(), kind.to_owned())
}

// ---- the server ----------------------------------------------------------

/// The server's memory: attempts per order, and the gate of held calls.
#[derive(Debug, Default)]
struct State {
    attempts: Mutex<HashMap<String, u32>>,
    entered: Notify,
    release: Notify,
}

impl State {
    fn attempts(&self, order: &str) -> u32 {
        let attempts = self.attempts.lock().expect("not poisoned");
        attempts.get(order).copied().unwrap_or(0)
    }

    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveReply, Status> {
        let attempt = {
            let mut attempts = self.attempts.lock().expect("not poisoned");
            let attempt = attempts.entry(request.order).or_default();
            *attempt += 1;
            *attempt
        };
        if attempt <= request.fail_first {
            return Err(Status::unavailable("not yet"));
        }
        if request.hold {
            self.entered.notify_one();
            self.release.notified().await;
        }
        Ok(ReserveReply { attempt })
    }
}

/// `demo.Inventory`, routed by hand as generated code would.
#[derive(Clone, Debug)]
struct Inventory {
    state: Arc<State>,
}

impl NamedService for Inventory {
    const NAME: &'static str = "demo.Inventory";
}

impl tower::Service<http::Request<Body>> for Inventory {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            if request.uri().path() != "/demo.Inventory/Reserve" {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let method = service_fn(move |request: tonic::Request<ReserveRequest>| {
                let state = state.clone();
                async move {
                    let reply = state.reserve(request.into_inner()).await?;
                    Ok::<_, Status>(tonic::Response::new(reply))
                }
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// The boxed future of the hand-written service (boxing is fine in an
/// example; generated code does the same).
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Serves `demo.Inventory` on loopback behind a bulkhead of one call and a
/// 1 s timeout, their errors mapped to statuses.
async fn serve(state: Arc<State>) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let bulkhead = Bulkhead::from_config(
        "inventory-server",
        BulkheadConfig::builder().max_concurrent_calls(1).build()?,
    )?;
    let stack = ServiceBuilder::new()
        .layer(StatusMappingLayer::new())
        .bulkhead(bulkhead)
        .timeout_after(Duration::from_secs(1))
        .into_inner();
    let router = Server::builder()
        .layer(stack)
        .add_service(Inventory { state });
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    Ok(addr)
}

// ---- the codec -----------------------------------------------------------

/// A gRPC codec for prost messages: `E` goes out, `D` comes in.
#[derive(Debug)]
struct ProstCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for ProstCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

#[derive(Debug)]
struct ProstEncoder<E>(PhantomData<fn(E)>);

#[derive(Debug)]
struct ProstDecoder<D>(PhantomData<fn() -> D>);

impl<E, D> Codec for ProstCodec<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProstEncoder<E>;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

impl<E: prost::Message> Encoder for ProstEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|error| Status::internal(format!("encoding failed: {error}")))
    }
}

impl<D: prost::Message + Default> Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src)
            .map(Some)
            .map_err(|error| Status::internal(format!("decoding failed: {error}")))
    }
}
