use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use portcullis_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{FallbackCounters, Source, Trigger};

/// A service whose failures are answered by a fallback.
///
/// `call` takes what the source needs from the request (its
/// [`Context`](Source::Context)), then calls the inner service. The result
/// goes through the trigger `T`: what it lets through goes to the caller,
/// what it catches is answered by the source `Src`.
///
/// A failing `poll_ready` of the inner service is a failure too: it is kept,
/// `poll_ready` reports ready, and the next `call` goes through the trigger
/// with that error without calling the inner service. So a fallback whose
/// trigger catches every error has `Error = Infallible`, readiness included.
/// The next `poll_ready` after that call polls the inner service again (a
/// `tower::buffer::Buffer` whose worker is gone fails again, and the
/// fallback answers again).
pub struct Fallback<S, T, Src> {
    inner: S,
    shared: Arc<Shared<T, Src>>,
    not_ready: Option<BoxError>,
}

pub(crate) struct Shared<T, Src> {
    pub(crate) trigger: T,
    pub(crate) source: Src,
    pub(crate) counters: FallbackCounters,
    pub(crate) source_name: &'static str,
}

impl<S, T, Src> Fallback<S, T, Src> {
    /// `inner`, with failures (as `trigger` decides) answered by `source`.
    pub fn new(inner: S, trigger: T, source: Src) -> Self {
        Self::with_counters(inner, trigger, source, FallbackCounters::new())
    }

    pub(crate) fn with_counters(
        inner: S,
        trigger: T,
        source: Src,
        counters: FallbackCounters,
    ) -> Self {
        let source_name = short_type_name::<Src>();
        Self {
            inner,
            shared: Arc::new(Shared {
                trigger,
                source,
                counters,
                source_name,
            }),
            not_ready: None,
        }
    }

    /// The trigger.
    pub fn trigger(&self) -> &T {
        &self.shared.trigger
    }

    /// The source of the answers.
    pub fn source(&self) -> &Src {
        &self.shared.source
    }

    /// The fallbacks taken, by cause.
    pub fn counters(&self) -> &FallbackCounters {
        &self.shared.counters
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

/// The last segment of a type's path, without its generics: `"Value"`.
/// What the source answers with, in a log reader's words (`source =
/// "a fixed value"`), for the sources of this crate; another source's type
/// name.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let name = name.split('<').next().unwrap_or(name);
    match name.rsplit("::").next().unwrap_or(name) {
        "Value" => "a fixed value",
        "FromError" => "a response made from the failure",
        "FromRequest" => "a response made from the request",
        "Chain" => "a secondary service",
        "StaleCache" => "the last good response",
        other => other,
    }
}

impl<S, T, Src, Req> Service<Req> for Fallback<S, T, Src>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    T: Trigger<S::Response>,
    Src: Source<Req, S::Response, T>,
{
    type Response = S::Response;
    type Error = Src::Error;
    type Future = ResponseFuture<S::Future, T, Src, Req, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(error)) => {
                self.not_ready = Some(error.into());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let context = self.shared.source.context(&request);
        match self.not_ready.take() {
            Some(error) => ResponseFuture::not_ready(error, context, self.shared.clone()),
            None => ResponseFuture::primary(self.inner.call(request), context, self.shared.clone()),
        }
    }
}

impl<S: Clone, T, Src> Clone for Fallback<S, T, Src> {
    /// A clone starts clean: a failed readiness of the original is not
    /// carried over.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug, T, Src> fmt::Debug for Fallback<S, T, Src> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("trigger", &std::any::type_name::<T>())
            .field("source", &self.shared.source_name)
            .field("counters", &self.shared.counters)
            .field("not_ready", &self.not_ready)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_named_in_words() {
        assert_eq!(short_type_name::<crate::Value<u8>>(), "a fixed value");
        assert_eq!(
            short_type_name::<crate::FromError<fn()>>(),
            "a response made from the failure"
        );
        assert_eq!(short_type_name::<u8>(), "u8", "another source: its type");
    }
}
