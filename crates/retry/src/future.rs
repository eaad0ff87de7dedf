//! The response future of [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Classify, Outcome, Pushback};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::event::Counters;
use crate::layer::Shared;
use crate::{
    GiveUpReason, Jitter, Policy, Replay, RetriesExhausted, RetryEvent, RetryPredicate, Step,
};

pin_project! {
    /// Resolves to the response of the last attempt made, or to its error.
    ///
    /// A state machine: calling the inner service, waiting out a delay,
    /// waiting for the spare service to be ready, and again. It allocates
    /// nothing of its own; the request kept for further attempts and the
    /// spare service are fields.
    pub struct ResponseFuture<S, C, F, R, Req>
    where
        R: Replay<Req>,
        S: Service<R::Request>,
    {
        #[pin]
        state: State<S::Future>,
        spare: Option<S>,
        kept: Option<R::State>,
        next: Option<R::Request>,
        shared: Arc<Shared>,
        policy: Policy<C, F, R>,
        attempts: u32,
        deadline: Option<Instant>,
        previous_delay: Duration,
        _request: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut> {
        Calling {
            #[pin]
            future: Fut,
        },
        Waiting {
            #[pin]
            sleep: Sleep,
        },
        Ready,
        Done,
    }
}

/// What to do after an attempt.
enum Next<T, Req> {
    Return(Result<T, BoxError>),
    Retry { delay: Duration, request: Req },
}

impl<S, C, F, R, Req> ResponseFuture<S, C, F, R, Req>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    #[inline]
    pub(crate) fn new(
        future: S::Future,
        spare: Option<S>,
        kept: Option<R::State>,
        shared: Arc<Shared>,
        policy: Policy<C, F, R>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Calling { future },
            spare,
            kept,
            next: None,
            shared,
            policy,
            attempts: 0,
            deadline,
            previous_delay: Duration::ZERO,
            _request: PhantomData,
        }
    }
}

impl<S, C, F, R, Req> Future for ResponseFuture<S, C, F, R, Req>
where
    R: Replay<Req>,
    S: Service<R::Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    F: RetryPredicate<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    *this.attempts += 1;
                    let attempts = *this.attempts;
                    let (classifier, predicate, replay) = this.policy.parts();
                    let outcome = classifier.classify(result.as_ref());
                    if let Some(budget) = &this.shared.budget {
                        budget.record(outcome);
                    }
                    if outcome != Outcome::Failure {
                        this.state.set(State::Done);
                        finished(this.shared, attempts, result.is_ok());
                        return Poll::Ready(result);
                    }
                    if !predicate.is_retryable(result.as_ref()) {
                        this.state.set(State::Done);
                        finished(this.shared, attempts, false);
                        return Poll::Ready(result);
                    }
                    let decision = decide(
                        result,
                        attempts,
                        this.shared,
                        classifier,
                        replay,
                        this.kept,
                        *this.deadline,
                        this.previous_delay,
                    );
                    match decision {
                        Next::Return(result) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                        Next::Retry { delay, request } => {
                            *this.next = Some(request);
                            if delay.is_zero() {
                                this.state.set(State::Ready);
                            } else {
                                this.state.set(State::Waiting {
                                    sleep: tokio::time::sleep(delay),
                                });
                            }
                        }
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    let service = this.spare.as_mut().expect("a retry keeps a spare service");
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        finished(this.shared, *this.attempts, false);
                        return Poll::Ready(Err(error.into()));
                    }
                    let request = this.next.take().expect("the next request was prepared");
                    let future = service.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Done => panic!("`ResponseFuture` polled after completion"),
            }
        }
    }
}

/// Counts a call that ends after `attempts` attempts.
#[inline]
fn finished(shared: &Shared, attempts: u32, succeeded: bool) {
    if succeeded && attempts <= 1 {
        // The path every call takes: one counter, nothing else.
        Counters::bump(&shared.counters.successful_without_retry);
    } else {
        finished_slow(shared, attempts, succeeded);
    }
}

#[cold]
#[inline(never)]
fn finished_slow(shared: &Shared, attempts: u32, succeeded: bool) {
    let counters = &shared.counters;
    match (succeeded, attempts > 1) {
        (true, false) => Counters::bump(&counters.successful_without_retry),
        (true, true) => {
            Counters::bump(&counters.successful_with_retry);
            tracing::debug!(retry = %shared.name, attempts, "succeeded after retrying");
            if shared.events.wanted() {
                shared.events.send(RetryEvent::Succeeded {
                    name: shared.name.clone(),
                    attempts,
                });
            }
        }
        (false, false) => Counters::bump(&counters.failed_without_retry),
        (false, true) => Counters::bump(&counters.failed_with_retry),
    }
}

/// After a retryable failure: another attempt, or the failure returned.
#[allow(clippy::too_many_arguments)]
fn decide<T, C, R, Req>(
    result: Result<T, BoxError>,
    attempts: u32,
    shared: &Shared,
    classifier: &C,
    replay: &R,
    kept: &mut Option<R::State>,
    deadline: Option<Instant>,
    previous_delay: &mut Duration,
) -> Next<T, R::Request>
where
    C: Classify<T>,
    R: Replay<Req>,
{
    let config = &shared.config;
    let give_up = |result: Result<T, BoxError>, reason: GiveUpReason| {
        finished(shared, attempts, false);
        tracing::debug!(retry = %shared.name, attempts, %reason, "not retrying");
        if shared.events.wanted() {
            shared.events.send(RetryEvent::GaveUp {
                name: shared.name.clone(),
                attempts,
                reason,
            });
        }
        let exhausted = matches!(
            reason,
            GiveUpReason::MaxAttempts | GiveUpReason::Deadline | GiveUpReason::Budget
        );
        Next::Return(match result {
            Err(error) if exhausted && config.fail_after_max_attempts() => {
                Err(RetriesExhausted::new(error, attempts, reason).into())
            }
            result => result,
        })
    };

    if attempts >= config.max_attempts() {
        return give_up(result, GiveUpReason::MaxAttempts);
    }
    if kept.is_none() {
        return give_up(result, GiveUpReason::NotReplayable);
    }
    let pushback = classifier.pushback(result.as_ref());
    if let Pushback::After(wait) = pushback
        && wait > config.max_retry_after()
    {
        return give_up(result, GiveUpReason::RetryAfterTooLong { wait });
    }
    let backoff = {
        let step = Step::of(config.backoff(), attempts, *previous_delay);
        let jitter = config.jitter();
        let draw = if jitter.draws() {
            shared.rng.next_u64()
        } else {
            0
        };
        jitter.jitter(step, draw)
    };
    // The server's delay is a floor, never a shortcut: `Retry-After: 0`
    // does not turn the backoff into a burst of immediate retries.
    let Some(delay) = pushback.at_least(backoff) else {
        return give_up(result, GiveUpReason::ServerRefused);
    };
    if let Some(deadline) = deadline
        && Instant::now()
            .checked_add(delay)
            .is_none_or(|at| at >= deadline)
    {
        return give_up(result, GiveUpReason::Deadline);
    }
    let request = if attempts + 1 >= config.max_attempts() {
        kept.take().and_then(|state| replay.replay_last(state))
    } else {
        kept.as_mut().and_then(|state| replay.replay(state))
    };
    let Some(request) = request else {
        return give_up(result, GiveUpReason::NotReplayable);
    };
    if let Some(budget) = &shared.budget
        && !budget.try_withdraw()
    {
        return give_up(result, GiveUpReason::Budget);
    }
    *previous_delay = delay;
    Counters::bump(&shared.counters.retries);
    let attempt = attempts + 1;
    let server_directed = matches!(pushback, Pushback::After(wait) if wait >= backoff);
    match &result {
        Ok(_) => {
            tracing::debug!(retry = %shared.name, attempt, ?delay, server_directed, "retrying a failed response")
        }
        Err(error) => {
            tracing::debug!(retry = %shared.name, attempt, ?delay, server_directed, %error, "retrying an error")
        }
    }
    if shared.events.wanted() {
        shared.events.send(RetryEvent::Retry {
            name: shared.name.clone(),
            attempt,
            delay,
            server_directed,
        });
    }
    Next::Retry { delay, request }
}

impl<S, C, F, R, Req> fmt::Debug for ResponseFuture<S, C, F, R, Req>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Waiting { .. } => "waiting",
            State::Ready => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("retry", &self.shared.name)
            .field("state", &state)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}
