//! Portcullis placeholder
pub use portcullis_core as core;
