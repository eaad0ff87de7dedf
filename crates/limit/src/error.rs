//! The limiter's public error.
//!
//! A limiter sheds with [`LimitExceeded`], defined in `portcullis-core` so
//! that every Portcullis layer recognises it: an outer circuit breaker
//! ignores it, a retry does not retry it, and an HTTP adapter answers `503`
//! with a `Retry-After` (the limiter's last mean latency, rounded up to a
//! second).

pub use portcullis_core::LimitExceeded;
