//! Configuration errors shared by every Portcullis layer.

use std::borrow::Cow;
use std::fmt;

/// A configuration value that is out of range or inconsistent.
///
/// The error names the field (as a dotted path, e.g.
/// `profiles.payments.breaker.failure_rate_threshold`) and says what is
/// allowed, so a user can fix a config file without reading the source:
///
/// ```
/// use portcullis_core::ConfigError;
///
/// let error = ConfigError::new("failure_rate_threshold", "must be in (0, 100], got 150");
/// let error = error.within("breaker").within("profiles.payments");
/// assert_eq!(error.field(), "profiles.payments.breaker.failure_rate_threshold");
/// assert_eq!(
///     error.to_string(),
///     "profiles.payments.breaker.failure_rate_threshold: must be in (0, 100], got 150"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    message: String,
}

impl ConfigError {
    /// An error about `field` with a message that says what is allowed.
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the field that is wrong.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it and what is allowed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, with its field placed under `prefix`.
    #[must_use]
    pub fn within(self, prefix: &str) -> Self {
        Self {
            field: Cow::Owned(format!("{prefix}.{}", self.field)),
            message: self.message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}
