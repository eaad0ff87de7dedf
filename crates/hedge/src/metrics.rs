//! The counters of a hedge layer.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The counters of a hedge layer, as plain data.
///
/// `hedges / calls` is the extra load the hedge adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HedgeMetrics {
    /// Calls made through the layer.
    pub calls: u64,
    /// Extra attempts sent.
    pub hedges: u64,
    /// Calls whose answer came from an extra attempt.
    pub hedges_won: u64,
    /// Extra attempts not sent because the budget had none left.
    pub budget_denied: u64,
    /// Attempts still in flight that were dropped (cancelled) because
    /// another one answered first.
    pub cancelled: u64,
}

/// The counters behind [`HedgeMetrics`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) hedges_won: AtomicU64,
    pub(crate) budget_denied: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> HedgeMetrics {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HedgeMetrics {
            calls: read(&self.calls),
            hedges: read(&self.hedges),
            hedges_won: read(&self.hedges_won),
            budget_denied: read(&self.budget_denied),
            cancelled: read(&self.cancelled),
        }
    }

    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
