//! What every fleet type shares to talk to Redis: the connection it makes,
//! one script call through the breaker around the client within a
//! deadline, the counts of how those calls went, and the sync task of the
//! fleet breaker and the fleet budget.

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig, State};
use portcullis_core::ConfigError;
use portcullis_core::duration;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::metrics::bump;

/// How the syncs of a fleet breaker or a fleet budget with Redis went, as
/// plain data. The counts run from its creation and never go back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SyncFigures {
    /// Syncs sent to Redis.
    pub syncs: u64,
    /// Syncs that came back with an error.
    pub errors: u64,
    /// Syncs that did not come back within the timeout.
    pub timeouts: u64,
    /// Syncs not sent because the breaker around the Redis client was
    /// open.
    pub breaker_rejections: u64,
    /// The state of the breaker around the Redis client.
    pub breaker: State,
}

/// The Redis side of a fleet breaker or a fleet budget: its connection,
/// the breaker around the client, the timeout of a sync, the counts, and
/// what wakes its sync task (notified when this is dropped, so that the
/// task sees the last handle gone at once).
pub(crate) struct SyncClient {
    redis: ConnectionManager,
    breaker: Breaker,
    timeout: Duration,
    counters: RedisCounters,
    pub(crate) wake: Arc<Notify>,
}

/// How the Redis calls of one fleet handle went, one relaxed atomic each.
#[derive(Debug, Default)]
pub(crate) struct RedisCounters {
    /// Scripts sent.
    pub(crate) calls: AtomicU64,
    /// Scripts that came back with an error.
    pub(crate) errors: AtomicU64,
    /// Scripts that did not come back by their deadline.
    pub(crate) timeouts: AtomicU64,
    /// Calls not sent because the breaker around the client was open.
    pub(crate) breaker_rejections: AtomicU64,
}

/// A connection for the fleet types: lazy (made while Redis is down, it
/// works once Redis is up) and quick to reconnect (from 10 ms, doubling up
/// to 100 ms between attempts, each attempt given 250 ms). Must be called
/// inside a tokio runtime.
pub(crate) fn connection(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100))
        .set_number_of_retries(2)
        .set_connection_timeout(Some(Duration::from_millis(250)));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Runs `invocation` on `redis` through `breaker`, by `deadline`: the
/// reply, or `None` when Redis did not answer (an error, the deadline, or
/// the breaker open, which sends nothing). Every case is counted in
/// `counters` and recorded in the breaker; `owner` names the caller in the
/// traces.
pub(crate) async fn invoke<T: FromRedisValue>(
    redis: &ConnectionManager,
    breaker: &Breaker,
    invocation: &ScriptInvocation<'_>,
    deadline: Instant,
    counters: &RedisCounters,
    owner: &str,
) -> Option<T> {
    let Ok(permit) = breaker.try_acquire() else {
        bump(&counters.breaker_rejections);
        return None;
    };
    bump(&counters.calls);
    let mut redis = redis.clone();
    match timeout_at(deadline, invocation.invoke_async::<T>(&mut redis)).await {
        Ok(Ok(reply)) => {
            permit.success();
            Some(reply)
        }
        Ok(Err(error)) => {
            permit.failure();
            bump(&counters.errors);
            tracing::debug!(owner, %error, "fleet: redis error");
            None
        }
        Err(_) => {
            permit.failure();
            bump(&counters.timeouts);
            tracing::debug!(owner, "fleet: redis timed out");
            None
        }
    }
}

/// The sync task of a fleet handle: a `round` on the handle's shared state
/// (upgraded from `shared` for the round only), then the `period`, or less
/// when `wake` is notified (but no sooner than a twentieth of the period
/// after the last round started), until the last handle is gone. `memory`
/// goes from round to round.
pub(crate) async fn sync_loop<T, M, Fut>(
    shared: Weak<T>,
    wake: Arc<Notify>,
    period: Duration,
    mut memory: M,
    round: impl Fn(Arc<T>, M) -> Fut,
) where
    Fut: Future<Output = M>,
{
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let started = Instant::now();
        memory = round(strong, memory).await;
        let _ = timeout_at(started + period, wake.notified()).await;
        sleep_until(started + period / 20).await;
    }
}

impl SyncClient {
    /// The Redis side of the fleet handle `owner`.
    pub(crate) fn new(
        owner: &str,
        redis: ConnectionManager,
        breaker: &BreakerConfig,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            redis,
            breaker: Breaker::from_config(format!("{owner}.redis"), breaker.clone())?,
            timeout,
            counters: RedisCounters::default(),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Spawns the sync task of `shared` (see [`sync_loop`]).
    pub(crate) fn spawn<T, M, Fut>(
        &self,
        shared: &Arc<T>,
        period: Duration,
        memory: M,
        round: impl Fn(Arc<T>, M) -> Fut + Send + 'static,
    ) where
        T: Send + Sync + 'static,
        M: Send + 'static,
        Fut: Future<Output = M> + Send + 'static,
    {
        let shared = Arc::downgrade(shared);
        tokio::spawn(sync_loop(shared, self.wake.clone(), period, memory, round));
    }

    /// Runs `invocation` within the timeout (see [`invoke`]).
    pub(crate) async fn call<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        owner: &str,
    ) -> Option<T> {
        let deadline = Instant::now() + self.timeout;
        invoke(
            &self.redis,
            &self.breaker,
            invocation,
            deadline,
            &self.counters,
            owner,
        )
        .await
    }

    /// The breaker around the Redis client.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The counts now.
    pub(crate) fn figures(&self) -> SyncFigures {
        let read = |counter: &AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        let counters = &self.counters;
        SyncFigures {
            syncs: read(&counters.calls),
            errors: read(&counters.errors),
            timeouts: read(&counters.timeouts),
            breaker_rejections: read(&counters.breaker_rejections),
            breaker: self.breaker.state(),
        }
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// The id of this instance: `instance` if given (not empty), else the
/// process id and a random number.
pub(crate) fn instance_id(instance: Option<Arc<str>>) -> Result<Arc<str>, ConfigError> {
    match instance {
        Some(instance) if instance.is_empty() => {
            Err(ConfigError::new("instance", "must not be empty"))
        }
        Some(instance) => Ok(instance),
        None => {
            let random = std::hash::RandomState::new().hash_one(std::process::id());
            Ok(format!("{}-{random:016x}", std::process::id()).into())
        }
    }
}

/// Checks that `value` is in `[min, max]`; `why` (e.g. " (a period at
/// most)") explains a bound that depends on another field.
pub(crate) fn check_duration(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
    why: &str,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            field,
            format!(
                "must be in [{}, {}]{why}, got {}",
                duration::format(min),
                duration::format(max),
                duration::format(value)
            ),
        ));
    }
    Ok(())
}

/// Checks the fields every sync configuration has: the key prefix (not
/// empty), the timeout (at most the period) and the breaker around the
/// Redis client.
pub(crate) fn check_sync(
    key_prefix: &str,
    period: Duration,
    timeout: Duration,
    redis_breaker: &BreakerConfig,
) -> Result<(), ConfigError> {
    if key_prefix.is_empty() {
        return Err(ConfigError::new("key_prefix", "must not be empty"));
    }
    let why = " (a period at most)";
    check_duration("timeout", timeout, Duration::from_millis(1), period, why)?;
    redis_breaker
        .validate()
        .map_err(|error| error.within("redis_breaker"))
}
