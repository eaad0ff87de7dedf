//! The registry's public errors.

use std::fmt;

pub use portcullis_core::ConfigError;

use crate::kind::InstanceKind;

/// A keyed instance could not be created by a registry built with
/// [`AtKeyLimit::Reject`](crate::AtKeyLimit::Reject): its name already has
/// as many keys as the registry allows, and none of them could be evicted
/// (every one recently used or holding state: for breakers, not closed or
/// with failures in the window).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLimitReached {
    kind: InstanceKind,
    name: String,
    limit: usize,
}

/// An instance with that kind, name and key is already registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlreadyRegistered {
    kind: InstanceKind,
    name: String,
    key: Option<String>,
}

impl KeyLimitReached {
    pub(crate) fn new(kind: InstanceKind, name: &str, limit: usize) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            limit,
        }
    }

    /// The kind of instance.
    pub fn kind(&self) -> InstanceKind {
        self.kind
    }

    /// The name whose keys are all taken.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of keys allowed per name.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for KeyLimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} '{}' already has {} keys, none of which can be evicted",
            self.kind, self.name, self.limit
        )
    }
}

impl std::error::Error for KeyLimitReached {}

impl AlreadyRegistered {
    pub(crate) fn new(kind: InstanceKind, name: &str, key: Option<&str>) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            key: key.map(str::to_owned),
        }
    }

    /// The kind of instance.
    pub fn kind(&self) -> InstanceKind {
        self.kind
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its key, if keyed.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for AlreadyRegistered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(
                f,
                "{} '{}' with key '{key}' is already registered",
                self.kind, self.name
            ),
            None => write!(f, "{} '{}' is already registered", self.kind, self.name),
        }
    }
}

impl std::error::Error for AlreadyRegistered {}
