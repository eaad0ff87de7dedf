//! The rate limiter's public errors.
//!
//! A rejection is [`RateLimited`], shared with the other Portcullis layers
//! through `portcullis-core`: it carries the limiter's name and the exact
//! `retry_after`, has the HTTP status hint 429, and is ignored by the
//! default classifiers of an outer breaker or retry (the request was never
//! sent). Bad configuration is a [`ConfigError`] naming the field.

pub use portcullis_core::{ConfigError, RateLimited};
