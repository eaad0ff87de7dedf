use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use portcullis_core::{BoxError, Classify, DefaultClassifier};
use tower::{Layer, Service};

use crate::breaker::CircuitBreaker;
use crate::bulkhead::BulkheadService;
use crate::client::future::ResponseFuture;
use crate::client::{NoAuthority, authority_key};
use crate::registry::Registry;

/// Wraps HTTP clients in a [`PerAuthority`]: one breaker per upstream
/// authority, from a [`Registry`] (see the [module docs](crate::client)).
///
/// The breakers are the registry's `breaker_for(name, authority)`, made
/// with the registry's config named `name`; the bulkheads, with
/// [`with_bulkheads`](Self::with_bulkheads), its `bulkhead_for(name,
/// authority)`. Every service the layer makes shares them, through the
/// registry. Outcomes are decided by the classifier: [`DefaultClassifier`]
/// (errors are failures) unless [`classifier`](Self::classifier) says
/// otherwise (`HttpClassifier` for 5xx, 408 and 429 to count too).
#[derive(Clone)]
pub struct PerAuthorityLayer<C = DefaultClassifier> {
    registry: Registry,
    name: Arc<str>,
    bulkheads: bool,
    classifier: C,
}

/// An HTTP client behind one breaker (and bulkhead) per upstream
/// authority: made by [`PerAuthorityLayer`].
///
/// `poll_ready` is the inner service's. `call` finds the request's
/// breaker, and bulkhead if there are bulkheads, in the registry (making
/// them on first use) and runs the call through them: an open breaker or
/// a full bulkhead rejects it without calling the inner service, with
/// [`BreakerOpen`](crate::core::BreakerOpen) or
/// [`BulkheadFull`](crate::core::BulkheadFull). A request without an
/// authority fails with [`NoAuthority`], one a strict registry has no room
/// for with [`KeyLimitReached`](crate::registry::KeyLimitReached).
#[derive(Clone)]
pub struct PerAuthority<S, C = DefaultClassifier> {
    inner: S,
    registry: Registry,
    name: Arc<str>,
    bulkheads: bool,
    classifier: C,
}

impl PerAuthorityLayer {
    /// Breakers named `name`, one per authority, from `registry`.
    pub fn new(registry: Registry, name: impl Into<Arc<str>>) -> Self {
        Self {
            registry,
            name: name.into(),
            bulkheads: false,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> PerAuthorityLayer<C> {
    /// A bulkhead per authority too, named `name` like the breakers,
    /// inside the breaker: a call waits for (or is refused) a permit of its
    /// upstream's bulkhead after its breaker let it through.
    pub fn with_bulkheads(mut self) -> Self {
        self.bulkheads = true;
        self
    }

    /// Decide outcomes with `classifier` (for HTTP, `HttpClassifier`).
    pub fn classifier<C2>(self, classifier: C2) -> PerAuthorityLayer<C2> {
        PerAuthorityLayer {
            registry: self.registry,
            name: self.name,
            bulkheads: self.bulkheads,
            classifier,
        }
    }

    /// The registry the breakers come from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The name of the breakers (and bulkheads).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S, C: Clone> Layer<S> for PerAuthorityLayer<C> {
    type Service = PerAuthority<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PerAuthority {
            inner,
            registry: self.registry.clone(),
            name: self.name.clone(),
            bulkheads: self.bulkheads,
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, C> PerAuthority<S, C> {
    /// The registry the breakers come from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The name of the breakers (and bulkheads).
    pub fn name(&self) -> &str {
        &self.name
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

impl<S, C, B> Service<Request<B>> for PerAuthority<S, C>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<B>, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(key) = authority_key(request.uri()) else {
            return ResponseFuture::failed(NoAuthority::new().into());
        };
        // What the breaker and bulkhead of this host log (a transition, a
        // rejection, an eviction) is logged in a span naming the host.
        let span = tracing::info_span!("portcullis", host = %key);
        let entered = span.enter();
        let future = 'start: {
            let breaker = match self.registry.breakers().get_keyed(&self.name, key) {
                Ok(breaker) => breaker,
                Err(error) => break 'start ResponseFuture::failed(error.into()),
            };
            let bulkhead = if self.bulkheads {
                match self.registry.bulkheads().get_keyed(&self.name, key) {
                    Ok(bulkhead) => Some(bulkhead),
                    Err(error) => break 'start ResponseFuture::failed(error.into()),
                }
            } else {
                None
            };
            // The readied service goes with the call; its clone is readied
            // by the next `poll_ready`.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let classifier = self.classifier.clone();
            match bulkhead {
                Some(bulkhead) => ResponseFuture::guarded(
                    CircuitBreaker::new(BulkheadService::new(inner, bulkhead), breaker)
                        .with_classifier(classifier)
                        .call(request),
                ),
                None => ResponseFuture::breaker(
                    CircuitBreaker::new(inner, breaker)
                        .with_classifier(classifier)
                        .call(request),
                ),
            }
        };
        drop(entered);
        future.in_span(span)
    }
}

impl<C: fmt::Debug> fmt::Debug for PerAuthorityLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerAuthorityLayer")
            .field("name", &self.name)
            .field("bulkheads", &self.bulkheads)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for PerAuthority<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerAuthority")
            .field("inner", &self.inner)
            .field("name", &self.name)
            .field("bulkheads", &self.bulkheads)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
