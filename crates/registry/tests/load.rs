//! A bounded load test over loopback: 10,000 requests through breakers of
//! the registry while one client reads `GET /events` not at all and
//! another reads it as fast as it can. Every request completes, the slow
//! client is dropped, and the fast one receives every transition.
#![cfg(not(loom))]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Sse, serve_tight};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_breaker::event::RecvError;
use portcullis_breaker::{
    Breaker, BreakerConfig, BreakerEvent, BreakerOpen, CircuitBreakerLayer, State,
};
use portcullis_core::{BoxError, Outcome};
use portcullis_registry::{Registry, RegistryService};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUESTS: usize = 10_000;
const CONNECTIONS: usize = 8;
const BREAKERS: [&str; 2] = ["orders", "stock"];

/// The application: `/orders` and `/stock`, each behind its registry
/// breaker; the upstream fails three calls in five.
async fn serve_app(registry: &Registry) -> SocketAddr {
    let calls = Arc::new(AtomicU64::new(0));
    let mut routes = Vec::new();
    for name in BREAKERS {
        let calls = calls.clone();
        let upstream = tower::service_fn(move |_: ()| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                let status = if n % 5 < 3 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                Ok::<_, BoxError>(status)
            }
        });
        let classify = |result: Result<&StatusCode, &BoxError>| match result {
            Ok(status) if !status.is_server_error() => Outcome::Success,
            _ => Outcome::Failure,
        };
        let service = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(registry.breakers().get(name)).classifier(classify))
            .service(upstream);
        routes.push((format!("/{name}"), service));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let route = routes
                        .iter()
                        .find(|(path, _)| path == request.uri().path())
                        .cloned();
                    async move {
                        let status = match route {
                            None => StatusCode::NOT_FOUND,
                            Some((_, mut service)) => {
                                match service.ready().await.unwrap().call(()).await {
                                    Ok(status) => status,
                                    Err(error) if error.is::<BreakerOpen>() => {
                                        StatusCode::SERVICE_UNAVAILABLE
                                    }
                                    Err(_) => StatusCode::BAD_GATEWAY,
                                }
                            }
                        };
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends `count` requests one after the other on one kept-alive
/// connection; returns how many of each status came back.
async fn client(addr: SocketAddr, count: usize, offset: usize) -> [usize; 3] {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut seen = [0; 3];
    for i in 0..count {
        let path = format!("/{}", BREAKERS[(i + offset) % BREAKERS.len()]);
        let request = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        response.into_body().collect().await.unwrap();
        match status.as_u16() {
            200 => seen[0] += 1,
            500 => seen[1] += 1,
            503 => seen[2] += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    seen
}

/// Every transition of `breaker`, read straight from its own events, up to
/// the first into `ForcedOpen`.
async fn transitions_of(breaker: Breaker) -> Vec<(State, State)> {
    let mut stream = breaker.subscribe();
    let mut transitions = Vec::new();
    loop {
        match stream.recv().await {
            Ok(BreakerEvent::Transition { from, to, .. }) => {
                transitions.push((from, to));
                if to == State::ForcedOpen {
                    return transitions;
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => panic!("the reference subscriber missed {n} events"),
            Err(RecvError::Closed) => panic!("the breaker is gone"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_requests_a_slow_reader_dropped_a_fast_one_gets_every_transition() {
    let registry = Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(4)
                .minimum_calls(2)
                .wait_in_open(Duration::from_millis(1))
                .permitted_calls_in_half_open(1)
                .build()
                .unwrap(),
        )
        // Every rejection report of a breaker is an event of its own: the
        // most the feed can be asked for.
        .rejection_report_interval(Duration::ZERO)
        .event_buffer(2048)
        .build()
        .unwrap();
    let references: Vec<_> = BREAKERS
        .iter()
        .map(|name| tokio::spawn(transitions_of(registry.breakers().get(name))))
        .collect();
    let app = serve_app(&registry).await;
    let events = serve_tight(RegistryService::new(registry.clone())).await;

    // The slow client: a small receive window, and it does not read.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let slow = Sse::connect_with(socket.connect(events).await.unwrap(), "/events", &[]).await;
    // The fast client reads everything as it comes.
    let mut fast = Sse::connect(events, "/events", &[]).await;
    assert_eq!(registry.event_stats().subscribers, 2);
    let fast_reader = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut forced = 0;
        while let Some(event) = fast.next().await {
            if event.event == "transition" && event.json()["to"] == "FORCED_OPEN" {
                forced += 1;
            }
            received.push(event);
            if forced == BREAKERS.len() {
                break;
            }
        }
        received
    });

    let load = async {
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|i| tokio::spawn(client(app, REQUESTS / CONNECTIONS, i)))
            .collect();
        let mut totals = [0; 3];
        for client in clients {
            for (total, n) in totals.iter_mut().zip(client.await.unwrap()) {
                *total += n;
            }
        }
        totals
    };
    let totals = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("the load finished (a bound, not a measurement)");
    assert_eq!(
        totals.iter().sum::<usize>(),
        REQUESTS,
        "every request completed: {totals:?}"
    );
    assert!(
        totals[2] > 0,
        "some requests met an open breaker: {totals:?}"
    );
    assert!(
        totals[1] > 0,
        "and some reached the failing upstream: {totals:?}"
    );

    let stats = registry.event_stats();
    assert_eq!(
        stats.dropped, 1,
        "the slow client was dropped during the load: {stats:?}"
    );
    assert_eq!(
        stats.lagged, 0,
        "the registry kept up with every breaker: {stats:?}"
    );

    // A known last event per breaker ends the comparison.
    for name in BREAKERS {
        registry.breakers().get(name).force_open();
    }
    let received = tokio::time::timeout(Duration::from_secs(30), fast_reader)
        .await
        .expect("the fast client got to the end")
        .unwrap();
    let ids: Vec<u64> = received.iter().map(|event| event.id.unwrap()).collect();
    assert!(
        ids.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "the fast client missed no event"
    );
    for (name, reference) in BREAKERS.iter().zip(references) {
        let expected = reference.await.unwrap();
        let seen: Vec<(String, String)> = received
            .iter()
            .filter(|event| event.event == "transition")
            .map(SseEvent::json)
            .filter(|data| data["name"] == *name)
            .map(|data| {
                (
                    data["from"].as_str().unwrap().to_owned(),
                    data["to"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(from, to)| (name_of(*from), name_of(*to)))
            .collect();
        assert!(
            expected.len() > 10,
            "{name} went through many transitions: {}",
            expected.len()
        );
        assert_eq!(seen, expected, "{name}: every transition, in order");
    }

    // The slow client, reading at last, gets what was buffered, is told it
    // was dropped, and its stream ends.
    let mut slow = slow;
    let mut last = None;
    let mut count = 0;
    while let Some(event) = slow.next().await {
        count += 1;
        last = Some(event);
    }
    let last = last.expect("some events reached the slow client");
    assert_eq!(last.event, "dropped");
    assert!(count < received.len(), "{count} of {}", received.len());
    assert_eq!(
        registry.event_stats().subscribers,
        0,
        "both clients have left"
    );
    eprintln!(
        "{REQUESTS} requests ({totals:?} as 200/500/503); the fast client got {} events, the slow one {count} before it was dropped",
        received.len()
    );
}

use common::SseEvent;

fn name_of(state: State) -> String {
    serde_json::to_value(state)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}
