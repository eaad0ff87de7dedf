//! The response future of [`Fallback`](crate::Fallback).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::BoxError;

use crate::service::Shared;
use crate::{Decision, Source, Trigger};

pin_project! {
    /// Resolves to the inner response, or to the fallback's answer when the
    /// trigger says so.
    pub struct ResponseFuture<F, T, Src, Req, Res>
    where
        T: Trigger<Res>,
        Src: Source<Req, Res, T>,
    {
        #[pin]
        state: State<F, Src::Context, Src::Future>,
        shared: Arc<Shared<T, Src>>,
        _request: PhantomData<fn(Req) -> Res>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, Ctx, A> {
        Primary {
            #[pin]
            future: F,
            context: Option<Ctx>,
        },
        NotReady {
            error: Option<BoxError>,
            context: Option<Ctx>,
        },
        Answer {
            #[pin]
            future: A,
        },
    }
}

impl<F, T, Src, Req, Res> ResponseFuture<F, T, Src, Req, Res>
where
    T: Trigger<Res>,
    Src: Source<Req, Res, T>,
{
    pub(crate) fn primary(future: F, context: Src::Context, shared: Arc<Shared<T, Src>>) -> Self {
        Self {
            state: State::Primary {
                future,
                context: Some(context),
            },
            shared,
            _request: PhantomData,
        }
    }

    pub(crate) fn not_ready(
        error: BoxError,
        context: Src::Context,
        shared: Arc<Shared<T, Src>>,
    ) -> Self {
        Self {
            state: State::NotReady {
                error: Some(error),
                context: Some(context),
            },
            shared,
            _request: PhantomData,
        }
    }
}

impl<F, T, Src, Req, Res, E> Future for ResponseFuture<F, T, Src, Req, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    T: Trigger<Res>,
    Src: Source<Req, Res, T>,
{
    type Output = Result<Res, Src::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let (result, context) = match this.state.as_mut().project() {
                StateProj::Primary { future, context } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    (result, context.take().expect("polled after completion"))
                }
                StateProj::NotReady { error, context } => (
                    Err(error.take().expect("polled after completion")),
                    context.take().expect("polled after completion"),
                ),
                StateProj::Answer { future } => return future.poll(cx),
            };
            let shared = &**this.shared;
            match shared.trigger.decide(result) {
                Decision::Pass(Ok(response)) => {
                    shared.source.passed(&response, &context);
                    return Poll::Ready(Ok(response));
                }
                Decision::Pass(Err(error)) => return Poll::Ready(Err(Src::pass_error(error))),
                Decision::Fallback(failure) => {
                    let cause = failure.cause();
                    shared.counters.record(cause);
                    tracing::debug!(cause = %cause, source = shared.source_name, "fallback taken");
                    let future = shared.source.answer(failure, context, &shared.trigger);
                    this.state.set(State::Answer { future });
                }
            }
        }
    }
}

impl<F, T, Src, Req, Res> fmt::Debug for ResponseFuture<F, T, Src, Req, Res>
where
    T: Trigger<Res>,
    Src: Source<Req, Res, T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Primary { .. } => "Primary",
            State::NotReady { .. } => "NotReady",
            State::Answer { .. } => "Answer",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
