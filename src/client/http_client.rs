//! [`HttpClient`]: a reqwest client behind an upstream's stack from a
//! config file, called the way reqwest is.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use portcullis_core::BoxError;
use tower::{Layer, ServiceExt, service_fn};

use crate::client::{BoxClient, InvalidRequest};
use crate::config::{Routes, UnknownRoute};
use crate::retry::ReplayBody;

/// A [`reqwest::Client`] behind the stack of one upstream of a config file
/// ([`Routes::upstream_layer`]), with reqwest's way of making requests:
/// [`get`](Self::get), [`post`](Self::post) or
/// [`request`](Self::request), then [`header`](RequestBuilder::header),
/// [`body`](RequestBuilder::body) and [`send`](RequestBuilder::send).
///
/// It is `Clone + Send + Sync + 'static`, so it can be kept in an axum
/// state or shared between tasks; a clone is another handle to the same
/// stack (the same breakers, bulkheads, rate limiter and retry budget).
///
/// The request body is a [`Bytes`]; the retry layer replays it for each
/// attempt (through [`ReplayBody`] and `reqwest::Body::wrap`, done here).
/// The response body is read whole inside the stack, so that an attempt
/// timeout also bounds reading it, and a body that fails mid-way is an
/// error the breaker counts. Errors are the stack's ([`BreakerOpen`],
/// [`RetriesExhausted`], ...), reqwest's, or [`InvalidRequest`] for a bad
/// URL or header, found before anything is sent (and not counted by the
/// breaker).
///
/// [`BreakerOpen`]: crate::core::BreakerOpen
/// [`RetriesExhausted`]: crate::retry::RetriesExhausted
///
/// ```
/// use axum::{Router, routing::get};
/// use portcullis::client::{HttpClient, InvalidRequest};
/// use portcullis::config::Routes;
/// use portcullis::registry::Registry;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), portcullis::core::BoxError> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let addr = listener.local_addr()?;
/// # let app: Router = Router::new().route("/stock", get(|| async { "in stock" }));
/// # tokio::spawn(async move { axum::serve(listener, app).await });
/// let routes = Routes::from_toml(r#"
///     [profiles.api.retry]
///     max_attempts = 3
///     [profiles.api.breaker]
///     [upstreams.inventory]
///     profile = "api"
///     per_host = true
/// "#, Registry::new())?;
/// // On loopback here: no proxy from the environment.
/// let reqwest = reqwest::Client::builder().no_proxy().build()?;
/// let inventory = HttpClient::new(&routes, "inventory", reqwest)?;
///
/// let response = inventory
///     .get(format!("http://{addr}/stock"))
///     .header("accept", "text/plain")
///     .send()
///     .await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.body(), "in stock");
///
/// // A bad URL or header is a typed error, before anything is sent.
/// let error = inventory.get("not a url").send().await.unwrap_err();
/// assert!(error.is::<InvalidRequest>(), "{error}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: BoxClient<Full<Bytes>, Bytes>,
}

/// A request being made by an [`HttpClient`]; [`send`](Self::send) sends
/// it. The first bad part (a header that is not valid) is kept and
/// returned by `send`, as reqwest does.
#[must_use = "a request is sent by `send`"]
pub struct RequestBuilder {
    inner: BoxClient<Full<Bytes>, Bytes>,
    request: Result<Request<Bytes>, InvalidRequest>,
}

impl HttpClient {
    /// `client` behind the stack of the upstream named `upstream` in
    /// `routes`, built now ([`Routes::upstream_layer`]).
    pub fn new(
        routes: &Routes,
        upstream: &str,
        client: reqwest::Client,
    ) -> Result<Self, UnknownRoute> {
        let layer = routes.upstream_layer(upstream)?;
        Ok(Self {
            inner: layer.layer(send_with(client)),
        })
    }

    /// A `GET` of `url`.
    pub fn get(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` to `url`.
    pub fn post(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A request of `method` to `url`, which must be an absolute `http` or
    /// `https` URL (else [`send`](RequestBuilder::send) fails with
    /// [`InvalidRequest`]).
    pub fn request(&self, method: Method, url: impl AsRef<str>) -> RequestBuilder {
        let request = parse_url(url.as_ref()).map(|uri| {
            let mut request = Request::new(Bytes::new());
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            request
        });
        RequestBuilder {
            inner: self.inner.clone(),
            request,
        }
    }
}

impl RequestBuilder {
    /// Adds a header (a name given twice is sent twice).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: fmt::Display,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: fmt::Display,
    {
        if let Ok(request) = &mut self.request {
            let name = match HeaderName::try_from(name) {
                Ok(name) => name,
                Err(error) => {
                    self.request = Err(InvalidRequest::new(format!("header name: {error}")));
                    return self;
                }
            };
            match HeaderValue::try_from(value) {
                Ok(value) => {
                    request.headers_mut().append(name, value);
                }
                Err(error) => {
                    self.request = Err(InvalidRequest::new(format!(
                        "value of header {name}: {error}"
                    )));
                }
            }
        }
        self
    }

    /// Sets the body (empty unless set).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        if let Ok(request) = &mut self.request {
            *request.body_mut() = body.into();
        }
        self
    }

    /// Sends the request through the upstream's stack and reads the
    /// response body whole.
    pub async fn send(self) -> Result<Response<Bytes>, BoxError> {
        let request = self.request?.map(Full::new);
        self.inner.oneshot(request).await
    }
}

/// The innermost service of an [`HttpClient`]'s stack: each attempt's
/// request through `client`, the response body read whole.
fn send_with(
    client: reqwest::Client,
) -> impl tower::Service<
    Request<ReplayBody<Full<Bytes>>>,
    Response = Response<Bytes>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Bytes>, BoxError>> + Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |request: Request<ReplayBody<Full<Bytes>>>| {
        let client = client.clone();
        async move {
            // The URL was checked by `parse_url`, so this conversion of a
            // checked `Uri` does not fail in practice.
            let request = reqwest::Request::try_from(request.map(reqwest::Body::wrap))?;
            let response = Response::from(client.execute(request).await?);
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Response::from_parts(parts, body))
        }
    })
}

/// `url` as the `Uri` of a request, if it is an absolute `http` or
/// `https` URL that both `url` and `http` read.
fn parse_url(url: &str) -> Result<Uri, InvalidRequest> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| InvalidRequest::new(format!("url {url:?}: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(InvalidRequest::new(format!(
            "url {url:?}: not an http or https url with a host"
        )));
    }
    Uri::try_from(parsed.as_str())
        .map_err(|error| InvalidRequest::new(format!("url {url:?}: {error}")))
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("RequestBuilder");
        match &self.request {
            Ok(request) => f
                .field("method", request.method())
                .field("uri", request.uri())
                .field("headers", request.headers()),
            Err(error) => f.field("error", error),
        };
        f.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_sent() {
        assert_eq!(
            parse_url("http://inventory:8080/stock?x=1").unwrap(),
            "http://inventory:8080/stock?x=1"
        );
        assert!(parse_url("https://example.com").is_ok());
        for (url, says) in [
            (
                "not a url",
                "url \"not a url\": relative URL without a base",
            ),
            ("/stock", "url \"/stock\": relative URL without a base"),
            (
                "ftp://example.com/",
                "url \"ftp://example.com/\": not an http or https url with a host",
            ),
            ("http://", "url \"http://\": empty host"),
        ] {
            let error = parse_url(url).unwrap_err();
            assert_eq!(error.to_string(), format!("invalid request: {says}"));
        }
    }

    #[test]
    fn a_bad_header_is_kept_until_send() {
        let routes = Routes::from_toml(
            "[profiles.api.breaker]\n[upstreams.api]\nprofile = \"api\"\n",
            crate::registry::Registry::new(),
        )
        .unwrap();
        let client = HttpClient::new(&routes, "api", reqwest::Client::new()).unwrap();
        let builder = client
            .get("http://api/")
            .header("bad name", "x")
            .header("accept", "text/plain");
        let error = builder.request.unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid request: header name: invalid HTTP header name"
        );
        let builder = client.get("http://api/").header("x-tag", "line\nbreak");
        assert_eq!(
            builder.request.unwrap_err().to_string(),
            "invalid request: value of header x-tag: failed to parse header value"
        );
        let builder = client.post("http://api/").header("x-tag", "a").body("hi");
        let request = builder.request.unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["x-tag"], "a");
        assert_eq!(request.body(), "hi");
    }
}
