//! The registry's operations on one kind of instance, written once.

use std::fmt;

use portcullis_core::ConfigError;

use crate::config::Overrides;
use crate::error::{AlreadyRegistered, KeyLimitReached};
use crate::hub::Hub;
use crate::kind::Instance;
use crate::snapshot::Keyed;
use crate::store::Store;

/// The instances of one kind in a [`Registry`](crate::Registry), from
/// [`Registry::instances`](crate::Registry::instances) or its shorthands
/// ([`breakers`](crate::Registry::breakers),
/// [`bulkheads`](crate::Registry::bulkheads),
/// [`rate_limiters`](crate::Registry::rate_limiters),
/// [`budgets`](crate::Registry::budgets),
/// [`routes`](crate::Registry::routes)).
///
/// Every kind has the same operations:
///
/// - **Get-or-create.** [`get`](Self::get) returns the same handle to every
///   caller, making it on first use with the config named like it (or the
///   default). [`get_keyed`](Self::get_keyed) does the same per key (an
///   upstream host, a tenant), with at most
///   [`max_keys`](crate::RegistryBuilder::max_keys) keys per name.
/// - **Registration** of an instance made elsewhere
///   ([`register`](Self::register)), [`find`](Self::find) and
///   [`remove`](Self::remove).
/// - **Configs**: the one a name is made with ([`config`](Self::config)),
///   live updates ([`update_config`](Self::update_config), all or nothing,
///   keeping each live instance's state) and the default
///   ([`update_default_config`](Self::update_default_config)).
/// - **Figures**: [`list`](Self::list), sorted by name then key.
///
/// ```
/// use portcullis_breaker::State;
/// use portcullis_registry::{Overrides, Registry};
///
/// let registry = Registry::new();
/// let breakers = registry.breakers();
/// let payments = breakers.get("payments");
/// payments.force_open();
/// assert_eq!(breakers.find("payments", None).unwrap().state(), State::ForcedOpen);
///
/// let changed = breakers
///     .update_config("payments", Overrides::new().set("minimum_calls", 5))
///     .unwrap();
/// assert_eq!(changed, 1);
/// assert_eq!(payments.config().minimum_calls(), 5);
/// assert_eq!(breakers.list()[0].snapshot.state, State::ForcedOpen);
/// ```
pub struct Instances<'a, K: Instance> {
    store: &'a Store<K>,
    hub: &'a Hub,
}

impl<'a, K: Instance> Instances<'a, K> {
    pub(crate) fn new(store: &'a Store<K>, hub: &'a Hub) -> Self {
        Self { store, hub }
    }

    /// The instance named `name`, made on first use with the config named
    /// `name` (or the default). Every caller gets the same instance.
    ///
    /// Looking up an instance that exists takes a read lock and allocates
    /// nothing; still, keep the handle rather than look it up per call.
    pub fn get(&self, name: &str) -> K {
        self.store.get_or_create(name, self.hub)
    }

    /// The instance named `name` for `key`, made on first use with the
    /// config named `name`.
    ///
    /// A name has at most [`max_keys`](crate::RegistryBuilder::max_keys)
    /// keys. When it has that many, an instance among them that is neither
    /// recently used nor holding state (a breaker: closed, nothing failed
    /// or slow in its window) is evicted (its handles keep working,
    /// unregistered); if none can be, the key gets the name's overflow
    /// instance, shared by every key without room and served under
    /// [`OVERFLOW_KEY`](crate::OVERFLOW_KEY), or with
    /// [`AtKeyLimit::Reject`](crate::AtKeyLimit::Reject) this fails.
    pub fn get_keyed(&self, name: &str, key: &str) -> Result<K, KeyLimitReached> {
        self.store.get_or_create_keyed(name, key, self.hub)
    }

    /// The instance named `name` (with `key`), if it exists; never makes
    /// one.
    pub fn find(&self, name: &str, key: Option<&str>) -> Option<K> {
        self.store.get(name, key)
    }

    /// Registers an instance made elsewhere, under its own name, so that
    /// the registry serves, watches and controls it. Config updates do not
    /// touch it: it keeps the config it was made with.
    pub fn register(&self, instance: K) -> Result<(), AlreadyRegistered> {
        self.store.register(instance, self.hub)
    }

    /// Removes the instance named `name` (with `key`) and returns it. Its
    /// handles keep working, but the registry forgets it; asking for the
    /// name again makes a new one.
    pub fn remove(&self, name: &str, key: Option<&str>) -> Option<K> {
        self.store.remove(name, key, self.hub)
    }

    /// The config an instance named `name` is (or would be) made with.
    pub fn config(&self, name: &str) -> K::Config {
        self.store.config(name)
    }

    /// The overrides of the config named `name`, if it has any.
    pub fn overrides(&self, name: &str) -> Option<Overrides> {
        self.store.overrides(name)
    }

    /// The default config, which named configs inherit from.
    pub fn default_config(&self) -> K::Config {
        self.store.default_config()
    }

    /// Replaces the overrides of the config named `name` (laid over the
    /// default, not over the previous overrides) and applies the result to
    /// the live instances of that name, plain and keyed, keeping their
    /// state. Returns how many instances changed.
    ///
    /// All or nothing: an invalid config, or one a live instance cannot
    /// take (a breaker's new window shape, a budget's new `ttl`, any change
    /// of a live bulkhead), is an error naming the field, such as
    /// `breakers.payments.sliding_window`, and changes nothing. With the
    /// name `default`, the overrides are laid over the built-in defaults
    /// and become the default that every name inherits.
    pub fn update_config(&self, name: &str, overrides: Overrides) -> Result<usize, ConfigError> {
        self.store.set_overrides(name, Some(overrides), self.hub)
    }

    /// Drops the overrides of the config named `name`: its instances go
    /// back to the default config, keeping their state.
    pub fn clear_config(&self, name: &str) -> Result<usize, ConfigError> {
        self.store.set_overrides(name, None, self.hub)
    }

    /// Replaces the default config and applies the resulting configs to
    /// the live instances whose config changes. All or nothing.
    pub fn update_default_config(&self, config: K::Config) -> Result<usize, ConfigError> {
        self.store.set_default(config, self.hub)
    }

    /// Every instance's figures, sorted by name then key.
    pub fn list(&self) -> Vec<Keyed<K::Snapshot>> {
        self.store.snapshots()
    }

    /// How many instances of this kind there are, keyed ones included.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Instance> Clone for Instances<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Instance> Copy for Instances<'_, K> {}

impl<K: Instance> fmt::Debug for Instances<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instances")
            .field("kind", &K::KIND)
            .field("len", &self.store.len())
            .finish()
    }
}
