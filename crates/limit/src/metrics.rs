//! The limiter's reports to the `metrics` crate (feature `metrics`): the
//! gauge `portcullis_limit_limit` when the limit changes and the counter
//! `portcullis_limit_shed_total` for each shed call, both labelled with the
//! limiter's `name`. Without the feature these do nothing.

#[cfg(feature = "metrics")]
pub(crate) fn limit_changed(name: &str, limit: u64) {
    // The limit is at most a million: exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let value = limit as f64;
    metrics::gauge!("portcullis_limit_limit", "name" => name.to_owned()).set(value);
}

#[cfg(feature = "metrics")]
pub(crate) fn shed(name: &str) {
    metrics::counter!("portcullis_limit_shed_total", "name" => name.to_owned()).increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline]
pub(crate) fn limit_changed(_: &str, _: u64) {}

#[cfg(not(feature = "metrics"))]
#[inline]
pub(crate) fn shed(_: &str) {}
