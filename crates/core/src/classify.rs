use std::time::Duration;

use crate::error::{BoxError, find_rejection};

/// What a call's result means to a resilience layer.
///
/// A [`Classify`] implementation turns a `Result<&Response, &Error>` into an
/// `Outcome`. Breakers count failures, retries retry them, fallbacks answer
/// for them; an `Ignored` outcome is counted nowhere (and gives a half-open
/// breaker its probe permit back).
///
/// An error that a classifier does not want to *record* but that is not
/// *ignored* should be classified as [`Outcome::Success`], as Resilience4j
/// does for exceptions outside `recordExceptions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The callee did its job.
    Success,
    /// The callee failed: counts towards opening a breaker, may be retried.
    Failure,
    /// Neither: the call says nothing about the callee's health (for example
    /// it was rejected by an inner Portcullis layer before it was sent).
    Ignored,
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented for closures `Fn(Result<&Res, &E>) -> Outcome`, so a custom
/// rule is one line:
///
/// ```
/// use portcullis_core::{BoxError, Classify, Outcome};
///
/// // Only a status of 500 or more is a failure; errors are failures.
/// let classify = |result: Result<&u16, &BoxError>| match result {
///     Ok(status) if *status >= 500 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(Ok(&503)), Outcome::Failure);
/// assert_eq!(classify.classify(Ok(&404)), Outcome::Success);
/// ```
///
/// Portcullis layers classify after converting the inner service's error
/// into a [`BoxError`], which is why `E` defaults to it.
pub trait Classify<Res, E = BoxError> {
    /// The outcome of this result.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;

    /// A wait the callee asked for with this result, if any (for example the
    /// `Retry-After` of a 429 or 503 response). Breakers may stay open for
    /// it, retries may wait for it. `None` by default.
    fn retry_after(&self, result: Result<&Res, &E>) -> Option<Duration> {
        let _ = result;
        None
    }

    /// What the callee said about calling it again, for a retry to obey.
    ///
    /// Unlike [`retry_after`](Classify::retry_after), which drops a wait it
    /// cannot trust, this keeps the difference between "no wait asked for",
    /// "a wait, however long" and "do not retry": a retry waits at least the
    /// server's delay, gives up on a wait longer than it accepts, and does
    /// not retry at all when told not to. Defaults to `retry_after`.
    fn pushback(&self, result: Result<&Res, &E>) -> Pushback {
        self.retry_after(result)
            .map_or(Pushback::None, Pushback::After)
    }
}

/// What a callee said, with one result, about when to call it again.
///
/// Read by [`Classify::pushback`]; a retry waits the longer of this and its
/// own backoff.
///
/// ```
/// use portcullis_core::Pushback;
/// use std::time::Duration;
///
/// let asked = Pushback::After(Duration::from_secs(2));
/// assert_eq!(asked.at_least(Duration::from_millis(100)), Some(Duration::from_secs(2)));
/// assert_eq!(Pushback::None.at_least(Duration::from_millis(100)), Some(Duration::from_millis(100)));
/// assert_eq!(Pushback::Stop.at_least(Duration::from_millis(100)), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pushback {
    /// Nothing was said: the caller's backoff decides alone.
    None,
    /// Wait at least this long (`Retry-After: 120`,
    /// `grpc-retry-pushback-ms: 250`). A value too large for a `Duration`
    /// is `Duration::MAX`: it is a wait, and a very long one.
    After(Duration),
    /// Do not retry: a negative or malformed `grpc-retry-pushback-ms`
    /// (gRFC A6).
    Stop,
}

impl Pushback {
    /// The wait before the next attempt given the caller's own `backoff`:
    /// the longer of the two, or `None` when the callee said not to retry.
    pub fn at_least(self, backoff: Duration) -> Option<Duration> {
        match self {
            Self::None => Some(backoff),
            Self::After(wait) => Some(wait.max(backoff)),
            Self::Stop => None,
        }
    }
}

/// The default classifier: every `Ok` is a success, every error a failure,
/// except the rejections of inner Portcullis layers ([`BreakerOpen`],
/// [`BulkheadFull`], [`RateLimited`]), which are [`Outcome::Ignored`]
/// wherever they sit in the error's `source()` chain. A timeout
/// ([`Elapsed`]) is a failure.
///
/// [`BreakerOpen`]: crate::BreakerOpen
/// [`BulkheadFull`]: crate::BulkheadFull
/// [`RateLimited`]: crate::RateLimited
/// [`Elapsed`]: crate::Elapsed
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        self(result)
    }
}

impl<Res> Classify<Res, BoxError> for DefaultClassifier {
    fn classify(&self, result: Result<&Res, &BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => classify_error(error),
        }
    }
}

/// The outcome of an error under the default rules: a rejection of a
/// Portcullis layer that kept the request from being sent is `Ignored`,
/// anything else is a `Failure`.
pub(crate) fn classify_error(error: &BoxError) -> Outcome {
    match find_rejection(error.as_ref()) {
        Some(rejection) if rejection.never_sent() => Outcome::Ignored,
        _ => Outcome::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BreakerOpen, BulkheadFull, Elapsed, RateLimited};
    use std::fmt;

    #[derive(Debug)]
    struct Wrapper(BoxError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    fn default(result: Result<&(), &BoxError>) -> Outcome {
        DefaultClassifier.classify(result)
    }

    #[test]
    fn ok_is_success_and_errors_are_failures() {
        assert_eq!(default(Ok(&())), Outcome::Success);
        let io: BoxError = std::io::Error::other("boom").into();
        assert_eq!(default(Err(&io)), Outcome::Failure);
    }

    #[test]
    fn rejections_are_ignored_even_when_wrapped() {
        let open: BoxError = BreakerOpen::new("a", None).into();
        let full: BoxError = BulkheadFull::new("b").into();
        let limited: BoxError = RateLimited::new("c", None).into();
        let wrapped: BoxError = Wrapper(BreakerOpen::new("d", None).into()).into();
        for error in [&open, &full, &limited, &wrapped] {
            assert_eq!(default(Err(error)), Outcome::Ignored, "{error}");
        }
    }

    #[test]
    fn a_timeout_is_a_failure() {
        let elapsed: BoxError = Elapsed::new(Duration::from_secs(1)).into();
        assert_eq!(default(Err(&elapsed)), Outcome::Failure);
    }

    #[test]
    fn closures_classify_and_have_no_retry_after() {
        let classify = |r: Result<&u8, &BoxError>| match r {
            Ok(0) => Outcome::Success,
            _ => Outcome::Failure,
        };
        assert_eq!(classify.classify(Ok(&0)), Outcome::Success);
        assert_eq!(classify.classify(Ok(&1)), Outcome::Failure);
        assert_eq!(classify.retry_after(Ok(&1)), None);
    }
}
