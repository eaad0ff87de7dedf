//! Errors: [`BoxError`], the rejection types of the Portcullis layers, and
//! helpers to find them in an error's `source()` chain.
//!
//! Each failure mode is a small struct with a short lowercase `Display` and
//! getters for what a caller needs. Layers that create errors return
//! `BoxError`; callers identify a rejection by downcasting
//! (`error.is::<BreakerOpen>()`) or, when it may be wrapped, with
//! [`find_in_chain`].

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::ErrorKind;

/// The boxed error that Portcullis layers return, as in `tower`.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// What every Portcullis rejection tells an HTTP or gRPC adapter.
///
/// ```
/// use portcullis_core::{BoxError, BreakerOpen, find_rejection};
/// use std::time::Duration;
///
/// let error: BoxError = BreakerOpen::new("payments", Some(Duration::from_secs(5))).into();
/// let rejection = find_rejection(error.as_ref()).expect("a rejection");
/// assert_eq!(rejection.status_hint(), 503);
/// assert_eq!(rejection.retry_after(), Some(Duration::from_secs(5)));
/// assert!(rejection.never_sent());
/// ```
pub trait Rejection: Error + Send + Sync + 'static {
    /// Its row in the one rejection table ([`ErrorKind`]), with its wait.
    fn kind(&self) -> ErrorKind;

    /// The HTTP status that best describes this rejection (503, 429, 504):
    /// its kind's ([`ErrorKind::status_code`]).
    fn status_hint(&self) -> u16 {
        self.kind().status_code()
    }

    /// When trying again may succeed, if known.
    fn retry_after(&self) -> Option<Duration> {
        self.kind().retry_after()
    }

    /// Whether the request was turned away before it reached the callee. Such
    /// a rejection says nothing about the callee's health, so the default
    /// classifiers ignore it and retries do not retry it.
    fn never_sent(&self) -> bool {
        self.kind().never_sent()
    }
}

/// A circuit breaker is open (or forced open) and rejected the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerOpen {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

/// A bulkhead had no free permit (and no room or time to wait for one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadFull {
    name: Arc<str>,
}

/// An adaptive concurrency limit was reached and the call was shed (no
/// room under the limit, and no room or time to wait for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

/// A rate limiter had no capacity left for the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

/// A call did not complete within its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    after: Duration,
}

/// Finds an error of type `T` in `error` or anywhere in its `source()` chain.
///
/// ```
/// use portcullis_core::{BoxError, Elapsed, find_in_chain};
/// use std::time::Duration;
///
/// let error: BoxError = Elapsed::new(Duration::from_millis(250)).into();
/// let elapsed = find_in_chain::<Elapsed>(error.as_ref()).unwrap();
/// assert_eq!(elapsed.after(), Duration::from_millis(250));
/// assert!(find_in_chain::<std::io::Error>(error.as_ref()).is_none());
/// ```
pub fn find_in_chain<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        next = error.source();
    }
    None
}

/// Finds the first Portcullis rejection in `error` or its `source()` chain.
pub fn find_rejection<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a dyn Rejection> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = as_rejection(error) {
            return Some(found);
        }
        next = error.source();
    }
    None
}

fn as_rejection<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a dyn Rejection> {
    if let Some(e) = error.downcast_ref::<BreakerOpen>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<BulkheadFull>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<RateLimited>() {
        return Some(e);
    }
    if let Some(e) = error.downcast_ref::<LimitExceeded>() {
        return Some(e);
    }
    error.downcast_ref::<Elapsed>().map(|e| e as &dyn Rejection)
}

impl BreakerOpen {
    /// The rejection of breaker `name`, which may be tried again after
    /// `retry_after` (`None` when the breaker is forced open).
    pub fn new(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            retry_after,
        }
    }

    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the breaker lets a probe through, if it will by itself.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker '{}' is open", self.name)
    }
}

impl Error for BreakerOpen {}

impl Rejection for BreakerOpen {
    fn kind(&self) -> ErrorKind {
        ErrorKind::BreakerOpen {
            retry_after: self.retry_after,
        }
    }
}

impl BulkheadFull {
    /// The rejection of bulkhead `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The name of the bulkhead that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bulkhead '{}' is full", self.name)
    }
}

impl Error for BulkheadFull {}

impl Rejection for BulkheadFull {
    fn kind(&self) -> ErrorKind {
        ErrorKind::BulkheadFull { retry_after: None }
    }
}

impl LimitExceeded {
    /// The rejection of concurrency limit `name`, which suggests trying
    /// again after `retry_after`.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            retry_after,
        }
    }

    /// The name of the limit that shed the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When trying again may find room under the limit: the limiter's
    /// estimate, about one call's latency.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "concurrency limit '{}' exceeded", self.name)
    }
}

impl Error for LimitExceeded {}

impl Rejection for LimitExceeded {
    fn kind(&self) -> ErrorKind {
        ErrorKind::LimitExceeded {
            retry_after: self.retry_after,
        }
    }
}

impl RateLimited {
    /// The rejection of rate limiter `name`; capacity returns after
    /// `retry_after`.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            retry_after,
        }
    }

    /// The name of the rate limiter that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the limiter has capacity for this call again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit '{}' exceeded", self.name)
    }
}

impl Error for RateLimited {}

impl Rejection for RateLimited {
    fn kind(&self) -> ErrorKind {
        ErrorKind::RateLimited {
            retry_after: self.retry_after,
        }
    }
}

impl Elapsed {
    /// A timeout that fired after `after`.
    pub const fn new(after: Duration) -> Self {
        Self { after }
    }

    /// The configured timeout that elapsed.
    pub const fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request timed out after {:?}", self.after)
    }
}

impl Error for Elapsed {}

impl Rejection for Elapsed {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An error of the application's that wraps another.
    #[derive(Debug)]
    pub(crate) struct Outer(pub(crate) BoxError);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn finds_a_type_deep_in_the_chain() {
        let inner: BoxError = RateLimited::new("api", Some(Duration::from_secs(2))).into();
        let error = Outer(Outer(inner).into());
        let found = find_in_chain::<RateLimited>(&error).expect("found");
        assert_eq!(found.name(), "api");
        assert_eq!(find_rejection(&error).unwrap().status_hint(), 429);
        assert!(find_in_chain::<BreakerOpen>(&error).is_none());
    }

    #[test]
    fn a_plain_error_is_no_rejection() {
        let error = std::io::Error::other("nope");
        assert!(find_rejection(&error).is_none());
    }

    #[test]
    fn displays_are_short_and_name_the_instance() {
        assert_eq!(
            BreakerOpen::new("db", None).to_string(),
            "circuit breaker 'db' is open"
        );
        assert_eq!(BulkheadFull::new("db").to_string(), "bulkhead 'db' is full");
        assert_eq!(
            LimitExceeded::new("db", None).to_string(),
            "concurrency limit 'db' exceeded"
        );
        assert_eq!(
            RateLimited::new("db", None).to_string(),
            "rate limit 'db' exceeded"
        );
        assert_eq!(
            Elapsed::new(Duration::from_millis(5)).to_string(),
            "request timed out after 5ms"
        );
    }

    #[test]
    fn status_hints() {
        assert_eq!(BulkheadFull::new("x").status_hint(), 503);
        let shed = LimitExceeded::new("x", Some(Duration::from_millis(20)));
        assert_eq!(shed.status_hint(), 503);
        assert_eq!(
            Rejection::retry_after(&shed),
            Some(Duration::from_millis(20))
        );
        assert!(shed.never_sent());
        assert_eq!(Elapsed::new(Duration::ZERO).status_hint(), 504);
        assert!(!Elapsed::new(Duration::ZERO).never_sent());
    }
}
