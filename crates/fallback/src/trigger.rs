//! Which outcomes a fallback answers for.

use std::convert::Infallible;
use std::fmt;

use portcullis_core::{
    BoxError, BreakerOpen, BulkheadFull, Classify, DefaultClassifier, Elapsed, LimitExceeded,
    Outcome, RateLimited, find_in_chain,
};

/// Decides, for the result of a call, whether the fallback answers it.
///
/// It also fixes the error type of the calls it lets through, which is how
/// a fallback that answers *every* error gets `Error = Infallible` (as an
/// axum route needs). Implemented for:
///
/// - [`OnFailure`] (the default): every error, and every response that its
///   classifier calls a [`Failure`](Outcome::Failure) — with
///   [`HttpClassifier`](portcullis_core::HttpClassifier), 5xx, 408 and 429
///   responses. It lets no error through: `Error = Infallible`.
/// - [`OnRejection`]: only the rejections of other Portcullis layers that
///   you select (say [`BreakerOpen`] and [`Elapsed`]); other errors and all
///   responses pass, `Error = BoxError`.
/// - closures `Fn(Result<&Res, &BoxError>) -> bool` (`true`: fall back);
///   `Error = BoxError`.
///
/// ```
/// use portcullis_core::{BoxError, Classify, HttpClassifier, Outcome};
/// use portcullis_fallback::{Decision, Trigger};
///
/// // Fall back on anything that is not a success, ignored outcomes included.
/// let trigger = |result: Result<&http::Response<()>, &BoxError>| {
///     HttpClassifier.classify(result) != Outcome::Success
/// };
/// let busy = http::Response::builder().status(503).body(()).unwrap();
/// assert!(matches!(trigger.decide(Ok(busy)), Decision::Fallback(_)));
/// ```
pub trait Trigger<Res> {
    /// The error type of the calls it lets through.
    type Error;

    /// Whether `result` passes through or is answered by the fallback.
    fn decide(&self, result: Result<Res, BoxError>) -> Decision<Res, Self::Error>;
}

/// What a [`Trigger`] decided.
#[derive(Debug)]
pub enum Decision<Res, E> {
    /// The result goes to the caller as it is.
    Pass(Result<Res, E>),
    /// The fallback answers.
    Fallback(Failure<Res>),
}

/// The failure a fallback answers for: an error, or a response that was
/// classified as a failure.
#[derive(Debug)]
pub enum Failure<Res> {
    /// The call failed (or was rejected) with this error.
    Error(BoxError),
    /// The call returned this response, classified as a failure (e.g. a 503).
    Response(Res),
}

/// Why a fallback was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// A circuit breaker was open ([`BreakerOpen`]).
    BreakerOpen,
    /// A bulkhead was full ([`BulkheadFull`]).
    BulkheadFull,
    /// A rate limit was exceeded ([`RateLimited`]).
    RateLimited,
    /// A timeout fired ([`Elapsed`]).
    Elapsed,
    /// An adaptive concurrency limit shed the call ([`LimitExceeded`]).
    LimitExceeded,
    /// Any other error.
    Error,
    /// A response classified as a failure.
    Response,
}

/// Falls back on every error and on every response that the classifier `C`
/// calls a failure. Lets no error through.
///
/// ```
/// use portcullis_core::HttpClassifier;
/// use portcullis_fallback::OnFailure;
///
/// let any_error = OnFailure::new();
/// let and_5xx = OnFailure::with_classifier(HttpClassifier);
/// # let _ = (any_error, and_5xx);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OnFailure<C = DefaultClassifier> {
    classifier: C,
}

/// Falls back only on the selected rejections of other Portcullis layers,
/// wherever they sit in the error's `source()` chain. Other errors, and all
/// responses, pass.
///
/// ```
/// use portcullis_fallback::OnRejection;
///
/// let open_or_late = OnRejection::new().breaker_open().elapsed();
/// let any_rejection = OnRejection::all();
/// # let _ = (open_or_late, any_rejection);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct OnRejection {
    mask: u8,
}

impl<Res> Failure<Res> {
    /// Why the call failed.
    pub fn cause(&self) -> Cause {
        match self {
            Self::Error(error) => Cause::of(error),
            Self::Response(_) => Cause::Response,
        }
    }

    /// The error, if the call failed with one.
    pub fn error(&self) -> Option<&BoxError> {
        match self {
            Self::Error(error) => Some(error),
            Self::Response(_) => None,
        }
    }

    /// The response, if it was classified as a failure.
    pub fn response(&self) -> Option<&Res> {
        match self {
            Self::Error(_) => None,
            Self::Response(response) => Some(response),
        }
    }

    /// The failure as the result the caller would have had without a
    /// fallback.
    pub fn into_result(self) -> Result<Res, BoxError> {
        match self {
            Self::Error(error) => Err(error),
            Self::Response(response) => Ok(response),
        }
    }
}

impl Cause {
    /// Every cause, in the order of [`index`](Self::index).
    pub const ALL: [Cause; 7] = [
        Cause::BreakerOpen,
        Cause::BulkheadFull,
        Cause::RateLimited,
        Cause::Elapsed,
        Cause::LimitExceeded,
        Cause::Error,
        Cause::Response,
    ];

    /// The cause of an error: the first Portcullis rejection in its
    /// `source()` chain, else [`Cause::Error`].
    pub fn of(error: &BoxError) -> Self {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
        while let Some(error) = next {
            if error.is::<BreakerOpen>() {
                return Self::BreakerOpen;
            }
            if error.is::<BulkheadFull>() {
                return Self::BulkheadFull;
            }
            if error.is::<RateLimited>() {
                return Self::RateLimited;
            }
            if error.is::<Elapsed>() {
                return Self::Elapsed;
            }
            if error.is::<LimitExceeded>() {
                return Self::LimitExceeded;
            }
            next = error.source();
        }
        Self::Error
    }

    /// A short snake-case name (`"breaker_open"`, `"response"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BreakerOpen => "breaker_open",
            Self::BulkheadFull => "bulkhead_full",
            Self::RateLimited => "rate_limited",
            Self::Elapsed => "elapsed",
            Self::LimitExceeded => "limit_exceeded",
            Self::Error => "error",
            Self::Response => "response",
        }
    }

    /// The position of this cause in [`ALL`](Self::ALL).
    pub const fn index(self) -> usize {
        match self {
            Self::BreakerOpen => 0,
            Self::BulkheadFull => 1,
            Self::RateLimited => 2,
            Self::Elapsed => 3,
            Self::LimitExceeded => 4,
            Self::Error => 5,
            Self::Response => 6,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OnFailure {
    /// Every error falls back; every response passes.
    pub const fn new() -> Self {
        Self {
            classifier: DefaultClassifier,
        }
    }
}

impl<C> OnFailure<C> {
    /// Every error falls back, and every response that `classifier` calls a
    /// failure.
    pub const fn with_classifier(classifier: C) -> Self {
        Self { classifier }
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }
}

impl<Res, C> Trigger<Res> for OnFailure<C>
where
    C: Classify<Res>,
{
    type Error = Infallible;

    fn decide(&self, result: Result<Res, BoxError>) -> Decision<Res, Infallible> {
        match result {
            Err(error) => Decision::Fallback(Failure::Error(error)),
            Ok(response) => match self.classifier.classify(Ok(&response)) {
                Outcome::Failure => Decision::Fallback(Failure::Response(response)),
                Outcome::Success | Outcome::Ignored => Decision::Pass(Ok(response)),
            },
        }
    }
}

const BREAKER_OPEN: u8 = 1;
const BULKHEAD_FULL: u8 = 2;
const RATE_LIMITED: u8 = 4;
const ELAPSED: u8 = 8;
const LIMIT_EXCEEDED: u8 = 16;

impl OnRejection {
    /// No rejection selected yet: add them with the methods below.
    pub const fn new() -> Self {
        Self { mask: 0 }
    }

    /// Every Portcullis rejection: [`BreakerOpen`], [`BulkheadFull`],
    /// [`RateLimited`], [`Elapsed`] and [`LimitExceeded`].
    pub const fn all() -> Self {
        Self {
            mask: BREAKER_OPEN | BULKHEAD_FULL | RATE_LIMITED | ELAPSED | LIMIT_EXCEEDED,
        }
    }

    /// Also fall back on [`BreakerOpen`].
    pub const fn breaker_open(self) -> Self {
        Self {
            mask: self.mask | BREAKER_OPEN,
        }
    }

    /// Also fall back on [`BulkheadFull`].
    pub const fn bulkhead_full(self) -> Self {
        Self {
            mask: self.mask | BULKHEAD_FULL,
        }
    }

    /// Also fall back on [`RateLimited`].
    pub const fn rate_limited(self) -> Self {
        Self {
            mask: self.mask | RATE_LIMITED,
        }
    }

    /// Also fall back on [`Elapsed`].
    pub const fn elapsed(self) -> Self {
        Self {
            mask: self.mask | ELAPSED,
        }
    }

    /// Also fall back on [`LimitExceeded`], an adaptive limit's shed.
    pub const fn limit_exceeded(self) -> Self {
        Self {
            mask: self.mask | LIMIT_EXCEEDED,
        }
    }

    /// Whether `error` is one of the selected rejections.
    pub fn matches(&self, error: &BoxError) -> bool {
        let error = error.as_ref();
        (self.mask & BREAKER_OPEN != 0 && find_in_chain::<BreakerOpen>(error).is_some())
            || (self.mask & BULKHEAD_FULL != 0 && find_in_chain::<BulkheadFull>(error).is_some())
            || (self.mask & RATE_LIMITED != 0 && find_in_chain::<RateLimited>(error).is_some())
            || (self.mask & ELAPSED != 0 && find_in_chain::<Elapsed>(error).is_some())
            || (self.mask & LIMIT_EXCEEDED != 0 && find_in_chain::<LimitExceeded>(error).is_some())
    }
}

impl<Res> Trigger<Res> for OnRejection {
    type Error = BoxError;

    fn decide(&self, result: Result<Res, BoxError>) -> Decision<Res, BoxError> {
        match result {
            Err(error) if self.matches(&error) => Decision::Fallback(Failure::Error(error)),
            other => Decision::Pass(other),
        }
    }
}

impl fmt::Debug for OnRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (BREAKER_OPEN, "BreakerOpen"),
            (BULKHEAD_FULL, "BulkheadFull"),
            (RATE_LIMITED, "RateLimited"),
            (ELAPSED, "Elapsed"),
            (LIMIT_EXCEEDED, "LimitExceeded"),
        ];
        f.write_str("OnRejection")?;
        let mut set = f.debug_set();
        for (bit, name) in names {
            if self.mask & bit != 0 {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

impl<F, Res> Trigger<Res> for F
where
    F: Fn(Result<&Res, &BoxError>) -> bool,
{
    type Error = BoxError;

    fn decide(&self, result: Result<Res, BoxError>) -> Decision<Res, BoxError> {
        if self(result.as_ref()) {
            Decision::Fallback(match result {
                Ok(response) => Failure::Response(response),
                Err(error) => Failure::Error(error),
            })
        } else {
            Decision::Pass(result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug)]
    struct Wrapped(BoxError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    fn falls_back<T: Trigger<u16>>(trigger: &T, result: Result<u16, BoxError>) -> bool {
        matches!(trigger.decide(result), Decision::Fallback(_))
    }

    #[test]
    fn causes_are_found_deep_in_the_chain() {
        let wrapped: BoxError = Wrapped(Elapsed::new(Duration::from_secs(1)).into()).into();
        assert_eq!(Cause::of(&wrapped), Cause::Elapsed);
        let io: BoxError = std::io::Error::other("reset").into();
        assert_eq!(Cause::of(&io), Cause::Error);
        let open: BoxError = BreakerOpen::new("b", None).into();
        assert_eq!(Cause::of(&open), Cause::BreakerOpen);
        for (i, cause) in Cause::ALL.iter().enumerate() {
            assert_eq!(cause.index(), i);
        }
        assert_eq!(Cause::RateLimited.to_string(), "rate_limited");
    }

    #[test]
    fn on_failure_takes_every_error_and_classified_responses() {
        let any = OnFailure::new();
        assert!(falls_back(&any, Err("boom".into())));
        assert!(falls_back(&any, Err(BulkheadFull::new("b").into())));
        assert!(!falls_back(&any, Ok(503)));
        let classify = |result: Result<&u16, &BoxError>| match result {
            Ok(status) if *status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        let with = OnFailure::with_classifier(classify);
        assert!(falls_back(&with, Ok(503)));
        assert!(!falls_back(&with, Ok(404)));
    }

    #[test]
    fn on_rejection_takes_only_the_selected_ones() {
        let some = OnRejection::new().breaker_open().elapsed();
        assert!(falls_back(&some, Err(BreakerOpen::new("b", None).into())));
        assert!(falls_back(
            &some,
            Err(Wrapped(Elapsed::new(Duration::ZERO).into()).into())
        ));
        assert!(!falls_back(&some, Err(BulkheadFull::new("b").into())));
        assert!(!falls_back(&some, Err(RateLimited::new("r", None).into())));
        assert!(!falls_back(&some, Err("plain".into())));
        assert!(!falls_back(&some, Ok(500)));
        assert!(falls_back(
            &OnRejection::all(),
            Err(RateLimited::new("r", None).into())
        ));
        assert!(!falls_back(
            &OnRejection::new(),
            Err(BreakerOpen::new("b", None).into())
        ));
        assert_eq!(format!("{some:?}"), "OnRejection{BreakerOpen, Elapsed}");
        let shed: BoxError = Wrapped(LimitExceeded::new("l", None).into()).into();
        assert_eq!(Cause::of(&shed), Cause::LimitExceeded);
        assert!(!falls_back(
            &some,
            Err(Wrapped(LimitExceeded::new("l", None).into()).into())
        ));
        assert!(falls_back(&OnRejection::all(), Err(shed)));
        let shed_only = OnRejection::new().limit_exceeded();
        assert!(falls_back(
            &shed_only,
            Err(LimitExceeded::new("l", None).into())
        ));
        assert!(!falls_back(&shed_only, Err(BulkheadFull::new("b").into())));
        assert_eq!(format!("{shed_only:?}"), "OnRejection{LimitExceeded}");
    }

    #[test]
    fn closures_decide_and_keep_the_failure() {
        let odd = |result: Result<&u16, &BoxError>| matches!(result, Ok(n) if n % 2 == 1);
        match odd.decide(Ok(3)) {
            Decision::Fallback(failure) => {
                assert_eq!(failure.cause(), Cause::Response);
                assert_eq!(failure.response(), Some(&3));
                assert_eq!(failure.into_result().unwrap(), 3);
            }
            Decision::Pass(_) => panic!("3 is odd"),
        }
        match odd.decide(Err("x".into())) {
            Decision::Pass(Err(error)) => assert_eq!(error.to_string(), "x"),
            _ => panic!("errors pass"),
        }
    }
}
