use std::fmt;

use portcullis_core::ConfigError;
use tower_layer::Layer;

use crate::{Chain, Fallback, FallbackCounters, FromError, FromRequest, OnFailure, Value};

/// Wraps services in a [`Fallback`].
///
/// Pick the source of the answers with a constructor, then, if need be,
/// the trigger with [`on`](Self::on) or [`classifier`](Self::classifier)
/// (the default, [`OnFailure`], answers every error and lets no error
/// through):
///
/// | constructor | answers with |
/// |-------------|--------------|
/// | [`value`](Self::value) | a clone of a value |
/// | [`from_error`](Self::from_error) | `Fn(Failure<Res>) -> Res` |
/// | [`from_request`](Self::from_request) | `Fn(Failure<Res>, Ctx) -> Res`, `Ctx` taken from the request by `Fn(&Req) -> Ctx` |
/// | [`from_parts`](Self::from_parts) (`http`) | `Fn(Failure<Res>, http::request::Parts) -> Res` |
/// | [`service`](Self::service), [`chain`](Self::chain) | secondary services, in order (`Req: Clone`) |
/// | [`stale`](Self::stale) (`http`) | the last good response for the same `GET`/`HEAD` request |
/// | [`new`](Self::new) | any [`Source`](crate::Source) |
///
/// Every service the layer makes shares its sources and its
/// [`FallbackCounters`].
///
/// ```
/// use portcullis_core::BoxError;
/// use portcullis_fallback::{FallbackLayer, OnRejection};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let failing = service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) });
///
/// // Any error: the answer is the value, and the error type is Infallible.
/// let service = ServiceBuilder::new()
///     .layer(FallbackLayer::value("cached"))
///     .service(failing);
/// let answer: Result<&str, std::convert::Infallible> = service.oneshot(()).await;
/// assert_eq!(answer.unwrap(), "cached");
///
/// // Only rejections of other layers: a plain error passes.
/// let service = ServiceBuilder::new()
///     .layer(FallbackLayer::value("cached").on(OnRejection::all()))
///     .service(failing);
/// assert_eq!(service.oneshot(()).await.unwrap_err().to_string(), "down");
/// # }
/// ```
pub struct FallbackLayer<T, Src> {
    trigger: T,
    source: Src,
    counters: FallbackCounters,
}

impl<Src> FallbackLayer<OnFailure, Src> {
    /// Answers with `source`, on every error.
    pub fn new(source: Src) -> Self {
        Self {
            trigger: OnFailure::new(),
            source,
            counters: FallbackCounters::new(),
        }
    }
}

impl<V> FallbackLayer<OnFailure, Value<V>> {
    /// Answers with a clone of `value`.
    pub fn value(value: V) -> Self {
        Self::new(Value::new(value))
    }
}

impl<F> FallbackLayer<OnFailure, FromError<F>> {
    /// Answers with `answer(failure)`, where `failure` is a
    /// [`Failure`](crate::Failure): the error, or the response classified
    /// as a failure.
    pub fn from_error(answer: F) -> Self {
        Self::new(FromError::new(answer))
    }
}

impl<X, F> FallbackLayer<OnFailure, FromRequest<X, F>> {
    /// Takes `extract(&request)` before the request is sent, and answers
    /// with `answer(failure, taken)`. Take only what the answer needs, so
    /// that the cost per call stays small.
    pub fn from_request(extract: X, answer: F) -> Self {
        Self::new(FromRequest::new(extract, answer))
    }
}

#[cfg(feature = "http")]
impl<F> FallbackLayer<OnFailure, FromRequest<crate::HttpParts, F>> {
    /// For `http::Request`s: answers with `answer(failure, parts)`, where
    /// `parts` are the request's method, URI, version and headers, cloned
    /// before it was sent (no body, no extensions).
    pub fn from_parts(answer: F) -> Self {
        Self::new(FromRequest::new(crate::HttpParts, answer))
    }
}

impl<S> FallbackLayer<OnFailure, Chain<S>> {
    /// Sends the request to `service` when the primary fails. The request
    /// must be `Clone`: it is cloned before it is sent to the primary.
    pub fn service(service: S) -> Self {
        Self::new(Chain::one(service))
    }

    /// Sends the request to `services`, in order, until one does not fail;
    /// if they all do, the last failure is returned. There must be at least
    /// one service (`services: must not be empty`). See [`Chain`].
    pub fn chain(services: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Ok(Self::new(Chain::new(services)?))
    }
}

#[cfg(feature = "http")]
impl<B> FallbackLayer<OnFailure, crate::StaleCache<B>> {
    /// Answers a failed `GET` or `HEAD` request with the last good response
    /// to the same request in `cache`, marked `x-portcullis-fallback:
    /// stale`; with no fresh entry, the failure is returned as it was. See
    /// [`StaleCache`](crate::StaleCache).
    pub fn stale(cache: crate::StaleCache<B>) -> Self {
        Self::new(cache)
    }
}

impl<T, Src> FallbackLayer<T, Src> {
    /// Falls back when `trigger` says so (an [`OnFailure`], an
    /// [`OnRejection`](crate::OnRejection), or a closure
    /// `Fn(Result<&Res, &BoxError>) -> bool`).
    pub fn on<T2>(self, trigger: T2) -> FallbackLayer<T2, Src> {
        FallbackLayer {
            trigger,
            source: self.source,
            counters: self.counters,
        }
    }

    /// Falls back on every error and on every response that `classifier`
    /// calls a failure (for HTTP, `HttpClassifier`: 5xx, 408, 429).
    pub fn classifier<C>(self, classifier: C) -> FallbackLayer<OnFailure<C>, Src> {
        self.on(OnFailure::with_classifier(classifier))
    }

    /// Counts into `counters` instead of the layer's own (to share them
    /// between layers).
    pub fn with_counters(mut self, counters: FallbackCounters) -> Self {
        self.counters = counters;
        self
    }

    /// The fallbacks taken by the services of this layer, by cause.
    pub fn counters(&self) -> &FallbackCounters {
        &self.counters
    }

    /// The trigger.
    pub fn trigger(&self) -> &T {
        &self.trigger
    }

    /// The source of the answers.
    pub fn source(&self) -> &Src {
        &self.source
    }
}

impl<S, T: Clone, Src: Clone> Layer<S> for FallbackLayer<T, Src> {
    type Service = Fallback<S, T, Src>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::with_counters(
            inner,
            self.trigger.clone(),
            self.source.clone(),
            self.counters.clone(),
        )
    }
}

impl<T: Clone, Src: Clone> Clone for FallbackLayer<T, Src> {
    fn clone(&self) -> Self {
        Self {
            trigger: self.trigger.clone(),
            source: self.source.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<T, Src> fmt::Debug for FallbackLayer<T, Src> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("trigger", &std::any::type_name::<T>())
            .field("source", &std::any::type_name::<Src>())
            .field("counters", &self.counters)
            .finish()
    }
}
