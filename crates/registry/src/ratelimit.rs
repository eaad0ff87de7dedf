//! Rate limiters in the registry.
//!
//! A live rate limiter takes a config update whole
//! ([`RateLimiter::reconfigure`]): the calls it admitted still count
//! against the new limit. `max_keys` is a field of the config that a
//! single limiter does not use; the registry bounds its keyed rate
//! limiters with its own [`max_keys`](crate::RegistryBuilder::max_keys).

use std::convert::Infallible;

use portcullis_core::ConfigError;
use portcullis_ratelimit::{RateLimitConfig, RateLimiter, RateLimiterSnapshot};

use crate::figures::{Family, Value, counter, gauge};
use crate::hub::Hub;
use crate::kind::{Instance, InstanceKind, Source};

impl Instance for RateLimiter {
    type Config = RateLimitConfig;
    type Snapshot = RateLimiterSnapshot;

    type Attachment = Infallible;

    const KIND: InstanceKind = InstanceKind::RateLimiter;

    fn validate(config: &RateLimitConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn build(name: &str, config: RateLimitConfig) -> Self {
        RateLimiter::from_config(name, config)
            .expect("the registry validates every config it keeps")
    }

    fn name(&self) -> &str {
        RateLimiter::name(self)
    }

    fn check_update(&self, config: &RateLimitConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn reconfigure(&self, config: RateLimitConfig) -> Result<(), ConfigError> {
        RateLimiter::reconfigure(self, config)
    }

    fn snapshot(&self) -> RateLimiterSnapshot {
        RateLimiter::snapshot(self)
    }

    /// A limiter with its whole burst back remembers nothing: a new one
    /// would decide the same.
    fn evictable(&self) -> bool {
        self.remaining() >= u64::from(self.config().burst())
    }

    fn families() -> &'static [Family<RateLimiterSnapshot>] {
        &FAMILIES
    }

    fn attach(&self, _source: Source, _hub: Hub) -> Option<Infallible> {
        None
    }
}

/// A rate limiter's metric families. There is no `waiting_threads` gauge:
/// a call that waits for its slot holds no thread and no counter, only its
/// reserved slot, which `available_permissions` already shows.
static FAMILIES: [Family<RateLimiterSnapshot>; 5] = [
    gauge(
        "portcullis_ratelimiter_available_permissions",
        "Calls the rate limiter would admit now, one after the other.",
        |figures, emit| emit(&[], Value::Gauge(figures.available as f64)),
    ),
    gauge(
        "portcullis_ratelimiter_limit",
        "Calls the rate limiter allows per period, on average.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.limit))),
    ),
    gauge(
        "portcullis_ratelimiter_period_seconds",
        "The period the rate limiter's limit is counted over.",
        |figures, emit| emit(&[], Value::Gauge(figures.period.as_secs_f64())),
    ),
    gauge(
        "portcullis_ratelimiter_burst",
        "The most calls the rate limiter admits at once.",
        |figures, emit| emit(&[], Value::Gauge(f64::from(figures.burst))),
    ),
    counter(
        "portcullis_ratelimiter_rejected_calls",
        "Calls the rate limiter rejected since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.rejected)),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limiter_is_evictable_once_its_burst_is_back() {
        let config = RateLimitConfig::per_second(10).burst(2).build().unwrap();
        let limiter = <RateLimiter as Instance>::build("api", config);
        assert!(limiter.evictable());
        limiter.try_acquire().unwrap();
        assert!(!limiter.evictable());
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(limiter.evictable());
    }
}
