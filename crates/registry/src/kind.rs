//! What the registry needs from each kind of instance it keeps.
//!
//! Each kind (circuit breaker, bulkhead, rate limiter, retry budget)
//! implements [`Kind`] once; the generic
//! [`Store`](crate::store::Store) does the rest: named configs with
//! inheritance, get-or-create, keys, live updates, snapshots and the hooks
//! that push an instance's events to the hub.

use std::fmt;
use std::sync::Arc;

use portcullis_core::ConfigError;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::hub::Hub;

/// The kinds of instance a registry keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum InstanceKind {
    /// A circuit breaker (`portcullis_breaker::Breaker`).
    Breaker,
    /// A bulkhead (`portcullis_bulkhead::Bulkhead`).
    Bulkhead,
    /// A rate limiter (`portcullis_ratelimit::RateLimiter`).
    RateLimiter,
    /// A retry budget (`portcullis_retry::RetryBudget`).
    Budget,
}

/// Which instance an event or a figure belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) kind: InstanceKind,
    pub(crate) name: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
}

/// What keeps an instance's hook attached: dropping it detaches the hook.
pub(crate) type Attachment = Box<dyn Send + Sync>;

/// One kind of instance, as the registry sees it.
pub(crate) trait Kind: Clone + Send + Sync + 'static {
    /// Its configuration: serde data whose every field has a default, so
    /// that a partial set of fields can be laid over the default config.
    type Config: Clone
        + Default
        + PartialEq
        + fmt::Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// Its figures at one moment.
    type Snapshot: Clone + fmt::Debug + Serialize;

    /// Which kind this is.
    const KIND: InstanceKind;

    /// Checks a configuration; the error names the field.
    fn validate(config: &Self::Config) -> Result<(), ConfigError>;

    /// A new instance from a configuration that passed [`Self::validate`].
    fn build(name: &str, config: Self::Config) -> Self;

    /// The instance's own name.
    fn name(&self) -> &str;

    /// Whether [`Self::reconfigure`] would take `config`, without changing
    /// anything (so that an update of many instances is all or nothing).
    fn check_update(&self, config: &Self::Config) -> Result<(), ConfigError>;

    /// Applies `config` to the live instance, keeping its state.
    fn reconfigure(&self, config: Self::Config) -> Result<(), ConfigError>;

    /// The instance's figures now.
    fn snapshot(&self) -> Self::Snapshot;

    /// Whether a keyed instance may be evicted to make room for a new key:
    /// it holds no state worth keeping.
    fn evictable(&self) -> bool;

    /// Attaches a hook that pushes the instance's events, if it has any,
    /// to `hub` as `source`, until the returned attachment is dropped.
    fn attach(&self, source: Source, hub: Hub) -> Option<Attachment>;
}

impl InstanceKind {
    /// The kind as written in snapshots and events: `"breaker"`,
    /// `"bulkhead"`, `"ratelimiter"`, `"budget"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Breaker => "breaker",
            Self::Bulkhead => "bulkhead",
            Self::RateLimiter => "ratelimiter",
            Self::Budget => "budget",
        }
    }

    /// The section of a config file, and of the HTTP paths, that holds this
    /// kind: `"breakers"`, `"bulkheads"`, `"ratelimiters"`, `"budgets"`.
    pub fn section(self) -> &'static str {
        match self {
            Self::Breaker => "breakers",
            Self::Bulkhead => "bulkheads",
            Self::RateLimiter => "ratelimiters",
            Self::Budget => "budgets",
        }
    }
}

impl fmt::Display for InstanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Breaker => "circuit breaker",
            Self::Bulkhead => "bulkhead",
            Self::RateLimiter => "rate limiter",
            Self::Budget => "retry budget",
        })
    }
}

impl Serialize for InstanceKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Source {
    pub(crate) fn new(kind: InstanceKind, name: Arc<str>, key: Option<Arc<str>>) -> Self {
        Self { kind, name, key }
    }
}
