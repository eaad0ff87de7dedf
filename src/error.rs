//! What an error out of a Portcullis stack means to the caller:
//! [`ErrorKind`] (from `portcullis-core`, where the one rejection table
//! lives); and every error of a configuration at once: [`ConfigErrors`].

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::hash::{Hash, Hasher};

use portcullis_core::ConfigError;
pub use portcullis_core::ErrorKind;

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
    use super::*;

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
}
