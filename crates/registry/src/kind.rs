//! What the registry needs from each kind of instance it keeps.
//!
//! Each kind (circuit breaker, bulkhead, rate limiter, concurrency
//! limiter, retry budget, route statistics) implements [`Instance`] once, in a file of its own, and has
//! one line in the `kinds!` list below; the generic store does the rest:
//! named configs with inheritance, get-or-create, keys, live updates,
//! snapshots, metric families, the HTTP routes and the hooks that push an
//! instance's events to the hub.

use std::fmt;
use std::sync::Arc;

use portcullis_core::ConfigError;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::figures::Family;
use crate::hub::Hub;
use crate::store::{AnyStore, Store};

/// The one list of the kinds a registry keeps: each line names the
/// kind's [`InstanceKind`] variant, its type, the field of its store, its
/// name in snapshots and events, its section in config files and HTTP
/// paths, and its name in prose. The enum, the seal, the stores and their
/// construction are made from it, so adding a kind is its [`Instance`]
/// impl (in a file of its own) and one line here.
macro_rules! kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ty) in $field:ident, $name:literal, $section:literal, $display:literal;
    )*) => {
        mod sealed {
            use crate::store::{Store, Stores};

            /// Sealed, and the way from the registry's stores to a kind's.
            pub trait Sealed {
                /// The store of this kind among the registry's.
                fn store(stores: &Stores) -> &Store<Self>
                where
                    Self: super::Instance;
            }
            $(
                impl Sealed for $ty {
                    fn store(stores: &Stores) -> &Store<Self> {
                        &stores.$field
                    }
                }
            )*
        }

        /// The kinds of instance a registry keeps.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum InstanceKind {
            $($(#[$doc])* $variant,)*
        }

        impl InstanceKind {
            #[doc = concat!("The kind as written in snapshots and events: ", $("`\"", $name, "\"` "),*, ".")]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            #[doc = concat!("The section of a config file, and of the HTTP paths, that holds this kind: ", $("`\"", $section, "\"` "),*, ".")]
            pub fn section(self) -> &'static str {
                match self {
                    $(Self::$variant => $section,)*
                }
            }

            fn display(self) -> &'static str {
                match self {
                    $(Self::$variant => $display,)*
                }
            }
        }

        /// The store of each kind.
        #[derive(Debug)]
        #[allow(unreachable_pub)] // named by the sealed `Instance` trait
        pub struct Stores {
            $(pub(crate) $field: Store<$ty>,)*
        }

        impl Stores {
            /// Every kind's store: the one list of kinds that the
            /// kind-blind parts of the registry (its HTTP routes, its
            /// counts, its metrics) go through.
            pub(crate) fn all(&self) -> [&dyn AnyStore; [$(stringify!($field)),*].len()] {
                [$(&self.$field),*]
            }

            /// Every kind's store, made by `make` from its configs.
            pub(crate) fn build(
                builder: &mut crate::registry::RegistryBuilder,
            ) -> Result<Self, ConfigError> {
                Ok(Self {
                    $($field: builder.store::<$ty>()?,)*
                })
            }
        }
    };
}

kinds! {
    /// A circuit breaker (`portcullis_breaker::Breaker`).
    Breaker(portcullis_breaker::Breaker) in breakers, "breaker", "breakers", "circuit breaker";
    /// A bulkhead (`portcullis_bulkhead::Bulkhead`).
    Bulkhead(portcullis_bulkhead::Bulkhead) in bulkheads, "bulkhead", "bulkheads", "bulkhead";
    /// A rate limiter (`portcullis_ratelimit::RateLimiter`).
    RateLimiter(portcullis_ratelimit::RateLimiter) in rate_limiters, "ratelimiter", "ratelimiters", "rate limiter";
    /// An adaptive concurrency limiter (`portcullis_limit::Limiter`).
    Limiter(portcullis_limit::Limiter) in limiters, "limiter", "limiters", "concurrency limiter";
    /// A retry budget (`portcullis_retry::RetryBudget`).
    Budget(portcullis_retry::RetryBudget) in budgets, "budget", "budgets", "retry budget";
    /// The statistics of a route or upstream ([`RouteStats`](crate::RouteStats)).
    Route(crate::RouteStats) in routes, "route", "routes", "route";
}

/// Which instance an event or a figure belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub struct Source {
    pub(crate) kind: InstanceKind,
    pub(crate) name: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
}

/// A kind of instance the registry keeps: implemented by
/// [`Breaker`](portcullis_breaker::Breaker),
/// [`Bulkhead`](portcullis_bulkhead::Bulkhead),
/// [`RateLimiter`](portcullis_ratelimit::RateLimiter),
/// [`Limiter`](portcullis_limit::Limiter),
/// [`RetryBudget`](portcullis_retry::RetryBudget) and
/// [`RouteStats`](crate::RouteStats).
///
/// Sealed: the registry's generic operations
/// ([`Registry::instances`](crate::Registry::instances)) are written once
/// over this trait, and each kind is one impl of it inside this crate.
/// Its methods are the registry's own; use the instances' and
/// [`Instances`](crate::Instances)' methods instead.
pub trait Instance: Clone + Send + Sync + 'static + sealed::Sealed {
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

    /// What keeps its hook attached (dropping it detaches the hook), kept
    /// unboxed in the instance's slot; `Infallible` for a kind without
    /// events.
    #[doc(hidden)]
    type Attachment: Send + Sync;

    /// Which kind this is.
    const KIND: InstanceKind;

    /// Checks a configuration; the error names the field.
    #[doc(hidden)]
    fn validate(config: &Self::Config) -> Result<(), ConfigError>;

    /// A new instance from a configuration that passed [`Self::validate`].
    #[doc(hidden)]
    fn build(name: &str, config: Self::Config) -> Self;

    /// A new keyed instance of `name`, `like` another keyed instance of the
    /// same name if there is one: a kind whose instances can share their
    /// configuration makes it share `like`'s (when it is `config`).
    #[doc(hidden)]
    fn build_keyed(name: &Arc<str>, config: Self::Config, like: Option<&Self>) -> Self {
        let _ = like;
        Self::build(name, config)
    }

    /// The instance's own name.
    #[doc(hidden)]
    fn name(&self) -> &str;

    /// Whether [`Self::reconfigure`] would take `config`, without changing
    /// anything (so that an update of many instances is all or nothing).
    #[doc(hidden)]
    fn check_update(&self, config: &Self::Config) -> Result<(), ConfigError>;

    /// Applies `config` to the live instance, keeping its state.
    #[doc(hidden)]
    fn reconfigure(&self, config: Self::Config) -> Result<(), ConfigError>;

    /// The instance's figures now.
    #[doc(hidden)]
    fn snapshot(&self) -> Self::Snapshot;

    /// Whether a keyed instance may be evicted to make room for a new key:
    /// it holds no state worth keeping.
    #[doc(hidden)]
    fn evictable(&self) -> bool;

    /// The metric families of this kind, in the order they are rendered.
    #[doc(hidden)]
    fn families() -> &'static [Family<Self::Snapshot>];

    /// Attaches a hook that pushes the instance's events, if it has any,
    /// to `hub` as `source`, until the returned attachment is dropped.
    #[doc(hidden)]
    fn attach(&self, source: Source, hub: Hub) -> Option<Self::Attachment>;
}

impl fmt::Display for InstanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display())
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
