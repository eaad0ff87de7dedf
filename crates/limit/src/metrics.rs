//! The limiter's reports to the `metrics` crate (feature `metrics`): the
//! gauge `portcullis_limit_limit` when the limit changes and the counter
//! `portcullis_limit_shed_total` for each shed call, both labelled with the
//! limiter's `name`. Without the feature these do nothing.
//!
//! Each handle is registered once, when it is first needed (so with the
//! recorder installed by then), and kept: a shed call reports with one
//! increment, without formatting or allocating a label.

#[cfg(feature = "metrics")]
mod enabled {
    use std::sync::{Arc, OnceLock};

    /// The handles of one limiter, registered on first use.
    #[derive(Default)]
    pub(crate) struct Reporter {
        limit: OnceLock<metrics::Gauge>,
        shed: OnceLock<metrics::Counter>,
    }

    impl Reporter {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        pub(crate) fn limit_changed(&self, name: &Arc<str>, limit: u64) {
            // The limit is at most a million: exact in an f64.
            #[allow(clippy::cast_precision_loss)]
            let value = limit as f64;
            self.limit
                .get_or_init(
                    || metrics::gauge!("portcullis_limit_limit", "name" => name.to_string()),
                )
                .set(value);
        }

        pub(crate) fn shed(&self, name: &Arc<str>) {
            self.shed
                .get_or_init(
                    || metrics::counter!("portcullis_limit_shed_total", "name" => name.to_string()),
                )
                .increment(1);
        }
    }
}

#[cfg(feature = "metrics")]
pub(crate) use enabled::Reporter;

/// Nothing to report without the `metrics` feature.
#[cfg(not(feature = "metrics"))]
pub(crate) struct Reporter;

#[cfg(not(feature = "metrics"))]
impl Reporter {
    #[inline]
    pub(crate) const fn new() -> Self {
        Self
    }

    #[inline]
    pub(crate) fn limit_changed(&self, _: &std::sync::Arc<str>, _: u64) {}

    #[inline]
    pub(crate) fn shed(&self, _: &std::sync::Arc<str>) {}
}
