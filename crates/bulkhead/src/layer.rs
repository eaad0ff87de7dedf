use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use portcullis_core::ConfigError;
use tower_layer::Layer;

#[cfg(feature = "http")]
use crate::UntilBodyEnd;
use crate::{
    Bulkhead, BulkheadConfig, BulkheadService, KeyedBulkhead, KeyedBulkheadService, UntilResponse,
};

/// Wraps services in a [`BulkheadService`].
///
/// Built from a [`Bulkhead`] handle with [`new`](Self::new), every service
/// it makes shares that one pool of permits: use this to bound the calls to
/// one dependency however many routes or clients make them. Built from a
/// configuration with [`per_service`](Self::per_service), each call to
/// [`Layer::layer`] makes a fresh bulkhead: one per route when axum applies
/// the layer once per route.
///
/// **Under axum**, a layer on a handler (`get(handler).layer(..)`) is applied
/// when the router is given its state. Call `Router::with_state` (with `()`
/// if it has none) before serving: a `Router` served without it is given its
/// state once per connection, and a per-service bulkhead would then bound
/// one connection only. A layer built from a handle is immune to this.
///
/// ```
/// use portcullis_bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer};
/// use tower::{ServiceBuilder, service_fn};
///
/// let shared = Bulkhead::new("payments");
/// let a = ServiceBuilder::new()
///     .layer(BulkheadLayer::new(shared.clone()))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// // `a`, its clones and any other service built from `shared` share 25 permits.
///
/// let per_route = BulkheadLayer::per_service("route", BulkheadConfig::default()).unwrap();
/// # let _ = (a, per_route);
/// ```
#[derive(Clone)]
pub struct BulkheadLayer<P = UntilResponse> {
    source: Source<Bulkhead>,
    hold: P,
}

/// Wraps services in a [`KeyedBulkheadService`]: one pool per key that the
/// extractor `F` (a closure over the request) returns.
///
/// Shared from a [`KeyedBulkhead`] handle with [`new`](Self::new), or one
/// per `layer` call with [`per_service`](Self::per_service), as for
/// [`BulkheadLayer`].
///
/// ```
/// use portcullis_bulkhead::{KeyedBulkhead, KeyedBulkheadLayer};
/// use tower::{ServiceBuilder, service_fn};
///
/// // One pool per upstream host.
/// let per_host = KeyedBulkhead::<String>::new("upstreams");
/// let client = ServiceBuilder::new()
///     .layer(KeyedBulkheadLayer::new(per_host, |request: &http::Request<()>| {
///         request.uri().host().unwrap_or_default().to_owned()
///     }))
///     .service(service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::io::Error>(http::Response::new(()))
///     }));
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct KeyedBulkheadLayer<K, F, P = UntilResponse> {
    source: Source<KeyedBulkhead<K>>,
    key: F,
    hold: P,
}

#[derive(Clone)]
enum Source<B> {
    Shared(B),
    PerService {
        name: Arc<str>,
        config: BulkheadConfig,
    },
}

impl BulkheadLayer {
    /// Every service shares `bulkhead`.
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self {
            source: Source::Shared(bulkhead),
            hold: UntilResponse,
        }
    }

    /// Every call to `layer` makes a new bulkhead named `name` with `config`
    /// (validated here, so that `layer` cannot fail).
    pub fn per_service(
        name: impl Into<Arc<str>>,
        config: BulkheadConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            source: Source::PerService {
                name: name.into(),
                config,
            },
            hold: UntilResponse,
        })
    }
}

impl<P> BulkheadLayer<P> {
    /// Hold permits as `hold` says (see [`HoldPermit`](crate::HoldPermit)).
    pub fn hold<P2>(self, hold: P2) -> BulkheadLayer<P2> {
        BulkheadLayer {
            source: self.source,
            hold,
        }
    }

    /// Hold each HTTP call's permit until its response body ends (or is
    /// dropped), not only until its headers are in.
    #[cfg(feature = "http")]
    pub fn hold_until_body_end(self) -> BulkheadLayer<UntilBodyEnd> {
        self.hold(UntilBodyEnd)
    }

    /// The shared bulkhead, if this layer was built from one.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        match &self.source {
            Source::Shared(bulkhead) => Some(bulkhead),
            Source::PerService { .. } => None,
        }
    }
}

impl<S, P: Clone> Layer<S> for BulkheadLayer<P> {
    type Service = BulkheadService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        let bulkhead = match &self.source {
            Source::Shared(bulkhead) => bulkhead.clone(),
            Source::PerService { name, config } => Bulkhead::build(name.clone(), config.clone()),
        };
        BulkheadService::new(inner, bulkhead).with_hold(self.hold.clone())
    }
}

impl<K, F> KeyedBulkheadLayer<K, F> {
    /// Every service shares `bulkhead`; `key` picks each request's pool.
    pub fn new(bulkhead: KeyedBulkhead<K>, key: F) -> Self {
        Self {
            source: Source::Shared(bulkhead),
            key,
            hold: UntilResponse,
        }
    }

    /// Every call to `layer` makes a new keyed bulkhead named `name` with
    /// `config` (validated here, so that `layer` cannot fail).
    pub fn per_service(
        name: impl Into<Arc<str>>,
        config: BulkheadConfig,
        key: F,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            source: Source::PerService {
                name: name.into(),
                config,
            },
            key,
            hold: UntilResponse,
        })
    }
}

impl<K, F, P> KeyedBulkheadLayer<K, F, P> {
    /// Hold permits as `hold` says (see [`HoldPermit`](crate::HoldPermit)).
    pub fn hold<P2>(self, hold: P2) -> KeyedBulkheadLayer<K, F, P2> {
        KeyedBulkheadLayer {
            source: self.source,
            key: self.key,
            hold,
        }
    }

    /// Hold each HTTP call's permit until its response body ends (or is
    /// dropped), not only until its headers are in.
    #[cfg(feature = "http")]
    pub fn hold_until_body_end(self) -> KeyedBulkheadLayer<K, F, UntilBodyEnd> {
        self.hold(UntilBodyEnd)
    }

    /// The shared keyed bulkhead, if this layer was built from one.
    pub fn bulkhead(&self) -> Option<&KeyedBulkhead<K>> {
        match &self.source {
            Source::Shared(bulkhead) => Some(bulkhead),
            Source::PerService { .. } => None,
        }
    }
}

impl<S, K, F, P> Layer<S> for KeyedBulkheadLayer<K, F, P>
where
    K: Hash + Eq + Clone,
    F: Clone,
    P: Clone,
{
    type Service = KeyedBulkheadService<S, K, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        let bulkhead = match &self.source {
            Source::Shared(bulkhead) => bulkhead.clone(),
            Source::PerService { name, config } => {
                KeyedBulkhead::build(name.clone(), config.clone())
            }
        };
        KeyedBulkheadService::new(inner, bulkhead, self.key.clone()).with_hold(self.hold.clone())
    }
}

impl<B: fmt::Debug> fmt::Debug for Source<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Shared(bulkhead) => f.debug_tuple("Shared").field(bulkhead).finish(),
            Source::PerService { name, config } => f
                .debug_struct("PerService")
                .field("name", name)
                .field("config", config)
                .finish(),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for BulkheadLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("source", &self.source)
            .field("hold", &self.hold)
            .finish()
    }
}

impl<K, F, P: fmt::Debug> fmt::Debug for KeyedBulkheadLayer<K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("source", &self.source)
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}
