//! The fleet retry budget: deposits and withdrawals counted on atomics,
//! shared with the fleet through Redis once a period, and spent from a
//! grant that Redis makes each instance out of the fleet's allowance.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_breaker::BreakerConfig;
use portcullis_core::ConfigError;
use portcullis_core::clock::Clock;
use portcullis_core::config::check_range;
use portcullis_core::duration;
use portcullis_retry::{BudgetConfig, RetryBudget};
use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::client::{self, SyncClient, SyncFigures, check_duration, check_sync};
use crate::config::default_breaker;
use crate::metrics::bump;
use crate::script;

/// A retry budget shared by the instances of a service through Redis: a
/// cheap, cloneable handle with [`deposit`](Self::deposit) and
/// [`try_withdraw`](Self::try_withdraw), as
/// [`RetryBudget`]'s.
///
/// Deposits and withdrawals are atomics; no call waits on Redis. A task on
/// the tokio runtime syncs once a period: it adds this instance's counts
/// to per-second buckets, gives back what is left of its last grant, and
/// gets a new grant, its share of the fleet's allowance, which
/// `try_withdraw` spends until the next sync. See the
/// [crate docs](crate#the-fleet-retry-budget). The task stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct FleetBudget {
    shared: Arc<Shared>,
}

/// The configuration of a [`FleetBudget`]: the budget the fleet shares,
/// and how the instances sync.
///
/// As serde data (every field optional, with these defaults):
/// `{ budget = { ratio = 0.2, min_per_second = 10, ttl = "10s" },
/// period = "1s", instances = 1, key_prefix = "portcullis:rb:",
/// timeout = "100ms" }`.
///
/// ```
/// use std::time::Duration;
/// use portcullis_redis::FleetBudgetConfig;
/// use portcullis_retry::BudgetConfig;
///
/// let config = FleetBudgetConfig::new(BudgetConfig::new(0.2, 10, Duration::from_secs(10)))
///     .with_instances(4);
/// assert!(config.validate().is_ok());
/// let error = config.with_instances(0).validate().unwrap_err();
/// assert_eq!(error.to_string(), "instances: must be in [1, 10000], got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetBudgetConfig {
    budget: BudgetConfig,
    #[serde(with = "duration::serde")]
    period: Duration,
    instances: u32,
    key_prefix: String,
    #[serde(with = "duration::serde")]
    timeout: Duration,
    redis_breaker: BreakerConfig,
}

/// What the last sync read about the fleet's budget, over its window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BudgetView {
    /// The fleet's deposits (requests).
    pub deposits: u64,
    /// The fleet's withdrawals (retries) reported so far.
    pub withdrawals: u64,
    /// Retries granted to instances, less what they gave back.
    pub granted: u64,
    /// What the fleet could still grant before this instance's grant:
    /// `floor(ratio × deposits) + reserve − granted`.
    pub allowance: i64,
    /// This instance's grant.
    pub grant: u64,
    /// The instances that synced within the last three periods.
    pub live: u64,
}

/// A fleet budget's figures at one moment, as plain data. The counts run
/// from its creation and never go back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FleetBudgetSnapshot {
    /// The budget's name.
    pub name: String,
    /// This instance's id.
    pub instance: String,
    /// Requests deposited here.
    pub deposits: u64,
    /// Retries withdrawn here.
    pub withdrawals: u64,
    /// Retries refused here.
    pub refused: u64,
    /// Retries decided by the local budget, Redis being away.
    pub decided_locally: u64,
    /// The fleet, as the last answered sync read it.
    pub fleet: Option<BudgetView>,
    /// How its syncs with Redis went.
    pub redis: SyncFigures,
}

struct Shared {
    name: Arc<str>,
    instance: Arc<str>,
    config: FleetBudgetConfig,
    /// What decides while the fleet's grant is stale (Redis away).
    local: RetryBudget,
    clock: Clock,
    /// Not reported to Redis yet.
    pending_deposits: AtomicU64,
    pending_withdrawals: AtomicU64,
    /// Of those, the ones the local budget allowed.
    pending_alone: AtomicU64,
    /// What is left of the grant, and the Redis second it was made in.
    grant: AtomicU64,
    grant_second: AtomicU64,
    /// Until when (clock nanoseconds) the grant stands; 0: never granted.
    fresh_until: AtomicU64,
    sync: SyncClient,
    script: Script,
    live_key: String,
    buckets: String,
    counters: Counters,
    view: Mutex<Option<BudgetView>>,
}

#[derive(Debug, Default)]
struct Counters {
    deposits: AtomicU64,
    withdrawals: AtomicU64,
    refused: AtomicU64,
    local: AtomicU64,
}

type Reply = (u64, u64, u64, u64, u64, i64, u64);

impl FleetBudgetConfig {
    /// `budget` shared by the fleet, with the other defaults.
    pub fn new(budget: BudgetConfig) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

    /// The budget: `ratio` of the fleet's requests plus `min_per_second`,
    /// over `ttl` (rounded up to whole seconds; at most 5 min, as every
    /// sync reads each second of it in Redis).
    pub fn budget(&self) -> &BudgetConfig {
        &self.budget
    }

    /// How often an instance syncs (default: 1 s).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The instances expected (default: 1): while Redis is away each one
    /// decides with the ratio and `min_per_second / instances`.
    pub fn instances(&self) -> u32 {
        self.instances
    }

    /// The prefix of the Redis keys (default: `portcullis:rb:`).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The longest a sync waits for Redis (default: 100 ms).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same with the sync period, in [10 ms, 60 s].
    pub fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// The same with `instances` expected, in [1, 10000].
    pub fn with_instances(mut self, instances: u32) -> Self {
        self.instances = instances;
        self
    }

    /// The same with another key prefix, not empty.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The same with another Redis timeout, in [1 ms, the period].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same with another breaker around the Redis client.
    pub fn with_redis_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.redis_breaker = breaker;
        self
    }

    /// The window in whole seconds: the budget's `ttl`, rounded up.
    fn window_seconds(&self) -> u64 {
        self.budget.ttl().as_secs() + u64::from(self.budget.ttl().subsec_nanos() > 0)
    }

    /// The local budget of an instance while Redis is away.
    fn local(&self) -> BudgetConfig {
        BudgetConfig::new(
            self.budget.ratio(),
            self.budget.min_per_second() / self.instances.max(1),
            self.budget.ttl(),
        )
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.budget.validate().map_err(|e| e.within("budget"))?;
        let ms = Duration::from_millis;
        // Every sync reads one bucket per second of the window in Redis.
        check_duration(
            "budget.ttl",
            self.budget.ttl(),
            ms(1_000),
            ms(300_000),
            " (a sync reads each second of it)",
        )?;
        check_duration("period", self.period, ms(10), ms(60_000), "")?;
        check_range("instances", self.instances, 1, 10_000)?;
        check_sync(
            &self.key_prefix,
            self.period,
            self.timeout,
            &self.redis_breaker,
        )
    }
}

impl Default for FleetBudgetConfig {
    fn default() -> Self {
        Self {
            budget: BudgetConfig::default(),
            period: Duration::from_secs(1),
            instances: 1,
            key_prefix: "portcullis:rb:".to_owned(),
            timeout: Duration::from_millis(100),
            redis_breaker: default_breaker(),
        }
    }
}

impl FleetBudget {
    /// A budget named `name` (its key in Redis, after the prefix: instances
    /// with the same name share it), as an instance with a random id.
    ///
    /// Must be called inside a tokio runtime: it spawns the sync task.
    pub fn new(
        name: impl Into<Arc<str>>,
        config: FleetBudgetConfig,
        redis: ConnectionManager,
    ) -> Result<Self, ConfigError> {
        Self::make(name.into(), config, redis, None)
    }

    /// Like [`new`](Self::new), as the instance `instance` (unique in the
    /// fleet; not empty).
    pub fn with_instance(
        name: impl Into<Arc<str>>,
        config: FleetBudgetConfig,
        redis: ConnectionManager,
        instance: impl Into<Arc<str>>,
    ) -> Result<Self, ConfigError> {
        Self::make(name.into(), config, redis, Some(instance.into()))
    }

    fn make(
        name: Arc<str>,
        config: FleetBudgetConfig,
        redis: ConnectionManager,
        instance: Option<Arc<str>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let instance = client::instance_id(instance)?;
        let base = format!("{}{name}:", config.key_prefix());
        let shared = Arc::new(Shared {
            local: RetryBudget::named(name.clone(), config.local())?,
            sync: SyncClient::new(&name, redis, &config.redis_breaker, config.timeout)?,
            name,
            instance,
            clock: Clock::new(),
            pending_deposits: AtomicU64::new(0),
            pending_withdrawals: AtomicU64::new(0),
            pending_alone: AtomicU64::new(0),
            grant: AtomicU64::new(0),
            grant_second: AtomicU64::new(0),
            fresh_until: AtomicU64::new(0),
            script: script::fleet_budget(),
            live_key: format!("{base}live"),
            buckets: format!("{base}b:"),
            counters: Counters::default(),
            view: Mutex::new(None),
            config,
        });
        shared.sync.spawn(
            &shared,
            shared.config.period(),
            (),
            |shared: Arc<Shared>, ()| async move { shared.round().await },
        );
        Ok(Self { shared })
    }

    /// Records a request: two relaxed `fetch_add`s (the pending count and
    /// the snapshot's) and the local budget's deposit, kept for when Redis
    /// is away.
    pub fn deposit(&self) {
        let shared = &*self.shared;
        shared.pending_deposits.fetch_add(1, Ordering::Relaxed);
        bump(&shared.counters.deposits);
        shared.local.deposit();
    }

    /// Takes one retry from this instance's grant, if any is left: one
    /// clock read and one compare-and-swap, and when it is granted the
    /// local budget's withdrawal too (its result ignored), so that the
    /// local budget knows what the fleet's grants spent. While the grant
    /// is stale (Redis did not answer for two periods), the local budget
    /// decides.
    pub fn try_withdraw(&self) -> bool {
        let shared = &*self.shared;
        let fresh = shared.clock.now() < shared.fresh_until.load(Ordering::Relaxed);
        let allowed = if fresh {
            let allowed = shared
                .grant
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            if allowed {
                // The local budget has every deposit: it must know this
                // spend too, or once Redis is away it would allow a whole
                // window's retries on top of those the grants allowed.
                let _ = shared.local.try_withdraw();
            }
            allowed
        } else {
            bump(&shared.counters.local);
            let allowed = shared.local.try_withdraw();
            if allowed {
                shared.pending_alone.fetch_add(1, Ordering::Relaxed);
            }
            allowed
        };
        if allowed {
            shared.pending_withdrawals.fetch_add(1, Ordering::Relaxed);
            bump(&shared.counters.withdrawals);
        } else {
            bump(&shared.counters.refused);
        }
        allowed
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Its configuration.
    pub fn config(&self) -> &FleetBudgetConfig {
        &self.shared.config
    }

    /// Its figures now.
    pub fn snapshot(&self) -> FleetBudgetSnapshot {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FleetBudgetSnapshot {
            name: shared.name.to_string(),
            instance: shared.instance.to_string(),
            deposits: read(&counters.deposits),
            withdrawals: read(&counters.withdrawals),
            refused: read(&counters.refused),
            decided_locally: read(&counters.local),
            fleet: shared
                .view
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            redis: shared.sync.figures(),
        }
    }
}

impl Shared {
    /// One sync. What it reports is taken from the counters first, and not
    /// put back if Redis does not answer (the script may have run): the
    /// fleet may under-count this instance, never count it twice. While
    /// the sync is in flight the grant is empty.
    async fn round(&self) {
        let config = &self.config;
        let deposits = self.pending_deposits.swap(0, Ordering::Relaxed);
        let withdrawals = self.pending_withdrawals.swap(0, Ordering::Relaxed);
        let alone = self.pending_alone.swap(0, Ordering::Relaxed);
        let unused = self.grant.swap(0, Ordering::Relaxed);
        let window = config.window_seconds();
        let budget = config.budget();
        let mut invocation = self.script.key(&self.live_key);
        invocation
            .arg(&*self.instance)
            .arg(u64::try_from((config.period() * 3).as_millis()).unwrap_or(u64::MAX))
            .arg(deposits)
            .arg(withdrawals)
            .arg(unused)
            .arg(self.grant_second.load(Ordering::Relaxed))
            .arg(window)
            .arg((budget.ratio() * 1e6).round() as u64)
            .arg(u64::from(budget.min_per_second()) * window)
            .arg(&self.buckets)
            .arg(alone);
        let reply: Option<Reply> = self.sync.call(&invocation, &self.name).await;
        let Some((grant, second, deposits, withdrawals, granted, allowance, live)) = reply else {
            return;
        };
        self.grant_second.store(second, Ordering::Relaxed);
        self.grant.store(grant, Ordering::Relaxed);
        let stale_after = u64::try_from((config.period() * 2).as_nanos()).unwrap_or(u64::MAX);
        self.fresh_until.store(
            self.clock.now().saturating_add(stale_after),
            Ordering::Relaxed,
        );
        *self.view.lock().unwrap_or_else(PoisonError::into_inner) = Some(BudgetView {
            deposits,
            withdrawals,
            granted,
            allowance,
            grant,
            live,
        });
    }
}

impl fmt::Debug for FleetBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &*self.shared;
        f.debug_struct("FleetBudget")
            .field("name", &shared.name)
            .field("instance", &shared.instance)
            .field("grant", &shared.grant.load(Ordering::Relaxed))
            .field("config", &shared.config)
            .finish_non_exhaustive()
    }
}
