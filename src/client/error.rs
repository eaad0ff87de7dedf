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

/// A request an [`HttpClient`](crate::client::HttpClient) cannot make: its
/// URL is not an absolute `http` or `https` URL, or a header name or value
/// is not valid. Found before anything is sent; the breaker does not count
/// it.
#[cfg(feature = "reqwest")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRequest {
    reason: String,
}

#[cfg(feature = "reqwest")]
impl InvalidRequest {
    pub(crate) fn new(reason: String) -> Self {
        Self { reason }
    }

    /// What is wrong with it: `url "x": relative URL without a base`,
    /// `header name: invalid HTTP header name`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(feature = "reqwest")]
impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: {}", self.reason)
    }
}

#[cfg(feature = "reqwest")]
impl Error for InvalidRequest {}
