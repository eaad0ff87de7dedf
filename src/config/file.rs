//! The config file: its model, loading, inheritance and validation.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_core::ConfigError;
use portcullis_core::config::check_range;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::breaker::BreakerConfig;
use crate::bulkhead::BulkheadConfig;
use crate::error::{ConfigErrors, within};
use crate::limit::LimitConfig;
use crate::preset::{LayerNames, check_layers};
use crate::ratelimit::RateLimitConfig;
use crate::registry::Overrides;
use crate::retry::RetryConfig;
use crate::timeout::TimeoutConfig;

/// A loaded and validated config file: the defaults, the profiles with
/// every layer's config resolved, and which profile each route and
/// upstream uses. See [the module docs](crate::config) for the format.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigFile {
    pub(crate) profiles: BTreeMap<String, Profile>,
    pub(crate) routes: BTreeMap<String, String>,
    pub(crate) upstreams: BTreeMap<String, String>,
    /// The upstreams with `per_host = true`.
    pub(crate) per_host: BTreeSet<String>,
    /// `[redis]`.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<super::RedisConfig>,
}

/// One profile's layers, each config resolved (the profile's fields laid
/// over `defaults`, laid over the layer's built-in defaults) and
/// validated. A layer is in the stack when its section is in the profile.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Profile {
    /// `[profiles.<name>.rate_limit]`.
    pub rate_limit: Option<RateLimitConfig>,
    /// `[profiles.<name>.timeout]`: the deadline of the whole call.
    pub timeout: Option<TimeoutConfig>,
    /// `[profiles.<name>.retry]` (upstreams only).
    pub retry: Option<RetryConfig>,
    /// `[profiles.<name>.breaker]`.
    pub breaker: Option<BreakerConfig>,
    /// `[profiles.<name>.limit]`: an adaptive concurrency limit, just
    /// inside the breaker and outside the bulkhead.
    pub limit: Option<LimitConfig>,
    /// `[profiles.<name>.bulkhead]`.
    pub bulkhead: Option<BulkheadConfig>,
    /// `[profiles.<name>.attempt_timeout]`: the limit of each attempt,
    /// inside the breaker.
    pub attempt_timeout: Option<TimeoutConfig>,
    /// `[profiles.<name>.fallback]`.
    pub fallback: Option<FallbackConfig>,
    /// `key` of `[profiles.<name>.rate_limit]` (or of
    /// `[defaults.rate_limit]`): what each caller is limited by, when the
    /// limit is per caller rather than shared.
    pub rate_limit_key: Option<RateLimitKey>,
    /// `scope` of `[profiles.<name>.rate_limit]` (or of
    /// `[defaults.rate_limit]`): whether the limit is this process's or the
    /// fleet's.
    pub rate_limit_scope: RateLimitScope,
}

/// Who shares a rate limit from a config file: this process alone (the
/// default), or every instance that runs the same file against the same
/// Redis (`scope = "fleet"`, feature `redis`, with a `[redis]` section:
/// see `RedisConfig`).
///
/// ```toml
/// [profiles.api.rate_limit]
/// rate = 200
/// scope = "fleet"                  # 200 a second for the whole fleet
/// ```
///
/// A fleet limit is kept in Redis under the route's (or upstream's) name,
/// after the `key_prefix` of `[redis]`: two instances with the same route
/// share it. It is not keyed (`key` is refused with it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RateLimitScope {
    /// Each process keeps the limit on its own (the default).
    #[default]
    Local,
    /// The fleet shares the limit, in Redis.
    Fleet,
}

/// What a rate limit from a config file is keyed by: each key gets the
/// whole limit to itself, at most `max_keys` keys are tracked, and idle
/// ones are forgotten (see
/// [`KeyedRateLimiter`](crate::ratelimit::KeyedRateLimiter)).
///
/// ```toml
/// [profiles.api.rate_limit]
/// rate = 100
/// key = "client_ip"                # the peer address (IPv6 by /64)
/// # key = "route"                  # the route (axum's MatchedPath with the `axum` feature)
/// # key = { header = "x-api-key" } # a header's value
/// max_keys = 100000
/// ```
///
/// With the `axum` feature, the client IP is axum's `ConnectInfo` (serve
/// with `into_make_service_with_connect_info::<SocketAddr>()`); without
/// it, a `SocketAddr` in the request's extensions. Requests with no key
/// share one more budget of the same limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum RateLimitKey {
    /// The client's address.
    ClientIp,
    /// The route.
    Route,
    /// The value of this header.
    Header(String),
}

/// A fallback answer from a config file: a fixed response.
///
/// ```toml
/// [profiles.search.fallback]
/// status = 200                       # default 503
/// body = '{"results": []}'          # default empty
/// content_type = "application/json" # default none
/// on = "error"                       # "error" (default), "rejection" or "failure"
/// ```
///
/// Every fallback response carries `x-portcullis-fallback: true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    status: u16,
    body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    on: FallbackOn,
}

/// What a configured fallback answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FallbackOn {
    /// Every error: the rejections of Portcullis layers and the service's
    /// own errors (the default).
    #[default]
    Error,
    /// Only the rejections of Portcullis layers (open breaker, full
    /// bulkhead, rate limit, timeout).
    Rejection,
    /// Errors, and responses the HTTP classifier calls failures (5xx, 408,
    /// 429).
    Failure,
}

/// The sections a profile (and `defaults`) may have, in stack order.
pub(crate) const LAYERS: &str =
    "rate_limit, timeout, retry, breaker, limit, bulkhead, attempt_timeout, fallback";

/// The file as written, before inheritance: every section a bag of fields,
/// so that every wrong field is found by name and reported, not just the
/// first.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFile {
    defaults: RawSections,
    profiles: BTreeMap<String, RawSections>,
    routes: BTreeMap<String, RawBinding>,
    upstreams: BTreeMap<String, RawBinding>,
    redis: Option<BTreeMap<String, toml::Value>>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct RawSections {
    rate_limit: Option<Overrides>,
    timeout: Option<Overrides>,
    retry: Option<Overrides>,
    breaker: Option<Overrides>,
    limit: Option<Overrides>,
    bulkhead: Option<Overrides>,
    attempt_timeout: Option<Overrides>,
    fallback: Option<Overrides>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBinding {
    profile: Option<String>,
    per_host: Option<bool>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The resolved `defaults`: the base each profile's section is laid over.
struct Bases {
    rate_limit: RateLimitConfig,
    timeout: TimeoutConfig,
    retry: RetryConfig,
    breaker: BreakerConfig,
    limit: LimitConfig,
    bulkhead: BulkheadConfig,
    attempt_timeout: TimeoutConfig,
    fallback: FallbackConfig,
    /// Whether `defaults.rate_limit` sets `rate`, which has no built-in
    /// default.
    rate_is_set: bool,
    /// `defaults.rate_limit.key`.
    rate_limit_key: Option<RateLimitKey>,
    /// `defaults.rate_limit.scope`.
    rate_limit_scope: Option<RateLimitScope>,
}

impl ConfigFile {
    /// Reads and validates a TOML config file, reporting every error with
    /// its path.
    ///
    /// A file that is not TOML, or whose shape is wrong (a section that is
    /// not a table, a profile name that is not a string), stops at that
    /// error, with its line and column. Otherwise every wrong value,
    /// unknown field, unknown section, missing or unknown profile and
    /// broken cross-layer rule is reported at once.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            // Kept whole: toml's message ends with a diagram of the line,
            // a caret under the place.
            ConfigError::new("file", error.to_string().trim_end())
        })?;
        Self::from_raw(raw)
    }

    /// Reads and validates the TOML file at `path`, as
    /// [`from_toml`](Self::from_toml) does; a file that cannot be read, or
    /// is not TOML, is an error named by its path.
    ///
    /// ```
    /// use portcullis::config::ConfigFile;
    ///
    /// let errors = ConfigFile::from_file("no/such/routes.toml").unwrap_err();
    /// assert!(errors.to_string().starts_with("no/such/routes.toml: cannot be read: "), "{errors}");
    /// ```
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let named = || path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::new(named(), format!("cannot be read: {error}")))?;
        Self::from_toml(&text).map_err(|errors| match errors.find("file") {
            // Not TOML: the one error, named by the path.
            Some(syntax) => ConfigError::new(named(), syntax.message().to_owned()).into(),
            None => errors,
        })
    }

    /// Reads and validates a config file in any serde format (YAML with
    /// `serde_yaml`, JSON with `serde_json`): the same model and the same
    /// checks as [`from_toml`](Self::from_toml).
    ///
    /// ```
    /// use portcullis::config::ConfigFile;
    ///
    /// let json = r#"{
    ///     "profiles": { "api": { "timeout": { "timeout": "2s" } } },
    ///     "routes": { "search": { "profile": "api" } }
    /// }"#;
    /// let file = ConfigFile::from_deserializer(&mut serde_json::Deserializer::from_str(json)).unwrap();
    /// let timeout = file.route("search").unwrap().timeout.as_ref().unwrap();
    /// assert_eq!(timeout.timeout(), std::time::Duration::from_secs(2));
    /// ```
    pub fn from_deserializer<'de, D>(deserializer: D) -> Result<Self, ConfigErrors>
    where
        D: serde::Deserializer<'de>,
    {
        let raw = RawFile::deserialize(deserializer)
            .map_err(|error| ConfigError::new("file", error.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawFile) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::new();
        for key in raw.unknown.keys() {
            errors.push(ConfigError::new(
                key.clone(),
                format!(
                    "unknown section{} (expected defaults, profiles, routes, upstreams, redis)",
                    did_you_mean(
                        key,
                        ["defaults", "profiles", "routes", "upstreams", "redis"]
                    )
                ),
            ));
        }
        #[cfg(feature = "redis")]
        let redis = raw
            .redis
            .as_ref()
            .and_then(|section| super::RedisConfig::from_raw(&mut errors, section));
        #[cfg(not(feature = "redis"))]
        if raw.redis.is_some() {
            errors.push(ConfigError::new(
                "redis",
                "needs the `redis` feature of portcullis",
            ));
        }
        let bases = resolve_defaults(&mut errors, &raw.defaults);
        let mut profiles = BTreeMap::new();
        for (name, sections) in &raw.profiles {
            let path = format!("profiles.{name}");
            if let Some(profile) = resolve_profile(&mut errors, &path, &bases, sections) {
                profiles.insert(name.clone(), profile);
            }
        }
        // A fleet limit needs a `[redis]`, whose settings must suit it.
        #[cfg(feature = "redis")]
        for (name, profile) in &profiles {
            let Some(limit) = &profile.rate_limit else {
                continue;
            };
            if profile.rate_limit_scope != RateLimitScope::Fleet {
                continue;
            }
            let path = format!("profiles.{name}.rate_limit");
            match &redis {
                Some(redis) => redis.check_limit(&mut errors, &path, limit),
                // Its errors are reported already.
                None if raw.redis.is_some() => {}
                None => errors.push(ConfigError::new(
                    format!("{path}.scope"),
                    "a fleet limit is kept in Redis: add a [redis] section with its url",
                )),
            }
        }
        let routes = bind(
            &mut errors,
            "routes",
            &raw.routes,
            &raw.profiles,
            |profile| {
                profile
                    .retry
                    .is_some()
                    .then_some("has a retry, which only an upstream may have")
            },
        );
        let upstreams = bind(
            &mut errors,
            "upstreams",
            &raw.upstreams,
            &raw.profiles,
            |profile| {
                (profile.breaker.is_some()
                    && profile.timeout.is_some()
                    && profile.attempt_timeout.is_none())
                .then_some(
                    "has a breaker and a timeout but no attempt_timeout: on an upstream the \
                     timeout spans the retries and cancels a hanging attempt before the \
                     breaker can count it, so the breaker would never open; add an \
                     attempt_timeout section",
                )
            },
        );
        let per_host = raw
            .upstreams
            .iter()
            .filter(|(name, binding)| {
                binding.per_host == Some(true) && upstreams.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in raw.upstreams.keys() {
            if raw.routes.contains_key(name) {
                errors.push(ConfigError::new(
                    format!("upstreams.{name}"),
                    format!(
                        "the name is taken by routes.{name} (their breakers and bulkheads would be one)"
                    ),
                ));
            }
        }
        errors.into_result(Self {
            profiles,
            routes,
            upstreams,
            per_host,
            #[cfg(feature = "redis")]
            redis,
        })
    }

    /// The `[redis]` section, if the file has one (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Option<&super::RedisConfig> {
        self.redis.as_ref()
    }

    /// The profile named `name`.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// The profile names, sorted.
    pub fn profiles(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The route names, sorted, each with its profile's name.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes.iter().map(|(r, p)| (r.as_str(), p.as_str()))
    }

    /// The upstream names, sorted, each with its profile's name.
    pub fn upstreams(&self) -> impl Iterator<Item = (&str, &str)> {
        self.upstreams.iter().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The profile of the route named `route`.
    pub fn route(&self, route: &str) -> Option<&Profile> {
        self.profiles.get(self.routes.get(route)?)
    }

    /// The profile of the upstream named `upstream`.
    pub fn upstream(&self, upstream: &str) -> Option<&Profile> {
        self.profiles.get(self.upstreams.get(upstream)?)
    }

    /// Whether the upstream named `upstream` says `per_host = true`: its
    /// breaker and bulkhead are then one per request authority (see
    /// [`Routes::upstream_layer`](crate::config::Routes::upstream_layer)).
    pub fn is_per_host(&self, upstream: &str) -> bool {
        self.per_host.contains(upstream)
    }

    /// Every route and upstream name, with the path of its profile
    /// (`profiles.<name>`) and the profile.
    pub(crate) fn bound(&self) -> impl Iterator<Item = (&str, String, &Profile)> {
        self.routes
            .iter()
            .chain(self.upstreams.iter())
            .filter_map(|(name, profile)| {
                let resolved = self.profiles.get(profile)?;
                Some((name.as_str(), format!("profiles.{profile}"), resolved))
            })
    }
}

impl std::str::FromStr for ConfigFile {
    type Err = ConfigErrors;

    fn from_str(text: &str) -> Result<Self, ConfigErrors> {
        Self::from_toml(text)
    }
}

fn resolve_defaults(errors: &mut ConfigErrors, raw: &RawSections) -> Bases {
    unknown_sections(errors, "defaults", raw);
    let (raw, rate_limit_key, rate_limit_scope) = &take_key(errors, "defaults", raw);
    let placeholder = RateLimitConfig::per_second(1)
        .build()
        .expect("one call a second is valid");
    macro_rules! base {
        ($field:ident, $builtin:expr, $validate:expr) => {{
            let builtin = $builtin;
            match &raw.$field {
                Some(overrides) => resolve(
                    errors,
                    concat!("defaults.", stringify!($field)),
                    &builtin,
                    overrides,
                    $validate,
                )
                .unwrap_or(builtin),
                None => builtin,
            }
        }};
    }
    let rate_is_set = raw
        .rate_limit
        .as_ref()
        .is_some_and(|o| o.fields().any(|(f, _)| f == "rate"));
    Bases {
        rate_limit: base!(rate_limit, placeholder, RateLimitConfig::validate),
        timeout: base!(timeout, TimeoutConfig::default(), TimeoutConfig::validate),
        retry: base!(retry, RetryConfig::default(), RetryConfig::validate),
        breaker: base!(breaker, BreakerConfig::default(), BreakerConfig::validate),
        limit: base!(limit, LimitConfig::default(), LimitConfig::validate),
        bulkhead: base!(
            bulkhead,
            BulkheadConfig::default(),
            BulkheadConfig::validate
        ),
        attempt_timeout: base!(
            attempt_timeout,
            TimeoutConfig::default(),
            TimeoutConfig::validate
        ),
        fallback: base!(
            fallback,
            FallbackConfig::default(),
            FallbackConfig::validate
        ),
        rate_is_set,
        rate_limit_key: rate_limit_key.clone(),
        rate_limit_scope: *rate_limit_scope,
    }
}

/// `raw` without the `key` and `scope` of its rate limit, and those,
/// parsed; an error is named `<path>.rate_limit.key` (or `.scope`).
fn take_key(
    errors: &mut ConfigErrors,
    path: &str,
    raw: &RawSections,
) -> (RawSections, Option<RateLimitKey>, Option<RateLimitScope>) {
    let mut raw = raw.clone();
    let Some(overrides) = raw.rate_limit.take() else {
        return (raw, None, None);
    };
    let mut key = None;
    let mut scope = None;
    let mut rest = Overrides::new();
    for (field, value) in overrides.fields() {
        if field == "scope" {
            scope = take_scope(errors, &format!("{path}.rate_limit.scope"), value.clone());
            continue;
        }
        if field != "key" {
            rest = rest.set(field, value.clone());
            continue;
        }
        let field = format!("{path}.rate_limit.key");
        match RateLimitKey::deserialize(value.clone()) {
            Ok(RateLimitKey::Header(name))
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() =>
            {
                errors.push(ConfigError::new(
                    format!("{field}.header"),
                    format!("{name:?} is not a header name"),
                ));
            }
            Ok(parsed) => key = Some(parsed),
            Err(error) => errors.push(ConfigError::new(
                field,
                format!(
                    "{} (expected \"client_ip\", \"route\" or {{ header = \"<name>\" }})",
                    portcullis_core::config::plain_serde_message(&error.to_string())
                ),
            )),
        }
    }
    raw.rate_limit = Some(rest);
    (raw, key, scope)
}

/// The `scope` of a rate limit, or its error at `field`.
fn take_scope<'de>(
    errors: &mut ConfigErrors,
    field: &str,
    value: impl serde::Deserializer<'de>,
) -> Option<RateLimitScope> {
    match RateLimitScope::deserialize(value) {
        Ok(RateLimitScope::Fleet) if cfg!(not(feature = "redis")) => {
            errors.push(ConfigError::new(
                field.to_owned(),
                "\"fleet\" needs the `redis` feature of portcullis",
            ));
            None
        }
        Ok(scope) => Some(scope),
        Err(error) => {
            errors.push(ConfigError::new(
                field.to_owned(),
                format!(
                    "{} (expected \"local\" or \"fleet\")",
                    portcullis_core::config::plain_serde_message(&error.to_string())
                ),
            ));
            None
        }
    }
}

fn resolve_profile(
    errors: &mut ConfigErrors,
    path: &str,
    bases: &Bases,
    raw: &RawSections,
) -> Option<Profile> {
    let before = errors.len();
    unknown_sections(errors, path, raw);
    let (raw, key, scope) = &take_key(errors, path, raw);
    let rate_limit_key = match raw.rate_limit {
        Some(_) => key.clone().or_else(|| bases.rate_limit_key.clone()),
        None => None,
    };
    let rate_limit_scope = match raw.rate_limit {
        Some(_) => scope.or(bases.rate_limit_scope).unwrap_or_default(),
        None => RateLimitScope::Local,
    };
    if rate_limit_scope == RateLimitScope::Fleet && rate_limit_key.is_some() {
        errors.push(ConfigError::new(
            format!("{path}.rate_limit.key"),
            "a fleet limit (scope = \"fleet\") is one limit for the fleet, not one per key: \
             drop the key, or the scope",
        ));
    }
    if let Some(overrides) = &raw.rate_limit
        && rate_limit_key.is_none()
        && overrides.fields().any(|(field, _)| field == "max_keys")
    {
        errors.push(ConfigError::new(
            format!("{path}.rate_limit.max_keys"),
            "has no effect without a `key`: a limit shared by every caller tracks no keys",
        ));
    }
    macro_rules! layer {
        ($field:ident, $validate:expr) => {
            raw.$field.as_ref().and_then(|overrides| {
                resolve(
                    errors,
                    &format!("{path}.{}", stringify!($field)),
                    &bases.$field,
                    overrides,
                    $validate,
                )
            })
        };
    }
    if let Some(overrides) = &raw.rate_limit {
        if !bases.rate_is_set && !overrides.fields().any(|(f, _)| f == "rate") {
            errors.push(ConfigError::new(
                format!("{path}.rate_limit.rate"),
                "is required (here or in defaults.rate_limit)",
            ));
        }
    }
    let profile = Profile {
        rate_limit: layer!(rate_limit, RateLimitConfig::validate),
        timeout: layer!(timeout, TimeoutConfig::validate),
        retry: layer!(retry, RetryConfig::validate),
        breaker: layer!(breaker, BreakerConfig::validate),
        limit: layer!(limit, LimitConfig::validate),
        bulkhead: layer!(bulkhead, BulkheadConfig::validate),
        attempt_timeout: layer!(attempt_timeout, TimeoutConfig::validate),
        fallback: layer!(fallback, FallbackConfig::validate),
        rate_limit_key,
        rate_limit_scope,
    };
    for (section, timeout) in [
        ("timeout", &profile.timeout),
        ("attempt_timeout", &profile.attempt_timeout),
    ] {
        let Some(timeout) = timeout else { continue };
        if timeout.status() != 504 {
            errors.push(ConfigError::new(
                format!("{path}.{section}.status"),
                format!(
                    "is not used here: a timeout of a config-built stack is an error, \
                     answered 504 by the route's error mapping (got {})",
                    timeout.status()
                ),
            ));
        }
        if timeout.propagate().is_some() {
            errors.push(ConfigError::new(
                format!("{path}.{section}.propagate"),
                "is not supported in a config-built stack",
            ));
        }
    }
    check_layers(
        errors,
        path,
        LayerNames {
            total: "timeout.timeout",
            attempt: "attempt_timeout.timeout",
            window: "breaker.sliding_window.span",
        },
        profile.timeout.as_ref().map(TimeoutConfig::timeout),
        profile.attempt_timeout.as_ref().map(TimeoutConfig::timeout),
        profile.breaker.as_ref(),
    );
    (errors.len() == before).then_some(profile)
}

/// " (did you mean `x`?)" when a name in `known` is near `unknown`.
pub(super) fn did_you_mean<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    portcullis_core::config::nearest(unknown, known)
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default()
}

fn unknown_sections(errors: &mut ConfigErrors, path: &str, raw: &RawSections) {
    for key in raw.unknown.keys() {
        errors.push(ConfigError::new(
            format!("{path}.{key}"),
            format!(
                "unknown layer{} (expected {LAYERS})",
                did_you_mean(key, LAYERS.split(", "))
            ),
        ));
    }
}

/// `overrides` laid over `base` with the registry's inheritance
/// ([`Overrides::apply`]) and validated, every error placed under `path`.
///
/// To report every wrong field of a section, not just the first, each field
/// is also laid over `base` alone: its errors (an unknown field, a value of
/// the wrong type or out of range) are reported when they are about that
/// field. Errors that only the fields together make (a minimum above a
/// maximum) come from the whole.
fn resolve<C>(
    errors: &mut ConfigErrors,
    path: &str,
    base: &C,
    overrides: &Overrides,
    validate: fn(&C) -> Result<(), ConfigError>,
) -> Option<C>
where
    C: Serialize + DeserializeOwned,
{
    let before = errors.len();
    for (field, value) in overrides.fields() {
        let one = Overrides::new().set(field, value.clone());
        match one.apply(base) {
            Err(error) => errors.push(within(error, path)),
            Ok(config) => {
                if let Err(error) = validate(&config) {
                    let blamed = error.field();
                    if blamed == field || blamed.starts_with(&format!("{field}.")) {
                        errors.push(within(error, path));
                    }
                }
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    match overrides.apply(base) {
        Err(error) => {
            errors.push(within(error, path));
            None
        }
        Ok(config) => match validate(&config) {
            Ok(()) => Some(config),
            Err(error) => {
                errors.push(within(error, path));
                None
            }
        },
    }
}

/// The profile name of each route (or upstream) of `section`, every missing
/// or unknown one reported; `refuse` says why a profile may not be used
/// there. Only upstreams may say `per_host`, and only with a breaker.
fn bind(
    errors: &mut ConfigErrors,
    section: &str,
    raw: &BTreeMap<String, RawBinding>,
    profiles: &BTreeMap<String, RawSections>,
    refuse: impl Fn(&RawSections) -> Option<&'static str>,
) -> BTreeMap<String, String> {
    let upstreams = section == "upstreams";
    let fields: &[&str] = if upstreams {
        &["profile", "per_host"]
    } else {
        &["profile"]
    };
    let mut bound = BTreeMap::new();
    for (name, binding) in raw {
        let path = format!("{section}.{name}");
        for key in binding.unknown.keys() {
            errors.push(ConfigError::new(
                format!("{path}.{key}"),
                format!(
                    "unknown field{} (expected {})",
                    did_you_mean(key, fields.iter().copied()),
                    fields.join(", ")
                ),
            ));
        }
        if binding.per_host.is_some() && !upstreams {
            errors.push(ConfigError::new(
                format!("{path}.per_host"),
                "only an upstream can have a breaker per host: a route's stack serves \
                 its own requests, with one breaker",
            ));
        }
        if name.is_empty() || name.contains('/') {
            errors.push(ConfigError::new(
                path.clone(),
                "a name must be non-empty and without '/' (it names a breaker in URLs)",
            ));
        }
        let Some(profile) = &binding.profile else {
            errors.push(ConfigError::new(format!("{path}.profile"), "is required"));
            continue;
        };
        match profiles.get(profile) {
            None => {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                errors.push(ConfigError::new(
                    format!("{path}.profile"),
                    format!(
                        "no profile named '{profile}' (profiles: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            Some(sections) if binding.per_host == Some(true) && sections.breaker.is_none() => {
                errors.push(ConfigError::new(
                    format!("{path}.per_host"),
                    format!(
                        "profile '{profile}' has no breaker to keep per host: add a breaker \
                         section to it, or drop per_host"
                    ),
                ));
            }
            Some(sections) => match refuse(sections) {
                Some(why) => errors.push(ConfigError::new(
                    format!("{path}.profile"),
                    format!("profile '{profile}' {why}"),
                )),
                None => {
                    bound.insert(name.clone(), profile.clone());
                }
            },
        }
    }
    bound
}

impl Default for FallbackConfig {
    /// A `503` with an empty body, on every error.
    fn default() -> Self {
        Self {
            status: 503,
            body: String::new(),
            content_type: None,
            on: FallbackOn::Error,
        }
    }
}

impl FallbackConfig {
    /// A fallback answering `status` with an empty body, on every error.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// The same, answering with `body`.
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The same, with a `Content-Type`.
    #[must_use]
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The same, answering `on` these failures.
    #[must_use]
    pub fn on(mut self, on: FallbackOn) -> Self {
        self.on = on;
        self
    }

    /// The status of the answer.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body of the answer.
    pub fn get_body(&self) -> &str {
        &self.body
    }

    /// The `Content-Type` of the answer, if set.
    pub fn get_content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// What it answers.
    pub fn get_on(&self) -> FallbackOn {
        self.on
    }

    /// Checks the status (100 to 599) and the content type (a valid
    /// header value).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("status", self.status, 100, 599)?;
        if let Some(content_type) = &self.content_type {
            if http::HeaderValue::from_str(content_type).is_err() {
                return Err(ConfigError::new(
                    "content_type",
                    format!("must be a valid header value, got {content_type:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fields(errors: &ConfigErrors) -> Vec<&str> {
        errors.errors().iter().map(ConfigError::field).collect()
    }

    #[test]
    fn profiles_inherit_from_defaults() {
        let file = ConfigFile::from_toml(
            r#"
            [defaults.breaker]
            minimum_calls = 10
            wait_in_open = "10s"
            [defaults.timeout]
            timeout = "3s"

            [profiles.payments.breaker]
            failure_rate_threshold = 25.0
            [profiles.payments.timeout]

            [routes.checkout]
            profile = "payments"
            "#,
        )
        .unwrap();
        let payments = file.route("checkout").unwrap();
        let breaker = payments.breaker.as_ref().unwrap();
        assert_eq!(breaker.failure_rate_threshold(), 25.0);
        assert_eq!(breaker.minimum_calls(), 10);
        assert_eq!(breaker.wait_in_open(), Duration::from_secs(10));
        assert_eq!(
            payments.timeout.as_ref().unwrap().timeout(),
            Duration::from_secs(3),
            "an empty section takes the defaults"
        );
        assert!(payments.retry.is_none(), "no section, no layer");
        assert!(payments.bulkhead.is_none());
        assert_eq!(
            file.routes().collect::<Vec<_>>(),
            [("checkout", "payments")]
        );
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let errors = ConfigFile::from_toml(
            r#"
            [defaults.breaker]
            minimum_calls = "ten"

            [profiles.payments.breaker]
            failure_rate_threshold = 150.0
            wait_in_open = "soon"
            failure_rate = 50.0

            [profiles.payments.retry]
            max_attempts = 0

            [profiles.payments.breakr]

            [profiles.slow.timeout]
            timeout = "1s"
            [profiles.slow.attempt_timeout]
            timeout = "2s"
            [profiles.slow.rate_limit]
            burst = 5

            [routes.checkout]
            profile = "payments"
            [routes.search]
            profile = "fast"
            [routes.home]
            profil = "slow"

            [upstreams.checkout]
            profile = "slow"

            [extra]
            "#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "extra",
                "defaults.breaker.minimum_calls",
                "profiles.payments.breakr",
                "profiles.payments.retry.max_attempts",
                "profiles.payments.breaker.failure_rate",
                "profiles.payments.breaker.failure_rate_threshold",
                "profiles.payments.breaker.wait_in_open",
                "profiles.slow.rate_limit.rate",
                "profiles.slow.attempt_timeout.timeout",
                "routes.checkout.profile",
                "routes.home.profil",
                "routes.home.profile",
                "routes.search.profile",
                "upstreams.checkout",
            ],
            "{errors}"
        );
        let text = errors.to_string();
        assert!(
            text.contains(
                "profiles.payments.breaker.failure_rate_threshold: must be in (0, 100], got 150"
            ),
            "{text}"
        );
        assert!(
            text.contains("profiles.slow.attempt_timeout.timeout: must not be longer than timeout.timeout (2s > 1s)"),
            "{text}"
        );
        assert!(
            text.contains("routes.checkout.profile: profile 'payments' has a retry"),
            "{text}"
        );
        assert!(
            text.contains(
                "routes.search.profile: no profile named 'fast' (profiles: payments, slow)"
            ),
            "{text}"
        );
        assert!(
            errors
                .find("profiles.payments.breaker.failure_rate")
                .unwrap()
                .message()
                .contains("unknown field")
        );
    }

    #[test]
    fn per_host_is_for_upstreams_with_a_breaker() {
        let file = ConfigFile::from_toml(
            r#"
            [profiles.api.breaker]
            [upstreams.inventory]
            profile = "api"
            per_host = true
            [upstreams.billing]
            profile = "api"
            "#,
        )
        .unwrap();
        assert!(file.is_per_host("inventory"));
        assert!(!file.is_per_host("billing"));

        let errors = ConfigFile::from_toml(
            r#"
            [profiles.api.breaker]
            [profiles.plain.bulkhead]
            [routes.checkout]
            profile = "api"
            per_host = true
            [upstreams.cdn]
            profile = "plain"
            per_host = true
            [upstreams.search]
            profile = "api"
            per_hots = true
            "#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "routes.checkout.per_host",
                "upstreams.cdn.per_host",
                "upstreams.search.per_hots"
            ],
            "{errors}"
        );
        let text = errors.to_string();
        assert!(
            text.contains("routes.checkout.per_host: only an upstream can have a breaker per host"),
            "{text}"
        );
        assert!(
            text.contains(
                "upstreams.cdn.per_host: profile 'plain' has no breaker to keep per host"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "upstreams.search.per_hots: unknown field (did you mean `per_host`?) (expected profile, per_host)"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_window_rule_is_checked_per_profile() {
        let errors = ConfigFile::from_toml(
            r#"
            [profiles.api.breaker]
            sliding_window = { type = "time", span = "10s" }
            [profiles.api.attempt_timeout]
            timeout = "6s"
            "#,
        )
        .unwrap_err();
        assert_eq!(
            errors.to_string(),
            "profiles.api.breaker.sliding_window.span: must be at least twice attempt_timeout.timeout (12s), got 10s"
        );
    }

    #[test]
    fn fields_that_are_only_wrong_alone_are_not_blamed() {
        // minimum_calls 5 over a count window of 3 would be wrong; with the
        // window of 10 set beside it, the whole is right.
        let file = ConfigFile::from_toml(
            r#"
            [profiles.api.breaker]
            sliding_window = { type = "count", size = 10 }
            minimum_calls = 5
            "#,
        );
        assert!(file.is_ok(), "{file:?}");
        let errors = ConfigFile::from_toml(
            r#"
            [profiles.api.breaker]
            sliding_window = { type = "count", size = 3 }
            minimum_calls = 5
            "#,
        )
        .unwrap_err();
        assert_eq!(fields(&errors), ["profiles.api.breaker.minimum_calls"]);
    }

    #[test]
    fn a_bad_file_is_one_error_with_its_place() {
        let errors = ConfigFile::from_toml("[profiles.api\nbreaker = 1").unwrap_err();
        assert_eq!(fields(&errors), ["file"]);
        let text = errors.to_string();
        assert!(text.contains("line 1"), "{errors}");
        // The diagram of the line is kept on its own lines, caret included.
        assert!(
            text.lines().any(|line| line.contains("| [profiles.api")),
            "{errors}"
        );
        assert!(
            text.lines()
                .any(|line| line.trim_start().starts_with('|') && line.contains('^')),
            "{errors}"
        );
    }

    #[test]
    fn nan_and_inf_name_their_field() {
        for value in ["nan", "inf", "-inf"] {
            let errors = ConfigFile::from_toml(&format!(
                "[profiles.api.breaker]\nfailure_rate_threshold = {value}\n"
            ))
            .unwrap_err();
            let text = errors.to_string();
            assert!(
                text.contains("failure_rate_threshold: must be a finite number"),
                "{text}"
            );
            assert!(!text.contains("null"), "{text}");
        }
    }

    #[test]
    fn fallbacks_and_rate_limits_from_the_file() {
        let file = ConfigFile::from_toml(
            r#"
            [defaults.rate_limit]
            rate = 100
            [profiles.api.rate_limit]
            burst = 20
            [profiles.api.fallback]
            status = 200
            body = "cached"
            on = "rejection"
            [profiles.bad.fallback]
            status = 42
            content_type = "text/plain\n"
            "#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&file),
            [
                "profiles.bad.fallback.content_type",
                "profiles.bad.fallback.status"
            ],
            "{file}"
        );
        let file = ConfigFile::from_toml(
            r#"
            [defaults.rate_limit]
            rate = 100
            [profiles.api.rate_limit]
            burst = 20
            [profiles.api.fallback]
            status = 200
            body = "cached"
            on = "rejection"
            "#,
        )
        .unwrap();
        let api = file.profile("api").unwrap();
        let limit = api.rate_limit.as_ref().unwrap();
        assert_eq!((limit.rate(), limit.burst()), (100, 20));
        let fallback = api.fallback.as_ref().unwrap();
        assert_eq!(fallback.status(), 200);
        assert_eq!(fallback.get_body(), "cached");
        assert_eq!(fallback.get_on(), FallbackOn::Rejection);
    }

    #[test]
    fn other_formats_get_the_same_checks() {
        let json = r#"{
            "profiles": { "api": { "breaker": { "minimum_calls": 0 }, "retri": {} } },
            "routes": { "search": { "profile": "web" } }
        }"#;
        let errors = ConfigFile::from_deserializer(&mut serde_json::Deserializer::from_str(json))
            .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "profiles.api.retri",
                "profiles.api.breaker.minimum_calls",
                "routes.search.profile"
            ],
            "{errors}"
        );
    }

    #[test]
    fn timeout_fields_a_built_stack_would_ignore_are_refused() {
        let errors = ConfigFile::from_toml(
            r#"
            [defaults.timeout]
            status = 503
            [profiles.api.timeout]
            propagate = "grpc"
            [profiles.web.attempt_timeout]
            timeout = "1s"
            "#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "profiles.api.timeout.status",
                "profiles.api.timeout.propagate"
            ],
            "{errors}"
        );
    }
}
