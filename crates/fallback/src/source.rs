//! Where a fallback's answer comes from.

use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;

use crate::{Failure, Trigger};

/// A source of fallback answers for requests `Req` and responses `Res`,
/// under the trigger `T`.
///
/// This crate's sources are [`Value`], [`FromError`], [`FromRequest`],
/// [`Chain`](crate::Chain) and, with the `http` feature,
/// [`StaleCache`](crate::StaleCache). You may implement it for your own.
pub trait Source<Req, Res, T: Trigger<Res>> {
    /// The error type of the fallback service.
    type Error;

    /// What the source keeps from the request before it is sent (nothing,
    /// the request's parts, a clone of the request, a cache key).
    type Context;

    /// The future of an answer.
    type Future: Future<Output = Result<Res, Self::Error>>;

    /// Takes what the source needs from `request`, before it is sent.
    fn context(&self, request: &Req) -> Self::Context;

    /// Sees a response that passed the trigger (the stale cache stores it).
    /// Does nothing by default.
    fn passed(&self, response: &Res, context: &Self::Context) {
        let _ = (response, context);
    }

    /// Converts an error that passed the trigger into the service's error.
    fn pass_error(error: T::Error) -> Self::Error;

    /// Answers `failure`.
    fn answer(&self, failure: Failure<Res>, context: Self::Context, trigger: &T) -> Self::Future;
}

/// Takes from a request what an answering closure needs, before the
/// request is sent: implemented for closures `Fn(&Req) -> Ctx`, and with
/// the `http` feature for [`HttpParts`](crate::HttpParts).
pub trait Extract<Req> {
    /// What is taken.
    type Context;

    /// Takes it from `request`.
    fn extract(&self, request: &Req) -> Self::Context;
}

/// Answers with a clone of a value (converted with `Into` when its type is
/// not the response type: a `&'static str` for `String` responses).
///
/// `http::Response` is not `Clone`: for HTTP, answer with a closure
/// ([`FromError`]) that builds the response.
pub struct Value<V> {
    value: Arc<V>,
}

/// Answers with a closure of the [`Failure`]: `Fn(Failure<Res>) -> Res`.
pub struct FromError<F> {
    answer: Arc<F>,
}

/// Answers with a closure of the [`Failure`] and of what an [`Extract`]
/// took from the request: `Fn(Failure<Res>, Ctx) -> Res`.
pub struct FromRequest<X, F> {
    inner: Arc<(X, F)>,
}

impl<V> Value<V> {
    /// Answers with clones of `value`.
    pub fn new(value: V) -> Self {
        Self {
            value: Arc::new(value),
        }
    }

    /// The value.
    pub fn get_ref(&self) -> &V {
        &self.value
    }
}

impl<F> FromError<F> {
    /// Answers with `answer`.
    pub fn new(answer: F) -> Self {
        Self {
            answer: Arc::new(answer),
        }
    }
}

impl<X, F> FromRequest<X, F> {
    /// Takes a context from each request with `extract`, answers with
    /// `answer`.
    pub fn new(extract: X, answer: F) -> Self {
        Self {
            inner: Arc::new((extract, answer)),
        }
    }
}

impl<Req, Res, T, V> Source<Req, Res, T> for Value<V>
where
    T: Trigger<Res>,
    V: Clone + Into<Res>,
{
    type Error = T::Error;
    type Context = ();
    type Future = Ready<Result<Res, T::Error>>;

    fn context(&self, _request: &Req) {}

    fn pass_error(error: T::Error) -> T::Error {
        error
    }

    fn answer(&self, _failure: Failure<Res>, _context: (), _trigger: &T) -> Self::Future {
        ready(Ok(V::clone(&self.value).into()))
    }
}

impl<Req, Res, T, F> Source<Req, Res, T> for FromError<F>
where
    T: Trigger<Res>,
    F: Fn(Failure<Res>) -> Res,
{
    type Error = T::Error;
    type Context = ();
    type Future = Ready<Result<Res, T::Error>>;

    fn context(&self, _request: &Req) {}

    fn pass_error(error: T::Error) -> T::Error {
        error
    }

    fn answer(&self, failure: Failure<Res>, _context: (), _trigger: &T) -> Self::Future {
        ready(Ok((self.answer)(failure)))
    }
}

impl<Req, Res, T, X, F> Source<Req, Res, T> for FromRequest<X, F>
where
    T: Trigger<Res>,
    X: Extract<Req>,
    F: Fn(Failure<Res>, X::Context) -> Res,
{
    type Error = T::Error;
    type Context = X::Context;
    type Future = Ready<Result<Res, T::Error>>;

    fn context(&self, request: &Req) -> X::Context {
        self.inner.0.extract(request)
    }

    fn pass_error(error: T::Error) -> T::Error {
        error
    }

    fn answer(&self, failure: Failure<Res>, context: X::Context, _trigger: &T) -> Self::Future {
        ready(Ok((self.inner.1)(failure, context)))
    }
}

impl<F, Req, Ctx> Extract<Req> for F
where
    F: Fn(&Req) -> Ctx,
{
    type Context = Ctx;

    fn extract(&self, request: &Req) -> Ctx {
        self(request)
    }
}

impl<V> Clone for Value<V> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
        }
    }
}

impl<F> Clone for FromError<F> {
    fn clone(&self) -> Self {
        Self {
            answer: self.answer.clone(),
        }
    }
}

impl<X, F> Clone for FromRequest<X, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for Value<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value").field(&self.value).finish()
    }
}

impl<F> fmt::Debug for FromError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FromError")
            .field(&std::any::type_name::<F>())
            .finish()
    }
}

impl<X, F> fmt::Debug for FromRequest<X, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromRequest")
            .field("extract", &std::any::type_name::<X>())
            .field("answer", &std::any::type_name::<F>())
            .finish()
    }
}
