use std::error::Error;
use std::fmt;

/// A request that a [`PerAuthorityLayer`](crate::client::PerAuthorityLayer)
/// cannot key: its URI has no authority (it is relative, like `/users`).
/// The inner service was not called.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoAuthority {
    _private: (),
}

impl NoAuthority {
    pub(crate) const fn new() -> Self {
        Self { _private: () }
    }
}

impl fmt::Display for NoAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request uri has no authority to key a breaker by")
    }
}

impl Error for NoAuthority {}
