//! The `[redis]` section of a config file: where the fleet rate limits
//! live, and how they behave when Redis is slow or away.

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::duration;

use crate::error::ConfigErrors;
use crate::ratelimit::RateLimitConfig;
use crate::redis::{FailPolicy, FleetConfig};

/// The fields of `[redis]`.
const FIELDS: [&str; 5] = ["url", "timeout", "fail_policy", "key_prefix", "instances"];

/// The names of the fail policies, as written in the file.
const POLICIES: [&str; 3] = ["open", "closed", "local"];

/// The `[redis]` section of a config file (features `config` and `redis`):
/// the Redis that the fleet rate limits (`scope = "fleet"`) share, and
/// the settings of every [`FleetLimiter`](crate::redis::FleetLimiter) the
/// file makes.
///
/// ```toml
/// [redis]
/// url = "redis://10.0.0.7:6379/"   # required
/// timeout = "5ms"                  # the longest a call waits for Redis, in (0s, 10s]
/// fail_policy = "local"            # Redis away: "open", "closed" or "local" (limit / instances)
/// key_prefix = "portcullis:rl:"    # before the route's name in the Redis key
/// instances = 4                    # the replicas sharing each limit, for "local"
/// ```
///
/// Every field but `url` has the default of
/// [`FleetConfig`]: `timeout = "5ms"`, `fail_policy = "local"`,
/// `key_prefix = "portcullis:rl:"`, `instances = 1`.
///
/// ```
/// use std::time::Duration;
/// use portcullis::config::ConfigFile;
/// use portcullis::redis::FailPolicy;
///
/// let file = ConfigFile::from_toml(r#"
///     [redis]
///     url = "redis://127.0.0.1:6379/"
///     fail_policy = "closed"
///     [profiles.api.rate_limit]
///     rate = 200
///     scope = "fleet"
///     [routes.search]
///     profile = "api"
/// "#).unwrap();
/// let redis = file.redis().unwrap();
/// assert_eq!(redis.fail_policy(), FailPolicy::FailClosed);
/// assert_eq!(redis.timeout(), Duration::from_millis(5));
///
/// let errors = ConfigFile::from_toml("[redis]\nurl = \"redis://h/\"\ntimeout = \"0s\"\n").unwrap_err();
/// assert_eq!(errors.to_string(), "redis.timeout: must be in (0s, 10s], got 0s");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    url: String,
    timeout: Duration,
    fail_policy: FailPolicy,
    key_prefix: String,
    instances: u32,
}

impl RedisConfig {
    /// The Redis URL (`redis://host:port/db`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The longest a call waits for Redis.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What happens to a call Redis did not decide.
    pub fn fail_policy(&self) -> FailPolicy {
        self.fail_policy
    }

    /// The prefix of the limits' Redis keys.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The number of instances expected to share each limit.
    pub fn instances(&self) -> u32 {
        self.instances
    }

    /// The configuration of a fleet limiter of `limit` with these
    /// settings.
    pub fn fleet_config(&self, limit: RateLimitConfig) -> Result<FleetConfig, ConfigError> {
        FleetConfig::builder(limit)
            .timeout(self.timeout)
            .fail_policy(self.fail_policy)
            .key_prefix(self.key_prefix.clone())
            .instances(self.instances)
            .build()
    }

    /// Reads `[redis]`, every error pushed with its path (`redis.<field>`).
    pub(crate) fn from_raw(
        errors: &mut ConfigErrors,
        raw: &BTreeMap<String, toml::Value>,
    ) -> Option<Self> {
        let before = errors.len();
        let error =
            |field: &str, message: String| ConfigError::new(format!("redis.{field}"), message);
        for field in raw.keys().filter(|field| !FIELDS.contains(&field.as_str())) {
            errors.push(error(
                field,
                format!(
                    "unknown field{} (expected {})",
                    super::file::did_you_mean(field, FIELDS),
                    FIELDS.join(", ")
                ),
            ));
        }
        let text = |errors: &mut ConfigErrors, field: &str| match raw.get(field) {
            None => None,
            Some(toml::Value::String(text)) => Some(text.clone()),
            Some(other) => {
                errors.push(error(
                    field,
                    format!("must be a string, got {}", other.type_str()),
                ));
                None
            }
        };
        let defaults = FleetConfig::builder(
            RateLimitConfig::per_second(1)
                .build()
                .expect("one call a second is valid"),
        )
        .build()
        .expect("the defaults are valid");
        let mut config = Self {
            url: String::new(),
            timeout: defaults.timeout(),
            fail_policy: defaults.fail_policy(),
            key_prefix: defaults.key_prefix().to_owned(),
            instances: defaults.instances(),
        };
        match text(errors, "url") {
            None if !raw.contains_key("url") => {
                errors.push(error("url", "is required".to_owned()));
            }
            None => {}
            Some(url) => match ::redis::Client::open(url.as_str()) {
                Ok(_) => config.url = url,
                Err(why) => errors.push(error(
                    "url",
                    format!("is not a Redis URL ({why}), got {url:?}"),
                )),
            },
        }
        if let Some(timeout) = text(errors, "timeout") {
            match duration::parse(&timeout) {
                Ok(timeout) => config.timeout = timeout,
                Err(why) => errors.push(error("timeout", why.to_string())),
            }
        }
        if let Some(policy) = text(errors, "fail_policy") {
            config.fail_policy = match policy.as_str() {
                "open" => FailPolicy::FailOpen,
                "closed" => FailPolicy::FailClosed,
                "local" => FailPolicy::Local,
                other => {
                    errors.push(error(
                        "fail_policy",
                        format!(
                            "unknown policy {other:?}{} (expected \"open\", \"closed\" or \"local\")",
                            super::file::did_you_mean(other, POLICIES)
                        ),
                    ));
                    config.fail_policy
                }
            };
        }
        if let Some(prefix) = text(errors, "key_prefix") {
            config.key_prefix = prefix;
        }
        match raw.get("instances") {
            None => {}
            Some(toml::Value::Integer(n)) if *n >= 1 && u32::try_from(*n).is_ok() => {
                config.instances = *n as u32;
            }
            Some(other) => errors.push(error(
                "instances",
                format!("must be a whole number, 1 or more, got {other}"),
            )),
        }
        // The ranges of the fields, from the fleet limiter's own checks;
        // `instances` is checked against each fleet limit's rate.
        if let Err(why) = FleetConfig::builder(defaults.limit().clone())
            .timeout(config.timeout)
            .key_prefix(config.key_prefix.clone())
            .build()
        {
            errors.push(why.within("redis"));
        }
        (errors.len() == before).then_some(config)
    }

    /// The fleet limiter config of the limit at `path` (a profile's
    /// `rate_limit`), its errors named after the field they are about.
    pub(crate) fn check_limit(
        &self,
        errors: &mut ConfigErrors,
        path: &str,
        limit: &RateLimitConfig,
    ) {
        if let Err(why) = self.fleet_config(limit.clone()) {
            errors.push(match why.field() {
                "instances" => ConfigError::new(
                    "redis.instances",
                    format!(
                        "{} (at most the rate of {path}, shared by the instances)",
                        why.message()
                    ),
                ),
                _ => why.within(path),
            });
        }
    }
}
