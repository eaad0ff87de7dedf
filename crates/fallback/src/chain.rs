//! Secondary services, tried in order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, ConfigError};
use tower_service::Service;

use crate::{Decision, Failure, Source, Trigger};

/// Answers a failure by sending the request to secondary services, in
/// order, until one of them does not fail (as the trigger sees it).
///
/// The request is cloned before it is sent to the primary service, and
/// again before each secondary service but the last, so **`Req: Clone` is
/// required**: for HTTP, a request whose body can be cloned (`String`,
/// `Bytes`, `Full<Bytes>`, ...) — a streaming body must be buffered first.
/// Each secondary service is cloned when it is needed, polled until ready,
/// then called: clones start with their own readiness.
///
/// A secondary's result goes through the same trigger as the primary's: a
/// result it lets through is returned (an error it lets through too, with
/// no further fallback); a failure moves on to the next service; if every
/// service fails, the **last** failure is returned — its error, or its
/// response classified as a failure.
///
/// Services of different types can be chained by boxing them
/// (`tower::util::BoxCloneService`) or by nesting fallback layers.
pub struct Chain<S> {
    services: Arc<[S]>,
}

pin_project! {
    /// The future of a [`Chain`]'s answer.
    pub struct ChainFuture<S, F, Req, T> {
        services: Arc<[S]>,
        next: usize,
        trigger: T,
        request: Option<Req>,
        #[pin]
        state: State<S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Ready {
            service: S,
        },
        Calling {
            #[pin]
            future: F,
        },
    }
}

impl<S> Chain<S> {
    /// Falls back to `services`, in order; there must be at least one.
    pub fn new(services: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        let services: Arc<[S]> = services.into_iter().collect();
        if services.is_empty() {
            return Err(ConfigError::new("services", "must not be empty"));
        }
        Ok(Self { services })
    }

    /// One secondary service.
    pub fn one(service: S) -> Self {
        Self {
            services: Arc::new([service]),
        }
    }

    /// The secondary services.
    pub fn services(&self) -> &[S] {
        &self.services
    }
}

impl<Req, Res, T, S> Source<Req, Res, T> for Chain<S>
where
    Req: Clone,
    T: Trigger<Res> + Clone,
    T::Error: Into<BoxError>,
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
{
    type Error = BoxError;
    type Context = Req;
    type Future = ChainFuture<S, S::Future, Req, T>;

    fn context(&self, request: &Req) -> Req {
        request.clone()
    }

    fn pass_error(error: T::Error) -> BoxError {
        error.into()
    }

    fn answer(&self, _failure: Failure<Res>, request: Req, trigger: &T) -> Self::Future {
        ChainFuture {
            services: self.services.clone(),
            next: 1,
            trigger: trigger.clone(),
            request: Some(request),
            state: State::Ready {
                service: self.services[0].clone(),
            },
        }
    }
}

impl<S, F, Req, T, Res> Future for ChainFuture<S, F, Req, T>
where
    S: Service<Req, Response = Res, Future = F> + Clone,
    S::Error: Into<BoxError>,
    F: Future<Output = Result<Res, S::Error>>,
    Req: Clone,
    T: Trigger<Res>,
    T::Error: Into<BoxError>,
{
    type Output = Result<Res, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let result = match this.state.as_mut().project() {
                StateProj::Ready { service } => match ready!(service.poll_ready(cx)) {
                    Ok(()) => {
                        let last = *this.next == this.services.len();
                        let request = if last {
                            this.request.take()
                        } else {
                            this.request.clone()
                        };
                        let future = service.call(request.expect("polled after completion"));
                        this.state.set(State::Calling { future });
                        continue;
                    }
                    Err(error) => Err(error.into()),
                },
                StateProj::Calling { future } => ready!(future.poll(cx)).map_err(Into::into),
            };
            match this.trigger.decide(result) {
                Decision::Pass(result) => return Poll::Ready(result.map_err(Into::into)),
                Decision::Fallback(failure) => {
                    let Some(service) = this.services.get(*this.next) else {
                        return Poll::Ready(failure.into_result());
                    };
                    tracing::debug!(
                        cause = %failure.cause(),
                        next = *this.next,
                        "fallback: a secondary service failed, trying the next one"
                    );
                    *this.next += 1;
                    let service = service.clone();
                    this.state.set(State::Ready { service });
                }
            }
        }
    }
}

impl<S> Clone for Chain<S> {
    fn clone(&self) -> Self {
        Self {
            services: self.services.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Chain<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("services", &self.services)
            .finish()
    }
}

impl<S, F, Req, T> fmt::Debug for ChainFuture<S, F, Req, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "Ready",
            State::Calling { .. } => "Calling",
        };
        f.debug_struct("ChainFuture")
            .field("service", &(self.next - 1))
            .field("of", &self.services.len())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
