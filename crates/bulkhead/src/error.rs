//! The bulkhead's public error.
//!
//! A bulkhead rejects with [`BulkheadFull`], defined in `portcullis-core`
//! so that every Portcullis layer recognises it: an outer circuit breaker
//! ignores it, a retry does not retry it, and an HTTP adapter answers `503`.

pub use portcullis_core::BulkheadFull;
