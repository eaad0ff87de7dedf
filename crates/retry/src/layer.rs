use std::fmt;
use std::sync::Arc;

use portcullis_core::ConfigError;
use tower_layer::Layer;

use crate::event::{Counters, Events};
use crate::{EventStream, Policy, Retry, RetryBudget, RetryConfig, RetryMetrics, Rng, SplitMix64};

/// Wraps services in a [`Retry`].
///
/// A layer owns the retry's shared state: its configuration, its jitter
/// randomness, its counters and event stream, and its budget. Every service
/// it makes — every clone, every route it is applied to — shares them, so
/// [`metrics`](Self::metrics) and [`subscribe`](Self::subscribe) cover them
/// all; build one layer per route to count per route. A budget made from
/// the configuration belongs to the layer; to share one budget between
/// layers, pass the same [`RetryBudget`] to each with
/// [`with_budget`](Self::with_budget).
///
/// ```
/// use portcullis_retry::{RetryConfig, RetryLayer};
/// use tower::{ServiceBuilder, service_fn};
///
/// let config = RetryConfig::builder().max_attempts(4).build().unwrap();
/// let layer = RetryLayer::from_config("inventory", config).unwrap();
/// let service = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(layer.metrics().successful_without_retry, 0);
/// # let _ = service;
/// ```
///
/// Built with [`http`](Self::http) (feature `http`), it retries
/// `http::Request`s with the HTTP rules, the idempotency gate and body
/// replay; with [`grpc`](Self::grpc) (feature `grpc`), gRPC calls that are
/// declared idempotent.
#[derive(Clone)]
pub struct RetryLayer<P = Policy> {
    shared: Arc<Shared>,
    policy: P,
}

/// What every service of a layer shares.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) config: RetryConfig,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) rng: Arc<dyn Rng>,
    pub(crate) events: Events,
    pub(crate) counters: Counters,
}

impl RetryLayer {
    /// A layer named `name` with the default configuration (3 attempts,
    /// exponential backoff with equal jitter) and the default policy
    /// (every error is retried but the rejections of inner Portcullis
    /// layers; requests are cloned).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), RetryConfig::default(), Policy::new())
    }

    /// A layer named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: RetryConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config, Policy::new()))
    }
}

#[cfg(feature = "http")]
impl RetryLayer<crate::HttpPolicy> {
    /// An HTTP layer named `name` with `config`: [`HttpPolicy`](crate::HttpPolicy),
    /// its body limit and idempotency gate from the configuration.
    pub fn http(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let replay = crate::HttpReplay::from_config(&config);
        let policy = Policy::from_parts(
            portcullis_core::HttpClassifier,
            crate::HttpPredicate,
            replay,
        );
        Ok(Self::build(name.into(), config, policy))
    }
}

#[cfg(feature = "grpc")]
impl RetryLayer<crate::GrpcPolicy> {
    /// A gRPC layer named `name` with `config`: [`GrpcPolicy`](crate::GrpcPolicy).
    /// Calls are retried only once declared idempotent: for the whole layer
    /// with [`retry_non_idempotent`](Self::retry_non_idempotent) (or
    /// `retry_non_idempotent = true` in the configuration), or per call with
    /// the [`Idempotent`](crate::Idempotent) extension.
    pub fn grpc(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let replay = crate::HttpReplay::from_config(&config);
        let policy = Policy::from_parts(
            portcullis_core::GrpcClassifier,
            crate::GrpcPredicate,
            replay,
        );
        Ok(Self::build(name.into(), config, policy))
    }
}

impl<P> RetryLayer<P> {
    fn build(name: Arc<str>, config: RetryConfig, policy: P) -> Self {
        let rng: Arc<dyn Rng> = match config.jitter_seed() {
            Some(seed) => Arc::new(SplitMix64::new(seed)),
            None => Arc::new(SplitMix64::from_entropy()),
        };
        // Named after the layer, as a registry serves it.
        let budget = config.budget().map(|budget| {
            RetryBudget::named(name.clone(), *budget).expect("the configuration was validated")
        });
        Self {
            shared: Arc::new(Shared {
                name,
                config,
                budget,
                rng,
                events: Events::new(crate::event::CAPACITY),
                counters: Counters::default(),
            }),
            policy,
        }
    }

    /// A new shared state from the old one's name, configuration and
    /// randomness (counters start from zero).
    fn rebuild(self, budget: Option<RetryBudget>, rng: Option<Arc<dyn Rng>>) -> Self {
        let old = &*self.shared;
        Self {
            shared: Arc::new(Shared {
                name: old.name.clone(),
                config: old.config.clone(),
                budget: budget.or_else(|| old.budget.clone()),
                rng: rng.unwrap_or_else(|| old.rng.clone()),
                events: Events::new(crate::event::CAPACITY),
                counters: Counters::default(),
            }),
            policy: self.policy,
        }
    }

    /// Retry with `policy` instead.
    pub fn policy<P2>(self, policy: P2) -> RetryLayer<P2> {
        RetryLayer {
            shared: self.shared,
            policy,
        }
    }

    /// Draw retries from `budget` (shared with whoever else holds it)
    /// instead of the configured one. Call it before making services: it
    /// gives the layer a fresh state (counters at zero, no subscribers).
    pub fn with_budget(self, budget: RetryBudget) -> Self {
        self.rebuild(Some(budget), None)
    }

    /// Draw jitter from `rng` instead (e.g. a scripted source in a test).
    /// Call it before making services, as [`with_budget`](Self::with_budget).
    pub fn with_rng(self, rng: impl Rng + 'static) -> Self {
        self.rebuild(None, Some(Arc::new(rng)))
    }

    /// The layer's name, in events and traces.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// Its policy.
    pub fn get_policy(&self) -> &P {
        &self.policy
    }

    /// The budget retries are drawn from, if any. One made from the
    /// configuration is named after the layer, so that a registry can
    /// serve it (`registry.budgets().register(budget.clone())`).
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// The counters of every service made by this layer.
    pub fn metrics(&self) -> RetryMetrics {
        self.shared.counters.snapshot()
    }

    /// Subscribes to the events of every service made by this layer
    /// (bounded: a subscriber that falls more than 256 events behind loses
    /// the oldest).
    pub fn subscribe(&self) -> EventStream {
        self.shared.events.subscribe()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl<C, F, R> RetryLayer<Policy<C, F, R>> {
    /// Decide failures with `classifier`; see [`Policy::classifier`].
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<Policy<C2, F, R>> {
        RetryLayer {
            shared: self.shared,
            policy: self.policy.classifier(classifier),
        }
    }

    /// Retry only the failures `predicate` allows; see [`Policy::retry_if`].
    pub fn retry_if<F2>(self, predicate: F2) -> RetryLayer<Policy<C, F2, R>> {
        RetryLayer {
            shared: self.shared,
            policy: self.policy.retry_if(predicate),
        }
    }
}

#[cfg(feature = "http")]
impl<C, F> RetryLayer<Policy<C, F, crate::HttpReplay>> {
    /// Retry non-idempotent requests (POST, PATCH, CONNECT) of this layer
    /// even without an `Idempotency-Key` header: the route's own opt-in.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        let replay = *self.policy.get_replay();
        *self.policy.get_replay_mut() = replay.retry_non_idempotent(retry);
        self
    }

    /// Buffer at most `bytes` of a request body for replay.
    pub fn body_limit(mut self, bytes: u64) -> Self {
        let replay = *self.policy.get_replay();
        *self.policy.get_replay_mut() = replay.body_limit(bytes);
        self
    }
}

impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.shared.clone(), self.policy.clone())
    }
}

impl<P: fmt::Debug> fmt::Debug for RetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("config", &self.shared.config)
            .field("budget", &self.shared.budget)
            .field("events", &self.shared.events)
            .field("policy", &self.policy)
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}
