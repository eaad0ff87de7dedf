//! The retry's public errors, and the rejections of the other Portcullis
//! layers that it never retries.

use std::error::Error;
use std::fmt;

pub use portcullis_core::{
    BoxError, BreakerOpen, BulkheadFull, Elapsed, RateLimited, Rejection, find_in_chain,
    find_rejection,
};

use crate::GiveUpReason;

/// The retry gave up on a retryable error: returned instead of the last
/// error when [`fail_after_max_attempts`](crate::RetryConfig::fail_after_max_attempts)
/// is set. Its `source()` is the last error.
///
/// ```
/// use portcullis_retry::{GiveUpReason, RetriesExhausted};
///
/// let error = RetriesExhausted::new(std::io::Error::other("reset").into(), 3, GiveUpReason::MaxAttempts);
/// assert_eq!(error.to_string(), "retries exhausted after 3 attempts (max attempts reached)");
/// assert_eq!(error.attempts(), 3);
/// assert!(std::error::Error::source(&error).unwrap().is::<std::io::Error>());
/// ```
#[derive(Debug)]
pub struct RetriesExhausted {
    last: BoxError,
    attempts: u32,
    reason: GiveUpReason,
}

impl RetriesExhausted {
    /// The retry gave up for `reason` after `attempts` attempts, the last
    /// of which failed with `last`.
    pub fn new(last: BoxError, attempts: u32, reason: GiveUpReason) -> Self {
        Self {
            last,
            attempts,
            reason,
        }
    }

    /// How many attempts were made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why no further attempt was made.
    pub fn reason(&self) -> GiveUpReason {
        self.reason
    }

    /// The error of the last attempt.
    pub fn last_error(&self) -> &BoxError {
        &self.last
    }

    /// The error of the last attempt, unwrapped.
    pub fn into_last_error(self) -> BoxError {
        self.last
    }
}

impl fmt::Display for RetriesExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retries exhausted after {} attempts ({})",
            self.attempts, self.reason
        )
    }
}

impl Error for RetriesExhausted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.last.as_ref())
    }
}

/// A later attempt's request body could not be sent: the body outgrew the
/// replay limit (or failed) while an earlier attempt was still reading it.
#[cfg(feature = "http")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyNotReplayable {
    _private: (),
}

#[cfg(feature = "http")]
impl BodyNotReplayable {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

#[cfg(feature = "http")]
impl fmt::Display for BodyNotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body cannot be replayed")
    }
}

#[cfg(feature = "http")]
impl Error for BodyNotReplayable {}
