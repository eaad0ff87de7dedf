//! Helpers shared by the benchmarks in `benches/`: drive a `tower` service
//! through one call without an executor, so that a benchmark measures the
//! layer and not a runtime. (The full stacks that `benches/stack.rs` and
//! `tests/stack_alloc.rs` share are in `stacks.rs`, included by both, so
//! that the peers stay dev-dependencies.)

pub use portcullis_testing::{PendingOnce, call, call_ready};
