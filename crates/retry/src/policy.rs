//! What is retried and how a request is sent again: a [`Policy`] of a
//! classifier, a retry predicate and a replay strategy.

use portcullis_core::{BoxError, DefaultClassifier, find_rejection};

/// Decides whether a *failed* attempt (as its classifier decided) may be
/// tried again.
///
/// Implemented for closures `Fn(Result<&Res, &BoxError>) -> bool`:
///
/// ```
/// use portcullis_core::BoxError;
/// use portcullis_retry::RetryPredicate;
///
/// // Retry only errors, never failed responses.
/// let errors_only = |result: Result<&u16, &BoxError>| result.is_err();
/// assert!(!errors_only.is_retryable(Ok(&503)));
/// ```
pub trait RetryPredicate<Res> {
    /// Whether this failure may be tried again.
    fn is_retryable(&self, result: Result<&Res, &BoxError>) -> bool;
}

/// The default predicate: every failure may be tried again except the
/// rejections of inner Portcullis layers that kept the request from being
/// sent ([`BreakerOpen`](crate::BreakerOpen),
/// [`BulkheadFull`](crate::BulkheadFull),
/// [`RateLimited`](crate::RateLimited)), which fail fast. A timeout
/// ([`Elapsed`](crate::Elapsed)) is retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultPredicate;

/// How a request is sent again.
///
/// A retry calls [`prepare`](Self::prepare) once per call and
/// [`replay`](Self::replay) before each further attempt. [`CloneReplay`]
/// clones `Clone` requests; [`HttpReplay`](crate::HttpReplay) (feature
/// `http`) replays `http::Request`s with streaming bodies.
pub trait Replay<Req> {
    /// The request that the inner service is called with.
    type Request;
    /// What is kept of a request to send it again.
    type State;

    /// The request of the first attempt, and what is kept to send it
    /// again (`None`: it will be sent once).
    fn prepare(&self, request: Req) -> (Self::Request, Option<Self::State>);

    /// The request of the first attempt when no retry is possible at all
    /// (`max_attempts` of 1): nothing is kept.
    fn once(&self, request: Req) -> Self::Request;

    /// The request of a further attempt, or `None` if it cannot be sent
    /// again after all (e.g. its body outgrew the replay limit).
    fn replay(&self, state: &mut Self::State) -> Option<Self::Request>;

    /// The request of the last attempt that can be made: `state` is not
    /// needed afterwards.
    fn replay_last(&self, mut state: Self::State) -> Option<Self::Request> {
        self.replay(&mut state)
    }
}

/// Replays a `Clone` request by cloning it: one clone is kept for the next
/// attempt, and the last attempt takes it without cloning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneReplay;

/// What is retried (the classifier's failures that the predicate allows)
/// and how requests are sent again (the replay).
///
/// ```
/// use portcullis_core::{BoxError, Outcome};
/// use portcullis_retry::Policy;
///
/// // Responses of 0 are failures, and retryable; errors are never retried.
/// let policy = Policy::new()
///     .classifier(|result: Result<&u32, &BoxError>| match result {
///         Ok(0) | Err(_) => Outcome::Failure,
///         Ok(_) => Outcome::Success,
///     })
///     .retry_if(|result: Result<&u32, &BoxError>| result.is_ok());
/// # let _ = policy;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy<C = DefaultClassifier, F = DefaultPredicate, R = CloneReplay> {
    classifier: C,
    predicate: F,
    replay: R,
}

/// Whether `error` is a rejection of an inner Portcullis layer that kept
/// the request from being sent.
pub(crate) fn never_sent(error: &BoxError) -> bool {
    find_rejection(error.as_ref()).is_some_and(|rejection| rejection.never_sent())
}

impl<F, Res> RetryPredicate<Res> for F
where
    F: Fn(Result<&Res, &BoxError>) -> bool,
{
    fn is_retryable(&self, result: Result<&Res, &BoxError>) -> bool {
        self(result)
    }
}

impl<Res> RetryPredicate<Res> for DefaultPredicate {
    fn is_retryable(&self, result: Result<&Res, &BoxError>) -> bool {
        match result {
            Ok(_) => true,
            Err(error) => !never_sent(error),
        }
    }
}

impl<Req: Clone> Replay<Req> for CloneReplay {
    type Request = Req;
    type State = Req;

    fn prepare(&self, request: Req) -> (Req, Option<Req>) {
        (request.clone(), Some(request))
    }

    fn once(&self, request: Req) -> Req {
        request
    }

    fn replay(&self, state: &mut Req) -> Option<Req> {
        Some(state.clone())
    }

    fn replay_last(&self, state: Req) -> Option<Req> {
        Some(state)
    }
}

impl Policy {
    /// The default policy: [`DefaultClassifier`], [`DefaultPredicate`],
    /// [`CloneReplay`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C, F, R> Policy<C, F, R> {
    /// A policy from its three parts.
    pub const fn from_parts(classifier: C, predicate: F, replay: R) -> Self {
        Self {
            classifier,
            predicate,
            replay,
        }
    }

    /// Decide failures with `classifier`; only failures are retried.
    pub fn classifier<C2>(self, classifier: C2) -> Policy<C2, F, R> {
        Policy {
            classifier,
            predicate: self.predicate,
            replay: self.replay,
        }
    }

    /// Retry only the failures that `predicate` allows. Mind that the
    /// default predicates refuse the rejections of inner Portcullis layers;
    /// a custom one should too (see [`find_rejection`]).
    pub fn retry_if<F2>(self, predicate: F2) -> Policy<C, F2, R> {
        Policy {
            classifier: self.classifier,
            predicate,
            replay: self.replay,
        }
    }

    /// Send requests again with `replay`.
    pub fn replay<R2>(self, replay: R2) -> Policy<C, F, R2> {
        Policy {
            classifier: self.classifier,
            predicate: self.predicate,
            replay,
        }
    }

    /// The classifier.
    pub fn get_classifier(&self) -> &C {
        &self.classifier
    }

    /// The retry predicate.
    pub fn get_predicate(&self) -> &F {
        &self.predicate
    }

    /// The replay strategy.
    pub fn get_replay(&self) -> &R {
        &self.replay
    }

    /// The replay strategy, mutably.
    pub fn get_replay_mut(&mut self) -> &mut R {
        &mut self.replay
    }

    pub(crate) fn parts(&self) -> (&C, &F, &R) {
        (&self.classifier, &self.predicate, &self.replay)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use portcullis_core::{BreakerOpen, BulkheadFull, Elapsed, RateLimited};
    use std::time::Duration;

    #[test]
    fn rejections_are_not_retryable_but_timeouts_are() {
        let retryable = |error: BoxError| DefaultPredicate.is_retryable(Err::<&(), _>(&error));
        assert!(!retryable(BreakerOpen::new("b", None).into()));
        assert!(!retryable(BulkheadFull::new("b").into()));
        assert!(!retryable(RateLimited::new("r", None).into()));
        assert!(retryable(Elapsed::new(Duration::from_secs(1)).into()));
        assert!(retryable(std::io::Error::other("reset").into()));
        assert!(DefaultPredicate.is_retryable(Ok::<_, &BoxError>(&())));
    }

    #[test]
    fn clone_replay_clones_then_moves() {
        let replay = CloneReplay;
        let (first, state) = Replay::<String>::prepare(&replay, "a".to_owned());
        let mut state = state.unwrap();
        assert_eq!(first, "a");
        assert_eq!(
            Replay::<String>::replay(&replay, &mut state).as_deref(),
            Some("a")
        );
        assert_eq!(
            Replay::<String>::replay_last(&replay, state).as_deref(),
            Some("a")
        );
    }
}
