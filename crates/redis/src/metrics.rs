//! What a fleet limiter counts: its calls by how they were decided, and
//! its Redis calls by how they went.

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_breaker::State;

use crate::client::RedisCounters;

/// A fleet limiter's counters at one moment, as plain data. Every count
/// runs from the limiter's creation and never goes back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetSnapshot {
    /// The limiter's name.
    pub name: String,
    /// Calls asked about.
    pub calls: u64,
    /// Calls let through (in shadow mode, every call).
    pub admitted: u64,
    /// Calls turned away (never in shadow mode).
    pub rejected: u64,
    /// Calls rejected by the local "denied until" cache, without Redis.
    pub cache_rejections: u64,
    /// Calls admitted with a leased token, without Redis.
    pub lease_admissions: u64,
    /// Calls that shared a round trip with other calls of their key.
    pub coalesced: u64,
    /// Scripts sent to Redis.
    pub redis_calls: u64,
    /// Scripts that came back with an error (Redis down, refused, ...).
    pub redis_errors: u64,
    /// Scripts that did not come back within the timeout.
    pub redis_timeouts: u64,
    /// Calls that found the breaker around the Redis client open, and so
    /// sent nothing.
    pub breaker_rejections: u64,
    /// Calls decided by the fail policy instead of Redis.
    pub decided_locally: u64,
    /// Calls that shadow mode let through but the limit would have
    /// rejected.
    pub shadow_rejections: u64,
    /// The state of the breaker around the Redis client.
    pub breaker: State,
}

/// The live counters, one relaxed atomic each.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) cache_rejections: AtomicU64,
    pub(crate) lease_admissions: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) redis: RedisCounters,
    pub(crate) decided_locally: AtomicU64,
    pub(crate) shadow_rejections: AtomicU64,
}

/// Adds one.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, name: &str, breaker: State) -> FleetSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FleetSnapshot {
            name: name.to_owned(),
            calls: read(&self.calls),
            admitted: read(&self.admitted),
            rejected: read(&self.rejected),
            cache_rejections: read(&self.cache_rejections),
            lease_admissions: read(&self.lease_admissions),
            coalesced: read(&self.coalesced),
            redis_calls: read(&self.redis.calls),
            redis_errors: read(&self.redis.errors),
            redis_timeouts: read(&self.redis.timeouts),
            breaker_rejections: read(&self.redis.breaker_rejections),
            decided_locally: read(&self.decided_locally),
            shadow_rejections: read(&self.shadow_rejections),
            breaker,
        }
    }
}
