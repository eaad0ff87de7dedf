//! The timeout's public error.

pub use portcullis_core::Elapsed;
