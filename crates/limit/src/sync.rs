//! The mutex of the slow paths (closing a window, the queue), from `std`
//! normally and from `loom` under `cfg(loom)`.

#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
