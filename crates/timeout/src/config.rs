//! Timeout configuration as serde data.

use std::time::Duration;

use portcullis_core::{ConfigError, duration};
use serde::{Deserialize, Serialize};

/// How a deadline is told to the callee.
///
/// As serde data: `propagate = "grpc"` or `propagate = { header = "x-timeout-ms" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// The `grpc-timeout` header, in gRPC's format (`"250m"`, `"3S"`).
    Grpc,
    /// A header of this name carrying the remaining milliseconds.
    Header(String),
}

/// The configuration of a timeout:
///
/// ```
/// use portcullis_timeout::TimeoutConfig;
/// use std::time::Duration;
///
/// let config: TimeoutConfig = toml::from_str(r#"
///     timeout = "2s"
///     status = 503
///     propagate = { header = "x-timeout-ms" }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.timeout(), Duration::from_secs(2));
///
/// let bad: TimeoutConfig = toml::from_str(r#"timeout = "0s""#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().to_string(), "timeout: must be greater than zero");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    #[serde(with = "duration::serde")]
    timeout: Duration,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    propagate: Option<Propagation>,
}

/// The longest timeout accepted: a day.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for TimeoutConfig {
    /// 10 s; HTTP timeouts answer 504; no propagation.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            status: 504,
            propagate: None,
        }
    }
}

impl TimeoutConfig {
    /// A configuration with this timeout and the other defaults.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The status an HTTP timeout answers with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// How the deadline is propagated, if it is.
    pub fn propagate(&self) -> Option<&Propagation> {
        self.propagate.as_ref()
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::new(
                "timeout",
                format!("must be at most 1d, got {}", duration::format(self.timeout)),
            ));
        }
        if !(400..=599).contains(&self.status) {
            return Err(ConfigError::new(
                "status",
                format!("must be in [400, 599], got {}", self.status),
            ));
        }
        if let Some(Propagation::Header(name)) = &self.propagate {
            let valid = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
                });
            if !valid {
                return Err(ConfigError::new(
                    "propagate.header",
                    format!("must be a lowercase HTTP header name, got {name:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let check = |toml: &str| {
            toml::from_str::<TimeoutConfig>(toml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check("timeout = \"2d\""),
            "timeout: must be at most 1d, got 2d"
        );
        assert_eq!(
            check("status = 200"),
            "status: must be in [400, 599], got 200"
        );
        assert_eq!(
            check("propagate = { header = \"X Bad\" }"),
            "propagate.header: must be a lowercase HTTP header name, got \"X Bad\""
        );
        assert!(toml::from_str::<TimeoutConfig>("timout = \"1s\"").is_err());
    }

    #[test]
    fn round_trips() {
        let config: TimeoutConfig =
            toml::from_str("timeout = \"1m30s\"\npropagate = \"grpc\"").unwrap();
        assert_eq!(config.timeout(), Duration::from_secs(90));
        assert_eq!(config.propagate(), Some(&Propagation::Grpc));
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            json,
            r#"{"timeout":"1m30s","status":504,"propagate":"grpc"}"#
        );
    }
}
