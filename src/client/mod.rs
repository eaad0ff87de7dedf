//! Client stacks: one circuit breaker (and, if asked, one bulkhead) per
//! upstream authority, made on first use (features `registry` and
//! `http`); a nameable boxed client ([`BoxClient`], feature `config`); a
//! reqwest client behind an upstream's stack from a config file
//! (`HttpClient`, feature `reqwest`).
//!
//! From a config file, an upstream with `per_host = true` gets the
//! per-authority breakers described here, configured by the file (see
//! [`config`](crate::config)).
//!
//! A client that calls many hosts through one breaker opens it for all of
//! them when one is down. [`PerAuthorityLayer`] keys the breaker by the
//! request URI's authority (`host:port`): each upstream gets its own
//! breaker from [`Instances::get_keyed`](crate::registry::Instances::get_keyed),
//! named after the layer and keyed by the authority, so that the registry
//! serves, watches and controls it (`GET /health/breakers` lists each one
//! with its key). With [`with_bulkheads`](PerAuthorityLayer::with_bulkheads)
//! each upstream also gets its own bulkhead from
//! `registry.bulkheads().get_keyed(..)`,
//! inside the breaker.
//!
//! The key is the authority as the URI writes it, without any user
//! information (`user:secret@` never reaches the registry):
//! `api.example.com:8443`, or `api.example.com` when the URI has no port.
//! A request without an authority (a relative URI) fails with
//! [`NoAuthority`]. When the registry has no room for another key
//! ([`max_keys`](crate::registry::RegistryBuilder::max_keys), and none can
//! be evicted: every one recently used, open, or holding failures) the host
//! shares the name's overflow breaker; a registry built with
//! [`AtKeyLimit::Reject`](crate::registry::AtKeyLimit::Reject) fails the
//! call instead with
//! [`KeyLimitReached`](crate::registry::KeyLimitReached): a typed error,
//! not a panic, and the inner service is not called.
//!
//! # Cost
//!
//! Each call looks its breaker (and bulkhead) up in the registry: a read
//! lock and no allocation once the key exists; the key is a slice of the
//! request's URI. A call to a known host allocates nothing in this layer,
//! the breaker's or the bulkhead's (an allocation-counting test checks it). The layer adds no lock or cache of its own, so a breaker
//! the registry evicted or removed is never kept alive here. The readied
//! inner service goes with the call and a clone takes its place (as with
//! any tower service that hands its inner service to a future), which for
//! HTTP clients (hyper-util's, reqwest's, a tonic `Channel`) is a few
//! reference counts.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use portcullis::client::PerAuthorityLayer;
//! use portcullis::core::{BoxError, HttpClassifier};
//! use portcullis::registry::Registry;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let registry = Registry::new();
//! let layer = PerAuthorityLayer::new(registry.clone(), "upstream").classifier(HttpClassifier);
//! let client = layer.layer(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, BoxError>(http::Response::new(()))
//! }));
//!
//! let request = http::Request::get("http://inventory:8080/health").body(()).unwrap();
//! client.oneshot(request).await.unwrap();
//! let breakers = registry.breakers().list();
//! assert_eq!(breakers[0].snapshot.name, "upstream");
//! assert_eq!(breakers[0].key.as_deref(), Some("inventory:8080"));
//! # }
//! ```

mod error;
pub mod future;
#[cfg(feature = "reqwest")]
mod http_client;
mod layer;

#[cfg(feature = "reqwest")]
pub use error::InvalidRequest;
pub use error::NoAuthority;
#[cfg(feature = "reqwest")]
pub use http_client::{HttpClient, RequestBuilder};
pub use layer::{PerAuthority, PerAuthorityLayer};

/// A client stack as a type that can be named and stored: boxed, `Clone +
/// Send + Sync + 'static`, failing with a [`BoxError`](crate::core::BoxError)
/// (feature `config`).
///
/// It is what [`Routes::upstream_layer`](crate::config::Routes::upstream_layer)
/// makes of a client, so a field of an axum state, or of any struct, can
/// hold it:
///
/// ```
/// use axum::body::Body;
/// use portcullis::client::BoxClient;
/// use portcullis::config::Routes;
/// use portcullis::core::BoxError;
/// use portcullis::registry::Registry;
/// use portcullis::retry::ReplayBody;
/// use tower::{Layer, service_fn};
///
/// #[derive(Clone)]
/// struct AppState {
///     inventory: BoxClient<Body>,
/// }
///
/// # fn main() -> Result<(), BoxError> {
/// let routes = Routes::from_toml(r#"
///     [profiles.api.breaker]
///     [upstreams.inventory]
///     profile = "api"
/// "#, Registry::new())?;
/// // Any HTTP client of `Request<ReplayBody<Body>>`; this one answers 200.
/// let client = service_fn(|_: http::Request<ReplayBody<Body>>| async {
///     Ok::<_, BoxError>(http::Response::new(Body::empty()))
/// });
/// let state = AppState { inventory: routes.upstream_layer("inventory")?.layer(client) };
/// let app: axum::Router = axum::Router::new().with_state(state);
/// # let _ = app; Ok(()) }
/// ```
///
/// With the `reqwest` feature, `HttpClient` is such a stack around a
/// `reqwest::Client`, with reqwest's way of making requests.
#[cfg(feature = "config")]
pub type BoxClient<ReqB, ResB = ReqB> = tower::util::BoxCloneSyncService<
    http::Request<ReqB>,
    http::Response<ResB>,
    portcullis_core::BoxError,
>;

/// The registry key of a request to `uri`: its authority without user
/// information, if it has one.
fn authority_key(uri: &http::Uri) -> Option<&str> {
    let authority = uri.authority()?.as_str();
    let key = match authority.rsplit_once('@') {
        Some((_, host)) => host,
        None => authority,
    };
    Some(key).filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str) -> Option<String> {
        let uri: http::Uri = uri.parse().unwrap();
        authority_key(&uri).map(str::to_owned)
    }

    #[test]
    fn keys_are_authorities_without_user_information() {
        assert_eq!(
            key("http://127.0.0.1:8080/a?b"),
            Some("127.0.0.1:8080".to_owned())
        );
        assert_eq!(
            key("https://api.example.com/"),
            Some("api.example.com".to_owned())
        );
        assert_eq!(
            key("http://user:secret@db:5432/"),
            Some("db:5432".to_owned())
        );
        assert_eq!(key("http://[::1]:9000/"), Some("[::1]:9000".to_owned()));
        assert_eq!(key("/relative"), None);
    }
}
