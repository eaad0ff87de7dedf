//! The breaker's public errors.

use std::fmt;
use std::sync::Arc;

pub use portcullis_core::BreakerOpen;

use crate::State;

/// A manual transition that the breaker's current state does not allow,
/// such as [`Breaker::open_for`](crate::Breaker::open_for) on a disabled
/// breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    name: Arc<str>,
    from: State,
    to: State,
}

impl IllegalTransition {
    pub(crate) fn new(name: Arc<str>, from: State, to: State) -> Self {
        Self { name, from, to }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state it is in.
    pub fn from(&self) -> State {
        self.from
    }

    /// The state that was asked for.
    pub fn to(&self) -> State {
        self.to
    }
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker '{}' cannot go from {:?} to {:?}",
            self.name, self.from, self.to
        )?;
        match self.from {
            State::Disabled | State::ForcedOpen | State::MetricsOnly => {
                f.write_str(": it is under manual control; close or reset it first")
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for IllegalTransition {}
