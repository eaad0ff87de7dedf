//! What every fleet type shares to talk to Redis: the connection it makes,
//! one script call through the breaker around the client within a
//! deadline, and the counts of how those calls went.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use portcullis_breaker::Breaker;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::metrics::bump;

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
