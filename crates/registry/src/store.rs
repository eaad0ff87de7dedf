//! The instances of one kind: configs with inheritance, handles by name and
//! by `(name, key)`, get-or-create, bounded keys, live updates.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use portcullis_core::ConfigError;

use crate::config::{DEFAULT, Overrides};
use crate::error::{AlreadyRegistered, KeyLimitReached};
use crate::event::EventKind;
use crate::hub::{Hub, Task};
use crate::kind::{Kind, Source};
use crate::snapshot::Keyed;

/// Every instance of kind `K`, and the configs they are made from.
pub(crate) struct Store<K: Kind> {
    inner: RwLock<Inner<K>>,
    max_keys: usize,
    /// A clock of uses, to evict the least recently used key.
    tick: AtomicU64,
}

struct Inner<K: Kind> {
    default: K::Config,
    overrides: BTreeMap<String, Overrides>,
    /// The default with each name's overrides laid over it, validated.
    effective: HashMap<String, K::Config>,
    instances: HashMap<Arc<str>, Named<K>>,
}

/// The instances of one name: the plain one and the keyed ones.
struct Named<K> {
    plain: Option<Slot<K>>,
    keyed: HashMap<Arc<str>, Slot<K>>,
}

struct Slot<K> {
    instance: K,
    /// Made by the registry from its configs (so updated with them), as
    /// opposed to registered ready-made.
    managed: bool,
    used: AtomicU64,
    _task: Option<Arc<Task>>,
}

impl<K: Kind> Store<K> {
    /// A store whose default is `default` (with the `default` entry of
    /// `overrides`, if any, laid over it) and whose named configs are the
    /// other entries; each is validated, errors named like
    /// `breakers.payments.failure_rate_threshold`.
    pub(crate) fn new(
        default: K::Config,
        mut overrides: BTreeMap<String, Overrides>,
        max_keys: usize,
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
                instances: HashMap::new(),
            }),
            max_keys,
            tick: AtomicU64::new(0),
        })
    }

    /// The instance named `name` (with `key`), if there is one.
    pub(crate) fn get(&self, name: &str, key: Option<&str>) -> Option<K> {
        let inner = self.read();
        let named = inner.instances.get(name)?;
        let slot = match key {
            None => named.plain.as_ref()?,
            Some(key) => {
                let slot = named.keyed.get(key)?;
                slot.touch(&self.tick);
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
        let name: Arc<str> = name.into();
        if let Some(slot) = inner
            .instances
            .get(&*name)
            .and_then(|named| named.plain.as_ref())
        {
            return slot.instance.clone();
        }
        let instance = K::build(&name, inner.config_for(&name).clone());
        let source = Source::new(K::KIND, name.clone(), None);
        let slot = Slot::new(instance.clone(), true, &self.tick, &source, hub);
        inner.named(name).plain = Some(slot);
        hub.publish(&source, EventKind::Added);
        instance
    }

    /// The instance named `name` for `key`, made from the config of `name`
    /// on first use. When `name` has `max_keys` keys already, the least
    /// recently used evictable one makes room.
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
        let name: Arc<str> = name.into();
        if let Some(slot) = inner
            .instances
            .get(&*name)
            .and_then(|named| named.keyed.get(key))
        {
            slot.touch(&self.tick);
            return Ok(slot.instance.clone());
        }
        let config = inner.config_for(&name).clone();
        let named = inner.named(name.clone());
        if named.keyed.len() >= max_keys {
            let victim = named
                .keyed
                .iter()
                .filter(|(_, slot)| slot.instance.evictable())
                .min_by_key(|(_, slot)| slot.used.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone())
                .ok_or_else(|| KeyLimitReached::new(K::KIND, &name, max_keys))?;
            named.keyed.remove(&victim);
            tracing::debug!(kind = %K::KIND, %name, key = %victim, "evicted to make room for a new key");
            hub.publish(
                &Source::new(K::KIND, name.clone(), Some(victim)),
                EventKind::Removed,
            );
        }
        let key: Arc<str> = key.into();
        let instance = K::build(&name, config);
        let source = Source::new(K::KIND, name, Some(key.clone()));
        let slot = Slot::new(instance.clone(), true, &self.tick, &source, hub);
        named.keyed.insert(key, slot);
        hub.publish(&source, EventKind::Added);
        Ok(instance)
    }

    /// Registers a ready-made instance under its own name. The registry
    /// serves it but does not change its config.
    pub(crate) fn register(&self, instance: K, hub: &Hub) -> Result<(), AlreadyRegistered> {
        let mut inner = self.write();
        let name: Arc<str> = instance.name().into();
        let named = inner.named(name.clone());
        if named.plain.is_some() {
            return Err(AlreadyRegistered::new(K::KIND, &name, None));
        }
        let source = Source::new(K::KIND, name, None);
        named.plain = Some(Slot::new(instance, false, &self.tick, &source, hub));
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
            Some(key) => {
                let (key, slot) = named.keyed.remove_entry(key)?;
                (slot, Some(key))
            }
        };
        if named.plain.is_none() && named.keyed.is_empty() {
            inner.instances.remove(&name);
        }
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
            return Self::replace_default(&mut inner, default, hub);
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
        let changed = apply(changes, &config, hub)?;
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
        Ok(changed)
    }

    /// Replaces the default config, which every name inherits from, and
    /// applies the resulting configs to the live instances whose config
    /// changes. All or nothing.
    pub(crate) fn set_default(&self, default: K::Config, hub: &Hub) -> Result<usize, ConfigError> {
        K::validate(&default).map_err(|e| e.within(&format!("{}.{DEFAULT}", K::KIND.section())))?;
        Self::replace_default(&mut self.write(), default, hub)
    }

    fn replace_default(
        inner: &mut Inner<K>,
        default: K::Config,
        hub: &Hub,
    ) -> Result<usize, ConfigError> {
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
        let mut changed = 0;
        for (instances, config) in changes {
            changed += apply(instances, &config, hub)?;
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
        let inner = self.read();
        let mut names: Vec<_> = inner
            .instances
            .iter()
            .filter(|(name, _)| wanted(name))
            .collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let mut all = Vec::new();
        for (_, named) in names {
            if let Some(slot) = &named.plain {
                all.push(Keyed::new(None, slot.instance.snapshot()));
            }
            let mut keyed: Vec<_> = named.keyed.iter().collect();
            keyed.sort_by(|a, b| a.0.cmp(b.0));
            all.extend(
                keyed
                    .into_iter()
                    .map(|(key, slot)| Keyed::new(Some(key.to_string()), slot.instance.snapshot())),
            );
        }
        all
    }
}

impl<K: Kind> Inner<K> {
    fn len(&self) -> usize {
        self.instances
            .values()
            .map(|named| usize::from(named.plain.is_some()) + named.keyed.len())
            .sum()
    }

    fn config_for(&self, name: &str) -> &K::Config {
        self.effective.get(name).unwrap_or(&self.default)
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

impl<K> Named<K> {
    fn new() -> Self {
        Self {
            plain: None,
            keyed: HashMap::new(),
        }
    }
}

impl<K: Kind> Slot<K> {
    fn new(instance: K, managed: bool, tick: &AtomicU64, source: &Source, hub: &Hub) -> Self {
        let task = if hub.settings().collect {
            instance
                .forward(source.clone(), hub.clone())
                .map(|forward| hub.spawn(forward))
        } else {
            None
        };
        Self {
            instance,
            managed,
            used: AtomicU64::new(tick.fetch_add(1, Ordering::Relaxed)),
            _task: task,
        }
    }

    fn touch(&self, tick: &AtomicU64) {
        self.used
            .store(tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl<K: Kind> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("Store")
            .field("kind", &K::KIND)
            .field("default", &inner.default)
            .field("overrides", &inner.overrides)
            .field("instances", &inner.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// `default` with `overrides` laid over it, validated; errors are named
/// under `<section>.<name>`.
fn effective<K: Kind>(
    default: &K::Config,
    name: &str,
    overrides: &Overrides,
) -> Result<K::Config, ConfigError> {
    let prefix = format!("{}.{name}", K::KIND.section());
    let config = overrides.apply(default).map_err(|e| e.within(&prefix))?;
    K::validate(&config).map_err(|e| e.within(&prefix))?;
    Ok(config)
}

/// Applies `config` to instances that were checked to accept it.
fn apply<K: Kind>(
    instances: Vec<(Source, K)>,
    config: &K::Config,
    hub: &Hub,
) -> Result<usize, ConfigError> {
    let count = instances.len();
    for (source, instance) in instances {
        instance
            .reconfigure(config.clone())
            .map_err(|e| e.within(&format!("{}.{}", K::KIND.section(), source.name)))?;
        hub.publish(&source, EventKind::Changed);
    }
    Ok(count)
}
