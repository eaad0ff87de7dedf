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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

/// Checks that `value` is in `[min, max]`; the error names `field` and the
/// range the way every Portcullis config does (`must be in [1, 100], got 0`).
///
/// ```
/// use portcullis_core::config::check_range;
///
/// assert!(check_range("max_attempts", 3, 1, 100).is_ok());
/// let error = check_range("max_attempts", 0, 1, 100).unwrap_err();
/// assert_eq!(error.to_string(), "max_attempts: must be in [1, 100], got 0");
/// ```
pub fn check_range<T>(field: &'static str, value: T, min: T, max: T) -> Result<(), ConfigError>
where
    T: PartialOrd + fmt::Display,
{
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in [{min}, {max}], got {value}"),
        ))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}
