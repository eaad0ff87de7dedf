//! How many fallbacks were taken, by cause.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Cause;

/// Counts the fallbacks taken, by [`Cause`]: a cheap, cloneable handle.
///
/// A [`FallbackLayer`](crate::FallbackLayer) makes one, shared by every
/// service it makes; [`FallbackLayer::counters`](crate::FallbackLayer::counters)
/// hands it out. Each fallback is also a `tracing` event at `DEBUG`.
///
/// ```
/// use portcullis_fallback::{Cause, FallbackCounters};
///
/// let counters = FallbackCounters::new();
/// assert_eq!(counters.get(Cause::BreakerOpen), 0);
/// assert_eq!(counters.total(), 0);
/// ```
#[derive(Clone, Default)]
pub struct FallbackCounters {
    counts: Arc<[AtomicU64; Cause::ALL.len()]>,
}

impl FallbackCounters {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fallbacks taken for `cause`.
    pub fn get(&self, cause: Cause) -> u64 {
        self.counts[cause.index()].load(Ordering::Relaxed)
    }

    /// Fallbacks taken, all causes.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Every cause with its count.
    pub fn snapshot(&self) -> [(Cause, u64); Cause::ALL.len()] {
        Cause::ALL.map(|cause| (cause, self.get(cause)))
    }

    pub(crate) fn record(&self, cause: Cause) {
        self.counts[cause.index()].fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for FallbackCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (cause, count) in self.snapshot() {
            map.entry(&cause.as_str(), &count);
        }
        map.finish()
    }
}
