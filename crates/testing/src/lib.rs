//! Helpers shared by the tests and benchmarks of the Portcullis workspace
//! (not published).
//!
//! - [`call`] and [`call_ready`] drive a `tower` service through one call
//!   with a no-op waker and no executor, so that an allocation test or a
//!   benchmark measures the layer and nothing else; [`PendingOnce`] is an
//!   inner future that really waits once.
//! - [`get`] sends one HTTP/1.1 request over a plain TCP stream and reads
//!   the whole response, for the tests that mount a layer in a real axum
//!   router on loopback.
//! - [`runtime`]: the current-thread runtime with time enabled that an
//!   allocation test's `main` or a benchmark enters, since the layers read
//!   the tokio clock.
//! - [`alloc`]: [`Counting`](alloc::Counting), a global allocator that
//!   counts allocations and bytes, and [`Region`](alloc::Region) to measure
//!   a span: for the tests that prove a path allocates nothing, and for the
//!   bytes a structure holds.
//! - [`redis`]: [`RedisServer`](redis::RedisServer), a real `redis-server`
//!   on a free loopback port for the fleet limits' tests and benchmark,
//!   killed when its guard is dropped (and by a watchdog if the test
//!   binary dies).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;

pub mod alloc;
pub mod redis;

/// A current-thread runtime with time enabled: the layers read the tokio
/// clock, so calls are made inside its context (`runtime.enter()`).
///
/// ```
/// let runtime = portcullis_testing::runtime();
/// let _guard = runtime.enter();
/// let _now = tokio::time::Instant::now();
/// ```
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// Calls `service` once and polls the response future until it is ready, at
/// most `polls` times, with a no-op waker. Panics if the service is not
/// ready, the call fails, or the future is still pending after `polls`
/// polls.
pub fn call<S, R>(service: &mut S, request: R, polls: usize) -> S::Response
where
    S: Service<R>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(error)) => panic!("poll_ready failed: {error:?}"),
        Poll::Pending => panic!("the service is not ready"),
    }
    let mut future = pin!(service.call(request));
    for _ in 0..polls {
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            return result.expect("the call succeeds");
        }
    }
    panic!("the response future is still pending after {polls} polls")
}

/// [`call`] for a response future that is ready on its first poll.
pub fn call_ready<S, R>(service: &mut S, request: R) -> S::Response
where
    S: Service<R>,
    S::Error: Debug,
{
    call(service, request, 1)
}

/// A future that is pending on its first poll (waking itself) and ready
/// with `Ok(value)` on the second: the shape of a call that really waits,
/// so that a timeout's timer registers.
#[derive(Debug)]
pub struct PendingOnce<T> {
    value: Option<T>,
    polled: bool,
}

impl<T> PendingOnce<T> {
    /// A future that yields once, then returns `Ok(value)`.
    pub fn new(value: T) -> Self {
        Self {
            value: Some(value),
            polled: false,
        }
    }
}

impl<T: Unpin> Future for PendingOnce<T> {
    type Output = Result<T, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.polled, true) {
            return Poll::Ready(Ok(self.value.take().expect("polled after completion")));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// An HTTP response as read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (not de-chunked: tests send small bodies with a length).
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (lowercase), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` to `addr` with `connection: close` and reads the whole
/// response. Panics on any I/O error or a malformed response.
pub async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    request(addr, "GET", path, &[], "").await
}

/// Sends one request with `headers` and `body` (a `content-length` is
/// added) to `addr` and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}
