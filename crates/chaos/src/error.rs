//! The injected error.

use std::fmt;

/// The error a [`ChaosService`](crate::ChaosService) injects by default.
///
/// It is deliberately *not* a Portcullis rejection: classifiers see it as
/// an ordinary failure of the callee, as they would a real one.
///
/// ```
/// use portcullis_chaos::ChaosError;
///
/// assert_eq!(ChaosError::new().to_string(), "injected fault");
/// assert!(ChaosError::outage().is_outage());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChaosError {
    outage: bool,
}

impl ChaosError {
    /// An injected fault.
    pub const fn new() -> Self {
        Self { outage: false }
    }

    /// A fault injected because an outage window was open.
    pub const fn outage() -> Self {
        Self { outage: true }
    }

    /// Whether the fault came from an outage window rather than a rate.
    pub const fn is_outage(&self) -> bool {
        self.outage
    }
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected fault")
    }
}

impl std::error::Error for ChaosError {}
