use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use portcullis_core::{BoxError, Classify, ConfigError};
use portcullis_retry::{Policy, Replay, RetryPredicate};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::metrics::Counters;
use crate::{HedgeConfig, HedgeLayer, HedgeMetrics};

/// A service that sends another attempt when the first is slow, and
/// answers with the first good answer.
///
/// `poll_ready` is the inner service's. `call` sends the first attempt at
/// once and keeps a clone of the inner service (polled for readiness
/// before each hedge) and what the policy's [`Replay`] keeps of the
/// request. See the [crate] docs for the rules.
///
/// Cloning a `Hedge` clones the inner service; the clones share the
/// layer's state (histogram, counters, budget).
pub struct Hedge<S, P = Policy> {
    inner: S,
    shared: Arc<Shared>,
    policy: P,
}

impl<S> Hedge<S> {
    /// `inner` with the default hedge configuration and policy.
    pub fn new(inner: S, name: impl Into<Arc<str>>) -> Self {
        tower_layer::Layer::layer(&HedgeLayer::new(name), inner)
    }

    /// `inner` with `config` (validated first) and the default policy.
    pub fn from_config(
        inner: S,
        name: impl Into<Arc<str>>,
        config: HedgeConfig,
    ) -> Result<Self, ConfigError> {
        Ok(tower_layer::Layer::layer(
            &HedgeLayer::from_config(name, config)?,
            inner,
        ))
    }
}

impl<S, P> Hedge<S, P> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>, policy: P) -> Self {
        Self {
            inner,
            shared,
            policy,
        }
    }

    /// The hedge's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The counters shared with the layer and its other services.
    pub fn metrics(&self) -> HedgeMetrics {
        self.shared.counters.snapshot()
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

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

impl<S, C, F, R, Req> Service<Req> for Hedge<S, Policy<C, F, R>>
where
    R: Replay<Req> + Clone,
    S: Service<R::Request> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
    F: RetryPredicate<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, F, R, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &*self.shared;
        Counters::add(&shared.counters.calls, 1);
        if let Some(budget) = shared.budget.as_ref().filter(|_| !shared.retry_outside) {
            budget.deposit();
        }
        let replay = self.policy.get_replay();
        let (request, kept) = if shared.config.max_hedges() > 0 {
            replay.prepare(request)
        } else {
            (replay.once(request), None)
        };
        let spare = kept.as_ref().map(|_| self.inner.clone());
        // Latencies are measured exactly (not on the coarse clock) only
        // for a percentile delay, which needs them.
        let started = shared.delay.percentile().map(|_| Instant::now());
        let future = self.inner.call(request);
        ResponseFuture::new(
            future,
            spare,
            kept,
            self.shared.clone(),
            self.policy.clone(),
            started,
        )
    }
}

impl<S: Clone, P: Clone> Clone for Hedge<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Hedge<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("policy", &self.policy)
            .finish()
    }
}
