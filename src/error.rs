//! What an error out of a Portcullis stack means to the caller:
//! [`ErrorKind`]; and every error of a configuration at once:
//! [`ConfigErrors`].

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use portcullis_core::{BreakerOpen, BulkheadFull, ConfigError, Elapsed, RateLimited, Rejection};

/// What an error out of a stack means: which Portcullis layer turned the
/// call away, or that the callee failed.
///
/// [`ErrorKind::of`] finds it from the first Portcullis rejection in the
/// error's `source()` chain, the error itself included, as
/// [`find_rejection`](portcullis_core::find_rejection) does. So a rejection
/// wrapped in an error of your own, or the last error of a retry that gave
/// up (`RetriesExhausted`, whose `source()` is that error), is recognised.
/// Any other error is [`Upstream`](Self::Upstream).
///
/// ```
/// use std::time::Duration;
/// use portcullis::ErrorKind;
/// use portcullis::core::{BoxError, BreakerOpen, Elapsed};
///
/// let open: BoxError = BreakerOpen::new("payments", Some(Duration::from_secs(3))).into();
/// let kind = ErrorKind::of(open.as_ref());
/// assert_eq!(kind, ErrorKind::BreakerOpen { retry_after: Some(Duration::from_secs(3)) });
/// assert_eq!(kind.as_str(), "breaker-open");
///
/// let timeout: BoxError = Elapsed::new(Duration::from_secs(1)).into();
/// assert_eq!(ErrorKind::of(timeout.as_ref()), ErrorKind::Timeout);
///
/// let reset = std::io::Error::other("connection reset");
/// assert_eq!(ErrorKind::of(&reset), ErrorKind::Upstream);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A circuit breaker is open ([`BreakerOpen`]).
    BreakerOpen {
        /// When the breaker lets a probe through, if it will by itself.
        retry_after: Option<Duration>,
    },
    /// A bulkhead had no permit ([`BulkheadFull`]).
    BulkheadFull {
        /// When to try again, if the rejection says.
        retry_after: Option<Duration>,
    },
    /// A rate limit is exhausted ([`RateLimited`]).
    RateLimited {
        /// When the limiter has capacity for the call again, if known.
        retry_after: Option<Duration>,
    },
    /// The call took longer than its timeout ([`Elapsed`]).
    Timeout,
    /// The callee failed: any error that is no Portcullis rejection.
    Upstream,
}

impl ErrorKind {
    /// The kind of `error`, from the first Portcullis rejection in its
    /// `source()` chain; [`Upstream`](Self::Upstream) if there is none.
    pub fn of(error: &(dyn Error + 'static)) -> Self {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(kind) = Self::of_one(error) {
                return kind;
            }
            next = error.source();
        }
        Self::Upstream
    }

    fn of_one(error: &(dyn Error + 'static)) -> Option<Self> {
        if let Some(open) = error.downcast_ref::<BreakerOpen>() {
            return Some(Self::BreakerOpen {
                retry_after: Rejection::retry_after(open),
            });
        }
        if let Some(full) = error.downcast_ref::<BulkheadFull>() {
            return Some(Self::BulkheadFull {
                retry_after: Rejection::retry_after(full),
            });
        }
        if let Some(limited) = error.downcast_ref::<RateLimited>() {
            return Some(Self::RateLimited {
                retry_after: Rejection::retry_after(limited),
            });
        }
        error.downcast_ref::<Elapsed>().map(|_| Self::Timeout)
    }

    /// A short machine-readable name: `breaker-open`, `bulkhead-full`,
    /// `rate-limited`, `timeout` or `upstream`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::BreakerOpen { .. } => "breaker-open",
            Self::BulkheadFull { .. } => "bulkhead-full",
            Self::RateLimited { .. } => "rate-limited",
            Self::Timeout => "timeout",
            Self::Upstream => "upstream",
        }
    }

    /// When trying again may succeed, if the rejection says.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::BreakerOpen { retry_after }
            | Self::BulkheadFull { retry_after }
            | Self::RateLimited { retry_after } => *retry_after,
            Self::Timeout | Self::Upstream => None,
        }
    }

    /// Whether the call was turned away before it reached the callee (a
    /// breaker, bulkhead or rate limit rejection).
    pub const fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::BreakerOpen { .. } | Self::BulkheadFull { .. } | Self::RateLimited { .. }
        )
    }
}

/// Every error of a configuration, each naming its field by its full path
/// (`profiles.payments.breaker.failure_rate_threshold`), in the order they
/// were found.
///
/// A preset or a config file is checked whole before anything is built, so
/// that one round of fixes is enough; its `Display` is one error per line.
///
/// ```
/// use portcullis::error::ConfigErrors;
/// use portcullis::core::ConfigError;
///
/// let mut errors = ConfigErrors::new();
/// errors.push(ConfigError::new("routes.search.profile", "no profile named 'fast'"));
/// errors.push(ConfigError::new("profiles.slow.timeout.timeout", "must be in [1ms, 1d], got 0s"));
/// assert_eq!(errors.len(), 2);
/// assert_eq!(
///     errors.to_string(),
///     "routes.search.profile: no profile named 'fast'\n\
///      profiles.slow.timeout.timeout: must be in [1ms, 1d], got 0s"
/// );
/// ```
///
/// At most [`ConfigErrors::MAX_KEPT`] errors are kept; further distinct
/// errors are counted and reported as "and N more", so that a generated
/// file with a mistake repeated a hundred thousand times is checked in
/// linear time and prints a screenful. `Debug` prints the same lines as
/// `Display`, so `fn main() -> Result<(), ConfigErrors>` and `.unwrap()`
/// read well.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
    /// Digests of the distinct errors found past the first
    /// [`MAX_KEPT`](Self::MAX_KEPT).
    more: HashSet<u64>,
}

impl ConfigErrors {
    /// How many errors are kept whole; the rest are only counted.
    pub const MAX_KEPT: usize = 100;

    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `error`, unless the same error (field and message) is there.
    pub fn push(&mut self, error: ConfigError) {
        if self.errors.contains(&error) {
            return;
        }
        if self.errors.len() < Self::MAX_KEPT {
            self.errors.push(error);
        } else {
            // A fixed-key hasher: the same error always has the same digest.
            let mut hasher = std::hash::DefaultHasher::new();
            error.hash(&mut hasher);
            self.more.insert(hasher.finish());
        }
    }

    /// Adds every error of `other`.
    pub fn extend(&mut self, other: ConfigErrors) {
        for error in other.errors {
            self.push(error);
        }
    }

    /// Adds the error of `result`, if any, placed under `prefix` (no
    /// prefix when empty).
    pub fn check(&mut self, prefix: &str, result: Result<(), ConfigError>) {
        if let Err(error) = result {
            self.push(within(error, prefix));
        }
    }

    /// The errors kept, in the order they were found (the first
    /// [`MAX_KEPT`](Self::MAX_KEPT)).
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// The error about `field` (its full path), if there is one.
    pub fn find(&self, field: &str) -> Option<&ConfigError> {
        self.errors.iter().find(|error| error.field() == field)
    }

    /// How many distinct errors were found, kept or only counted.
    pub fn len(&self) -> usize {
        self.errors.len() + self.more.len()
    }

    /// How many distinct errors were found past the ones kept.
    pub fn omitted(&self) -> usize {
        self.more.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(value)` when there are no errors, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// `error` placed under `prefix` (as is when `prefix` is empty).
pub(crate) fn within(error: ConfigError, prefix: &str) -> ConfigError {
    if prefix.is_empty() {
        error
    } else {
        error.within(prefix)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
            more: HashSet::new(),
        }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return f.write_str("no configuration errors");
        }
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        match self.more.len() {
            0 => Ok(()),
            1 => f.write_str("\nand 1 more error"),
            more => write!(f, "\nand {more} more errors"),
        }
    }
}

/// The same lines as `Display`: a config error is read by a person, most
/// often from `unwrap` or a `main` that returns it.
impl fmt::Debug for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use std::fmt;

    use portcullis_core::BoxError;

    use super::*;

    /// An error of the application's that wraps another.
    #[derive(Debug)]
    struct Wrapped(BoxError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn a_flood_of_errors_is_capped_and_counted_once_each() {
        let mut errors = ConfigErrors::new();
        for round in 0..2 {
            for i in 0..100_000 {
                errors.push(ConfigError::new(
                    format!("routes.r{i}.profile"),
                    "no profile named 'x'",
                ));
            }
            assert_eq!(
                errors.len(),
                100_000,
                "round {round}: duplicates are not counted"
            );
        }
        assert_eq!(errors.errors().len(), ConfigErrors::MAX_KEPT);
        assert_eq!(errors.omitted(), 100_000 - ConfigErrors::MAX_KEPT);
        let text = errors.to_string();
        assert_eq!(text.lines().count(), ConfigErrors::MAX_KEPT + 1);
        assert!(text.starts_with("routes.r0.profile: no profile named 'x'\n"));
        assert!(
            text.ends_with("\nand 99900 more errors"),
            "{}",
            &text[text.len() - 60..]
        );
    }

    #[test]
    fn debug_reads_like_display() {
        let mut errors = ConfigErrors::new();
        assert_eq!(format!("{errors:?}"), "no configuration errors");
        errors.push(ConfigError::new(
            "routes.search.profile",
            "no profile named 'fast'",
        ));
        errors.push(ConfigError::new(
            "profiles.slow.timeout.timeout",
            "must be in [1ms, 1d], got 0s",
        ));
        assert_eq!(format!("{errors:?}"), errors.to_string());
        assert_eq!(format!("{errors:#?}"), errors.to_string());
        // What a user sees from `load(..).unwrap()` or `main` returning it.
        fn load(errors: ConfigErrors) -> Result<(), ConfigErrors> {
            Err(errors)
        }
        let unwrapped = std::panic::catch_unwind(|| load(errors.clone()).unwrap()).unwrap_err();
        let message = unwrapped.downcast_ref::<String>().unwrap();
        assert!(
            message.ends_with("routes.search.profile: no profile named 'fast'\nprofiles.slow.timeout.timeout: must be in [1ms, 1d], got 0s"),
            "{message}"
        );
    }

    #[test]
    fn each_rejection_has_its_kind() {
        let secs = |s| Some(Duration::from_secs(s));
        let cases: [(BoxError, ErrorKind); 5] = [
            (
                BreakerOpen::new("b", secs(2)).into(),
                ErrorKind::BreakerOpen {
                    retry_after: secs(2),
                },
            ),
            (
                BulkheadFull::new("b").into(),
                ErrorKind::BulkheadFull { retry_after: None },
            ),
            (
                RateLimited::new("r", secs(1)).into(),
                ErrorKind::RateLimited {
                    retry_after: secs(1),
                },
            ),
            (
                Elapsed::new(Duration::from_millis(1)).into(),
                ErrorKind::Timeout,
            ),
            (std::io::Error::other("x").into(), ErrorKind::Upstream),
        ];
        for (error, kind) in cases {
            assert_eq!(ErrorKind::of(error.as_ref()), kind, "{error}");
        }
    }

    #[test]
    fn a_rejection_is_found_deep_in_the_chain() {
        let deep = Wrapped(Wrapped(RateLimited::new("api", None).into()).into());
        assert_eq!(
            ErrorKind::of(&deep),
            ErrorKind::RateLimited { retry_after: None }
        );
        let outer = Wrapped(Elapsed::new(Duration::from_secs(1)).into());
        assert_eq!(ErrorKind::of(&outer), ErrorKind::Timeout);
    }

    #[test]
    fn names_and_never_sent() {
        let open = ErrorKind::BreakerOpen { retry_after: None };
        assert_eq!(open.as_str(), "breaker-open");
        assert!(open.never_sent());
        assert_eq!(
            ErrorKind::BulkheadFull { retry_after: None }.as_str(),
            "bulkhead-full"
        );
        assert_eq!(
            ErrorKind::RateLimited { retry_after: None }.as_str(),
            "rate-limited"
        );
        assert_eq!(ErrorKind::Timeout.as_str(), "timeout");
        assert!(!ErrorKind::Timeout.never_sent());
        assert_eq!(ErrorKind::Upstream.as_str(), "upstream");
        assert!(!ErrorKind::Upstream.never_sent());
    }
}
