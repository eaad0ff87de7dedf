//! Keyed bulkheads: one pool of permits per key, in a bounded table.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use portcullis_core::{BulkheadFull, ConfigError};
use serde::{Deserialize, Serialize};

use crate::bulkhead::Admission;
use crate::{Acquire, Bulkhead, BulkheadConfig, BulkheadPermit, BulkheadSnapshot};

/// A keyed bulkhead: one pool of `max_concurrent_calls` permits per key
/// (per upstream host, per tenant, per client), so that one key's calls
/// cannot take every permit. A cheap, cloneable handle, like [`Bulkhead`].
///
/// **The table is bounded** by [`BulkheadConfig::max_keys`]. A pool is made
/// on a key's first call. When the table is full, a new key first evicts
/// the pools that are idle (no call in flight or waiting, no [`Bulkhead`]
/// handle held by anyone); if every pool is busy, the new key's calls are
/// **rejected** with [`BulkheadFull`] until one is idle. There is no shared
/// overflow pool: a flood of new keys (an attacker making up tenant ids)
/// then cannot take more than `max_keys × max_concurrent_calls` permits, nor
/// squeeze the permits of the keys already in.
///
/// ```
/// use portcullis_bulkhead::{BulkheadConfig, KeyedBulkhead};
///
/// let config = BulkheadConfig::builder().max_concurrent_calls(1).max_keys(2).build().unwrap();
/// let per_tenant = KeyedBulkhead::<&str>::from_config("tenants", config).unwrap();
/// let a = per_tenant.try_acquire("a").unwrap();
/// assert!(per_tenant.try_acquire("a").is_err(), "tenant a has used its permit");
/// let b = per_tenant.try_acquire("b").unwrap(); // tenant b has its own
///
/// assert!(per_tenant.try_acquire("c").is_err(), "two keys, both busy: no room for c");
/// drop(a);
/// assert!(per_tenant.try_acquire("c").is_ok(), "a's idle pool made room");
/// assert_eq!(per_tenant.len(), 2);
/// # drop(b);
/// ```
pub struct KeyedBulkhead<K> {
    shared: Arc<KeyedShared<K>>,
}

/// A keyed bulkhead's figures at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyedBulkheadSnapshot {
    /// The bulkhead's name.
    pub name: String,
    /// Keys with a pool now.
    pub keys: u32,
    /// The configured bound on keys.
    pub max_keys: u32,
    /// Calls holding a permit, over every pool.
    pub in_flight: u64,
    /// Calls waiting for a permit, over every pool.
    pub queued: u64,
    /// Calls of new keys rejected because every pool was busy.
    pub rejected_keys: u64,
}

struct KeyedShared<K> {
    name: Arc<str>,
    config: BulkheadConfig,
    pools: RwLock<HashMap<K, Bulkhead>>,
    rejected_keys: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedBulkhead<K> {
    /// A keyed bulkhead named `name` with the default configuration (25
    /// calls per key, no wait, at most 1,024 keys).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), BulkheadConfig::default())
    }

    /// A keyed bulkhead named `name`, each key's pool configured by
    /// `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: BulkheadConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config))
    }

    pub(crate) fn build(name: Arc<str>, config: BulkheadConfig) -> Self {
        Self {
            shared: Arc::new(KeyedShared {
                name,
                config,
                pools: RwLock::new(HashMap::new()),
                rejected_keys: AtomicU64::new(0),
            }),
        }
    }

    /// The bulkhead's name (every pool has it too).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration of each pool, and the bound on keys.
    pub fn config(&self) -> &BulkheadConfig {
        &self.shared.config
    }

    /// Takes a permit from `key`'s pool if one is free, or rejects with
    /// [`BulkheadFull`]. Never waits.
    pub fn try_acquire(&self, key: impl Into<K>) -> Result<BulkheadPermit, BulkheadFull> {
        self.with_pool(key.into(), Bulkhead::try_acquire)
    }

    /// Takes a permit from `key`'s pool, waiting as its configuration says
    /// (see [`Bulkhead::acquire`]).
    pub fn acquire(&self, key: impl Into<K>) -> Acquire {
        self.with_pool(key.into(), |pool| Ok(pool.acquire()))
            .unwrap_or_else(|full| Acquire::done(Err(full)))
    }

    pub(crate) fn admit(&self, key: K) -> Admission {
        self.with_pool(key, |pool| Ok(pool.admit()))
            .unwrap_or_else(Admission::Rejected)
    }

    /// Runs `f` on `key`'s pool, made if need be, under the table's lock so
    /// that the pool cannot be evicted before `f` holds on to it (a permit
    /// or a waiter keeps its pool).
    fn with_pool<T>(
        &self,
        key: K,
        f: impl FnOnce(&Bulkhead) -> Result<T, BulkheadFull>,
    ) -> Result<T, BulkheadFull> {
        let shared = &*self.shared;
        {
            let pools = shared.pools.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(pool) = pools.get(&key) {
                return f(pool);
            }
        }
        let mut pools = shared.pools.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(&key) {
            return f(pool);
        }
        if pools.len() >= shared.config.max_keys() as usize {
            pools.retain(|_, pool| !pool.is_unshared());
            if pools.len() >= shared.config.max_keys() as usize {
                shared.rejected_keys.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(bulkhead = %shared.name, "call rejected: every keyed pool is busy");
                return Err(BulkheadFull::new(shared.name.clone()));
            }
        }
        let pool = Bulkhead::build(shared.name.clone(), shared.config.clone());
        let result = f(&pool);
        pools.insert(key, pool);
        result
    }

    /// `key`'s pool, if it has one. A handle held keeps the pool from being
    /// evicted.
    pub fn get(&self, key: &K) -> Option<Bulkhead> {
        let pools = self
            .shared
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        pools.get(key).cloned()
    }

    /// Keys with a pool now.
    pub fn len(&self) -> usize {
        self.read(HashMap::len)
    }

    /// Whether no key has a pool.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls of new keys rejected because every pool was busy.
    pub fn rejected_keys(&self) -> u64 {
        self.shared.rejected_keys.load(Ordering::Relaxed)
    }

    /// The figures of every key's pool now.
    pub fn pools(&self) -> Vec<(K, BulkheadSnapshot)> {
        self.read(|pools| {
            pools
                .iter()
                .map(|(key, pool)| (key.clone(), pool.snapshot()))
                .collect()
        })
    }

    /// The keyed bulkhead's figures now.
    pub fn snapshot(&self) -> KeyedBulkheadSnapshot {
        let (keys, in_flight, queued) = self.read(|pools| {
            pools.values().fold((0, 0, 0), |(k, i, q), pool| {
                (
                    k + 1,
                    i + u64::from(pool.in_flight()),
                    q + u64::from(pool.queued()),
                )
            })
        });
        KeyedBulkheadSnapshot {
            name: self.shared.name.to_string(),
            keys,
            max_keys: self.shared.config.max_keys(),
            in_flight,
            queued,
            rejected_keys: self.rejected_keys(),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&HashMap<K, Bulkhead>) -> T) -> T {
        f(&self
            .shared
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

impl<K> Clone for KeyedBulkhead<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedBulkhead<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.shared.pools.read().map_or(0, |pools| pools.len());
        f.debug_struct("KeyedBulkhead")
            .field("name", &self.shared.name)
            .field("keys", &keys)
            .field("config", &self.shared.config)
            .finish()
    }
}
