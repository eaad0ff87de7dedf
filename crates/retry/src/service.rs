use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use portcullis_core::{BoxError, Classify, ConfigError};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::{EventStream, Policy, Replay, RetryLayer, RetryMetrics, RetryPredicate};

/// A service whose failed calls are tried again.
///
/// `poll_ready` is the inner service's. `call` sends the first attempt to
/// the inner service at once and keeps, for the attempts after it, a clone
/// of the inner service (polled for readiness before each retry) and what
/// the policy's [`Replay`] keeps of the request. A failed attempt is tried
/// again when the classifier calls it a failure, the predicate calls it
/// retryable, and the configuration, the deadline and the budget allow it;
/// otherwise its result is returned as it came (see
/// [`RetryConfig::fail_after_max_attempts`](crate::RetryConfig::fail_after_max_attempts)
/// for errors).
///
/// Cloning a `Retry` clones the inner service; the clones share the layer's
/// state (counters, events, budget).
pub struct Retry<S, P = Policy> {
    inner: S,
    shared: Arc<Shared>,
    policy: P,
}

impl<S> Retry<S> {
    /// `inner` with the default retry configuration and policy.
    pub fn new(inner: S, name: impl Into<Arc<str>>) -> Self {
        RetryLayer::new(name).into_service(inner)
    }

    /// `inner` with `config` (validated first) and the default policy.
    pub fn from_config(
        inner: S,
        name: impl Into<Arc<str>>,
        config: crate::RetryConfig,
    ) -> Result<Self, ConfigError> {
        Ok(RetryLayer::from_config(name, config)?.into_service(inner))
    }
}

impl<P: Clone> RetryLayer<P> {
    fn into_service<S>(self, inner: S) -> Retry<S, P> {
        Retry::from_shared(inner, self.shared().clone(), self.get_policy().clone())
    }
}

impl<S, P> Retry<S, P> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>, policy: P) -> Self {
        Self {
            inner,
            shared,
            policy,
        }
    }

    /// The retry's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The counters shared with the layer and its other services.
    pub fn metrics(&self) -> RetryMetrics {
        self.shared.counters.snapshot()
    }

    /// Subscribes to the events of the layer and all its services.
    pub fn subscribe(&self) -> EventStream {
        self.shared.events.subscribe()
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

impl<S, C, F, R, Req> Service<Req> for Retry<S, Policy<C, F, R>>
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
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        let replay = self.policy.parts().2;
        let (request, kept) = if shared.config.max_attempts() > 1 {
            replay.prepare(request)
        } else {
            (replay.once(request), None)
        };
        let spare = kept.as_ref().map(|_| self.inner.clone());
        let deadline = shared
            .config
            .total_deadline()
            .and_then(|deadline| Instant::now().checked_add(deadline));
        let future = self.inner.call(request);
        ResponseFuture::new(
            future,
            spare,
            kept,
            self.shared.clone(),
            self.policy.clone(),
            deadline,
        )
    }
}

impl<S: Clone, P: Clone> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("policy", &self.policy)
            .finish()
    }
}
