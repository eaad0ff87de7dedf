//! Helpers shared by the breaker's integration tests.

use portcullis_breaker::{Breaker, BreakerConfigBuilder};
use portcullis_core::Outcome;

/// A breaker named `test` from `config`, which must be valid.
pub(crate) fn breaker(config: BreakerConfigBuilder) -> Breaker {
    Breaker::from_config("test", config.build().expect("valid config")).expect("valid config")
}

/// Records `outcome` `times` times, each through an admitted permit.
pub(crate) fn record(breaker: &Breaker, outcome: Outcome, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").record(outcome);
    }
}
