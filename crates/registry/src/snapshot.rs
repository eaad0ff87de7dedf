//! Snapshots of everything in a registry, as plain serde data.

use portcullis_breaker::BreakerSnapshot;
use portcullis_bulkhead::BulkheadSnapshot;
use portcullis_limit::LimitSnapshot;
use portcullis_ratelimit::RateLimiterSnapshot;
use portcullis_retry::BudgetSnapshot;
use serde::Serialize;

use crate::RouteSnapshot;

/// An instance's figures with its key (`None` for a plain instance).
///
/// Serialized flat: the figures' fields with a `key` field beside them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Keyed<S> {
    /// The key of a keyed instance.
    pub key: Option<String>,
    /// Its figures (including its name).
    #[serde(flatten)]
    pub snapshot: S,
}

/// Every instance of a registry at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// Every circuit breaker, sorted by name then key.
    pub breakers: Vec<Keyed<BreakerSnapshot>>,
    /// Every bulkhead, sorted by name then key.
    pub bulkheads: Vec<Keyed<BulkheadSnapshot>>,
    /// Every rate limiter, sorted by name then key.
    pub rate_limiters: Vec<Keyed<RateLimiterSnapshot>>,
    /// Every adaptive concurrency limiter, sorted by name then key.
    pub limiters: Vec<Keyed<LimitSnapshot>>,
    /// Every retry budget, sorted by name then key.
    pub budgets: Vec<Keyed<BudgetSnapshot>>,
    /// Every route's statistics, sorted by name then key.
    pub routes: Vec<Keyed<RouteSnapshot>>,
}

impl<S> Keyed<S> {
    pub(crate) fn new(key: Option<String>, snapshot: S) -> Self {
        Self { key, snapshot }
    }
}
