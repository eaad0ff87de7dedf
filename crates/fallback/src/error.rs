//! The errors a fallback answers for, re-exported from `portcullis-core`.
//!
//! A fallback creates no error of its own: it passes through the errors it
//! does not answer for (and, for secondary services and the stale cache,
//! the last failure when nothing could answer).

pub use portcullis_core::{
    BoxError, BreakerOpen, BulkheadFull, Elapsed, LimitExceeded, RateLimited,
};
