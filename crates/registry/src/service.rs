//! The registry over HTTP: health, figures, metrics, events, the dashboard
//! and guarded control.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use portcullis_breaker::{Breaker, State};
use portcullis_core::config::check_range;
use portcullis_core::{BoxError, ConfigError};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::body::ResponseBody;
use crate::clock::check_duration;
use crate::dashboard;
use crate::future::ResponseFuture;
use crate::hub::{SlotGuard, Slots};
use crate::kind::InstanceKind;
use crate::prometheus::Exposition;
use crate::registry::Registry;
use crate::snapshot::Keyed;

/// The registry as a `tower::Service` of HTTP requests, with `Error =
/// Infallible`: every problem is an HTTP response.
///
/// Paths are relative to where it is mounted; in axum, mount it with
/// `Router::nest_service("/resilience", service)` (axum strips the prefix),
/// or serve it alone with hyper.
///
/// | request | answer |
/// |---------|--------|
/// | `GET /` | the dashboard: one self-contained page, live from `/events` |
/// | `GET /health` | `{"status": "UP" \| "DEGRADED" \| "DOWN", ...}`: `DEGRADED` when a breaker is not closed, `DOWN` (503) when a [critical](RegistryServiceBuilder::critical_breakers) one is open |
/// | `GET /health/live` | `{"status": "UP"}`: the process answers |
/// | `GET /health/ready` | `UP`, or `DOWN` (503) while a [readiness](RegistryServiceBuilder::readiness_breakers) breaker is open |
/// | `GET /health/breakers` | `{"breakers": [...]}`: every breaker's figures |
/// | `GET /health/breakers/{name}` | one breaker's figures (`/{name}/{key}` for a keyed one) |
/// | `GET /health/bulkheads` | `{"bulkheads": [...]}`: every bulkhead's figures |
/// | `GET /health/bulkheads/{name}` | one bulkhead's figures (`/{name}/{key}` for a keyed one) |
/// | `GET /health/ratelimiters` | `{"ratelimiters": [...]}`: every rate limiter's figures |
/// | `GET /health/ratelimiters/{name}` | one rate limiter's figures (`/{name}/{key}` for a keyed one) |
/// | `GET /health/budgets` | `{"budgets": [...]}`: every retry budget's figures |
/// | `GET /health/budgets/{name}` | one retry budget's figures (`/{name}/{key}` for a keyed one) |
/// | `GET /metrics` | Prometheus text exposition |
/// | `GET /events` | server-sent events, from a bounded per-client buffer; at most [`max_event_streams`](RegistryServiceBuilder::max_event_streams) at once, then 503 with `Retry-After` |
/// | `GET /events/recent` | `{"events": [...]}`: the last events |
/// | `POST /breakers/{name}/state` | manual transition (`/{name}/{key}/state` for a keyed one) |
///
/// The control endpoint exists only when the service was given a
/// [bearer token](RegistryServiceBuilder::control_token); without one it
/// answers 404 like any unknown path. Its body is JSON:
/// `{"state": "CLOSED" | "FORCED_OPEN" | "DISABLED" | "METRICS_ONLY" |
/// "RESET" | "HALF_OPEN" | "OPEN"}`, with `"wait": "30s"` allowed for
/// `OPEN` (more than zero, at most 365 days, like a breaker's
/// `wait_in_open`; default: the breaker's `wait_in_open`). A wrong or
/// missing token is 401, an unknown breaker 404, a body over the
/// [limit](RegistryServiceBuilder::body_limit) 413, a bad body 400 (a key
/// given twice too: which one counts would depend on who reads the body),
/// a transition the breaker's state does not allow 409; success is 200
/// with the breaker's new figures. Errors are `{"error": "..."}`.
///
/// The other endpoints answer anybody, unless the service has a
/// [read token](RegistryServiceBuilder::read_token): then they want
/// `Authorization: Bearer` with the read or the control token, and answer
/// 401 with `WWW-Authenticate: Bearer` otherwise. A request with more than
/// one `Authorization` header is 400 wherever a token is checked. Every
/// response says `X-Content-Type-Options: nosniff`.
///
/// `GET /events` sends `id:`, `event:` (the event's type: `transition`,
/// `rejected`, `threshold_crossed`, `reset`, `added`, `removed`, `replaced`, `changed`,
/// `lagged`) and `data:` (the event as JSON) per event. A client that lets
/// its buffer fill up is sent `event: dropped` and its stream ends; an
/// `EventSource` reconnects by itself, and one that sends `Last-Event-ID`
/// is first replayed the recent events it missed.
#[derive(Clone)]
pub struct RegistryService {
    inner: Arc<Inner>,
}

/// Builds a [`RegistryService`].
pub struct RegistryServiceBuilder {
    registry: Registry,
    token: Option<String>,
    read_token: Option<String>,
    critical: Vec<String>,
    readiness: Vec<String>,
    body_limit: usize,
    events_retry: Duration,
    events_keep_alive: Option<Duration>,
    events_max_age: Option<Duration>,
    max_event_streams: usize,
}

struct Inner {
    registry: Registry,
    token: Option<Box<[u8]>>,
    read_token: Option<Box<[u8]>>,
    critical: Vec<String>,
    readiness: Vec<String>,
    body_limit: usize,
    events_retry: Duration,
    events_keep_alive: Option<Duration>,
    events_max_age: Option<Duration>,
    streams: Arc<Slots>,
    metrics: Exposition,
}

/// The body of `POST /breakers/{name}/state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    state: Target,
    #[serde(default, with = "portcullis_core::duration::serde::option")]
    wait: Option<Duration>,
}

/// A JSON value whose objects, at any depth, have no key twice: serde
/// keeps the last of duplicate keys, so `{"state": "CLOSED", "state":
/// "FORCED_OPEN"}` would mean what the last one says to this service and
/// possibly the first to whatever checked the request before it.
#[derive(Debug)]
struct UniqueKeys(serde_json::Value);

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Target {
    Closed,
    ForcedOpen,
    Disabled,
    MetricsOnly,
    Reset,
    HalfOpen,
    Open,
}

#[derive(Serialize)]
struct Summary<'a> {
    name: &'a str,
    key: Option<&'a str>,
    state: State,
    critical: bool,
}

const DEFAULT_BODY_LIMIT: usize = 4096;
const DEFAULT_MAX_EVENT_STREAMS: usize = 64;
/// The longest `wait` of a manual `OPEN`, as for a breaker's config.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(60 * 60);
/// The shortest reconnection delay an `EventSource` is told: shorter ones
/// only make reconnection storms.
const MIN_RETRY: Duration = Duration::from_millis(100);
/// The longest maximum age of an event stream: a year is "never" already.
const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);
const JSON: &str = "application/json";

impl RegistryService {
    /// A service for `registry` with the defaults: no control endpoint, no
    /// critical or readiness breakers.
    pub fn new(registry: Registry) -> Self {
        Self::builder(registry)
            .build()
            .expect("the defaults are valid")
    }

    /// A builder for a service of `registry`.
    pub fn builder(registry: Registry) -> RegistryServiceBuilder {
        RegistryServiceBuilder {
            registry,
            token: None,
            read_token: None,
            critical: Vec::new(),
            readiness: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            events_retry: Duration::from_secs(3),
            events_keep_alive: Some(Duration::from_secs(15)),
            events_max_age: None,
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
        }
    }

    /// The registry it serves.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn route<B>(&self, request: Request<B>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let inner = &*self.inner;
        let decoded = segments(request.uri().path());
        let segments: Vec<&str> = decoded.iter().flatten().map(String::as_str).collect();
        let method = request.method();
        if decoded.is_some()
            && let ["breakers", name, rest @ ..] = &segments[..]
            && let Some(key) = match rest {
                ["state"] => Some(None),
                [key, "state"] => Some(Some(*key)),
                _ => None,
            }
            && inner.token.is_some()
        {
            if method != Method::POST {
                return ready(not_allowed("POST"));
            }
            return self.control(request, name, key);
        }
        // Everything else reads: with a read token, it takes either token.
        if let Some(read) = inner.read_token.as_deref() {
            let tokens = [Some(read), inner.token.as_deref()];
            if let Some(refusal) = refusal(request.headers(), &tokens) {
                return ready(refusal);
            }
        }
        if decoded.is_none() {
            return ready(error(
                StatusCode::BAD_REQUEST,
                "the path is not valid UTF-8 once decoded",
            ));
        }
        let get = method == Method::GET || method == Method::HEAD;
        // `/health/{kind}[/{name}[/{key}]]`, the same for every kind.
        if let ["health", section, rest @ ..] = &segments[..]
            && rest.len() <= 2
            && let Some(store) = inner.registry.stores().by_section(section)
        {
            let response = match rest {
                _ if !get => not_allowed("GET, HEAD"),
                [] => json_response(StatusCode::OK, &json!({ *section: store.list_json() })),
                [name, key @ ..] => {
                    let key = key.first().copied();
                    match store.one_json(name, key) {
                        Some(one) => json_response(StatusCode::OK, &one),
                        None => not_found(store.kind(), name, key),
                    }
                }
            };
            return ready(response);
        }
        let response = match segments[..] {
            [] if get => dashboard::response(),
            ["health"] if get => inner.health(),
            ["health", "live"] if get => json_response(StatusCode::OK, &json!({"status": "UP"})),
            ["health", "ready"] if get => inner.ready(),
            ["metrics"] if get => {
                let (text, content_type) = inner.metrics.render(request.headers());
                with_type(Response::new(ResponseBody::full(text)), content_type)
            }
            ["events"] if get => inner.events(request.headers()),
            ["events", "recent"] if get => json_response(
                StatusCode::OK,
                &json!({"events": inner.registry.recent_events()}),
            ),
            []
            | ["health"]
            | ["health", "live" | "ready"]
            | ["metrics"]
            | ["events"]
            | ["events", "recent"]
                if !get =>
            {
                not_allowed("GET, HEAD")
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        };
        ready(response)
    }

    fn control<B>(&self, request: Request<B>, name: &str, key: Option<&str>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let inner = &*self.inner;
        let token = inner.token.as_deref().expect("checked by the caller");
        if let Some(refusal) = refusal(request.headers(), &[Some(token)]) {
            return ready(refusal);
        }
        let Some(breaker) = inner.registry.breakers().find(name, key) else {
            return ready(not_found(InstanceKind::Breaker, name, key));
        };
        let limit = inner.body_limit;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return ready(too_large(limit));
        }
        let key = key.map(str::to_owned);
        ResponseFuture::reading(async move {
            let bytes = match read_body(request.into_body(), limit).await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            let control: Control = match serde_json::from_slice::<UniqueKeys>(&bytes).and_then(
                |UniqueKeys(value)| match value {
                    object @ serde_json::Value::Object(_) => serde_json::from_value(object),
                    _ => Err(serde::de::Error::custom("the body must be a JSON object")),
                },
            ) {
                Ok(control) => control,
                Err(problem) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "expected {{\"state\": \"CLOSED\" | \"FORCED_OPEN\" | \"DISABLED\" | \"METRICS_ONLY\" | \"RESET\" | \"HALF_OPEN\" | \"OPEN\"}}: {problem}"
                        ),
                    );
                }
            };
            if control.wait.is_some() && control.state != Target::Open {
                return error(StatusCode::BAD_REQUEST, "`wait` applies to OPEN only");
            }
            if control.wait.is_some_and(|wait| wait.is_zero()) {
                return error(StatusCode::BAD_REQUEST, "`wait` must be greater than zero");
            }
            if let Some(wait) = control.wait.filter(|&wait| wait > MAX_WAIT) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "`wait` must be at most 365d, got {}",
                        portcullis_core::duration::format(wait)
                    ),
                );
            }
            match apply(&breaker, &control) {
                Ok(()) => json_response(StatusCode::OK, &Keyed::new(key, breaker.snapshot())),
                Err(conflict) => error(StatusCode::CONFLICT, &conflict),
            }
        })
    }
}

impl Inner {
    fn health(&self) -> Response<ResponseBody> {
        let all = self.registry.breakers().list();
        let not_closed: Vec<Summary<'_>> = all
            .iter()
            .filter(|keyed| keyed.snapshot.state != State::Closed)
            .map(|keyed| Summary {
                name: &keyed.snapshot.name,
                key: keyed.key.as_deref(),
                state: keyed.snapshot.state,
                critical: self.critical.contains(&keyed.snapshot.name),
            })
            .collect();
        let down = not_closed
            .iter()
            .any(|summary| summary.critical && rejecting(summary.state));
        let (status, code) = if down {
            ("DOWN", StatusCode::SERVICE_UNAVAILABLE)
        } else if !not_closed.is_empty() {
            ("DEGRADED", StatusCode::OK)
        } else {
            ("UP", StatusCode::OK)
        };
        json_response(
            code,
            &json!({
                "status": status,
                "breakers": {"total": all.len(), "not_closed": not_closed},
            }),
        )
    }

    fn ready(&self) -> Response<ResponseBody> {
        let watched: Vec<_> = self
            .readiness
            .iter()
            .flat_map(|name| self.registry.breakers_named(name))
            .collect();
        let summaries: Vec<Summary<'_>> = watched
            .iter()
            .map(|keyed| Summary {
                name: &keyed.snapshot.name,
                key: keyed.key.as_deref(),
                state: keyed.snapshot.state,
                critical: true,
            })
            .collect();
        let down = summaries.iter().any(|summary| rejecting(summary.state));
        let (status, code) = if down {
            ("DOWN", StatusCode::SERVICE_UNAVAILABLE)
        } else {
            ("UP", StatusCode::OK)
        };
        json_response(code, &json!({"status": status, "breakers": summaries}))
    }

    fn events(&self, headers: &HeaderMap) -> Response<ResponseBody> {
        let Some(slot) = self.streams.try_take() else {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "too many event streams are open (at most {}); retry later",
                    self.streams.max()
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after(self.events_retry));
            return response;
        };
        let after = headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
        let feed = self.registry.hub().subscribe_in(after, Some(slot.clone()));
        let mut response = Response::new(ResponseBody::events(
            feed,
            self.events_retry,
            self.events_keep_alive,
            self.events_max_age,
            Some(SlotGuard::new(slot)),
        ));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

impl<B> tower_service::Service<Request<B>> for RegistryService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        self.route(request)
    }
}

impl fmt::Debug for RegistryService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("RegistryService")
            .field("registry", &inner.registry)
            .field("control", &inner.token.as_ref().map(|_| "<token>"))
            .field("read", &inner.read_token.as_ref().map(|_| "<token>"))
            .field("critical", &inner.critical)
            .field("readiness", &inner.readiness)
            .field("body_limit", &inner.body_limit)
            .field("events_retry", &inner.events_retry)
            .field("events_keep_alive", &inner.events_keep_alive)
            .field("events_max_age", &inner.events_max_age)
            .field("event_streams", &inner.streams.taken())
            .field("max_event_streams", &inner.streams.max())
            .finish()
    }
}

impl RegistryServiceBuilder {
    /// Enables the control endpoint, for requests that carry
    /// `Authorization: Bearer <token>` (compared in constant time). The
    /// token must be 16 to 4,096 visible ASCII characters.
    pub fn control_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Guards every endpoint but control (health, figures, metrics,
    /// events, the dashboard): requests must carry `Authorization: Bearer
    /// <token>` with this token or the [control
    /// token](Self::control_token), compared in constant time; others are
    /// answered 401 with `WWW-Authenticate: Bearer`. The token must be 16
    /// to 4,096 visible ASCII characters, and not the control token.
    ///
    /// Without it (the default) those endpoints answer anybody who can
    /// reach them, which suits a port that only the cluster sees. A
    /// browser sends no bearer token by itself (and an `EventSource`
    /// cannot send one), so with a read token the dashboard needs a proxy
    /// in front that adds the header; so do probes of `/health/live` and
    /// `/health/ready`.
    ///
    /// ```
    /// use portcullis_registry::{Registry, RegistryService};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let service = RegistryService::builder(Registry::new())
    ///     .read_token("a-long-random-reader-secret")
    ///     .build()
    ///     .unwrap();
    /// let anonymous = http::Request::get("/metrics").body(String::new()).unwrap();
    /// let response = service.clone().oneshot(anonymous).await.unwrap();
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"portcullis\"");
    ///
    /// let reader = http::Request::get("/metrics")
    ///     .header("authorization", "Bearer a-long-random-reader-secret")
    ///     .body(String::new())
    ///     .unwrap();
    /// assert_eq!(service.oneshot(reader).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub fn read_token(mut self, token: impl Into<String>) -> Self {
        self.read_token = Some(token.into());
        self
    }

    /// Breakers (by name, every key) whose being open or forced open makes
    /// `GET /health` say `DOWN` with a 503, instead of `DEGRADED`.
    pub fn critical_breakers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.critical = names.into_iter().map(Into::into).collect();
        self
    }

    /// Breakers (by name, every key) whose being open or forced open makes
    /// `GET /health/ready` say `DOWN` with a 503 (default: none, always
    /// ready).
    pub fn readiness_breakers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.readiness = names.into_iter().map(Into::into).collect();
        self
    }

    /// The largest control request body accepted, in bytes (1 to 1 MiB;
    /// default 4 KiB); a larger one is answered 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long an `EventSource` waits before reconnecting (the `retry:`
    /// line; 100 ms to 1 h, default 3 s).
    pub fn events_retry(mut self, retry: Duration) -> Self {
        self.events_retry = retry;
        self
    }

    /// A comment line is sent on an event stream after this much silence,
    /// so that proxies keep it open (1 s to 1 h, or `None`: never; default
    /// 15 s).
    pub fn events_keep_alive(mut self, every: Option<Duration>) -> Self {
        self.events_keep_alive = every;
        self
    }

    /// An event stream ends after this long; the client reconnects after
    /// [`events_retry`](Self::events_retry) and is replayed what it missed
    /// from the recent events. Useful behind load balancers that pin long
    /// connections (1 s to 365 days, or `None`: streams never end by
    /// themselves, the default).
    pub fn events_max_age(mut self, age: Option<Duration>) -> Self {
        self.events_max_age = age;
        self
    }

    /// How many `GET /events` streams may be open at once (1 to 10,000;
    /// default 64). Past that, `GET /events` is answered 503 with
    /// `Retry-After` (the [`events_retry`](Self::events_retry) delay, in
    /// whole seconds) until a stream ends: its client goes away, it reaches
    /// its [maximum age](Self::events_max_age), or it is dropped for not
    /// reading its events — at once, even while the connection lingers.
    ///
    /// ```
    /// use portcullis_registry::{Registry, RegistryService};
    ///
    /// let service = RegistryService::builder(Registry::new())
    ///     .max_event_streams(8)
    ///     .build()
    ///     .unwrap();
    /// # let _ = service;
    /// let error = RegistryService::builder(Registry::new())
    ///     .max_event_streams(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(error.to_string(), "max_event_streams: must be in [1, 10000], got 0");
    /// ```
    pub fn max_event_streams(mut self, streams: usize) -> Self {
        self.max_event_streams = streams;
        self
    }

    /// The service, with its settings validated.
    pub fn build(self) -> Result<RegistryService, ConfigError> {
        if let Some(token) = &self.token {
            check_token("control_token", token)?;
        }
        if let Some(token) = &self.read_token {
            check_token("read_token", token)?;
            if self.token.as_ref() == Some(token) {
                return Err(ConfigError::new(
                    "read_token",
                    "must differ from control_token, or readers could also control",
                ));
            }
        }
        if !(1..=1 << 20).contains(&self.body_limit) {
            return Err(ConfigError::new(
                "body_limit",
                format!("must be in [1, 1048576], got {}", self.body_limit),
            ));
        }
        check_range("max_event_streams", self.max_event_streams, 1, 10_000)?;
        check_duration("events_retry", self.events_retry, MIN_RETRY, HOUR)?;
        if let Some(every) = self.events_keep_alive {
            check_duration("events_keep_alive", every, SECOND, HOUR)?;
        }
        if let Some(age) = self.events_max_age {
            check_duration("events_max_age", age, SECOND, MAX_AGE)?;
        }
        Ok(RegistryService {
            inner: Arc::new(Inner {
                metrics: Exposition::new(&self.registry),
                registry: self.registry,
                token: self
                    .token
                    .map(|token| token.into_bytes().into_boxed_slice()),
                read_token: self
                    .read_token
                    .map(|token| token.into_bytes().into_boxed_slice()),
                critical: self.critical,
                readiness: self.readiness,
                body_limit: self.body_limit,
                events_retry: self.events_retry,
                events_keep_alive: self.events_keep_alive,
                events_max_age: self.events_max_age,
                streams: Slots::new(self.max_event_streams),
            }),
        })
    }
}

impl fmt::Debug for RegistryServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryServiceBuilder")
            .field("registry", &self.registry)
            .field("control", &self.token.as_ref().map(|_| "<token>"))
            .field("read", &self.read_token.as_ref().map(|_| "<token>"))
            .field("critical", &self.critical)
            .field("readiness", &self.readiness)
            .field("body_limit", &self.body_limit)
            .field("events_retry", &self.events_retry)
            .field("events_keep_alive", &self.events_keep_alive)
            .field("events_max_age", &self.events_max_age)
            .field("max_event_streams", &self.max_event_streams)
            .finish()
    }
}

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor).map(Self)
    }
}

#[derive(Debug)]
struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(UniqueKeys(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(values.into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let UniqueKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

/// Whether a breaker in `state` turns calls away.
fn rejecting(state: State) -> bool {
    matches!(state, State::Open | State::ForcedOpen)
}

fn apply(breaker: &Breaker, control: &Control) -> Result<(), String> {
    match control.state {
        Target::Closed => breaker.close(),
        Target::ForcedOpen => breaker.force_open(),
        Target::Disabled => breaker.disable(),
        Target::MetricsOnly => breaker.metrics_only(),
        Target::Reset => breaker.reset(),
        Target::HalfOpen => breaker.half_open().map_err(|e| e.to_string())?,
        Target::Open => breaker
            .open_for(
                control
                    .wait
                    .unwrap_or_else(|| breaker.config().wait_in_open()),
            )
            .map_err(|e| e.to_string())?,
    }
    Ok(())
}

/// What the `Authorization` header of a request says about a set of
/// tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Authorization {
    /// `Bearer <one of the tokens>`.
    Granted,
    /// Missing, another scheme, or another token.
    Refused,
    /// More than one `Authorization` header: which one counts would depend
    /// on who reads the request (this service, a proxy, a log), so none
    /// does.
    Ambiguous,
}

/// Whether `headers` carry `Authorization: Bearer <token>` for one of
/// `tokens`. Each token is compared in constant time, all of them every
/// time, so the answer's timing does not say which one matched.
fn authorization(headers: &HeaderMap, tokens: &[Option<&[u8]>]) -> Authorization {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Authorization::Refused;
    };
    if values.next().is_some() {
        return Authorization::Ambiguous;
    }
    let Some((scheme, credentials)) = value.as_bytes().split_at_checked(7) else {
        return Authorization::Refused;
    };
    let matched = tokens.iter().flatten().fold(false, |matched, token| {
        matched | constant_time_eq(credentials, token)
    });
    if scheme.eq_ignore_ascii_case(b"bearer ") && matched {
        Authorization::Granted
    } else {
        Authorization::Refused
    }
}

/// The answer to a request whose `headers` do not carry one of `tokens`:
/// 401 with a bearer challenge, or 400 for more than one `Authorization`
/// header; `None` when they do.
fn refusal(headers: &HeaderMap, tokens: &[Option<&[u8]>]) -> Option<Response<ResponseBody>> {
    match authorization(headers, tokens) {
        Authorization::Granted => None,
        Authorization::Refused => {
            let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
            Some(response)
        }
        Authorization::Ambiguous => Some(error(
            StatusCode::BAD_REQUEST,
            "a request may carry one Authorization header, not several",
        )),
    }
}

/// Checks a bearer token setting: 16 to 4,096 visible ASCII characters.
fn check_token(field: &'static str, token: &str) -> Result<(), ConfigError> {
    if !(16..=4096).contains(&token.len()) {
        return Err(ConfigError::new(
            field,
            format!("must be 16 to 4096 characters long, got {}", token.len()),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            field,
            "must be visible ASCII characters only",
        ));
    }
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths
/// (`subtle`): a length mismatch rejects at once, since the token's length
/// is not the secret.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

/// Reads a request body, at most `limit` bytes of it.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Response<ResponseBody>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(problem) if problem.is::<LengthLimitError>() => Err(too_large(limit)),
        Err(problem) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("could not read the body: {problem}"),
        )),
    }
}

/// The path's segments, percent-decoded; empty segments are skipped.
fn segments(path: &str) -> Option<Vec<String>> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect()
}

/// A segment with its `%XX` escapes decoded (others kept as written);
/// `None` if the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

fn ready(response: Response<ResponseBody>) -> ResponseFuture {
    ResponseFuture::ready(response)
}

fn with_type(
    mut response: Response<ResponseBody>,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<ResponseBody> {
    let body = serde_json::to_vec(value).expect("the registry's figures serialize");
    let mut response = with_type(Response::new(ResponseBody::full(body)), JSON);
    *response.status_mut() = status;
    response
}

fn error(status: StatusCode, message: &str) -> Response<ResponseBody> {
    json_response(status, &json!({"error": message}))
}

fn not_found(kind: InstanceKind, name: &str, key: Option<&str>) -> Response<ResponseBody> {
    let message = match key {
        Some(key) => format!("no {kind} named '{name}' with key '{key}'"),
        None => format!("no {kind} named '{name}'"),
    };
    error(StatusCode::NOT_FOUND, &message)
}

fn not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A `Retry-After` of `delay` in whole seconds, rounded up.
fn retry_after(delay: Duration) -> HeaderValue {
    HeaderValue::from(portcullis_core::retry_after::seconds(delay).max(1))
}

fn too_large(limit: usize) -> Response<ResponseBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body must be at most {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"same-token", b"same-token"));
        assert!(!constant_time_eq(b"same-token", b"same-tokeN"));
        assert!(!constant_time_eq(b"short", b"longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    fn authorized(headers: &HeaderMap, token: &[u8]) -> bool {
        authorization(headers, &[Some(token)]) == Authorization::Granted
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
        let mut headers = HeaderMap::new();
        let token = b"0123456789abcdef";
        assert!(!authorized(&headers, token));
        for (value, ok) in [
            ("Bearer 0123456789abcdef", true),
            ("bearer 0123456789abcdef", true),
            ("Bearer 0123456789ABCDEF", false),
            ("Basic 0123456789abcdef", false),
            ("Bearer  0123456789abcdef", false),
            ("Bearer", false),
            ("0123456789abcdef", false),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(authorized(&headers, token), ok, "{value}");
        }
    }

    #[test]
    fn any_of_the_tokens_is_granted_and_two_headers_are_ambiguous() {
        let read: &[u8] = b"reader-0123456789";
        let control: &[u8] = b"control-0123456789";
        let tokens = [Some(read), Some(control)];
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("Bearer reader-0123456789", Authorization::Granted),
            ("Bearer control-0123456789", Authorization::Granted),
            ("Bearer other-0123456789", Authorization::Refused),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(authorization(&headers, &tokens), expected, "{value}");
        }
        assert_eq!(
            authorization(&headers, &[Some(read), None]),
            Authorization::Refused
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer reader-0123456789"),
        );
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer reader-0123456789"),
        );
        assert_eq!(authorization(&headers, &tokens), Authorization::Ambiguous);
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let parse = |text: &str| serde_json::from_str::<UniqueKeys>(text).map(|v| v.0);
        assert_eq!(
            parse(r#"{"a": [1, -2, 2.5, "x", null, true, {"b": {}}]}"#).unwrap(),
            json!({"a": [1, -2, 2.5, "x", null, true, {"b": {}}]})
        );
        for text in [r#"{"a": 1, "a": 1}"#, r#"{"x": [{"a": 1, "a": 2}]}"#] {
            let problem = parse(text).unwrap_err().to_string();
            assert!(problem.starts_with("duplicate key `a`"), "{problem}");
        }
    }

    #[test]
    fn paths_are_split_and_decoded() {
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(segments("").unwrap(), Vec::<String>::new());
        assert_eq!(
            segments("/health/breakers/a%20b/host%2F1/").unwrap(),
            ["health", "breakers", "a b", "host/1"]
        );
        assert_eq!(segments("/x%zz%4").unwrap(), ["x%zz%4"]);
        assert_eq!(segments("/%ff"), None);
    }
}
