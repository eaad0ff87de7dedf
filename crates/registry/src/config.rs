//! Named configurations with inheritance: a default per kind, and named
//! configs that override only the fields they set.

use std::collections::BTreeMap;

use portcullis_core::ConfigError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields a named configuration sets, laid over the default
/// configuration of its kind; every field it does not set is inherited.
///
/// It is serde data (a map of field names to values, as in the kind's own
/// config), so it reads from a config file like the full config does:
///
/// ```
/// use portcullis_registry::Overrides;
///
/// let overrides: Overrides = toml::from_str(r#"
///     failure_rate_threshold = 25.0
///     wait_in_open = "10s"
/// "#).unwrap();
/// assert_eq!(overrides, Overrides::new()
///     .set("failure_rate_threshold", 25.0)
///     .set("wait_in_open", "10s"));
/// ```
///
/// The layering is shallow: a field that is itself a table, such as
/// `sliding_window`, is replaced whole. A field set to `null` (possible in
/// JSON, not in TOML) takes the kind's own default, which for an optional
/// rule means "no such rule".
///
/// A number must be finite: `nan` and `inf` (which TOML and YAML can
/// spell) are refused with the field named, rather than read as `null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Overrides(Map<String, Value>);

impl<'de> Deserialize<'de> for Overrides {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(finite::Visit { path: None })? {
            Value::Object(map) => Ok(Self(map)),
            other => Err(serde::de::Error::custom(format!(
                "expected a table of fields, got {other}"
            ))),
        }
    }
}

/// Reading any value as a JSON [`Value`], as `Value`'s own `Deserialize`
/// does, except that a number that is not finite is an error naming its
/// field instead of turning into `null`.
mod finite {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// Reads one value; `path` is the field it is at, for errors.
    pub(super) struct Visit {
        pub(super) path: Option<String>,
    }

    impl Visit {
        fn at(&self, field: &str) -> Self {
            Self {
                path: Some(match &self.path {
                    Some(path) => format!("{path}.{field}"),
                    None => field.to_owned(),
                }),
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Visit {
        type Value = Value;

        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Visit {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a config value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            Number::from_f64(v).map(Value::Number).ok_or_else(|| {
                let field = self.path.as_deref().unwrap_or("value");
                E::custom(format!("{field}: must be a finite number, got {v}"))
            })
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut values = Vec::new();
            while let Some(value) = seq.next_element_seed(self.at(&values.len().to_string()))? {
                values.push(value);
            }
            Ok(Value::Array(values))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut values = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(self.at(&key))?;
                values.insert(key, value);
            }
            Ok(Value::Object(values))
        }
    }
}

/// A registry's configuration as serde data, for config files.
///
/// Each kind's section maps config names to [`Overrides`]; the name
/// `default` holds the default that every other name inherits from (itself
/// laid over the kind's built-in defaults):
///
/// ```
/// use portcullis_registry::{Registry, RegistryConfig};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config: RegistryConfig = toml::from_str(r#"
///     [breakers.default]
///     minimum_calls = 10
///
///     [breakers.payments]
///     failure_rate_threshold = 25.0
/// "#).unwrap();
/// let registry = Registry::from_config(&config).unwrap();
///
/// let payments = registry.breakers().get("payments").config();
/// assert_eq!(payments.failure_rate_threshold(), 25.0); // its own
/// assert_eq!(payments.minimum_calls(), 10); // inherited from `default`
///
/// // Bulkheads have their own section, inherited the same way.
/// let config: RegistryConfig = toml::from_str(r#"
///     [bulkheads.default]
///     max_concurrent_calls = 4
///
///     [bulkheads.db]
///     max_wait = "1s"
/// "#).unwrap();
/// let db = Registry::from_config(&config).unwrap().bulkheads().get("db");
/// assert_eq!(db.config().max_concurrent_calls(), 4);
/// assert_eq!(db.config().max_wait(), std::time::Duration::from_secs(1));
///
/// // So do rate limiters and retry budgets.
/// let config: RegistryConfig = toml::from_str(r#"
///     [ratelimiters.default]
///     rate = 50
///
///     [ratelimiters.search]
///     burst = 10
///
///     [budgets.default]
///     ratio = 0.1
///
///     [budgets.db]
///     min_per_second = 2
/// "#).unwrap();
/// let registry = Registry::from_config(&config).unwrap();
/// let search = registry.rate_limiters().get("search").config();
/// assert_eq!((search.rate(), search.burst()), (50, 10));
/// let db = registry.budgets().get("db").config();
/// assert_eq!((db.ratio(), db.min_per_second()), (0.1, 2));
///
/// let error = toml::from_str::<RegistryConfig>("[breakers.search]\nfailure_rate_threshold = 0.0")
///     .map(|config| Registry::from_config(&config))
///     .unwrap()
///     .unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "breakers.search.failure_rate_threshold: must be in (0, 100], got 0"
/// );
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Circuit-breaker configs by name; `default` is inherited by the
    /// others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub breakers: BTreeMap<String, Overrides>,
    /// Bulkhead configs by name; `default` is inherited by the others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bulkheads: BTreeMap<String, Overrides>,
    /// Rate-limit configs by name; `default` is inherited by the others
    /// (and itself laid over 100 calls per second, burst 100).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ratelimiters: BTreeMap<String, Overrides>,
    /// Adaptive concurrency-limiter configs by name; `default` is
    /// inherited by the others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limiters: BTreeMap<String, Overrides>,
    /// Retry-budget configs by name; `default` is inherited by the others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, Overrides>,
    /// How many keys one name may have for keyed instances (default 1,024).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
    /// What a new key gets when its name is full and no key can be evicted
    /// (default: the name's overflow instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_key_limit: Option<crate::AtKeyLimit>,
}

/// The config name that holds a kind's default.
pub(crate) const DEFAULT: &str = "default";

impl Overrides {
    /// No overrides: the default config as it is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `field` to `value` (as the kind's config would read it from a
    /// file: durations as `"30s"`, rates in percent).
    #[must_use]
    pub fn set(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(field.into(), value.into());
        self
    }

    /// Every field of `config`: a named config that inherits nothing.
    pub fn from_config<C: Serialize>(config: &C) -> Result<Self, ConfigError> {
        match serde_json::to_value(config) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ConfigError::new("config", "must be a table of fields")),
            Err(error) => Err(ConfigError::new("config", error.to_string())),
        }
    }

    /// The fields set, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(field, value)| (field.as_str(), value))
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `base` with these fields laid over it, read back as a config.
    ///
    /// A field that the config does not know or whose value has the wrong
    /// type is reported by its name. The result is not validated.
    ///
    /// This is the inheritance every named config of the registry goes
    /// through, for other configs to reuse:
    ///
    /// ```
    /// use portcullis_registry::Overrides;
    /// use portcullis_breaker::BreakerConfig;
    ///
    /// let config = Overrides::new()
    ///     .set("minimum_calls", 5)
    ///     .apply(&BreakerConfig::default())
    ///     .unwrap();
    /// assert_eq!(config.minimum_calls(), 5);
    /// ```
    pub fn apply<C: Serialize + DeserializeOwned>(&self, base: &C) -> Result<C, ConfigError> {
        let base = match serde_json::to_value(base) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ConfigError::new("config", "must be a table of fields")),
            Err(error) => return Err(ConfigError::new("config", error.to_string())),
        };
        let mut merged = base.clone();
        merged.extend(self.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        match serde_json::from_value(Value::Object(merged)) {
            Ok(config) => Ok(config),
            Err(error) => {
                // Find the field to blame: the first one that fails alone.
                for (field, value) in &self.0 {
                    let mut one = base.clone();
                    one.insert(field.clone(), value.clone());
                    if let Err(alone) = serde_json::from_value::<C>(Value::Object(one)) {
                        return Err(ConfigError::new(field.clone(), plain(&alone)));
                    }
                }
                Err(ConfigError::new("config", plain(&error)))
            }
        }
    }
}

/// A serde error's message in a config file author's words.
fn plain(error: &serde_json::Error) -> String {
    portcullis_core::config::plain_serde_message(&error.to_string())
}

impl From<Map<String, Value>> for Overrides {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl TryFrom<Value> for Overrides {
    type Error = ConfigError;

    /// A JSON object; anything else is an error.
    fn try_from(value: Value) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(ConfigError::new(
                "config",
                format!("must be a table of fields, got {other}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_breaker::{BreakerConfig, SlidingWindow};
    use std::time::Duration;

    use super::*;

    #[test]
    fn nan_and_inf_are_refused_with_their_field_named() {
        for (text, field) in [
            ("failure_rate_threshold = nan", "failure_rate_threshold"),
            ("failure_rate_threshold = -inf", "failure_rate_threshold"),
            (
                "sliding_window = { type = \"count\", size = inf }",
                "sliding_window.size",
            ),
        ] {
            let error = toml::from_str::<Overrides>(text).unwrap_err().to_string();
            assert!(
                error.contains(&format!("{field}: must be a finite number")),
                "{text}: {error}"
            );
            assert!(!error.contains("null"), "{text}: {error}");
        }
        let read: Overrides = toml::from_str(
            "failure_rate_threshold = 25.0\nminimum_calls = 3\nsliding_window = { type = \"count\", size = 5 }\nlist = [1, 2.5]",
        )
        .unwrap();
        assert_eq!(
            read,
            Overrides::new()
                .set("failure_rate_threshold", 25.0)
                .set("minimum_calls", 3)
                .set(
                    "sliding_window",
                    serde_json::json!({ "type": "count", "size": 5 })
                )
                .set("list", serde_json::json!([1, 2.5]))
        );
    }

    #[test]
    fn fields_not_set_are_inherited() {
        let base = BreakerConfig::builder()
            .count_window(50)
            .minimum_calls(10)
            .build()
            .unwrap();
        let config = Overrides::new()
            .set("failure_rate_threshold", 25.0)
            .set("wait_in_open", "10s")
            .apply(&base)
            .unwrap();
        assert_eq!(config.failure_rate_threshold(), 25.0);
        assert_eq!(config.wait_in_open(), Duration::from_secs(10));
        assert_eq!(config.minimum_calls(), 10);
        assert_eq!(config.sliding_window(), SlidingWindow::Count { size: 50 });
    }

    #[test]
    fn a_table_field_is_replaced_whole() {
        let base = BreakerConfig::builder().count_window(50).build().unwrap();
        let config = Overrides::new()
            .set(
                "sliding_window",
                serde_json::json!({ "type": "time", "span": "30s" }),
            )
            .apply(&base)
            .unwrap();
        assert_eq!(
            config.sliding_window(),
            SlidingWindow::Time {
                span: Duration::from_secs(30),
                buckets: 10
            }
        );
    }

    #[test]
    fn null_takes_the_built_in_default() {
        let base = BreakerConfig::builder()
            .consecutive_failures(5)
            .build()
            .unwrap();
        let config = Overrides::new()
            .set("consecutive_failures", Value::Null)
            .apply(&base)
            .unwrap();
        assert_eq!(config.consecutive_failures(), None);
    }

    #[test]
    fn the_bad_field_is_named() {
        let base = BreakerConfig::default();
        let error = Overrides::new()
            .set("minimum_calls", 5)
            .set("failure_rate", 50.0)
            .apply(&base)
            .unwrap_err();
        assert_eq!(error.field(), "failure_rate");
        assert!(error.message().contains("unknown field"), "{error}");
        let error = Overrides::new()
            .set("wait_in_open", "soon")
            .apply(&base)
            .unwrap_err();
        assert_eq!(error.field(), "wait_in_open");
        let error = Overrides::new()
            .set("minimum_calls", "ten")
            .apply(&base)
            .unwrap_err();
        assert_eq!(error.field(), "minimum_calls");
        assert!(error.message().contains("invalid type"), "{error}");
    }

    #[test]
    fn non_tables_are_refused() {
        assert!(Overrides::try_from(serde_json::json!([1, 2])).is_err());
        assert!(Overrides::try_from(serde_json::json!({ "minimum_calls": 3 })).is_ok());
    }

    #[test]
    fn a_full_config_round_trips() {
        let config = BreakerConfig::builder()
            .count_window(7)
            .minimum_calls(3)
            .build()
            .unwrap();
        let overrides = Overrides::from_config(&config).unwrap();
        assert!(!overrides.is_empty());
        assert_eq!(overrides.apply(&BreakerConfig::default()).unwrap(), config);
    }
}
