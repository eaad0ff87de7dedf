//! The response future of [`Hedge`](crate::Hedge).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Classify, Outcome};
use portcullis_retry::{Policy, Replay, RetryPredicate};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::layer::Shared;
use crate::metrics::Counters;

pin_project! {
    /// Resolves to the first good answer of the attempts made, or, when
    /// every attempt failed, to the last failure to arrive.
    ///
    /// The first attempt is a field, and so is the timer of the next hedge
    /// (armed only when the first attempt is not ready at once): a call
    /// whose first attempt answers well allocates nothing. Each hedge is
    /// boxed when it is sent. Dropping the future drops (cancels) every
    /// attempt in flight.
    pub struct ResponseFuture<S, C, F, R, Req>
    where
        R: Replay<Req>,
        S: Service<R::Request>,
    {
        #[pin]
        first: Attempt<S::Future>,
        #[pin]
        timer: Timer,
        hedges: Vec<Hedged<S::Future>>,
        spare: Option<S>,
        kept: Option<R::State>,
        next: Option<R::Request>,
        shared: Arc<Shared>,
        policy: Policy<C, F, R>,
        started: Option<Instant>,
        last_sent: Option<Instant>,
        sent: u32,
        hedging: bool,
        failure: Option<Result<S::Response, BoxError>>,
        _request: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = AttemptProj]
    enum Attempt<Fut> {
        Running {
            #[pin]
            future: Fut,
        },
        Done,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        Unarmed,
        Armed {
            #[pin]
            sleep: Sleep,
        },
    }
}

/// A hedge in flight.
struct Hedged<Fut> {
    future: Pin<Box<Fut>>,
    /// When it was sent, for a percentile delay.
    started: Option<Instant>,
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
        started: Option<Instant>,
    ) -> Self {
        Self {
            first: Attempt::Running { future },
            timer: Timer::Unarmed,
            hedges: Vec::new(),
            hedging: kept.is_some(),
            spare,
            kept,
            next: None,
            shared,
            policy,
            started,
            last_sent: None,
            sent: 0,
            failure: None,
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
        let shared = &**this.shared;
        loop {
            // Whether to send the next hedge now.
            let mut fire = false;

            if let AttemptProj::Running { future } = this.first.as_mut().project() {
                if let Poll::Ready(result) = future.poll(cx) {
                    this.first.set(Attempt::Done);
                    record_latency(shared, *this.started);
                    match judge(this.policy, shared, result.map_err(Into::into)) {
                        Judged::Good(result) => {
                            answered(shared, this.failure);
                            cancel_losers(shared, this.first.as_mut(), this.hedges, *this.started);
                            return Poll::Ready(result);
                        }
                        Judged::Failed { result, non_fatal } => {
                            hold(shared, this.failure, result);
                            fire |= non_fatal;
                            *this.hedging &= non_fatal;
                        }
                    }
                }
            }

            let mut i = 0;
            while i < this.hedges.len() {
                let Poll::Ready(result) = this.hedges[i].future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let hedge = this.hedges.swap_remove(i);
                record_latency(shared, hedge.started);
                match judge(this.policy, shared, result.map_err(Into::into)) {
                    Judged::Good(result) => {
                        Counters::add(&shared.counters.hedges_won, 1);
                        answered(shared, this.failure);
                        cancel_losers(shared, this.first.as_mut(), this.hedges, *this.started);
                        return Poll::Ready(result);
                    }
                    Judged::Failed { result, non_fatal } => {
                        hold(shared, this.failure, result);
                        fire |= non_fatal;
                        *this.hedging &= non_fatal;
                    }
                }
            }

            // The timer of the next hedge, armed once the attempts so far
            // are found pending.
            if *this.hedging && this.next.is_none() && !fire {
                if let TimerProj::Unarmed = this.timer.as_mut().project() {
                    let base = this
                        .last_sent
                        .or(*this.started)
                        .unwrap_or_else(Instant::now);
                    let at = base + shared.delay.current();
                    this.timer.set(Timer::Armed {
                        sleep: tokio::time::sleep_until(at),
                    });
                }
                if let TimerProj::Armed { sleep } = this.timer.as_mut().project() {
                    fire = sleep.poll(cx).is_ready();
                }
            }

            if fire && *this.hedging && this.next.is_none() {
                prepare::<R, Req>(
                    shared,
                    this.policy.get_replay(),
                    this.kept,
                    this.next,
                    this.hedging,
                    *this.sent,
                );
            }

            if let Some(request) = this.next.take() {
                let spare = this.spare.as_mut().expect("a hedge keeps a spare service");
                match spare.poll_ready(cx) {
                    Poll::Pending => *this.next = Some(request),
                    Poll::Ready(Err(error)) => {
                        *this.hedging = false;
                        // Not an attempt's outcome: nothing to record for it.
                        if this.failure.replace(Err(error.into())).is_some() {
                            superseded(shared);
                        }
                    }
                    Poll::Ready(Ok(())) => {
                        let now = Instant::now();
                        this.hedges.push(Hedged {
                            future: Box::pin(spare.call(request)),
                            started: this.started.map(|_| now),
                        });
                        *this.sent += 1;
                        *this.last_sent = Some(now);
                        *this.hedging &= *this.sent < shared.config.max_hedges();
                        this.timer.set(Timer::Unarmed);
                        Counters::add(&shared.counters.hedges, 1);
                        // Poll the new attempt (and arm the next timer).
                        continue;
                    }
                }
            }

            let in_flight =
                matches!(*this.first, Attempt::Running { .. }) || !this.hedges.is_empty();
            if !in_flight && this.next.is_none() {
                let failure = this.failure.take();
                return Poll::Ready(failure.expect("every attempt ended in a failure"));
            }
            return Poll::Pending;
        }
    }
}

/// An attempt's answer, as the policy sees it.
enum Judged<T> {
    /// A success, or an outcome to ignore: the call's answer.
    Good(Result<T, BoxError>),
    /// A failure; `non_fatal` when the next hedge may go at once.
    Failed {
        result: Result<T, BoxError>,
        non_fatal: bool,
    },
}

#[inline]
fn judge<T, C, F, R>(
    policy: &Policy<C, F, R>,
    shared: &Shared,
    result: Result<T, BoxError>,
) -> Judged<T>
where
    C: Classify<T>,
    F: RetryPredicate<T>,
{
    let outcome = policy.get_classifier().classify(result.as_ref());
    // With a retry around the hedge on its budget, the answer returned is
    // the retry's to record: a good one is never recorded here, a failure
    // only once another takes its place (see `hold`).
    if let Some(budget) = shared.budget.as_ref().filter(|_| !shared.retry_outside) {
        budget.record(outcome);
    }
    if outcome != Outcome::Failure {
        return Judged::Good(result);
    }
    let non_fatal = policy.get_predicate().is_retryable(result.as_ref());
    Judged::Failed { result, non_fatal }
}

/// Keeps `result`, the latest failure, as the one to return if every
/// attempt fails; the failure it replaces is a loser's.
#[inline]
fn hold<T>(
    shared: &Shared,
    failure: &mut Option<Result<T, BoxError>>,
    result: Result<T, BoxError>,
) {
    if failure.replace(result).is_some() {
        superseded(shared);
    }
}

/// A failure that will not be returned: with a retry around the hedge on
/// its budget, recorded now (the retry never sees it).
#[inline]
fn superseded(shared: &Shared) {
    if let Some(budget) = shared.budget.as_ref().filter(|_| shared.retry_outside) {
        budget.record(Outcome::Failure);
    }
}

/// A good answer is returned: a failure held until now was a loser's.
#[inline]
fn answered<T>(shared: &Shared, failure: &mut Option<Result<T, BoxError>>) {
    if failure.take().is_some() {
        superseded(shared);
    }
}

/// Counts the latency of an attempt that answered (percentile delay only).
#[inline]
fn record_latency(shared: &Shared, started: Option<Instant>) {
    if let (Some(percentile), Some(started)) = (shared.delay.percentile(), started) {
        percentile.record(started.elapsed());
    }
}

/// Drops every attempt still in flight, now that one answered. A loser's
/// time so far is counted as its latency: a lower bound, which keeps the
/// slow calls that hedging hides in the histogram.
fn cancel_losers<Fut>(
    shared: &Shared,
    mut first: Pin<&mut Attempt<Fut>>,
    hedges: &mut Vec<Hedged<Fut>>,
    started: Option<Instant>,
) {
    let first_running = matches!(*first, Attempt::Running { .. });
    let losers = hedges.len() as u64 + u64::from(first_running);
    if losers == 0 {
        return;
    }
    if first_running {
        record_latency(shared, started);
        first.set(Attempt::Done);
    }
    for hedge in hedges.drain(..) {
        record_latency(shared, hedge.started);
    }
    Counters::add(&shared.counters.cancelled, losers);
}

/// Makes the next hedge's request, if the cap, the replay and the budget
/// allow one; otherwise stops hedging.
fn prepare<R, Req>(
    shared: &Shared,
    replay: &R,
    kept: &mut Option<R::State>,
    next: &mut Option<R::Request>,
    hedging: &mut bool,
    sent: u32,
) where
    R: Replay<Req>,
{
    let last = sent + 1 >= shared.config.max_hedges();
    let request = if last {
        kept.take().and_then(|state| replay.replay_last(state))
    } else {
        kept.as_mut().and_then(|state| replay.replay(state))
    };
    let Some(request) = request else {
        *hedging = false;
        return;
    };
    if let Some(budget) = &shared.budget {
        if !budget.try_withdraw() {
            Counters::add(&shared.counters.budget_denied, 1);
            *hedging = false;
            return;
        }
    }
    *next = Some(request);
}

impl<S, C, F, R, Req> fmt::Debug for ResponseFuture<S, C, F, R, Req>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("hedge", &self.shared.name)
            .field(
                "first_running",
                &matches!(self.first, Attempt::Running { .. }),
            )
            .field("hedges_in_flight", &self.hedges.len())
            .field("sent", &self.sent)
            .field("hedging", &self.hedging)
            .finish_non_exhaustive()
    }
}
