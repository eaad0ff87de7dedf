//! The fleet limiter's configuration: the limit, the Redis timeout, what to
//! do when Redis cannot answer, leases and shadow mode; validation names
//! the field and the allowed range.

use std::time::Duration;

use portcullis_breaker::BreakerConfig;
use portcullis_core::ConfigError;
use portcullis_core::config::check_range;
use portcullis_core::duration;
use portcullis_ratelimit::RateLimitConfig;

/// What a fleet limiter does with a call that Redis did not decide: Redis
/// answered with an error, did not answer within the timeout, or the
/// breaker around the Redis client is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailPolicy {
    /// Admit the call. The limit does not hold while Redis is away; the
    /// service behind it stays available.
    FailOpen,
    /// Reject the call with [`RateLimited`](portcullis_core::RateLimited)
    /// (no `retry_after`: nobody knows when Redis is back). The limit holds,
    /// and nothing gets through while Redis is away.
    FailClosed,
    /// Decide the call with a limiter of this process alone, at the fleet
    /// limit divided by the expected number of instances
    /// ([`FleetConfigBuilder::instances`]): rate / N, burst / N (each at
    /// least 1). With N right, the fleet as a whole keeps about its limit.
    Local,
}

/// Where the script's time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeSource {
    /// Redis's own clock (`TIME` inside the script): one clock for the
    /// whole fleet, whatever the instances' clocks say.
    Redis,
    /// The caller's system clock, passed to the script, for a Redis (or a
    /// proxy in front of it) that refuses `TIME` in scripts. The
    /// instances' clocks must then agree to well under an emission
    /// interval.
    Caller,
}

/// The configuration of a [`FleetLimiter`](crate::FleetLimiter).
///
/// ```
/// use std::time::Duration;
/// use portcullis_ratelimit::RateLimitConfig;
/// use portcullis_redis::{FailPolicy, FleetConfig};
///
/// let config = FleetConfig::builder(RateLimitConfig::per_second(200).burst(10).build().unwrap())
///     .timeout(Duration::from_millis(5))
///     .fail_policy(FailPolicy::Local)
///     .instances(4)
///     .leases(5, Duration::from_millis(50))
///     .build()
///     .unwrap();
/// assert_eq!(config.local_limit().rate(), 50);
///
/// let error = FleetConfig::builder(RateLimitConfig::per_second(200).build().unwrap())
///     .instances(0)
///     .build()
///     .unwrap_err();
/// assert_eq!(error.to_string(), "instances: must be in [1, 200], got 0");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FleetConfig {
    limit: RateLimitConfig,
    timeout: Duration,
    fail_policy: FailPolicy,
    instances: u32,
    lease_size: u32,
    lease_lifetime: Duration,
    shadow: bool,
    time: TimeSource,
    key_prefix: String,
    breaker: BreakerConfig,
}

/// Builds a [`FleetConfig`]; every setter has a default (see each).
#[derive(Clone, Debug)]
pub struct FleetConfigBuilder {
    config: FleetConfig,
}

/// The longest Redis timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest lease: it must fit the pool's 24 bits.
pub(crate) const MAX_LEASE: u32 = 65_535;

impl FleetConfig {
    /// A builder for `limit` shared by the fleet (its `rate`, `period` and
    /// `burst`; `max_keys` bounds the keys this process caches; `max_wait`
    /// is not used: a fleet limit fails fast).
    pub fn builder(limit: RateLimitConfig) -> FleetConfigBuilder {
        FleetConfigBuilder {
            config: Self {
                limit,
                timeout: Duration::from_millis(5),
                fail_policy: FailPolicy::Local,
                instances: 1,
                lease_size: 0,
                lease_lifetime: Duration::from_millis(100),
                shadow: false,
                time: TimeSource::Redis,
                key_prefix: "portcullis:rl:".to_owned(),
                breaker: default_breaker(),
            },
        }
    }

    /// The fleet's limit.
    pub fn limit(&self) -> &RateLimitConfig {
        &self.limit
    }

    /// The longest a call waits for Redis (default: 5 ms).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What happens to a call Redis did not decide (default:
    /// [`FailPolicy::Local`]).
    pub fn fail_policy(&self) -> FailPolicy {
        self.fail_policy
    }

    /// The number of instances expected to share the limit (default: 1).
    pub fn instances(&self) -> u32 {
        self.instances
    }

    /// Tokens asked for beyond the calls waiting, to admit later calls
    /// locally (default: 0, no leases).
    pub fn lease_size(&self) -> u32 {
        self.lease_size
    }

    /// How long a leased token may be used after Redis granted it
    /// (default: 100 ms).
    pub fn lease_lifetime(&self) -> Duration {
        self.lease_lifetime
    }

    /// Whether the limiter only counts what it would reject (default:
    /// false).
    pub fn shadow(&self) -> bool {
        self.shadow
    }

    /// Where the script's time comes from (default: [`TimeSource::Redis`]).
    pub fn time(&self) -> TimeSource {
        self.time
    }

    /// The prefix of the limiter's Redis keys (default: `portcullis:rl:`).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The configuration of the breaker around the Redis client.
    pub fn breaker(&self) -> &BreakerConfig {
        &self.breaker
    }

    /// The limit of [`FailPolicy::Local`]: the fleet's rate and burst
    /// divided by the instances (rounded down, at least 1), over the same
    /// period.
    pub fn local_limit(&self) -> RateLimitConfig {
        let share = |n: u32| (n / self.instances).max(1);
        RateLimitConfig::builder()
            .rate(share(self.limit.rate()))
            .period(self.limit.period())
            .burst(share(self.limit.burst()))
            .max_keys(self.limit.max_keys())
            .build()
            .expect("a share of a valid limit is valid")
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limit
            .validate()
            .map_err(|error| error.within("limit"))?;
        if self.limit.emission_interval() < Duration::from_micros(1) {
            return Err(ConfigError::new(
                "limit",
                format!(
                    "must allow at least 1us per call (Redis keeps microseconds), got {}",
                    duration::format(self.limit.emission_interval())
                ),
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::new(
                "timeout",
                format!(
                    "must be in (0s, 10s], got {}",
                    duration::format(self.timeout)
                ),
            ));
        }
        check_range("instances", self.instances, 1, self.limit.rate())?;
        check_range("lease_size", self.lease_size, 0, MAX_LEASE)?;
        if self.lease_size > 0
            && (self.lease_lifetime < Duration::from_millis(1)
                || self.lease_lifetime > self.limit.period())
        {
            return Err(ConfigError::new(
                "lease_lifetime",
                format!(
                    "must be in [1ms, {}] (the period), got {}",
                    duration::format(self.limit.period()),
                    duration::format(self.lease_lifetime)
                ),
            ));
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::new("key_prefix", "must not be empty"));
        }
        self.breaker
            .validate()
            .map_err(|error| error.within("breaker"))
    }
}

/// The breaker around the Redis client: opens when half of the last 20
/// calls (at least 10) failed or timed out, or after 5 in a row; probes
/// again after 250 ms, with 3 probes.
pub(crate) fn default_breaker() -> BreakerConfig {
    BreakerConfig::builder()
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .consecutive_failures(5)
        .wait_in_open(Duration::from_millis(250))
        .permitted_calls_in_half_open(3)
        .build()
        .expect("the default breaker is valid")
}

impl FleetConfigBuilder {
    /// The longest a call waits for Redis, in (0, 10 s] (default: 5 ms).
    /// Past it the call is decided by the [`FailPolicy`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// What happens to a call Redis did not decide (default:
    /// [`FailPolicy::Local`]).
    pub fn fail_policy(mut self, policy: FailPolicy) -> Self {
        self.config.fail_policy = policy;
        self
    }

    /// The number of instances expected to share the limit, in [1, rate]
    /// (default: 1): the divisor of [`FailPolicy::Local`].
    pub fn instances(mut self, instances: u32) -> Self {
        self.config.instances = instances;
        self
    }

    /// Leases: each round trip asks Redis for up to `size` tokens more than
    /// the calls waiting for it, and this process admits later calls with
    /// them, without a round trip, for up to `lifetime` after the grant
    /// (`size` in [0, 65535], 0 turns leases off; `lifetime` in [1 ms, the
    /// period]). See the crate docs for the over-admission bound.
    pub fn leases(mut self, size: u32, lifetime: Duration) -> Self {
        self.config.lease_size = size;
        self.config.lease_lifetime = lifetime;
        self
    }

    /// Shadow mode: decide and count every call, never reject one (default:
    /// off).
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.config.shadow = shadow;
        self
    }

    /// Where the script's time comes from (default: [`TimeSource::Redis`]).
    pub fn time(mut self, time: TimeSource) -> Self {
        self.config.time = time;
        self
    }

    /// The prefix of the limiter's Redis keys, not empty (default:
    /// `portcullis:rl:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// The breaker around the Redis client (default: see
    /// [`FleetConfig::breaker`]).
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.config.breaker = breaker;
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<FleetConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32) -> RateLimitConfig {
        RateLimitConfig::per_second(rate).build().unwrap()
    }

    fn error_of(builder: FleetConfigBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_and_range() {
        assert_eq!(
            error_of(FleetConfig::builder(limit(10)).timeout(Duration::ZERO)),
            "timeout: must be in (0s, 10s], got 0s"
        );
        assert_eq!(
            error_of(FleetConfig::builder(limit(10)).instances(11)),
            "instances: must be in [1, 10], got 11"
        );
        assert_eq!(
            error_of(FleetConfig::builder(limit(10)).leases(70_000, Duration::from_millis(10))),
            "lease_size: must be in [0, 65535], got 70000"
        );
        assert_eq!(
            error_of(FleetConfig::builder(limit(10)).leases(5, Duration::from_secs(2))),
            "lease_lifetime: must be in [1ms, 1s] (the period), got 2s"
        );
        assert_eq!(
            error_of(FleetConfig::builder(limit(10)).key_prefix("")),
            "key_prefix: must not be empty"
        );
        assert_eq!(
            error_of(FleetConfig::builder(limit(2_000_000))),
            "limit: must allow at least 1us per call (Redis keeps microseconds), got 500ns"
        );
    }

    #[test]
    fn defaults() {
        let config = FleetConfig::builder(limit(100)).build().unwrap();
        assert_eq!(config.timeout(), Duration::from_millis(5));
        assert_eq!(config.fail_policy(), FailPolicy::Local);
        assert_eq!(config.instances(), 1);
        assert_eq!(config.lease_size(), 0);
        assert!(!config.shadow());
        assert_eq!(config.time(), TimeSource::Redis);
        assert_eq!(config.key_prefix(), "portcullis:rl:");
    }

    #[test]
    fn the_local_limit_is_a_share_of_the_fleets() {
        let fleet = RateLimitConfig::per_second(200).burst(10).build().unwrap();
        let config = FleetConfig::builder(fleet).instances(3).build().unwrap();
        let local = config.local_limit();
        assert_eq!(local.rate(), 66);
        assert_eq!(local.burst(), 3);
        assert_eq!(local.period(), Duration::from_secs(1));
        let config = FleetConfig::builder(limit(5)).instances(5).build().unwrap();
        assert_eq!(config.local_limit().rate(), 1);
        assert_eq!(config.local_limit().burst(), 1);
    }
}
