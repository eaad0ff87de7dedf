//! Helpers shared by the benchmarks in `benches/`: drive a `tower` service
//! through one call without an executor, so that a benchmark measures the
//! layer and not a runtime.

pub use portcullis_testing::{PendingOnce, call, call_ready};
