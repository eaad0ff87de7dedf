//! The instances of one kind: configs with inheritance, handles by name and
//! by `(name, key)`, get-or-create, bounded keys, live updates.
//!
//! The keys of a name are a CLOCK ring: a lookup sets its slot's reference
//! bit (a relaxed store, only when it is clear), and a new key at the bound
//! moves the hand over at most [`SCAN`] slots, clearing bits and skipping
//! what must be kept, to the first slot neither referenced nor holding
//! state: O(1) per new key however many keys there are. When the hand
//! finds none, the new key shares the name's overflow instance (or, if the
//! registry was told so, is refused). Events are published once the write
//! lock is released.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use portcullis_core::ConfigError;
use serde::{Deserialize, Serialize};

use crate::config::{DEFAULT, Overrides};
use crate::error::{AlreadyRegistered, KeyLimitReached};
use crate::event::EventKind;
use crate::figures::{Taken, TakenOf};
use crate::hub::Hub;
use crate::kind::{Instance, InstanceKind, Source};
use crate::snapshot::Keyed;

/// The key under which a name's overflow instance is served: the one
/// instance that keys past [`max_keys`](crate::RegistryBuilder::max_keys)
/// share when no key can be evicted for them.
pub const OVERFLOW_KEY: &str = "<overflow>";

/// What a new key gets when its name has
/// [`max_keys`](crate::RegistryBuilder::max_keys) keys and none can be
/// evicted (every one recently used, or holding state: a breaker that is
/// open, half-open or has failures in its window, a bulkhead with calls in
/// flight, a rate limiter short of its burst, a budget off its floor).
///
/// ```
/// use portcullis_registry::{AtKeyLimit, RegistryConfig};
///
/// let config: RegistryConfig = toml::from_str(r#"
///     max_keys = 100
///     at_key_limit = "reject"
/// "#).unwrap();
/// assert_eq!(config.at_key_limit, Some(AtKeyLimit::Reject));
/// assert_eq!(AtKeyLimit::default(), AtKeyLimit::Overflow);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtKeyLimit {
    /// It shares the name's overflow instance, made on first need and
    /// served under the key [`OVERFLOW_KEY`]: a flood of new keys cannot
    /// push out the state of the keys that matter, and a call never fails
    /// for want of room (the default).
    #[default]
    Overflow,
    /// The lookup fails with [`KeyLimitReached`].
    Reject,
}

/// The most slots the hand looks at for one new key.
const SCAN: usize = 64;

pub(crate) use crate::kind::Stores;

impl Stores {
    /// The store whose kind is served under `section` (`"breakers"`, ...).
    pub(crate) fn by_section(&self, section: &str) -> Option<&dyn AnyStore> {
        self.all()
            .into_iter()
            .find(|store| store.kind().section() == section)
    }

    /// How many instances of every kind there are.
    pub(crate) fn len(&self) -> usize {
        self.all().iter().map(|store| store.len()).sum()
    }
}

/// A store with its kind erased, for the parts of the registry that treat
/// every kind alike.
pub(crate) trait AnyStore: Send + Sync {
    /// The kind it keeps.
    fn kind(&self) -> InstanceKind;
    /// Every instance's figures as JSON, sorted by name then key.
    fn list_json(&self) -> serde_json::Value;
    /// One instance's figures as JSON, if it exists.
    fn one_json(&self, name: &str, key: Option<&str>) -> Option<serde_json::Value>;
    /// How many instances it keeps.
    fn len(&self) -> usize;
    /// Every instance's figures now, for the metric families.
    fn take(&self) -> Box<dyn Taken + '_>;
}

impl<K: Instance> AnyStore for Store<K> {
    fn kind(&self) -> InstanceKind {
        K::KIND
    }

    fn list_json(&self) -> serde_json::Value {
        serde_json::to_value(self.snapshots()).expect("a snapshot serializes")
    }

    fn one_json(&self, name: &str, key: Option<&str>) -> Option<serde_json::Value> {
        let instance = self.get(name, key)?;
        let keyed = Keyed::new(key.map(str::to_owned), instance.snapshot());
        Some(serde_json::to_value(keyed).expect("a snapshot serializes"))
    }

    fn len(&self) -> usize {
        Store::len(self)
    }

    fn take(&self) -> Box<dyn Taken + '_> {
        Box::new(TakenOf::<K> {
            entries: self.named(|_| true),
        })
    }
}

/// Every instance of kind `K`, and the configs they are made from.
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub struct Store<K: Instance> {
    inner: RwLock<Inner<K>>,
    max_keys: usize,
    at_limit: AtKeyLimit,
}

struct Inner<K: Instance> {
    default: K::Config,
    overrides: BTreeMap<String, Overrides>,
    /// The default with each name's overrides laid over it, validated.
    effective: HashMap<String, K::Config>,
    instances: HashMap<Arc<str>, Named<K>, Hashing>,
}

/// The hasher of the maps a lookup reads: foldhash, seeded at random per
/// map, so that keys taken from requests cannot be aimed at one bucket.
/// On a 32-byte key a lookup and a call through the breaker found take 540
/// instructions with it, 890 with the standard library's SipHash.
type Hashing = foldhash::fast::RandomState;

/// The instances of one name: the plain one, the keyed ones, and the one
/// that keys past the bound share.
struct Named<K: Instance> {
    plain: Option<Slot<K>>,
    keyed: Ring<K>,
    overflow: Option<Slot<K>>,
}

/// Keyed slots in a CLOCK ring, with an index by key.
struct Ring<K: Instance> {
    index: HashMap<Arc<str>, usize, Hashing>,
    slots: Vec<(Arc<str>, Slot<K>)>,
    hand: usize,
}

struct Slot<K: Instance> {
    instance: K,
    /// Made by the registry from its configs (so updated with them), as
    /// opposed to registered ready-made.
    managed: bool,
    /// Looked up since the hand last passed.
    referenced: AtomicBool,
    /// Keeps the hook that pushes the instance's events to the hub.
    _hook: Option<K::Attachment>,
}

impl<K: Instance> Store<K> {
    /// A store whose default is `default` (with the `default` entry of
    /// `overrides`, if any, laid over it) and whose named configs are the
    /// other entries; each is validated, errors named like
    /// `breakers.payments.failure_rate_threshold`.
    pub(crate) fn new(
        default: K::Config,
        mut overrides: BTreeMap<String, Overrides>,
        max_keys: usize,
        at_limit: AtKeyLimit,
    ) -> Result<Self, ConfigError> {
        let section = K::KIND.section();
        let default = match overrides.remove(DEFAULT) {
            Some(over) => effective::<K>(&default, DEFAULT, &over)?,
            None => {
                K::validate(&default).map_err(|e| e.within(&format!("{section}.{DEFAULT}")))?;
                default
            }
        };
        let effective = overrides
            .iter()
            .map(|(name, over)| Ok((name.clone(), effective::<K>(&default, name, over)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            inner: RwLock::new(Inner {
                default,
                overrides,
                effective,
                instances: HashMap::default(),
            }),
            max_keys,
            at_limit,
        })
    }

    /// The instance named `name` (with `key`), if there is one.
    pub(crate) fn get(&self, name: &str, key: Option<&str>) -> Option<K> {
        let inner = self.read();
        let named = inner.instances.get(name)?;
        let slot = match key {
            None => named.plain.as_ref()?,
            Some(OVERFLOW_KEY) => named.overflow.as_ref()?,
            Some(key) => {
                let slot = named.keyed.get(key)?;
                slot.touch();
                slot
            }
        };
        Some(slot.instance.clone())
    }

    /// The instance named `name`, made from its config on first use.
    pub(crate) fn get_or_create(&self, name: &str, hub: &Hub) -> K {
        if let Some(instance) = self.get(name, None) {
            return instance;
        }
        let mut inner = self.write();
        let name = inner.name(name);
        if let Some(slot) = inner
            .instances
            .get(&*name)
            .and_then(|named| named.plain.as_ref())
        {
            return slot.instance.clone();
        }
        let instance = K::build(&name, inner.config_for(&name).clone());
        let source = Source::new(K::KIND, name.clone(), None);
        let slot = Slot::new(instance.clone(), true, &source, hub);
        inner.named(name).plain = Some(slot);
        drop(inner);
        hub.publish(&source, EventKind::Added);
        instance
    }

    /// The instance named `name` for `key`, made from the config of `name`
    /// on first use. When `name` has `max_keys` keys already, the hand
    /// evicts one that is neither recently used nor holding state; if it
    /// finds none, the key shares the name's overflow instance (made on
    /// first need, served under the key [`OVERFLOW_KEY`]) or, with
    /// [`AtKeyLimit::Reject`], this fails.
    pub(crate) fn get_or_create_keyed(
        &self,
        name: &str,
        key: &str,
        hub: &Hub,
    ) -> Result<K, KeyLimitReached> {
        if let Some(instance) = self.get(name, Some(key)) {
            return Ok(instance);
        }
        let max_keys = self.max_keys;
        let mut inner = self.write();
        let name = inner.name(name);
        if let Some(slot) = inner.instances.get(&*name).and_then(|named| {
            if key == OVERFLOW_KEY {
                named.overflow.as_ref()
            } else {
                named.keyed.get(key)
            }
        }) {
            slot.touch();
            return Ok(slot.instance.clone());
        }
        let config = inner.config_for(&name).clone();
        let named = inner.named(name.clone());
        // Where the new key goes: a new place, a victim's, or nowhere.
        let place = match key {
            OVERFLOW_KEY => None,
            _ if named.keyed.len() < max_keys => Some(None),
            _ => named.keyed.victim().map(Some),
        };
        let (instance, event) = if let Some(at) = place {
            let key: Arc<str> = key.into();
            let instance = K::build_keyed(&name, config, named.keyed.any());
            let source = Source::new(K::KIND, name.clone(), Some(key.clone()));
            let slot = Slot::new(instance.clone(), true, &source, hub);
            let what = match at {
                None => {
                    named.keyed.insert(key, slot);
                    EventKind::Added
                }
                Some(at) => {
                    let (victim, _) = named.keyed.replace(at, key, slot);
                    tracing::debug!(kind = %K::KIND, %name, key = %victim, "evicted to make room for a new key");
                    EventKind::Replaced {
                        evicted: victim.to_string(),
                    }
                }
            };
            (instance, Some((source, what)))
        } else if key != OVERFLOW_KEY && self.at_limit == AtKeyLimit::Reject {
            return Err(KeyLimitReached::new(K::KIND, &name, max_keys));
        } else {
            match &named.overflow {
                Some(slot) => (slot.instance.clone(), None),
                None => {
                    tracing::debug!(kind = %K::KIND, %name, key, "no key can make room: sharing the overflow instance");
                    let instance = K::build(&name, config);
                    let source = Source::new(K::KIND, name, Some(OVERFLOW_KEY.into()));
                    named.overflow = Some(Slot::new(instance.clone(), true, &source, hub));
                    (instance, Some((source, EventKind::Added)))
                }
            }
        };
        drop(inner);
        if let Some((source, what)) = event {
            hub.publish(&source, what);
        }
        Ok(instance)
    }

    /// Registers a ready-made instance under its own name. The registry
    /// serves it but does not change its config.
    pub(crate) fn register(&self, instance: K, hub: &Hub) -> Result<(), AlreadyRegistered> {
        let mut inner = self.write();
        let name = inner.name(instance.name());
        let named = inner.named(name.clone());
        if named.plain.is_some() {
            return Err(AlreadyRegistered::new(K::KIND, &name, None));
        }
        let source = Source::new(K::KIND, name, None);
        named.plain = Some(Slot::new(instance, false, &source, hub));
        drop(inner);
        hub.publish(&source, EventKind::Added);
        Ok(())
    }

    /// Removes the instance named `name` (with `key`); handles that callers
    /// hold keep working, but the registry no longer serves or updates it.
    pub(crate) fn remove(&self, name: &str, key: Option<&str>, hub: &Hub) -> Option<K> {
        let mut inner = self.write();
        let name: Arc<str> = inner.instances.get_key_value(name)?.0.clone();
        let named = inner.instances.get_mut(&name)?;
        let (slot, key) = match key {
            None => (named.plain.take()?, None),
            Some(OVERFLOW_KEY) => (named.overflow.take()?, Some(OVERFLOW_KEY.into())),
            Some(key) => {
                let (key, slot) = named.keyed.remove(key)?;
                (slot, Some(key))
            }
        };
        if named.is_empty() {
            inner.instances.remove(&name);
        }
        drop(inner);
        hub.publish(&Source::new(K::KIND, name, key), EventKind::Removed);
        Some(slot.instance)
    }

    /// Every instance's figures, sorted by name, the plain instance first,
    /// then by key.
    pub(crate) fn snapshots(&self) -> Vec<Keyed<K::Snapshot>> {
        self.collect(|_| true)
    }

    /// The figures of the instances named `name`.
    pub(crate) fn snapshots_named(&self, name: &str) -> Vec<Keyed<K::Snapshot>> {
        self.collect(|candidate| candidate == name)
    }

    /// How many instances there are.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// The config an instance named `name` is made with.
    pub(crate) fn config(&self, name: &str) -> K::Config {
        self.read().config_for(name).clone()
    }

    /// The default config.
    pub(crate) fn default_config(&self) -> K::Config {
        self.read().default.clone()
    }

    /// The overrides of the config named `name`.
    pub(crate) fn overrides(&self, name: &str) -> Option<Overrides> {
        self.read().overrides.get(name).cloned()
    }

    /// Replaces the overrides of the config named `name` (`None`: back to
    /// the default) and applies the new config to the live instances of
    /// that name, keeping their state. All or nothing: if one instance
    /// cannot take it, nothing changes. Returns how many instances changed.
    pub(crate) fn set_overrides(
        &self,
        name: &str,
        overrides: Option<Overrides>,
        hub: &Hub,
    ) -> Result<usize, ConfigError> {
        if name == DEFAULT {
            let mut inner = self.write();
            let default = match &overrides {
                Some(over) => over
                    .apply(&K::Config::default())
                    .map_err(|e| e.within(&format!("{}.{DEFAULT}", K::KIND.section())))?,
                None => K::Config::default(),
            };
            K::validate(&default)
                .map_err(|e| e.within(&format!("{}.{DEFAULT}", K::KIND.section())))?;
            let changed = Self::replace_default(&mut inner, default)?;
            drop(inner);
            return Ok(publish_changed(changed, hub));
        }
        let mut inner = self.write();
        let config = match &overrides {
            Some(over) => effective::<K>(&inner.default, name, over)?,
            None => inner.default.clone(),
        };
        let changes = if *inner.config_for(name) == config {
            Vec::new()
        } else {
            inner.check(name, &config)?
        };
        let changed = apply(changes, &config)?;
        match overrides {
            Some(over) => {
                inner.overrides.insert(name.to_owned(), over);
                inner.effective.insert(name.to_owned(), config);
            }
            None => {
                inner.overrides.remove(name);
                inner.effective.remove(name);
            }
        }
        drop(inner);
        Ok(publish_changed(changed, hub))
    }

    /// Replaces the default config, which every name inherits from, and
    /// applies the resulting configs to the live instances whose config
    /// changes. All or nothing.
    pub(crate) fn set_default(&self, default: K::Config, hub: &Hub) -> Result<usize, ConfigError> {
        K::validate(&default).map_err(|e| e.within(&format!("{}.{DEFAULT}", K::KIND.section())))?;
        let changed = Self::replace_default(&mut self.write(), default)?;
        Ok(publish_changed(changed, hub))
    }

    /// Lays `default` under every name; returns the instances changed.
    fn replace_default(
        inner: &mut Inner<K>,
        default: K::Config,
    ) -> Result<Vec<Source>, ConfigError> {
        let effective: HashMap<String, K::Config> = inner
            .overrides
            .iter()
            .map(|(name, over)| Ok((name.clone(), effective::<K>(&default, name, over)?)))
            .collect::<Result<_, ConfigError>>()?;
        let mut changes = Vec::new();
        let names: Vec<Arc<str>> = inner.instances.keys().cloned().collect();
        for name in names {
            let new = effective.get(&*name).unwrap_or(&default);
            if inner.config_for(&name) != new {
                changes.push((inner.check(&name, new)?, new.clone()));
            }
        }
        let mut changed = Vec::new();
        for (instances, config) in changes {
            changed.extend(apply(instances, &config)?);
        }
        inner.default = default;
        inner.effective = effective;
        Ok(changed)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn collect(&self, wanted: impl Fn(&str) -> bool) -> Vec<Keyed<K::Snapshot>> {
        self.named(wanted)
            .into_iter()
            .map(|(_, key, snapshot)| Keyed::new(key, snapshot))
            .collect()
    }

    /// The figures of the instances whose name is `wanted`, with their
    /// names and keys, sorted by name then key.
    fn named(&self, wanted: impl Fn(&str) -> bool) -> Vec<(String, Option<String>, K::Snapshot)> {
        let inner = self.read();
        let mut names: Vec<_> = inner
            .instances
            .iter()
            .filter(|(name, _)| wanted(name))
            .collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let mut all = Vec::new();
        for (name, named) in names {
            let name = name.to_string();
            if let Some(slot) = &named.plain {
                all.push((name.clone(), None, slot.instance.snapshot()));
            }
            let mut keyed: Vec<_> = named.keyed.iter().collect();
            keyed.sort_by(|a, b| a.0.cmp(b.0));
            all.extend(keyed.into_iter().map(|(key, slot)| {
                (
                    name.clone(),
                    Some(key.to_string()),
                    slot.instance.snapshot(),
                )
            }));
            if let Some(slot) = &named.overflow {
                all.push((
                    name,
                    Some(OVERFLOW_KEY.to_owned()),
                    slot.instance.snapshot(),
                ));
            }
        }
        all
    }
}

impl<K: Instance> Inner<K> {
    fn len(&self) -> usize {
        self.instances
            .values()
            .map(|named| {
                usize::from(named.plain.is_some())
                    + named.keyed.len()
                    + usize::from(named.overflow.is_some())
            })
            .sum()
    }

    fn config_for(&self, name: &str) -> &K::Config {
        self.effective.get(name).unwrap_or(&self.default)
    }

    /// `name` as kept in the index if it has instances already (so that
    /// each key does not hold a copy of its name), else a new one.
    fn name(&self, name: &str) -> Arc<str> {
        match self.instances.get_key_value(name) {
            Some((name, _)) => name.clone(),
            None => name.into(),
        }
    }

    fn named(&mut self, name: Arc<str>) -> &mut Named<K> {
        self.instances.entry(name).or_insert_with(Named::new)
    }

    /// The managed instances named `name`, once each has accepted `config`.
    fn check(&self, name: &str, config: &K::Config) -> Result<Vec<(Source, K)>, ConfigError> {
        let Some(named) = self.instances.get(name) else {
            return Ok(Vec::new());
        };
        let (name, _) = self
            .instances
            .get_key_value(name)
            .expect("the name was just found");
        let overflow: Option<Arc<str>> = Some(OVERFLOW_KEY.into());
        let slots = named
            .plain
            .iter()
            .map(|slot| (None, slot))
            .chain(
                named
                    .keyed
                    .iter()
                    .map(|(key, slot)| (Some(key.clone()), slot)),
            )
            .chain(named.overflow.iter().map(|slot| (overflow.clone(), slot)))
            .filter(|(_, slot)| slot.managed);
        let mut instances = Vec::new();
        for (key, slot) in slots {
            slot.instance
                .check_update(config)
                .map_err(|e| e.within(&format!("{}.{name}", K::KIND.section())))?;
            instances.push((
                Source::new(K::KIND, name.clone(), key),
                slot.instance.clone(),
            ));
        }
        Ok(instances)
    }
}

impl<K: Instance> Named<K> {
    fn new() -> Self {
        Self {
            plain: None,
            keyed: Ring::new(),
            overflow: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_none() && self.keyed.len() == 0 && self.overflow.is_none()
    }
}

impl<K: Instance> Ring<K> {
    fn new() -> Self {
        Self {
            index: HashMap::default(),
            slots: Vec::new(),
            hand: 0,
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn get(&self, key: &str) -> Option<&Slot<K>> {
        self.index.get(key).map(|&at| &self.slots[at].1)
    }

    /// Some keyed instance, for a new key to be made like it.
    fn any(&self) -> Option<&K> {
        self.slots.first().map(|(_, slot)| &slot.instance)
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Slot<K>)> {
        self.slots.iter().map(|(key, slot)| (key, slot))
    }

    /// Adds a slot.
    fn insert(&mut self, key: Arc<str>, slot: Slot<K>) {
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push((key, slot));
    }

    fn remove(&mut self, key: &str) -> Option<(Arc<str>, Slot<K>)> {
        let at = self.index.remove(key)?;
        Some(self.take(at))
    }

    /// Removes the slot at `at` in O(1): the last slot takes its place.
    fn take(&mut self, at: usize) -> (Arc<str>, Slot<K>) {
        let removed = self.slots.swap_remove(at);
        if let Some((moved, _)) = self.slots.get(at) {
            self.index.insert(moved.clone(), at);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        removed
    }
}

impl<K: Instance> Ring<K> {
    /// Moves the hand over at most [`SCAN`] slots (twice round a small
    /// ring), clearing reference bits, to the first slot that was neither
    /// referenced since the hand last passed nor holds state; `None` if it
    /// found none.
    fn victim(&mut self) -> Option<usize> {
        let steps = SCAN.min(2 * self.slots.len());
        for _ in 0..steps {
            let at = self.hand;
            let slot = &self.slots[at].1;
            let referenced = slot.referenced.swap(false, Ordering::Relaxed);
            if !referenced && slot.instance.evictable() {
                return Some(at);
            }
            self.hand = (at + 1) % self.slots.len();
        }
        None
    }

    /// Puts a new slot in the place of the one at `at` and moves the hand
    /// past it, so that it has a full turn to be used; returns the old one.
    fn replace(&mut self, at: usize, key: Arc<str>, slot: Slot<K>) -> (Arc<str>, Slot<K>) {
        let old = std::mem::replace(&mut self.slots[at], (key.clone(), slot));
        self.index.remove(&old.0);
        self.index.insert(key, at);
        self.hand = (at + 1) % self.slots.len();
        old
    }
}

impl<K: Instance> Slot<K> {
    fn new(instance: K, managed: bool, source: &Source, hub: &Hub) -> Self {
        let hook = if hub.settings().collect {
            instance.attach(source.clone(), hub.clone())
        } else {
            None
        };
        Self {
            instance,
            managed,
            referenced: AtomicBool::new(false),
            _hook: hook,
        }
    }

    /// Marks the slot used; a store only when the bit is clear, so that a
    /// hot key's lookups only read its cache line.
    fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }
}

impl<K: Instance> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("Store")
            .field("kind", &K::KIND)
            .field("default", &inner.default)
            .field("overrides", &inner.overrides)
            .field("instances", &inner.len())
            .field("max_keys", &self.max_keys)
            .field("at_limit", &self.at_limit)
            .finish()
    }
}

/// `default` with `overrides` laid over it, validated; errors are named
/// under `<section>.<name>`.
fn effective<K: Instance>(
    default: &K::Config,
    name: &str,
    overrides: &Overrides,
) -> Result<K::Config, ConfigError> {
    let prefix = format!("{}.{name}", K::KIND.section());
    let config = overrides.apply(default).map_err(|e| e.within(&prefix))?;
    K::validate(&config).map_err(|e| e.within(&prefix))?;
    Ok(config)
}

/// Applies `config` to instances that were checked to accept it; returns
/// them, for their events to be published once the lock is released.
fn apply<K: Instance>(
    instances: Vec<(Source, K)>,
    config: &K::Config,
) -> Result<Vec<Source>, ConfigError> {
    let mut changed = Vec::with_capacity(instances.len());
    for (source, instance) in instances {
        instance
            .reconfigure(config.clone())
            .map_err(|e| e.within(&format!("{}.{}", K::KIND.section(), source.name)))?;
        changed.push(source);
    }
    Ok(changed)
}

/// Publishes a `changed` event for each of `changed`; returns how many.
fn publish_changed(changed: Vec<Source>, hub: &Hub) -> usize {
    let count = changed.len();
    for source in changed {
        hub.publish(&source, EventKind::Changed);
    }
    count
}
