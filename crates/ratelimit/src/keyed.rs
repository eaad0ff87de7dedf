//! Keyed limits: one budget per key (client, tenant, route), in bounded
//! memory that the limiter cleans by itself.
//!
//! Keys live in a few shards, each a `Mutex<HashMap<K, tat>>`; a call hashes
//! its key once (SipHash, keyed per limiter, so that clients cannot aim at
//! one shard or bucket) and takes its shard's lock once, for a lookup and
//! the GCRA arithmetic. A key whose
//! theoretical arrival time is in the past is *idle*: its state is the same
//! as a fresh key's (the whole burst), so forgetting it changes no decision.
//! Idle keys are swept out by the inserts themselves — no task to spawn,
//! nothing for the user to run: a shard is swept when a new key finds it
//! full or twice as large as after its last sweep, and never before one of
//! its keys can have gone idle (each shard knows the earliest
//! `tat` it holds). So the cost of sweeping is amortised over the inserts,
//! and a full shard of busy keys is not swept again and again.
//!
//! `max_keys` is split evenly over the shards (up to 16, with at least 64
//! keys each). A new key whose shard is full of busy keys is refused with
//! [`RateLimited`], whose `retry_after` is when the first of them can go
//! idle: the keys already admitted keep their budgets, and memory stays
//! bounded under a flood of new keys. (Since keys hash unevenly, a shard can
//! be full a little before `max_keys` keys are tracked in all.)

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use portcullis_core::{ConfigError, RateLimited};
use serde::Serialize;

use crate::RateLimiterSnapshot;
use crate::config::RateLimitConfig;
use crate::gcra::{Cell, Decision};
use crate::key::KeyExtractor;
use crate::limiter::{Admit, Check, Common, Refund, Verdict};

/// A keyed rate limiter: one budget per key, all with the same limit, in a
/// cheap, cloneable handle.
///
/// Each key gets `rate` calls per `period` with its own `burst`. Requests
/// without a key (see [`KeyExtractor`]) share one more budget of the same
/// limit. At most [`max_keys`](RateLimitConfig::max_keys) keys are tracked;
/// idle keys are forgotten by the limiter itself (see the module docs of
/// [`keyed`](crate::keyed)).
///
/// ```
/// use portcullis_ratelimit::{KeyedRateLimiter, RateLimitConfig};
///
/// let config = RateLimitConfig::per_second(1).build().unwrap();
/// let limiter = KeyedRateLimiter::<&str>::from_config("per-tenant", config).unwrap();
/// assert!(limiter.try_acquire(&"acme").is_ok());
/// assert!(limiter.try_acquire(&"acme").is_err());
/// assert!(limiter.try_acquire(&"globex").is_ok(), "another key, another budget");
/// assert_eq!(limiter.keys(), 2);
/// ```
pub struct KeyedRateLimiter<K> {
    shared: Arc<Shared<K>>,
}

/// A keyed limiter and the extractor that finds each request's key: what
/// [`RateLimitLayer::keyed`](crate::RateLimitLayer::keyed) limits with.
#[derive(Clone)]
pub struct ByKey<X, K> {
    limiter: KeyedRateLimiter<K>,
    extractor: X,
}

/// A keyed limiter's figures at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyedRateLimiterSnapshot {
    /// The limiter's name.
    pub name: String,
    /// Calls allowed per period and key, on average.
    pub limit: u32,
    /// The period.
    #[serde(with = "portcullis_core::duration::serde")]
    pub period: Duration,
    /// The most calls allowed at once per key.
    pub burst: u32,
    /// Keys tracked now (idle keys not yet swept included).
    pub keys: usize,
    /// The most keys tracked at once.
    pub max_keys: usize,
    /// Calls rejected since the limiter was made, refused new keys
    /// included.
    pub rejected: u64,
    /// New keys refused because their shard was full of busy keys.
    pub refused_keys: u64,
}

struct Shared<K> {
    common: Common,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
    mask: usize,
    keyless: Cell,
    refused_keys: AtomicU64,
}

struct Shard<K> {
    map: HashMap<Hashed<K>, u64, BuildHasherDefault<PassThrough>>,
    capacity: usize,
    /// Sweep when a new key comes and the map holds this many.
    sweep_at: usize,
    /// No key's `tat` is earlier: no key can be idle before then.
    next_expiry: u64,
}

/// A key with its hash, computed once per call: it picks the shard and is
/// the map's hash too.
struct Hashed<K> {
    hash: u64,
    key: K,
}

/// The map's hasher: the hash of a [`Hashed`] key, as it is.
#[derive(Default)]
struct PassThrough(u64);

/// What a keyed admission came to.
enum Keyed<K> {
    /// Decided on the key's budget; the key comes back when the call waits
    /// (to give its slot back if it is dropped).
    Decided(Decision, Option<K>),
    /// A new key, refused: its shard is full of busy keys until
    /// `retry_after` from now.
    Refused { retry_after: u64 },
}

const MAX_SHARDS: usize = 16;
const MIN_KEYS_PER_SHARD: usize = 64;

impl<K> KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A keyed limiter named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config))
    }

    pub(crate) fn build(name: Arc<str>, config: RateLimitConfig) -> Self {
        let max_keys = config.max_keys();
        let shards = prev_power_of_two(max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        let shards: Box<[_]> = (0..shards)
            .map(|i| {
                let capacity = max_keys / shards + usize::from(i < max_keys % shards);
                Mutex::new(Shard {
                    map: HashMap::default(),
                    capacity,
                    sweep_at: MIN_KEYS_PER_SHARD,
                    next_expiry: u64::MAX,
                })
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                common: Common::new(name, config),
                hasher: RandomState::new(),
                mask: shards.len() - 1,
                shards,
                keyless: Cell::new(),
                refused_keys: AtomicU64::new(0),
            }),
        }
    }

    /// A new limiter with the same name and configuration, and no keys.
    pub(crate) fn fresh(&self) -> Self {
        let common = &self.shared.common;
        Self::build(common.name.clone(), common.config())
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.common.name
    }

    /// Its configuration.
    pub fn config(&self) -> RateLimitConfig {
        self.shared.common.config()
    }

    /// Admits a call for `key` now, or rejects it with [`RateLimited`]
    /// (the key's budget is spent, or the key is new and there is no room
    /// for it). Never waits.
    pub fn try_acquire(&self, key: &K) -> Result<(), RateLimited> {
        let common = &self.shared.common;
        let now = common.now();
        match self.acquire_key(key.clone(), now, 0) {
            Keyed::Decided(Decision::Admit { .. }, _) => Ok(()),
            Keyed::Decided(Decision::Reject { retry_after, .. }, _) => {
                Err(common.reject(retry_after))
            }
            Keyed::Refused { retry_after } => Err(self.refuse(retry_after)),
        }
    }

    /// Admits a call for `key`, waiting for its slot if it comes within the
    /// configured `max_wait`; otherwise rejects it at once. The slot is
    /// reserved when this is called; dropping the future before it resolves
    /// gives the slot back if no call for the key was admitted since.
    pub fn acquire(
        &self,
        key: K,
    ) -> impl Future<Output = Result<(), RateLimited>> + Send + 'static {
        let check = self.check_key(Some(key));
        async move {
            match check.verdict {
                Verdict::Now { .. } => Ok(()),
                Verdict::Later { at, refund, .. } => {
                    tokio::time::sleep_until(at).await;
                    refund.disarm();
                    Ok(())
                }
                Verdict::Rejected { error, .. } => Err(error),
            }
        }
    }

    /// How many calls `key` could make now, one after the other.
    pub fn remaining(&self, key: &K) -> u64 {
        let common = &self.shared.common;
        let now = common.now();
        let (shard, key) = self.lock_shard(key.clone());
        let tat = shard.map.get(&key).copied().unwrap_or(0);
        common.gcra().available(tat, now)
    }

    /// How many keys are tracked now (idle keys not yet swept included).
    pub fn keys(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Forgets every idle key now and returns how many there were. Never
    /// needed (inserts sweep by themselves); useful before a snapshot or to
    /// give memory back after a spike.
    pub fn evict_idle(&self) -> usize {
        let now = self.shared.common.now();
        self.shared
            .shards
            .iter()
            .map(|shard| lock(shard).sweep(now))
            .sum()
    }

    /// The figures of `key` now, as a [`RateLimiterSnapshot`] (`rejected`
    /// counts the whole limiter's rejections).
    pub fn snapshot_of(&self, key: &K) -> RateLimiterSnapshot {
        self.shared.common.snapshot(self.remaining(key))
    }

    /// The limiter's figures now.
    pub fn snapshot(&self) -> KeyedRateLimiterSnapshot {
        let shared = &*self.shared;
        let config = shared.common.config();
        KeyedRateLimiterSnapshot {
            name: shared.common.name.to_string(),
            limit: config.rate(),
            period: config.period(),
            burst: config.burst(),
            keys: self.keys(),
            max_keys: config.max_keys(),
            rejected: shared.common.rejected.load(Ordering::Relaxed),
            refused_keys: shared.refused_keys.load(Ordering::Relaxed),
        }
    }

    /// Reads the clock once and decides for `key` (`None`: the keyless
    /// budget).
    pub(crate) fn check_key(&self, key: Option<K>) -> Check {
        let shared = &*self.shared;
        let common = &shared.common;
        let now = common.now();
        let keyed = match key {
            Some(key) => self.acquire_key(key, now, common.max_wait()),
            None => Keyed::Decided(
                shared
                    .keyless
                    .acquire(&common.gcra(), now, common.max_wait()),
                None,
            ),
        };
        let verdict = match keyed {
            Keyed::Decided(Decision::Admit { wait: 0, tat }, _) => Verdict::Now { tat },
            Keyed::Decided(Decision::Admit { wait, tat }, key) => Verdict::Later {
                at: common.instant(now + wait),
                tat,
                refund: self.refund(key, tat),
            },
            Keyed::Decided(Decision::Reject { retry_after, tat }, _) => Verdict::Rejected {
                error: common.reject(retry_after),
                reset: common.gcra().reset(tat, now),
            },
            Keyed::Refused { retry_after } => Verdict::Rejected {
                error: self.refuse(retry_after),
                reset: retry_after,
            },
        };
        Check { now, verdict }
    }

    fn acquire_key(&self, key: K, now: u64, max_wait: u64) -> Keyed<K> {
        let gcra = &self.shared.common.gcra();
        let (mut shard, key) = self.lock_shard(key);
        if let Some(tat) = shard.map.get_mut(&key) {
            let decision = gcra.decide(*tat, now, max_wait);
            return match decision {
                Decision::Admit { wait, tat: next } => {
                    *tat = next;
                    Keyed::Decided(decision, (wait > 0).then_some(key.key))
                }
                Decision::Reject { .. } => Keyed::Decided(decision, None),
            };
        }
        // A new key is a fresh budget: its first call conforms at once.
        let decision = gcra.decide(0, now, max_wait);
        let Decision::Admit { tat, .. } = decision else {
            unreachable!("a fresh budget admits its first call")
        };
        match shard.insert(key, tat, now) {
            Ok(()) => Keyed::Decided(decision, None),
            Err(retry_after) => Keyed::Refused { retry_after },
        }
    }

    /// Gives the slot reserved at `tat` back to `key` (or to the keyless
    /// budget) if no call was admitted for it since.
    fn refund(&self, key: Option<K>, tat: u64) -> Refund {
        let limiter = self.clone();
        Refund::new(move || {
            let shared = &*limiter.shared;
            let gcra = &shared.common.gcra();
            let Some(key) = key else {
                shared.keyless.refund(gcra, tat);
                return;
            };
            let (mut shard, key) = limiter.lock_shard(key);
            if let Some(current) = shard.map.get_mut(&key)
                && *current == tat
            {
                *current = tat - gcra.interval();
                shard.next_expiry = shard.next_expiry.min(tat - gcra.interval());
            }
        })
    }

    fn refuse(&self, retry_after: u64) -> RateLimited {
        self.shared.refused_keys.fetch_add(1, Ordering::Relaxed);
        self.shared.common.reject(retry_after)
    }

    /// Hashes `key` and locks its shard.
    fn lock_shard(&self, key: K) -> (MutexGuard<'_, Shard<K>>, Hashed<K>) {
        let shared = &*self.shared;
        let hash = shared.hasher.hash_one(&key);
        // The map's buckets use the low bits and the top seven; the shard
        // takes bits from the middle.
        let shard = lock(&shared.shards[(hash >> 32) as usize & shared.mask]);
        (shard, Hashed { hash, key })
    }
}

impl<K: Eq> Shard<K> {
    /// Inserts a new key, sweeping first when it is time; `Err` with the
    /// time until a key can go idle when the shard is full of busy keys.
    fn insert(&mut self, key: Hashed<K>, tat: u64, now: u64) -> Result<(), u64> {
        if self.map.len() >= self.sweep_at.min(self.capacity) {
            self.sweep(now);
        }
        if self.map.len() >= self.capacity {
            return Err(self.next_expiry.saturating_sub(now).max(1));
        }
        self.map.insert(key, tat);
        self.next_expiry = self.next_expiry.min(tat);
        Ok(())
    }

    /// Forgets the idle keys, if any can be idle; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        if now < self.next_expiry {
            return 0;
        }
        let before = self.map.len();
        let mut next = u64::MAX;
        self.map.retain(|_, &mut tat| {
            let busy = tat > now;
            if busy {
                next = next.min(tat);
            }
            busy
        });
        self.next_expiry = next;
        self.sweep_at = (self.map.len() * 2).max(MIN_KEYS_PER_SHARD);
        if self.map.capacity() > 4 * self.sweep_at {
            self.map.shrink_to(self.sweep_at);
        }
        before - self.map.len()
    }
}

impl<X, K> ByKey<X, K> {
    /// Limits each request by the key `extractor` finds in it.
    pub fn new(limiter: KeyedRateLimiter<K>, extractor: X) -> Self {
        Self { limiter, extractor }
    }

    /// The keyed limiter.
    pub fn limiter(&self) -> &KeyedRateLimiter<K> {
        &self.limiter
    }

    /// The key extractor.
    pub fn extractor(&self) -> &X {
        &self.extractor
    }
}

impl<X, K> ByKey<X, K>
where
    X: Clone,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The same extractor with a new limiter of the same configuration.
    pub(crate) fn fresh(&self) -> Self {
        Self::new(self.limiter.fresh(), self.extractor.clone())
    }
}

impl<Req, X, K> Admit<Req> for ByKey<X, K>
where
    X: KeyExtractor<Req, Key = K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    #[inline]
    fn check(&self, request: &Req) -> Check {
        self.limiter.check_key(self.extractor.extract(request))
    }

    fn common(&self) -> &Common {
        &self.limiter.shared.common
    }
}

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K: PartialEq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

impl Hasher for PassThrough {
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Hashed` keys are hashed with it, through `write_u64`.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections leave the map consistent even if a key's `Hash`
    // or `Eq` panics, so a poisoned lock is safe to use.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("name", &self.shared.common.name)
            .field("config", &self.shared.common.config())
            .field("shards", &self.shared.shards.len())
            .finish_non_exhaustive()
    }
}

impl<X, K> fmt::Debug for ByKey<X, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByKey")
            .field("limiter", &self.limiter)
            .field("extractor", &std::any::type_name::<X>())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn limiter(max_keys: usize) -> KeyedRateLimiter<u32> {
        let config = RateLimitConfig::per_second(10)
            .burst(1)
            .max_keys(max_keys)
            .build()
            .unwrap();
        KeyedRateLimiter::from_config("keys", config).unwrap()
    }

    #[test]
    fn shards_split_max_keys_exactly() {
        for (max_keys, shards) in [(1, 1), (127, 1), (128, 2), (1_000, 8), (100_000, 16)] {
            let limiter = limiter(max_keys);
            let caps: Vec<usize> = limiter
                .shared
                .shards
                .iter()
                .map(|s| lock(s).capacity)
                .collect();
            assert_eq!(caps.len(), shards, "{max_keys}");
            assert_eq!(caps.iter().sum::<usize>(), max_keys);
            assert!(caps.iter().all(|&c| c >= max_keys / shards));
        }
    }

    fn h(key: u32) -> Hashed<u32> {
        Hashed {
            hash: u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            key,
        }
    }

    #[test]
    fn a_sweep_keeps_busy_keys_and_learns_the_next_expiry() {
        let mut shard = Shard {
            map: HashMap::default(),
            capacity: 3,
            sweep_at: 64,
            next_expiry: u64::MAX,
        };
        shard.insert(h(1), 100, 0).unwrap();
        shard.insert(h(2), 200, 0).unwrap();
        shard.insert(h(3), 300, 0).unwrap();
        assert_eq!(
            shard.insert(h(4), 100, 0),
            Err(100),
            "full until key 1 is idle"
        );
        assert_eq!(shard.sweep(99), 0, "no key can be idle yet");
        assert_eq!(shard.insert(h(4), 250, 150), Ok(()), "key 1 was swept out");
        assert_eq!(shard.next_expiry, 200);
        assert!(!shard.map.contains_key(&h(1)) && shard.map.len() == 3);
        assert_eq!(shard.sweep(1_000), 3);
        assert_eq!(shard.next_expiry, u64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_keys_are_counted_and_known_keys_keep_working() {
        let limiter = limiter(1);
        assert!(limiter.try_acquire(&7).is_ok());
        let refused = limiter.try_acquire(&8).unwrap_err();
        assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
        let snapshot = limiter.snapshot();
        assert_eq!(
            (snapshot.keys, snapshot.refused_keys, snapshot.rejected),
            (1, 1, 1)
        );
        assert_eq!(limiter.remaining(&7), 0);
        assert_eq!(
            limiter.remaining(&8),
            1,
            "an unknown key has its whole burst"
        );
    }
}
