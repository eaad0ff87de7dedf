use std::fmt;
use std::sync::Arc;

use portcullis_core::{ConfigError, DefaultClassifier};
use tower_layer::Layer;

use crate::{Limit, LimitConfig, Limiter, NoPartition, Partition, PartitionBy};

/// Wraps services in a [`Limit`].
///
/// Built from a [`Limiter`] with [`new`](Self::new), every service it makes
/// shares that one limit: use this to protect one dependency (or one
/// server) however many routes or clients call it. Built from a
/// configuration with [`per_service`](Self::per_service), each call to
/// [`Layer::layer`] makes a fresh limiter: one per route when axum applies
/// the layer once per route (give the router its state with
/// `Router::with_state` before serving, as for the bulkhead).
///
/// ```
/// use portcullis_limit::{LimitConfig, LimitLayer, Limiter};
/// use tower::{ServiceBuilder, service_fn};
///
/// let config = LimitConfig::builder().partition("live", 0.9).partition("batch", 0.1).build().unwrap();
/// let limiter = Limiter::from_config("api", config).unwrap();
/// let (live, batch) = (limiter.partition("live"), limiter.partition("batch"));
/// let service = ServiceBuilder::new()
///     .layer(LimitLayer::new(limiter).partition_by(move |request: &http::Request<()>| {
///         if request.headers().contains_key("x-batch") { batch } else { live }
///     }))
///     .service(service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::io::Error>(http::Response::new(()))
///     }));
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct LimitLayer<C = DefaultClassifier, P = NoPartition> {
    source: Source,
    classifier: C,
    partition: P,
}

#[derive(Clone)]
enum Source {
    Shared(Limiter),
    PerService { name: Arc<str>, config: LimitConfig },
}

impl LimitLayer {
    /// Every service shares `limiter`.
    pub fn new(limiter: Limiter) -> Self {
        Self {
            source: Source::Shared(limiter),
            classifier: DefaultClassifier,
            partition: NoPartition,
        }
    }

    /// Every call to `layer` makes a new limiter named `name` with `config`
    /// (validated here, so that `layer` cannot fail).
    pub fn per_service(
        name: impl Into<Arc<str>>,
        config: LimitConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            source: Source::PerService {
                name: name.into(),
                config,
            },
            classifier: DefaultClassifier,
            partition: NoPartition,
        })
    }
}

impl<C, P> LimitLayer<C, P> {
    /// Judge outcomes with `classifier` (for HTTP, `HttpClassifier`: a 5xx
    /// is a drop).
    pub fn classifier<C2>(self, classifier: C2) -> LimitLayer<C2, P> {
        LimitLayer {
            source: self.source,
            classifier,
            partition: self.partition,
        }
    }

    /// Choose each call's partition with `select` (see
    /// [`Limiter::partition`]). Partitions come from the limiter's
    /// configuration, so with [`per_service`](Self::per_service) each
    /// service's limiter has the same ones, in the same order.
    pub fn partition_by<F, Req>(self, select: F) -> LimitLayer<C, PartitionBy<F>>
    where
        F: Fn(&Req) -> Option<Partition>,
    {
        LimitLayer {
            source: self.source,
            classifier: self.classifier,
            partition: PartitionBy(select),
        }
    }

    /// The shared limiter, if this layer was built from one.
    pub fn limiter(&self) -> Option<&Limiter> {
        match &self.source {
            Source::Shared(limiter) => Some(limiter),
            Source::PerService { .. } => None,
        }
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for LimitLayer<C, P> {
    type Service = Limit<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        let limiter = match &self.source {
            Source::Shared(limiter) => limiter.clone(),
            Source::PerService { name, config } => Limiter::build(name.clone(), config.clone()),
        };
        Limit::new(inner, limiter)
            .with_classifier(self.classifier.clone())
            .with_partition(self.partition.clone())
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Shared(limiter) => f.debug_tuple("Shared").field(limiter).finish(),
            Source::PerService { name, config } => f
                .debug_struct("PerService")
                .field("name", name)
                .field("config", config)
                .finish(),
        }
    }
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for LimitLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitLayer")
            .field("source", &self.source)
            .field("classifier", &self.classifier)
            .field("partition", &self.partition)
            .finish()
    }
}
