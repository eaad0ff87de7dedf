//! The two gateways: one that forwards as it is, one with a Portcullis
//! stack per route.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::ServiceBuilderExt;
use portcullis::breaker::{BreakerConfig, CircuitBreakerLayer};
use portcullis::bulkhead::BulkheadConfig;
use portcullis::core::{BoxError, HttpClassifier};
use portcullis::fallback::{FallbackCounters, FallbackLayer, StaleCache};
use portcullis::hedge::{DelayConfig, HedgeConfig, HedgeLayer};
use portcullis::http::ErrorMappingLayer;
use portcullis::registry::{Overrides, Registry, RegistryService, RouteStatsLayer};
use portcullis::retry::{
    BudgetConfig, EqualJitter, ExponentialBackoff, HttpPolicy, RetryBudget, RetryConfig, RetryLayer,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::{Service, ServiceBuilder, service_fn};

use crate::upstream::GATEWAY_HEADER;

/// The body every gateway answers with: buffered, so that the last good
/// response can be kept and served again.
pub(crate) type Body = Full<Bytes>;

/// The read route's deadline for one call, retries included.
pub(crate) const READ_DEADLINE: Duration = Duration::from_millis(300);
/// The read route's deadline for one attempt.
pub(crate) const READ_ATTEMPT: Duration = Duration::from_millis(100);
/// The write route's deadline.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_millis(250);
/// The read route's retry budget: 20 % of the requests, plus 5 retries a
/// second, over 10 s.
pub(crate) const READ_BUDGET: BudgetConfig = BudgetConfig::new(0.2, 5, Duration::from_secs(10));
/// How long a read attempt may take before a second one is sent beside it.
pub(crate) const HEDGE_DELAY: Duration = Duration::from_millis(25);
/// The hedge's own budget: 10 % of the attempts, plus 5 hedges a second,
/// over 10 s. (Its own, so that hedges in the slow tail and retries in the
/// error burst each keep their cap; `HedgeLayer::with_retry_budget` would
/// share the retry's instead.)
pub(crate) const HEDGE_BUDGET: BudgetConfig = BudgetConfig::new(0.1, 5, Duration::from_secs(10));

/// Sends each request on to the upstream, marked with the gateway's name,
/// and buffers the answer.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    client: Client<HttpConnector, Body>,
    upstream: SocketAddr,
    gateway: &'static str,
}

/// A running gateway.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// Where it listens (loopback).
    pub(crate) addr: SocketAddr,
    server: JoinHandle<()>,
}

/// What the Portcullis gateway shares between its routes and shows.
#[derive(Clone, Debug)]
pub(crate) struct Resilience {
    /// Its breakers (`upstream-read`, `upstream-write`) and bulkheads.
    pub(crate) registry: Registry,
    /// The read route's retry (for its counters).
    pub(crate) read_retry: RetryLayer<HttpPolicy>,
    /// The read route's retry budget.
    pub(crate) budget: RetryBudget,
    /// The fallbacks the read route served.
    pub(crate) fallbacks: FallbackCounters,
    /// The read route's hedge (for its counters).
    pub(crate) read_hedge: HedgeLayer<portcullis::hedge::HttpPolicy>,
}

impl Forward {
    /// Forwards to `upstream` as `gateway`.
    pub(crate) fn new(upstream: SocketAddr, gateway: &'static str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            client,
            upstream,
            gateway,
        }
    }
}

impl<B> Service<Request<B>> for Forward
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let body = body.collect().await.map_err(Into::into)?.to_bytes();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = Uri::try_from(format!("http://{}{path}", this.upstream))?;
            parts.headers.remove(header::HOST);
            parts.headers.remove(header::CONNECTION);
            parts
                .headers
                .insert(GATEWAY_HEADER, HeaderValue::from_static(this.gateway));
            let response = this
                .client
                .request(Request::from_parts(parts, Full::new(body)))
                .await?;
            let (mut parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts.headers.remove(header::CONNECTION);
            Ok(Response::from_parts(parts, Full::new(body)))
        })
    }
}

impl Gateway {
    async fn serve(app: Router, port: u16) -> Result<Self, BoxError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|error| format!("cannot listen on 127.0.0.1:{port}: {error}"))?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, server })
    }

    /// The bare gateway: every request forwarded as it is, with no
    /// timeout; a call that fails (no connection) is a plain `502`.
    pub(crate) async fn bare(upstream: SocketAddr) -> Result<Self, BoxError> {
        let forward = Forward::new(upstream, "bare");
        let service = service_fn(move |request: Request<axum::body::Body>| {
            let mut forward = forward.clone();
            async move {
                let response = forward.call(request).await.unwrap_or_else(|_| {
                    let mut response = Response::new(Body::default());
                    *response.status_mut() = StatusCode::BAD_GATEWAY;
                    response
                });
                Ok::<_, Infallible>(response)
            }
        });
        Self::serve(Router::new().fallback_service(service).with_state(()), 0).await
    }

    /// The Portcullis gateway, with a stack per route, and the registry's
    /// service (dashboard, health, metrics) under `/admin`.
    ///
    /// Reads (`GET /items/{id}`), outermost first: errors mapped to
    /// responses → the last good response (stale) on any failure → a
    /// deadline of [`READ_DEADLINE`] → up to 3 attempts within the
    /// [`READ_BUDGET`] → a hedge: a second attempt when one takes longer
    /// than [`HEDGE_DELAY`], within the [`HEDGE_BUDGET`] → breaker
    /// `upstream-read` → bulkhead → a deadline of [`READ_ATTEMPT`] per
    /// attempt → the upstream.
    ///
    /// Writes (`POST /orders`): errors mapped to responses → breaker
    /// `upstream-write` → bulkhead (8 calls in flight) → a deadline of
    /// [`WRITE_DEADLINE`] → the upstream. Never retried: an order is not
    /// idempotent.
    ///
    /// It listens on loopback at `port` (0: any free port).
    pub(crate) async fn resilient(
        upstream: SocketAddr,
        port: u16,
    ) -> Result<(Self, Resilience), BoxError> {
        let ms = Duration::from_millis;
        let breakers = BreakerConfig::builder()
            .count_window(50)
            .minimum_calls(20)
            .failure_rate_threshold(50.0)
            .wait_in_open(ms(1_000))
            .permitted_calls_in_half_open(5)
            .build()?;
        let bulkheads = BulkheadConfig::builder().max_concurrent_calls(32).build()?;
        let registry = Registry::builder()
            .breaker_default(breakers)
            .bulkhead_default(bulkheads)
            .bulkhead_config(
                "upstream-write",
                Overrides::new().set("max_concurrent_calls", 8),
            )
            .build()?;

        let retry = RetryConfig::builder()
            .max_attempts(3)
            .backoff(ExponentialBackoff::new(ms(10), 2.0, ms(40)))
            .jitter(EqualJitter)
            .jitter_seed(7)
            .budget(READ_BUDGET)
            .build()?;
        let read_retry = RetryLayer::http("upstream-read", retry)?;
        let budget = read_retry
            .budget()
            .cloned()
            .ok_or("the retry has a budget")?;
        // Served and watched beside the breakers and bulkheads, under
        // `/admin/health/budgets`.
        registry.budgets().register(budget.clone())?;
        let hedge = HedgeConfig::builder()
            .delay(DelayConfig::fixed(HEDGE_DELAY))
            .budget(HEDGE_BUDGET)
            .build()?;
        let read_hedge = HedgeLayer::http("upstream-read", hedge)?;
        let stale = FallbackLayer::stale(StaleCache::<Body>::new()).classifier(HttpClassifier);
        let fallbacks = stale.counters().clone();
        let forward = Forward::new(upstream, "portcullis");

        // Each route's calls, latencies, timeouts, retries and fallbacks,
        // under `/admin/health/routes` and in the dashboard. Inside the
        // fallback, so a timeout it answers for is still a timeout here.
        let read_stats = registry.routes().get("upstream-read");
        read_stats.attach_fallbacks(fallbacks.clone());
        let metrics = read_retry.clone();
        read_stats.attach_retries(move || metrics.metrics());
        let read = ServiceBuilder::new()
            .layer(ErrorMappingLayer::new())
            .fallback(stale)
            .layer(RouteStatsLayer::new(read_stats).classifier(HttpClassifier))
            .timeout_after(READ_DEADLINE)
            .retry_with(read_retry.clone())
            .hedge(read_hedge.clone())
            .layer(
                CircuitBreakerLayer::new(registry.breakers().get("upstream-read"))
                    .classifier(HttpClassifier),
            )
            .bulkhead(registry.bulkheads().get("upstream-read"))
            .timeout_after(READ_ATTEMPT)
            .service(forward.clone());
        let write = ServiceBuilder::new()
            .layer(ErrorMappingLayer::new())
            .layer(
                RouteStatsLayer::new(registry.routes().get("upstream-write"))
                    .classifier(HttpClassifier),
            )
            .layer(
                CircuitBreakerLayer::new(registry.breakers().get("upstream-write"))
                    .classifier(HttpClassifier),
            )
            .bulkhead(registry.bulkheads().get("upstream-write"))
            .timeout_after(WRITE_DEADLINE)
            .service(forward);

        let app = Router::new()
            .route_service("/items/{id}", read)
            .route_service("/orders", write)
            .nest_service("/admin", RegistryService::new(registry.clone()))
            .with_state(());
        let gateway = Self::serve(app, port).await?;
        let resilience = Resilience {
            registry,
            read_retry,
            budget,
            fallbacks,
            read_hedge,
        };
        Ok((gateway, resilience))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}
