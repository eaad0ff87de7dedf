//! The fleet limiter's handle: the local cache and leases first, then one
//! shared round trip per key, then the fail policy.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_breaker::Breaker;
use portcullis_core::clock::Clock;
use portcullis_core::{ConfigError, RateLimited};
use portcullis_ratelimit::{KeyedRateLimiter, RateLimiter};
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::{Instant, timeout_at};

use crate::client;
use crate::config::{FailPolicy, FleetConfig, TimeSource};
use crate::metrics::{Counters, FleetSnapshot, bump};
use crate::script;
use crate::state::{Answer, KeyState, Role, Round};

/// A rate limit shared by every instance of a service, kept in Redis: a
/// cheap, cloneable handle.
///
/// Every clone shares one local cache, one pool of leases, one breaker and
/// one set of counters; every instance that uses the same name, prefix and
/// Redis shares the limit. See the [crate docs](crate) for how a call is
/// decided and what each bound is.
#[derive(Clone)]
pub struct FleetLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    config: FleetConfig,
    /// The limit in the script's units: microseconds.
    interval_us: u64,
    tolerance_us: u64,
    /// The emission interval in nanoseconds, the least wait to report.
    interval_ns: u64,
    lease_lifetime_ns: u64,
    redis: ConnectionManager,
    script: Script,
    breaker: Breaker,
    clock: Clock,
    /// The limit's own key (calls without a key).
    single: KeyState,
    /// The caller's keys, sharded, each shard bounded.
    keys: Box<[Shard]>,
    hasher: std::hash::RandomState,
    keys_per_shard: usize,
    /// The limiters of [`FailPolicy::Local`].
    local: RateLimiter,
    local_keyed: KeyedRateLimiter<Arc<str>>,
    counters: Counters,
}

/// What the local state decided, or the round trip still to make.
pub(crate) enum Decision {
    /// Decided without Redis.
    Ready(Result<(), RateLimited>),
    /// To be decided by Redis (or the fail policy).
    Redis(RoundTrip),
}

/// A call the local state could not decide: it owns what it needs, so its
/// future is `'static`.
pub(crate) struct RoundTrip {
    shared: Arc<Shared>,
    key: Key,
}

enum Key {
    Single,
    Keyed(Arc<KeyState>),
}

/// One shard of the keyed states.
type Shard = Mutex<Keys>;

/// The keyed states of a shard, and when a full shard may be swept again.
#[derive(Default)]
struct Keys {
    states: HashMap<Arc<str>, Arc<KeyState>>,
    /// A full shard of busy keys is swept at most once per
    /// [`SWEEP_EVERY`], so that a flood of new keys does not scan it on
    /// every call.
    next_sweep: u64,
}

/// The least time between two sweeps of a full shard, in nanoseconds.
const SWEEP_EVERY: u64 = 1_000_000;

const SHARDS: usize = 16;

impl FleetLimiter {
    /// A limiter named `name` with `config` on the Redis behind `redis`.
    /// The name (after the configured prefix) is the limit's key in Redis:
    /// instances with the same name share the limit.
    ///
    /// Made inside a tokio runtime (its clock is the coarse one there).
    pub fn new(
        name: impl Into<Arc<str>>,
        config: FleetConfig,
        redis: ConnectionManager,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let limit = config.limit();
        let interval_ns = nanos(limit.emission_interval());
        let interval_us = interval_ns.div_ceil(1_000);
        let tolerance_us = interval_us * u64::from(limit.burst() - 1);
        let local = RateLimiter::from_config(name.clone(), config.local_limit())?;
        let local_keyed = KeyedRateLimiter::from_config(name.clone(), config.local_limit())?;
        let breaker = Breaker::from_config(format!("{name}.redis"), config.breaker().clone())?;
        let keys_per_shard = limit.max_keys().div_ceil(SHARDS);
        Ok(Self {
            shared: Arc::new(Shared {
                single: KeyState::new(None, format!("{}{name}", config.key_prefix())),
                name,
                interval_us,
                tolerance_us,
                interval_ns,
                lease_lifetime_ns: nanos(config.lease_lifetime()),
                config,
                redis,
                script: script::gcra(),
                breaker,
                clock: Clock::new(),
                keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: std::hash::RandomState::new(),
                keys_per_shard,
                local,
                local_keyed,
                counters: Counters::default(),
            }),
        })
    }

    /// A Redis connection for fleet limiters, from `client`: it connects
    /// lazily (a limiter made while Redis is down works, by its fail
    /// policy, until Redis is up), and reconnects quickly (from 10 ms,
    /// doubling up to 100 ms between attempts, each attempt given 250 ms),
    /// so that the limit holds again soon after Redis is back. Must be
    /// called inside a tokio runtime.
    ///
    /// Build your own [`ConnectionManager`] for other settings; the
    /// limiter's own timeout bounds every call either way.
    pub fn connection(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
        client::connection(client)
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.shared.config
    }

    /// The breaker around the Redis client, to watch or to steer (a
    /// `force_open` sends every call to the fail policy).
    pub fn breaker(&self) -> &Breaker {
        &self.shared.breaker
    }

    /// Admits a call on the limit's own key, or rejects it with
    /// [`RateLimited`]. Never waits on Redis longer than the configured
    /// timeout; in shadow mode, always admits.
    pub async fn acquire(&self) -> Result<(), RateLimited> {
        match self.decide(None) {
            Decision::Ready(verdict) => verdict,
            Decision::Redis(trip) => trip.run().await,
        }
    }

    /// Admits a call on `key`'s own limit (the same rate and burst, a
    /// budget per key, shared by the fleet), or rejects it.
    pub async fn acquire_key(&self, key: &str) -> Result<(), RateLimited> {
        match self.decide(Some(key)) {
            Decision::Ready(verdict) => verdict,
            Decision::Redis(trip) => trip.run().await,
        }
    }

    /// The limiter's counters now.
    pub fn snapshot(&self) -> FleetSnapshot {
        let shared = &self.shared;
        shared
            .counters
            .snapshot(&shared.name, shared.breaker.state())
    }

    /// Decides from the local state if it can: a leased token admits, a
    /// "denied until" in force rejects. No lock, no allocation, for the
    /// limit's own key; a keyed call takes its shard's lock to find its
    /// state.
    #[inline]
    pub(crate) fn decide(&self, key: Option<&str>) -> Decision {
        let shared = &self.shared;
        bump(&shared.counters.calls);
        let key = match key {
            None => Key::Single,
            Some(key) => Key::Keyed(shared.keyed(key)),
        };
        let state = key.state(shared);
        let now = shared.clock.now();
        if state.take_lease(now) {
            bump(&shared.counters.lease_admissions);
            return Decision::Ready(shared.finish(Ok(())));
        }
        if let Some(wait) = state.denied(now) {
            bump(&shared.counters.cache_rejections);
            return Decision::Ready(shared.finish(Err(shared.reject(wait))));
        }
        Decision::Redis(RoundTrip {
            shared: shared.clone(),
            key,
        })
    }
}

impl RoundTrip {
    /// Decides the call with a round trip, shared with the concurrent calls
    /// of its key, within the timeout.
    pub(crate) async fn run(self) -> Result<(), RateLimited> {
        let shared = &*self.shared;
        let state = self.key.state(shared);
        let deadline = Instant::now() + shared.config.timeout();
        let verdict = shared.round_trip(state, deadline).await;
        shared.finish(verdict)
    }
}

impl Key {
    fn state<'a>(&'a self, shared: &'a Shared) -> &'a KeyState {
        match self {
            Key::Single => &shared.single,
            Key::Keyed(state) => state,
        }
    }
}

impl Shared {
    /// The state of `key`, made if new. A full shard forgets its idle keys
    /// first (at most once per [`SWEEP_EVERY`]); if none is idle, the call
    /// gets a state of its own that is not kept (it goes to Redis,
    /// uncached).
    fn keyed(&self, key: &str) -> Arc<KeyState> {
        let shard = &self.keys[self.hasher.hash_one(key) as usize % SHARDS];
        let mut keys = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = keys.states.get(key) {
            return state.clone();
        }
        let key: Arc<str> = key.into();
        let redis_key = format!("{}{}:{key}", self.config.key_prefix(), self.name);
        let state = Arc::new(KeyState::new(Some(key.clone()), redis_key));
        if keys.states.len() >= self.keys_per_shard {
            let now = self.clock.now();
            if now >= keys.next_sweep {
                keys.states
                    .retain(|_, state| Arc::strong_count(state) > 1 || !state.idle(now));
                keys.next_sweep = now + SWEEP_EVERY;
            }
        }
        if keys.states.len() < self.keys_per_shard {
            keys.states.insert(key, state.clone());
        }
        state
    }

    /// Counts the verdict; in shadow mode, turns a rejection into an
    /// admission.
    fn finish(&self, verdict: Result<(), RateLimited>) -> Result<(), RateLimited> {
        let counters = &self.counters;
        match verdict {
            Ok(()) => bump(&counters.admitted),
            Err(_) if self.config.shadow() => {
                bump(&counters.shadow_rejections);
                bump(&counters.admitted);
                return Ok(());
            }
            Err(_) => bump(&counters.rejected),
        }
        verdict
    }

    fn reject(&self, wait: u64) -> RateLimited {
        let wait = Duration::from_nanos(wait.max(1));
        RateLimited::new(self.name.clone(), Some(wait))
    }

    /// Joins or leads the round trip of `state`'s key until it is decided,
    /// or goes to the fail policy at `deadline`.
    async fn round_trip(&self, state: &KeyState, deadline: Instant) -> Result<(), RateLimited> {
        loop {
            let round = match state.enter() {
                Role::Join(round) => {
                    bump(&self.counters.coalesced);
                    round
                }
                Role::Lead {
                    after,
                    round,
                    answer,
                } => {
                    if let Some(after) = after
                        && timeout_at(deadline, after.answer()).await.is_err()
                    {
                        return self.fail(state);
                    }
                    round.send();
                    let found = self.lead(state, &round.round, deadline).await;
                    answer.send_replace(Some(found));
                    round.round.clone()
                }
            };
            match timeout_at(deadline, round.answer()).await {
                Err(_) => return self.fail(state),
                // The leader went away without an answer: ask again.
                Ok(None) => continue,
                Ok(Some(answer)) => return self.share(state, &round, answer),
            }
        }
    }

    /// Answers a round: from the previous round's denial or leases if they
    /// cover it, else from Redis.
    async fn lead(&self, state: &KeyState, round: &Round, deadline: Instant) -> Answer {
        let wanted = round.wanted.load(Ordering::Relaxed);
        let now = self.clock.now();
        let leased = state.take_leases(now, wanted);
        round.left.store(leased, Ordering::Relaxed);
        let need = wanted - leased;
        if need == 0 {
            return Answer::Fleet { wait: 0 };
        }
        if let Some(wait) = state.denied(now) {
            return Answer::Fleet { wait };
        }
        let ask = need + self.config.lease_size();
        let Some((granted, wait_us)) = self.call(state, ask, deadline).await else {
            return Answer::Unavailable;
        };
        let now = self.clock.now();
        let mine = granted.min(need);
        round.left.fetch_add(mine, Ordering::Relaxed);
        if granted > mine {
            state.lease(granted - mine, now + self.lease_lifetime_ns);
        }
        let wait = wait_us.saturating_mul(1_000);
        if wait > 0 {
            state.deny_until(now + wait);
        }
        Answer::Fleet { wait }
    }

    /// One script call through the breaker, within the deadline: the
    /// tokens granted and the wait (µs) until the next conforms.
    async fn call(&self, state: &KeyState, ask: u32, deadline: Instant) -> Option<(u32, u64)> {
        let now_us = match self.config.time() {
            TimeSource::Redis => 0,
            TimeSource::Caller => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_micros() as u64),
        };
        let mut invocation = self.script.key(&state.redis_key);
        invocation
            .arg(ask)
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .arg(now_us);
        client::invoke(
            &self.redis,
            &self.breaker,
            &invocation,
            deadline,
            &self.counters.redis,
            &self.name,
        )
        .await
    }

    /// A call's share of a round's answer: one of its tokens, else the
    /// round's rejection, or the fail policy if Redis did not decide.
    fn share(&self, state: &KeyState, round: &Round, answer: Answer) -> Result<(), RateLimited> {
        if round.take() {
            return Ok(());
        }
        match answer {
            Answer::Fleet { wait } => Err(self.reject(wait.max(self.interval_ns))),
            Answer::Unavailable => self.fail(state),
        }
    }

    /// The fail policy's verdict.
    fn fail(&self, state: &KeyState) -> Result<(), RateLimited> {
        bump(&self.counters.decided_locally);
        match self.config.fail_policy() {
            FailPolicy::FailOpen => Ok(()),
            FailPolicy::FailClosed => Err(RateLimited::new(self.name.clone(), None)),
            FailPolicy::Local => match &state.key {
                None => self.local.try_acquire(),
                Some(key) => self.local_keyed.try_acquire(key),
            },
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl fmt::Debug for FleetLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("FleetLimiter")
            .field("name", &shared.name)
            .field("config", &shared.config)
            .field("breaker", &shared.breaker.state())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Ready(verdict) => f.debug_tuple("Ready").field(verdict).finish(),
            Decision::Redis(trip) => f.debug_tuple("Redis").field(trip).finish(),
        }
    }
}

impl fmt::Debug for RoundTrip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            Key::Single => None,
            Key::Keyed(state) => state.key.as_deref(),
        };
        f.debug_struct("RoundTrip")
            .field("limiter", &self.shared.name)
            .field("key", &key)
            .finish()
    }
}
