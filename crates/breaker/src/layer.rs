use std::fmt;
use std::sync::Arc;

use portcullis_core::{ConfigError, DefaultClassifier};
use tower_layer::Layer;

use crate::{Breaker, BreakerConfig, CircuitBreaker};

/// Wraps services in a [`CircuitBreaker`].
///
/// Built from a [`Breaker`] handle with [`new`](Self::new), every service it
/// makes shares that one breaker: use this to protect one upstream however
/// many routes or clients call it. Built from a configuration with
/// [`per_service`](Self::per_service), each call to [`Layer::layer`] makes a
/// fresh breaker: one breaker per route when axum applies the layer once per
/// route.
///
/// **Under axum**, a layer on a handler (`get(handler).layer(..)`) is applied
/// when the router is given its state. Call `Router::with_state` (with `()`
/// if it has none) before serving: a `Router` served without it is given its
/// state once per connection, and a per-service breaker would then live for
/// one connection only. A layer built from a handle is immune to this.
///
/// ```
/// use portcullis_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer};
/// use tower::{ServiceBuilder, service_fn};
///
/// let shared = Breaker::new("payments");
/// let a = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(shared.clone()))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// // `a`, its clones and any other service built from `shared` trip together.
///
/// let per_route = CircuitBreakerLayer::per_service("route", BreakerConfig::default()).unwrap();
/// # let _ = (a, per_route);
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    source: Source,
    classifier: C,
}

#[derive(Clone)]
enum Source {
    Shared(Breaker),
    PerService {
        name: Arc<str>,
        config: BreakerConfig,
    },
}

impl CircuitBreakerLayer {
    /// Every service shares `breaker`.
    pub fn new(breaker: Breaker) -> Self {
        Self {
            source: Source::Shared(breaker),
            classifier: DefaultClassifier,
        }
    }

    /// Every call to `layer` makes a new breaker named `name` with `config`
    /// (validated here, so that `layer` cannot fail).
    pub fn per_service(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            source: Source::PerService {
                name: name.into(),
                config,
            },
            classifier: DefaultClassifier,
        })
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Decide outcomes with `classifier` (for HTTP, `HttpClassifier`).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            source: self.source,
            classifier,
        }
    }

    /// The shared breaker, if this layer was built from one.
    pub fn breaker(&self) -> Option<&Breaker> {
        match &self.source {
            Source::Shared(breaker) => Some(breaker),
            Source::PerService { .. } => None,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let breaker = match &self.source {
            Source::Shared(breaker) => breaker.clone(),
            Source::PerService { name, config } => {
                Breaker::from_config(name.clone(), config.clone())
                    .expect("the configuration was validated when the layer was built")
            }
        };
        CircuitBreaker::new(inner, breaker).with_classifier(self.classifier.clone())
    }
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("CircuitBreakerLayer");
        match &self.source {
            Source::Shared(breaker) => debug.field("breaker", breaker),
            Source::PerService { name, config } => {
                debug.field("per_service", name).field("config", config)
            }
        };
        debug.field("classifier", &self.classifier).finish()
    }
}
