//! The load: the same requests, at the same moments, to each gateway; and
//! what came back, request by request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{Method, Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::http::X_PORTCULLIS_ERROR;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

/// The header a stale fallback carries.
const STALE_HEADER: &str = "x-portcullis-fallback";

/// How long a client waits for any answer before it calls the request lost.
const GIVE_UP: Duration = Duration::from_secs(10);

/// A bounded load: `requests` requests, one every `1 / rate` seconds, at
/// most `concurrency` in flight per gateway.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// How many requests each gateway gets.
    pub(crate) requests: u64,
    /// Requests per second.
    pub(crate) rate: f64,
    /// The most requests in flight to one gateway.
    pub(crate) concurrency: usize,
    /// One request in `write_every` is a `POST /orders`, the others
    /// `GET /items/{id}`.
    pub(crate) write_every: u64,
    /// The reads go to this many distinct items.
    pub(crate) items: u64,
}

/// What one request got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx from the upstream.
    Fresh,
    /// A 2xx served by a fallback (`x-portcullis-fallback`).
    Fallback,
    /// A Portcullis rejection, answered at once: breaker open, bulkhead
    /// full, rate limited.
    Rejected,
    /// A Portcullis timeout (`504`, `x-portcullis-error: timeout`).
    TimedOut,
    /// Any other error status: the upstream's own, passed on, or a `502`.
    Failed,
    /// No answer at all (the connection failed, or nothing in 10 s).
    Lost,
}

/// The outcomes and latencies of one gateway's requests.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Requests answered, by [`Outcome`] (in its order).
    pub(crate) counts: [u64; 6],
    /// Their latencies, in no order.
    pub(crate) latencies: Vec<Duration>,
    /// For each latency, when its request was due (since the start) and
    /// whether it was a read.
    pub(crate) requests: Vec<(Duration, bool)>,
}

/// One gateway under load.
#[derive(Debug)]
pub(crate) struct Lane {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    slots: Arc<Semaphore>,
    sent: AtomicU64,
    done: AtomicU64,
    tally: Mutex<Tally>,
}

impl Plan {
    /// The method and path of request `i`.
    pub(crate) fn request(&self, i: u64) -> (Method, String) {
        if self.write_every > 0 && i % self.write_every == self.write_every - 1 {
            (Method::POST, "/orders".to_owned())
        } else {
            (Method::GET, format!("/items/{}", i % self.items.max(1)))
        }
    }

    /// When request `i` is sent, after the start.
    pub(crate) fn send_at(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }
}

impl Outcome {
    fn of(status: u16, stale: bool, error: Option<&str>) -> Self {
        match (status, error) {
            (200..=299, _) if stale => Outcome::Fallback,
            (200..=299, _) => Outcome::Fresh,
            (_, Some("breaker-open" | "bulkhead-full" | "rate-limited")) => Outcome::Rejected,
            (_, Some("timeout")) => Outcome::TimedOut,
            _ => Outcome::Failed,
        }
    }
}

impl Tally {
    /// How many requests had `outcome`.
    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome as usize]
    }

    /// Every request counted.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The requests answered with a 2xx, fresh or from a fallback.
    pub(crate) fn useful(&self) -> u64 {
        self.count(Outcome::Fresh) + self.count(Outcome::Fallback)
    }

    /// The latency below which `q` (in [0, 1]) of the requests were
    /// answered.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        quantile(self.latencies.clone(), q)
    }

    /// The `q` quantile of the latencies of the reads due within `window`.
    pub(crate) fn read_quantile(&self, q: f64, window: &std::ops::Range<Duration>) -> Duration {
        let latencies = self
            .latencies
            .iter()
            .zip(&self.requests)
            .filter(|(_, (due, read))| *read && window.contains(due))
            .map(|(latency, _)| *latency)
            .collect();
        quantile(latencies, q)
    }
}

/// The latency below which `q` (in [0, 1]) of `latencies` are.
fn quantile(mut sorted: Vec<Duration>, q: f64) -> Duration {
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Lane {
    /// A lane to the gateway at `addr`.
    pub(crate) fn new(addr: SocketAddr, plan: &Plan) -> Arc<Self> {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(plan.concurrency)
            .build_http();
        Arc::new(Self {
            addr,
            client,
            slots: Arc::new(Semaphore::new(plan.concurrency)),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            tally: Mutex::new(Tally::default()),
        })
    }

    /// Requests answered so far.
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Requests sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Takes what was counted so far, and starts again from zero.
    pub(crate) fn take(&self) -> Tally {
        self.sent.store(0, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }

    async fn send(&self, method: Method, path: &str) -> Outcome {
        let Ok(uri) = Uri::try_from(format!("http://{}{path}", self.addr)) else {
            return Outcome::Lost;
        };
        let body = if method == Method::POST {
            Bytes::from_static(b"{\"sku\": 17, \"quantity\": 1}")
        } else {
            Bytes::new()
        };
        let Ok(request) = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
        else {
            return Outcome::Lost;
        };
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let (parts, body) = response.into_parts();
            body.collect().await.ok()?;
            let error = parts
                .headers
                .get(X_PORTCULLIS_ERROR)
                .and_then(|value| value.to_str().ok());
            let stale = parts.headers.contains_key(STALE_HEADER);
            Some(Outcome::of(parts.status.as_u16(), stale, error))
        };
        timeout(GIVE_UP, exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or(Outcome::Lost)
    }

    fn record(&self, outcome: Outcome, latency: Duration, request: (Duration, bool)) {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.counts[outcome as usize] += 1;
        tally.latencies.push(latency);
        tally.requests.push(request);
        drop(tally);
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `plan`'s requests from `start`: request `i` goes to every lane at
/// the same moment. Returns once every request has been answered.
pub(crate) async fn drive(plan: Plan, lanes: &[Arc<Lane>], start: Instant) {
    let mut tasks = JoinSet::new();
    for i in 0..plan.requests {
        sleep_until(start + plan.send_at(i)).await;
        let (method, path) = plan.request(i);
        let request = (plan.send_at(i), method == Method::GET);
        for lane in lanes {
            let lane = lane.clone();
            let (method, path) = (method.clone(), path.clone());
            lane.sent.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                // Timed from the moment it was due: waiting for a free slot
                // counts.
                let due = Instant::now();
                let Ok(_slot) = lane.slots.clone().acquire_owned().await else {
                    return;
                };
                let outcome = lane.send(method, &path).await;
                lane.record(outcome, due.elapsed(), request);
            });
        }
        // Reap what is done, so that the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
