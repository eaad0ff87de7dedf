//! Atomics and `Arc`, from `std` normally and from `loom` under `cfg(loom)`.
//!
//! Every Portcullis crate whose hot path is an atomic protocol (breaker state,
//! half-open permits, bulkhead and rate-limiter counters) imports its atomics
//! from here, so that its loom models check the very code that runs in
//! production. Run them with `RUSTFLAGS="--cfg loom" cargo test --release`.

#[cfg(loom)]
pub use loom::sync::Arc;
#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub use std::sync::Arc;
#[cfg(not(loom))]
pub use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
