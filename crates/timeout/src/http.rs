//! The HTTP flavour: answers instead of erroring, honours per-request
//! overrides, and can tell the callee its deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::ConfigError;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Propagation, TimeoutConfig};

/// A request extension that overrides the timeout of an [`HttpTimeout`]
/// for one request.
///
/// ```
/// use std::time::Duration;
/// use portcullis_timeout::RequestTimeout;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(RequestTimeout(Duration::from_millis(200)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// A request extension holding the deadline that an outer [`HttpTimeout`]
/// set. Inner timeouts never wait past it, and propagation counts down to
/// it. It is inserted by timeouts that propagate their deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

/// Wraps services in an [`HttpTimeout`].
///
/// ```
/// use std::time::Duration;
/// use http::{Request, Response, StatusCode};
/// use portcullis_timeout::HttpTimeoutLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let slow = service_fn(|_: Request<()>| async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
///     Ok::<_, std::convert::Infallible>(Response::new(String::from("late")))
/// });
/// let service = ServiceBuilder::new()
///     .layer(HttpTimeoutLayer::new(Duration::from_secs(1)))
///     .service(slow);
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HttpTimeoutLayer {
    settings: Settings,
}

/// Answers with a 504 (or the configured status, or a gRPC
/// `DEADLINE_EXCEEDED`) when the inner service takes too long, so that the
/// error type stays the inner service's (`Infallible` under axum).
///
/// The timeout of a request is its [`RequestTimeout`] extension if it has
/// one, else the configured one, and never past a [`Deadline`] an outer
/// timeout set. With propagation on, the callee is told the time that
/// remains (`grpc-timeout`, or a header of milliseconds).
#[derive(Clone, Debug)]
pub struct HttpTimeout<S> {
    inner: S,
    settings: Settings,
}

pin_project! {
    /// The response future of [`HttpTimeout`].
    #[derive(Debug)]
    pub struct HttpResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Instant,
        on_timeout: OnTimeout,
    }
}

#[derive(Clone, Debug)]
struct Settings {
    timeout: Duration,
    on_timeout: OnTimeout,
    propagate: Option<Propagate>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnTimeout {
    Status(StatusCode),
    Grpc,
}

#[derive(Clone, Debug)]
enum Propagate {
    Grpc,
    Millis(HeaderName),
}

impl Deadline {
    /// When the deadline is.
    pub fn at(&self) -> Instant {
        self.0
    }

    /// The time left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

impl HttpTimeoutLayer {
    /// Requests are limited to `timeout`; a timeout answers 504.
    ///
    /// A timeout (or a [`RequestTimeout`]) too long for the clock to add,
    /// such as `Duration::MAX`, means "thirty years", as tokio's timers
    /// read it: it never panics. Use [`from_config`](Self::from_config) for
    /// a timeout checked against the config's range.
    pub fn new(timeout: Duration) -> Self {
        Self {
            settings: Settings {
                timeout,
                on_timeout: OnTimeout::Status(StatusCode::GATEWAY_TIMEOUT),
                propagate: None,
            },
        }
    }

    /// A layer from a validated configuration.
    pub fn from_config(config: &TimeoutConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let status = StatusCode::from_u16(config.status())
            .map_err(|_| ConfigError::new("status", "must be a valid HTTP status"))?;
        let mut layer = Self::new(config.timeout()).status(status);
        match config.propagate() {
            Some(Propagation::Grpc) => layer = layer.propagate_grpc(),
            Some(Propagation::Header(name)) => {
                let name = HeaderName::try_from(name.as_str()).map_err(|_| {
                    ConfigError::new(
                        "propagate.header",
                        format!("must be an HTTP header name, got {name:?}"),
                    )
                })?;
                layer = layer.propagate_header(name);
            }
            None => {}
        }
        Ok(layer)
    }

    /// Answer a timeout with `status` instead of 504.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.settings.on_timeout = OnTimeout::Status(status);
        self
    }

    /// For gRPC: answer a timeout with a trailers-only response carrying
    /// `grpc-status: 4` (`DEADLINE_EXCEEDED`), and propagate the deadline in
    /// `grpc-timeout`.
    pub fn grpc(mut self) -> Self {
        self.settings.on_timeout = OnTimeout::Grpc;
        self.propagate_grpc()
    }

    /// Tell the callee the remaining time in `grpc-timeout`.
    pub fn propagate_grpc(mut self) -> Self {
        self.settings.propagate = Some(Propagate::Grpc);
        self
    }

    /// Tell the callee the remaining time, in milliseconds, in `header`.
    pub fn propagate_header(mut self, header: HeaderName) -> Self {
        self.settings.propagate = Some(Propagate::Millis(header));
        self
    }
}

impl<S> Layer<S> for HttpTimeoutLayer {
    type Service = HttpTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTimeout {
            inner,
            settings: self.settings.clone(),
        }
    }
}

impl<S> HttpTimeout<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpTimeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &self.settings;
        let timeout = request
            .extensions()
            .get::<RequestTimeout>()
            .map_or(settings.timeout, |t| t.0);
        let now = Instant::now();
        let mut deadline = crate::deadline_after(now, timeout);
        if let Some(outer) = request.extensions().get::<Deadline>() {
            deadline = deadline.min(outer.0);
        }
        if let Some(propagate) = &settings.propagate {
            let remaining = deadline.saturating_duration_since(now);
            let (name, value) = match propagate {
                Propagate::Grpc => (
                    HeaderName::from_static("grpc-timeout"),
                    grpc_timeout(remaining),
                ),
                Propagate::Millis(name) => (
                    name.clone(),
                    HeaderValue::from(remaining.as_millis() as u64),
                ),
            };
            request.headers_mut().insert(name, value);
            request.extensions_mut().insert(Deadline(deadline));
        }
        HttpResponseFuture {
            inner: self.inner.call(request),
            sleep: None,
            deadline,
            on_timeout: settings.on_timeout,
        }
    }
}

impl<F, B, E> Future for HttpResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        if crate::timer(this.sleep, *this.deadline)
            .poll(cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        tracing::debug!(on_timeout = ?*this.on_timeout, "timed out: answering for the service");
        let mut response = Response::new(B::default());
        match *this.on_timeout {
            OnTimeout::Status(status) => *response.status_mut() = status,
            OnTimeout::Grpc => {
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                headers.insert("grpc-status", HeaderValue::from_static("4"));
                headers.insert(
                    "grpc-message",
                    HeaderValue::from_static("deadline%20exceeded"),
                );
            }
        }
        Poll::Ready(Ok(response))
    }
}

/// A duration in the format of the `grpc-timeout` header: at most eight
/// digits and a unit, in the finest unit that fits.
pub(crate) fn grpc_timeout(duration: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = duration.as_nanos();
    let (value, unit) = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .map(|(size, unit)| (nanos / size, unit))
    .find(|(value, _)| *value <= MAX)
    .unwrap_or((MAX, 'H'));
    HeaderValue::try_from(format!("{value}{unit}"))
        .expect("digits and a unit are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_uses_the_finest_unit_that_fits() {
        let format = |d| grpc_timeout(d).to_str().unwrap().to_owned();
        assert_eq!(format(Duration::from_nanos(5)), "5n");
        assert_eq!(format(Duration::from_millis(250)), "250000u");
        assert_eq!(format(Duration::from_secs(1)), "1000000u");
        assert_eq!(format(Duration::from_secs(100)), "100000m");
        assert_eq!(format(Duration::from_secs(200_000)), "200000S");
        assert_eq!(format(Duration::from_secs(u64::MAX)), "99999999H");
    }
}
