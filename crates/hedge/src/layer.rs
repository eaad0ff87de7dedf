use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_retry::{Policy, RetryBudget};
use tower_layer::Layer;

use crate::delay::Delay;
use crate::metrics::Counters;
use crate::{Hedge, HedgeConfig, HedgeMetrics};

/// Wraps services in a [`Hedge`].
///
/// A layer owns the hedge's shared state: its configuration, its latency
/// histogram (for a percentile delay), its counters and its budget. Every
/// service it makes — every clone, every route it is applied to — shares
/// them; build one layer per route to measure latencies per route. To cap
/// retries and hedges with one budget, pass the same [`RetryBudget`] to the
/// retry layer and to this one with [`with_budget`](Self::with_budget).
///
/// ```
/// use std::time::Duration;
/// use portcullis_hedge::{DelayConfig, HedgeConfig, HedgeLayer};
/// use portcullis_retry::{RetryBudget, RetryConfig, RetryLayer};
/// use tower::{ServiceBuilder, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let budget = RetryBudget::new(0.1, 5, Duration::from_secs(10)).unwrap();
/// let config = HedgeConfig::builder()
///     .delay(DelayConfig::fixed(Duration::from_millis(20)))
///     .build()
///     .unwrap();
/// let hedge = HedgeLayer::from_config("search", config).unwrap().with_budget(budget.clone());
/// let retry = RetryLayer::from_config("search", RetryConfig::default())
///     .unwrap()
///     .with_budget(budget);
/// let service = ServiceBuilder::new()
///     .layer(retry)
///     .layer(hedge.clone())
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(hedge.metrics().hedges, 0);
/// # let _ = service;
/// # }
/// ```
#[derive(Clone)]
pub struct HedgeLayer<P = Policy> {
    shared: Arc<Shared>,
    policy: P,
}

/// What every service of a layer shares.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) config: HedgeConfig,
    pub(crate) delay: Delay,
    pub(crate) budget: Option<RetryBudget>,
    /// The budget is also a retry layer's, around this one: the retry
    /// deposits for each request and records the answer it gets.
    pub(crate) retry_outside: bool,
    pub(crate) counters: Counters,
}

impl HedgeLayer {
    /// A layer named `name` with the default configuration (one hedge
    /// after the 95th percentile of recent latencies) and the default
    /// policy: an error is a failure, a response a success; a failure but
    /// a rejection of an inner Portcullis layer sends the next hedge at
    /// once; requests are cloned.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), HedgeConfig::default(), None, Policy::new())
    }

    /// A layer named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: HedgeConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config, None, Policy::new()))
    }
}

impl<P> HedgeLayer<P> {
    pub(crate) fn build(
        name: Arc<str>,
        config: HedgeConfig,
        budget: Option<RetryBudget>,
        policy: P,
    ) -> Self {
        // Named after the layer, as a registry serves it.
        let budget = budget.or_else(|| {
            match (config.budget(), config.throttle()) {
                (Some(budget), _) => Some(RetryBudget::named(name.clone(), *budget)),
                (None, Some(throttle)) => Some(RetryBudget::throttling(name.clone(), *throttle)),
                (None, None) => None,
            }
            .map(|budget| budget.expect("the configuration was validated"))
        });
        Self {
            shared: Arc::new(Shared {
                delay: Delay::new(config.delay()),
                name,
                config,
                budget,
                retry_outside: false,
                counters: Counters::default(),
            }),
            policy,
        }
    }

    /// Hedge with `policy` instead: its classifier decides which answer is
    /// good, its predicate which failure sends the next hedge at once, its
    /// replay how a request is sent again.
    pub fn policy<P2>(self, policy: P2) -> HedgeLayer<P2> {
        HedgeLayer {
            shared: self.shared,
            policy,
        }
    }

    /// Draw hedges from `budget` (shared with whoever else holds it, such
    /// as a retry layer) instead of the configured one. Call it before
    /// making services: it gives the layer a fresh state (counters at zero,
    /// an empty histogram).
    pub fn with_budget(self, budget: RetryBudget) -> Self {
        let shared = &*self.shared;
        Self::build(
            shared.name.clone(),
            shared.config.clone(),
            Some(budget),
            self.policy,
        )
    }

    /// Draw hedges from `budget`, the budget of a retry layer around this
    /// hedge, so that retries and hedges share one cap without counting a
    /// request twice: the retry deposits for each request and records the
    /// outcome of the answer the hedge returns; the hedge withdraws for
    /// each hedge and records the outcomes of the attempts it does not
    /// return (the losers that failed). Call it before making services, as
    /// [`with_budget`](Self::with_budget).
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_hedge::{HedgeLayer, RetryBudget};
    /// use portcullis_retry::{RetryConfig, RetryLayer};
    /// use tower::{ServiceBuilder, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let budget = RetryBudget::new(0.1, 5, Duration::from_secs(10)).unwrap();
    /// let service = ServiceBuilder::new()
    ///     .layer(RetryLayer::from_config("search", RetryConfig::default()).unwrap().with_budget(budget.clone()))
    ///     .layer(HedgeLayer::new("search").with_retry_budget(budget))
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// # let _ = service;
    /// # }
    /// ```
    pub fn with_retry_budget(self, budget: RetryBudget) -> Self {
        let mut layer = self.with_budget(budget);
        Arc::get_mut(&mut layer.shared)
            .expect("a layer just made holds its state alone")
            .retry_outside = true;
        layer
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &HedgeConfig {
        &self.shared.config
    }

    /// Its policy.
    pub fn get_policy(&self) -> &P {
        &self.policy
    }

    /// The budget hedges are drawn from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// The delay a hedge would wait now: the fixed delay, or the cached
    /// percentile (or its fallback).
    pub fn current_delay(&self) -> Duration {
        self.shared.delay.current()
    }

    /// The counters of every service made by this layer.
    pub fn metrics(&self) -> HedgeMetrics {
        self.shared.counters.snapshot()
    }
}

impl<C, F, R> HedgeLayer<Policy<C, F, R>> {
    /// Decide good answers with `classifier`: a success (or an ignored
    /// outcome) is returned at once, a failure lets the other attempts go
    /// on.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayer<Policy<C2, F, R>> {
        HedgeLayer {
            shared: self.shared,
            policy: self.policy.classifier(classifier),
        }
    }

    /// Send the next hedge at once after the failures `predicate` calls
    /// non-fatal (its [`is_retryable`](portcullis_retry::RetryPredicate::is_retryable));
    /// after any other failure no further hedge is sent.
    pub fn non_fatal_if<F2>(self, predicate: F2) -> HedgeLayer<Policy<C, F2, R>> {
        HedgeLayer {
            shared: self.shared,
            policy: self.policy.retry_if(predicate),
        }
    }
}

impl<S, P: Clone> Layer<S> for HedgeLayer<P> {
    type Service = Hedge<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::from_shared(inner, self.shared.clone(), self.policy.clone())
    }
}

impl<P: fmt::Debug> fmt::Debug for HedgeLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("name", &self.shared.name)
            .field("config", &self.shared.config)
            .field("budget", &self.shared.budget)
            .field("policy", &self.policy)
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("delay", &self.delay)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}
