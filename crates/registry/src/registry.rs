//! The registry: named configs, live instances, snapshots and events.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerConfig, BreakerSnapshot};
use portcullis_bulkhead::{Bulkhead, BulkheadConfig};
use portcullis_core::ConfigError;
use portcullis_core::config::check_range as in_range;
use portcullis_limit::{LimitConfig, Limiter};
use portcullis_ratelimit::{RateLimitConfig, RateLimiter};
use portcullis_retry::{BudgetConfig, RetryBudget};

use crate::clock::check_duration;
use crate::config::{Overrides, RegistryConfig};
use crate::event::{Event, EventFeed};
use crate::hub::{self, Hub};
use crate::instances::Instances;
use crate::kind::{Instance, InstanceKind};
use crate::route::RouteStats;
use crate::snapshot::{Keyed, RegistrySnapshot};
use crate::store::{AtKeyLimit, Store, Stores};

/// The shared place where Portcullis instances are made, found, changed
/// and watched: a cheap handle, cloned freely.
///
/// - **Configs with inheritance.** Each kind has a default config and named
///   configs ([`Overrides`]) that set only what differs; an instance named
///   `payments` is made with the config named `payments` if there is one,
///   else with the default.
/// - **One set of operations for every kind**, written once:
///   [`instances`](Self::instances) (or the shorthands
///   [`breakers`](Self::breakers), [`bulkheads`](Self::bulkheads),
///   [`rate_limiters`](Self::rate_limiters), [`limiters`](Self::limiters),
///   [`budgets`](Self::budgets),
///   [`routes`](Self::routes))
///   gives the [`Instances`] of a kind.
/// - **Get-or-create.** [`Instances::get`] returns the same handle to
///   every caller, making it on first use. Keyed instances
///   ([`Instances::get_keyed`]: one breaker per upstream host, say) share
///   the config of their name, and a name has at most
///   [`max_keys`](RegistryBuilder::max_keys) of them: past that one that
///   is neither recently used nor holding state (for a breaker: closed,
///   with no failure in its window) is evicted, in O(1), and when none can
///   be, the new key shares the name's overflow instance
///   ([`AtKeyLimit`]).
/// - **Live updates.** [`Instances::update_config`] applies to the live
///   instances without losing their state; an update they cannot take (a
///   breaker's new window shape) changes nothing and says why.
/// - **Snapshots** of everything as serde data, **events** of every
///   instance in one numbered feed ([`watch`](Self::watch),
///   [`recent_events`](Self::recent_events)), and the HTTP face
///   [`RegistryService`](crate::RegistryService).
/// - **Every kind** the same way, with its own `[<kind>s.<name>]`
///   configs. A live bulkhead cannot be reconfigured yet: an update that
///   would change one is refused and changes nothing. A live rate limiter
///   takes any valid update and keeps what it admitted; a live budget
///   keeps its balance and takes a new ratio and floor, but not a new
///   `ttl`. The default rate-limit config is
///   [`RateLimitConfig::default`]: 100 calls per second, burst 100.
///
/// ```
/// use portcullis_breaker::State;
/// use portcullis_registry::{Overrides, Registry};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = Registry::builder()
///     .breaker_config("payments", Overrides::new().set("minimum_calls", 5))
///     .build()
///     .unwrap();
/// let payments = registry.breakers().get("payments");
/// assert_eq!(payments.config().minimum_calls(), 5);
///
/// // Everybody gets the same breaker.
/// payments.force_open();
/// assert_eq!(registry.breakers().get("payments").state(), State::ForcedOpen);
/// assert_eq!(registry.snapshot().breakers[0].snapshot.state, State::ForcedOpen);
/// # }
/// ```
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

/// Builds a [`Registry`].
///
/// Each kind's default config and named configs are set with
/// [`default_config`](Self::default_config) and
/// [`named_config`](Self::named_config), written once for every kind;
/// `breaker_default`, `breaker_config` and the like are their shorthands.
#[derive(Clone, Debug)]
pub struct RegistryBuilder {
    /// The default config of each kind given one.
    defaults: BTreeMap<InstanceKind, AnyConfig>,
    /// The named configs of each kind.
    named: BTreeMap<InstanceKind, BTreeMap<String, Overrides>>,
    max_keys: usize,
    at_key_limit: AtKeyLimit,
    events: hub::Settings,
}

/// A kind's config with its type erased, as the builder keeps it.
struct AnyConfig(Box<dyn ErasedConfig>);

trait ErasedConfig: Any + Send + Sync + fmt::Debug {
    fn clone_box(&self) -> Box<dyn ErasedConfig>;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Any + Clone + Send + Sync + fmt::Debug> ErasedConfig for T {
    fn clone_box(&self) -> Box<dyn ErasedConfig> {
        Box::new(self.clone())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl Clone for AnyConfig {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl fmt::Debug for AnyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Figures of the registry's event fan-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Subscribers (in-process feeds and `GET /events` clients) now.
    pub subscribers: usize,
    /// Subscribers dropped so far for letting their buffer fill up.
    pub dropped: u64,
    /// Instance events the registry missed. Instances push their events
    /// synchronously, so this stays 0; kept for compatibility.
    pub lagged: u64,
    /// The number of the last event published (0 before the first).
    pub last_id: u64,
}

struct Shared {
    stores: Stores,
    hub: Hub,
}

const DEFAULT_MAX_KEYS: usize = 1024;
/// The longest a breaker's rejections wait to be reported.
const MAX_REJECTION_INTERVAL: Duration = Duration::from_secs(60 * 60);

impl Registry {
    /// A registry with the default configs.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder starting from the defaults.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// A registry built from a config file's data.
    pub fn from_config(config: &RegistryConfig) -> Result<Self, ConfigError> {
        Self::builder().config(config).build()
    }

    /// The instances of kind `K`: get-or-create, keys, registration,
    /// configs and figures, the same for every kind.
    ///
    /// ```
    /// use portcullis_bulkhead::Bulkhead;
    /// use portcullis_registry::Registry;
    ///
    /// let registry = Registry::new();
    /// let db = registry.instances::<Bulkhead>().get("db");
    /// assert_eq!(registry.bulkheads().list()[0].snapshot.name, "db");
    /// # drop(db);
    /// ```
    pub fn instances<K: Instance>(&self) -> Instances<'_, K> {
        Instances::new(K::store(&self.shared.stores), &self.shared.hub)
    }

    /// The circuit breakers: `registry.breakers().get("payments")`.
    pub fn breakers(&self) -> Instances<'_, Breaker> {
        self.instances()
    }

    /// The bulkheads.
    pub fn bulkheads(&self) -> Instances<'_, Bulkhead> {
        self.instances()
    }

    /// The rate limiters.
    pub fn rate_limiters(&self) -> Instances<'_, RateLimiter> {
        self.instances()
    }

    /// The adaptive concurrency limiters:
    /// `registry.limiters().get("inventory")`.
    pub fn limiters(&self) -> Instances<'_, Limiter> {
        self.instances()
    }

    /// The retry budgets.
    pub fn budgets(&self) -> Instances<'_, RetryBudget> {
        self.instances()
    }

    /// The statistics of routes and upstreams:
    /// `registry.routes().get("checkout")`.
    pub fn routes(&self) -> Instances<'_, RouteStats> {
        self.instances()
    }

    /// Every instance's figures.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            breakers: self.breakers().list(),
            bulkheads: self.bulkheads().list(),
            rate_limiters: self.rate_limiters().list(),
            limiters: self.limiters().list(),
            budgets: self.budgets().list(),
            routes: self.routes().list(),
        }
    }

    /// Subscribes to the registry's events: every instance's transitions,
    /// rejections (counted per interval), threshold crossings and resets,
    /// and instances added, removed and reconfigured.
    ///
    /// The feed's buffer holds [`event_buffer`](RegistryBuilder::event_buffer)
    /// events; a subscriber that lets it fill up is dropped (its feed ends)
    /// instead of holding anybody up.
    pub fn watch(&self) -> EventFeed {
        self.shared.hub.subscribe(None)
    }

    /// The last events (up to [`recent_events`](RegistryBuilder::recent_events)),
    /// oldest first.
    pub fn recent_events(&self) -> Vec<Event> {
        self.shared.hub.recent()
    }

    /// Figures of the event fan-out.
    pub fn event_stats(&self) -> EventStats {
        let hub = &self.shared.hub;
        EventStats {
            subscribers: hub.subscribers(),
            dropped: hub.dropped(),
            // Hooks push every event: none can be missed.
            lagged: 0,
            last_id: hub.next_id() - 1,
        }
    }

    pub(crate) fn breakers_named(&self, name: &str) -> Vec<Keyed<BreakerSnapshot>> {
        self.shared.stores.breakers.snapshots_named(name)
    }

    pub(crate) fn stores(&self) -> &Stores {
        &self.shared.stores
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// How many instances of every kind there are.
    pub fn len(&self) -> usize {
        self.shared.stores.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("stores", &self.shared.stores)
            .field("events", &self.shared.hub)
            .finish()
    }
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        Self {
            defaults: BTreeMap::new(),
            named: BTreeMap::new(),
            max_keys: DEFAULT_MAX_KEYS,
            at_key_limit: AtKeyLimit::default(),
            events: hub::Settings::default(),
        }
    }
}

impl RegistryBuilder {
    /// The default config of kind `K`, which its named configs inherit
    /// from (default: `K::Config::default()`).
    ///
    /// ```
    /// use portcullis_bulkhead::{Bulkhead, BulkheadConfig};
    /// use portcullis_registry::{Overrides, Registry};
    ///
    /// let registry = Registry::builder()
    ///     .default_config::<Bulkhead>(BulkheadConfig::builder().max_concurrent_calls(4).build().unwrap())
    ///     .named_config::<Bulkhead>("db", Overrides::new().set("max_concurrent_calls", 2))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(registry.bulkheads().get("db").snapshot().max_concurrent_calls, 2);
    /// assert_eq!(registry.bulkheads().get("cache").snapshot().max_concurrent_calls, 4);
    /// ```
    pub fn default_config<K: Instance>(mut self, config: K::Config) -> Self {
        self.defaults.insert(K::KIND, AnyConfig(Box::new(config)));
        self
    }

    /// A named config of kind `K`: `overrides` laid over the default. The
    /// name `default` lays them over the default itself.
    pub fn named_config<K: Instance>(
        mut self,
        name: impl Into<String>,
        overrides: Overrides,
    ) -> Self {
        self.named
            .entry(K::KIND)
            .or_default()
            .insert(name.into(), overrides);
        self
    }

    /// The store of kind `K`, from its configs.
    pub(crate) fn store<K: Instance>(&mut self) -> Result<Store<K>, ConfigError> {
        let default = match self.defaults.remove(&K::KIND) {
            Some(config) => *config
                .0
                .into_any()
                .downcast::<K::Config>()
                .expect("a kind's default is its own config type"),
            None => K::Config::default(),
        };
        let named = self.named.remove(&K::KIND).unwrap_or_default();
        Store::new(default, named, self.max_keys, self.at_key_limit)
    }

    /// The default breaker config, which named configs inherit from
    /// (default: [`BreakerConfig::default`]).
    pub fn breaker_default(self, config: BreakerConfig) -> Self {
        self.default_config::<Breaker>(config)
    }

    /// A named breaker config: `overrides` laid over the default. The name
    /// `default` lays them over the default itself.
    pub fn breaker_config(self, name: impl Into<String>, overrides: Overrides) -> Self {
        self.named_config::<Breaker>(name, overrides)
    }

    /// The default bulkhead config, which named configs inherit from
    /// (default: [`BulkheadConfig::default`]).
    pub fn bulkhead_default(self, config: BulkheadConfig) -> Self {
        self.default_config::<Bulkhead>(config)
    }

    /// A named bulkhead config: `overrides` laid over the default. The name
    /// `default` lays them over the default itself.
    pub fn bulkhead_config(self, name: impl Into<String>, overrides: Overrides) -> Self {
        self.named_config::<Bulkhead>(name, overrides)
    }

    /// The default rate-limit config, which named configs inherit from
    /// (default: [`RateLimitConfig::default`], 100 calls per second with a
    /// burst of 100).
    pub fn rate_limiter_default(self, config: RateLimitConfig) -> Self {
        self.default_config::<RateLimiter>(config)
    }

    /// A named rate-limit config: `overrides` laid over the default. The
    /// name `default` lays them over the default itself.
    pub fn rate_limiter_config(self, name: impl Into<String>, overrides: Overrides) -> Self {
        self.named_config::<RateLimiter>(name, overrides)
    }

    /// The default concurrency-limiter config, which named configs inherit
    /// from (default: [`LimitConfig::default`], Gradient2 with Netflix's
    /// defaults).
    pub fn limiter_default(self, config: LimitConfig) -> Self {
        self.default_config::<Limiter>(config)
    }

    /// A named concurrency-limiter config: `overrides` laid over the
    /// default. The name `default` lays them over the default itself.
    pub fn limiter_config(self, name: impl Into<String>, overrides: Overrides) -> Self {
        self.named_config::<Limiter>(name, overrides)
    }

    /// The default retry-budget config, which named configs inherit from
    /// (default: [`BudgetConfig::default`], 20 % of the requests plus 10
    /// retries a second, over 10 s).
    pub fn budget_default(self, config: BudgetConfig) -> Self {
        self.default_config::<RetryBudget>(config)
    }

    /// A named retry-budget config: `overrides` laid over the default. The
    /// name `default` lays them over the default itself.
    pub fn budget_config(self, name: impl Into<String>, overrides: Overrides) -> Self {
        self.named_config::<RetryBudget>(name, overrides)
    }

    /// Every section of a config file's data (replacing named configs of
    /// the same names given before).
    pub fn config(mut self, config: &RegistryConfig) -> Self {
        let sections = [
            (InstanceKind::Breaker, &config.breakers),
            (InstanceKind::Bulkhead, &config.bulkheads),
            (InstanceKind::RateLimiter, &config.ratelimiters),
            (InstanceKind::Limiter, &config.limiters),
            (InstanceKind::Budget, &config.budgets),
        ];
        for (kind, theirs) in sections {
            self.named.entry(kind).or_default().extend(
                theirs
                    .iter()
                    .map(|(name, overrides)| (name.clone(), overrides.clone())),
            );
        }
        if let Some(max_keys) = config.max_keys {
            self.max_keys = max_keys;
        }
        if let Some(at_limit) = config.at_key_limit {
            self.at_key_limit = at_limit;
        }
        self
    }

    /// How many keys one name may have (1 to 1,000,000; default 1,024).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// What a new key gets when its name has `max_keys` keys and none can
    /// be evicted (default: [`AtKeyLimit::Overflow`], the name's shared
    /// overflow instance; [`AtKeyLimit::Reject`] fails the lookup with
    /// [`KeyLimitReached`](crate::KeyLimitReached)).
    pub fn at_key_limit(mut self, at_limit: AtKeyLimit) -> Self {
        self.at_key_limit = at_limit;
        self
    }

    /// How many events a subscriber may have waiting before it is dropped
    /// (1 to 1,000,000; default 256).
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.events.buffer = events;
        self
    }

    /// How many past events are kept, for `GET /events/recent` and for a
    /// client that reconnects (0 to 100,000; default 100).
    pub fn recent_events(mut self, events: usize) -> Self {
        self.events.recent = events;
        self
    }

    /// How often a breaker's rejections are reported, as one event with
    /// their count (at most 1 h; default 1 s; zero reports each rejection,
    /// which under load means an event per rejected call).
    pub fn rejection_report_interval(mut self, interval: Duration) -> Self {
        self.events.rejection_interval = interval;
        self
    }

    /// Whether to forward the instances' own events (default true). When
    /// false, only the registry's own events (added, removed, changed) are
    /// published, and instances never build an event.
    pub fn collect_events(mut self, collect: bool) -> Self {
        self.events.collect = collect;
        self
    }

    /// The registry, with every config validated.
    pub fn build(mut self) -> Result<Registry, ConfigError> {
        in_range("max_keys", self.max_keys, 1, 1_000_000)?;
        in_range("event_buffer", self.events.buffer, 1, 1_000_000)?;
        in_range("recent_events", self.events.recent, 0, 100_000)?;
        check_duration(
            "rejection_report_interval",
            self.events.rejection_interval,
            Duration::ZERO,
            MAX_REJECTION_INTERVAL,
        )?;
        let stores = Stores::build(&mut self)?;
        Ok(Registry {
            shared: Arc::new(Shared {
                stores,
                hub: Hub::new(self.events),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use portcullis_breaker::State;
    use portcullis_core::Outcome;

    use super::*;
    use crate::event::EventKind;

    fn fail(breaker: &Breaker, times: usize) {
        for _ in 0..times {
            breaker.try_acquire().unwrap().record(Outcome::Failure);
        }
    }

    #[tokio::test]
    async fn every_caller_gets_the_same_breaker() {
        let registry = Registry::new();
        let a = registry.breakers().get("db");
        let b = registry.clone().breakers().get("db");
        a.force_open();
        assert_eq!(b.state(), State::ForcedOpen);
        assert_eq!(registry.len(), 1);
        assert!(registry.breakers().find("db", None).is_some());
        assert!(registry.breakers().find("other", None).is_none());
        assert_eq!(registry.len(), 1, "find never makes one");
    }

    #[tokio::test]
    async fn named_configs_inherit_from_the_default() {
        let registry = Registry::builder()
            .breaker_default(
                BreakerConfig::builder()
                    .count_window(40)
                    .minimum_calls(8)
                    .build()
                    .unwrap(),
            )
            .breaker_config(
                "payments",
                Overrides::new().set("failure_rate_threshold", 20.0),
            )
            .build()
            .unwrap();
        let payments = registry.breakers().get("payments").config();
        assert_eq!(payments.failure_rate_threshold(), 20.0);
        assert_eq!(payments.minimum_calls(), 8);
        let other = registry.breakers().get("search").config();
        assert_eq!(other, registry.breakers().default_config());
        assert_eq!(
            registry.breakers().overrides("payments"),
            Some(Overrides::new().set("failure_rate_threshold", 20.0))
        );
    }

    #[test]
    fn bad_configs_are_named_by_path() {
        let error = Registry::builder()
            .breaker_config(
                "payments",
                Overrides::new().set("failure_rate_threshold", 0.0),
            )
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "breakers.payments.failure_rate_threshold: must be in (0, 100], got 0"
        );
        let error = Registry::builder()
            .breaker_config("payments", Overrides::new().set("failure_rate", 10.0))
            .build()
            .unwrap_err();
        assert_eq!(error.field(), "breakers.payments.failure_rate");
        let error = Registry::builder()
            .breaker_config("default", Overrides::new().set("minimum_calls", 0))
            .build()
            .unwrap_err();
        assert_eq!(error.field(), "breakers.default.minimum_calls");
        let error = Registry::builder().max_keys(0).build().unwrap_err();
        assert_eq!(error.field(), "max_keys");
        let error = Registry::builder().event_buffer(0).build().unwrap_err();
        assert_eq!(error.field(), "event_buffer");
    }

    #[tokio::test]
    async fn an_update_keeps_the_window_of_the_live_breaker() {
        let registry = Registry::builder()
            .breaker_config(
                "db",
                Overrides::new()
                    .set(
                        "sliding_window",
                        serde_json::json!({"type": "count", "size": 10}),
                    )
                    .set("minimum_calls", 10),
            )
            .build()
            .unwrap();
        let db = registry.breakers().get("db");
        fail(&db, 4);
        let changed = registry
            .breakers()
            .update_config(
                "db",
                Overrides::new()
                    .set(
                        "sliding_window",
                        serde_json::json!({"type": "count", "size": 10}),
                    )
                    .set("minimum_calls", 5),
            )
            .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(db.config().minimum_calls(), 5);
        assert_eq!(db.state(), State::Closed, "four calls are below five");
        fail(&db, 1);
        assert_eq!(
            db.state(),
            State::Open,
            "the four earlier failures were kept"
        );
    }

    #[tokio::test]
    async fn an_update_a_live_breaker_cannot_take_changes_nothing() {
        let registry = Registry::new();
        let db = registry.breakers().get("db");
        let error = registry
            .breakers()
            .update_config(
                "db",
                Overrides::new().set(
                    "sliding_window",
                    serde_json::json!({"type": "time", "span": "10s"}),
                ),
            )
            .unwrap_err();
        assert_eq!(error.field(), "breakers.db.sliding_window");
        assert_eq!(registry.breakers().overrides("db"), None);
        assert_eq!(db.config(), BreakerConfig::default());
        // Without a live breaker, the same update is fine.
        registry.breakers().remove("db", None).unwrap();
        registry
            .breakers()
            .update_config(
                "db",
                Overrides::new().set(
                    "sliding_window",
                    serde_json::json!({"type": "time", "span": "10s"}),
                ),
            )
            .unwrap();
        assert!(matches!(
            registry.breakers().get("db").config().sliding_window(),
            portcullis_breaker::SlidingWindow::Time { .. }
        ));
    }

    #[tokio::test]
    async fn a_default_update_reaches_the_breakers_that_inherit_it() {
        let registry = Registry::builder()
            .breaker_config("own", Overrides::new().set("minimum_calls", 3))
            .build()
            .unwrap();
        let plain = registry.breakers().get("plain");
        let own = registry.breakers().get("own");
        let outside = Breaker::new("outside");
        registry.breakers().register(outside.clone()).unwrap();
        let new_default = BreakerConfig::builder()
            .minimum_calls(7)
            .failure_rate_threshold(30.0)
            .build()
            .unwrap();
        assert_eq!(
            registry
                .breakers()
                .update_default_config(new_default)
                .unwrap(),
            2,
            "plain and own change; the registered one is left alone"
        );
        assert_eq!(plain.config().minimum_calls(), 7);
        assert_eq!(own.config().minimum_calls(), 3);
        assert_eq!(own.config().failure_rate_threshold(), 30.0);
        assert_eq!(outside.config(), BreakerConfig::default());
        registry.breakers().clear_config("own").unwrap();
        assert_eq!(own.config().minimum_calls(), 7);
    }

    #[tokio::test]
    async fn keys_are_bounded_and_an_unused_closed_one_goes() {
        let registry = Registry::builder().max_keys(3).build().unwrap();
        let mut feed = registry.watch();
        let a = registry.breakers().get_keyed("upstream", "a").unwrap();
        registry.breakers().get_keyed("upstream", "b").unwrap();
        registry.breakers().get_keyed("upstream", "c").unwrap();
        // `a` is used again: the hand spares it and takes `b`.
        assert!(registry.breakers().get_keyed("upstream", "a").is_ok());
        registry.breakers().get_keyed("upstream", "d").unwrap();
        assert!(registry.breakers().find("upstream", Some("b")).is_none());
        assert!(registry.breakers().find("upstream", Some("a")).is_some());
        assert_eq!(registry.len(), 3);
        let events: Vec<_> = std::iter::from_fn(|| feed.try_recv())
            .map(|event| (event.key, event.what))
            .collect();
        assert_eq!(
            events.last(),
            Some(&(
                Some("d".to_owned()),
                EventKind::Replaced {
                    evicted: "b".to_owned()
                }
            )),
            "one event for the eviction and the addition: {events:?}"
        );

        // Open ones are not evicted: the new key shares the overflow breaker.
        a.force_open();
        for key in ["c", "d"] {
            registry
                .breakers()
                .find("upstream", Some(key))
                .unwrap()
                .force_open();
        }
        let e = registry.breakers().get_keyed("upstream", "e").unwrap();
        let f = registry.breakers().get_keyed("upstream", "f").unwrap();
        assert!(registry.breakers().find("upstream", Some("e")).is_none());
        let overflow = registry
            .breakers()
            .find("upstream", Some(crate::OVERFLOW_KEY))
            .expect("the overflow breaker is served");
        e.force_open();
        assert_eq!(f.state(), State::ForcedOpen, "e and f share one breaker");
        assert_eq!(overflow.state(), State::ForcedOpen);
        assert_eq!(registry.len(), 4);
        // Another name has its own keys.
        assert!(registry.breakers().get_keyed("other", "e").is_ok());
        // A keyed breaker and the plain one of the same name are distinct.
        assert_eq!(registry.breakers().get("upstream").state(), State::Closed);

        // Or, if asked, the lookup fails.
        let strict = Registry::builder()
            .max_keys(1)
            .at_key_limit(AtKeyLimit::Reject)
            .build()
            .unwrap();
        strict
            .breakers()
            .get_keyed("upstream", "a")
            .unwrap()
            .force_open();
        let error = strict.breakers().get_keyed("upstream", "b").unwrap_err();
        assert_eq!((error.limit(), error.name()), (1, "upstream"));
    }

    #[tokio::test]
    async fn registering_twice_is_an_error() {
        let registry = Registry::new();
        registry.breakers().register(Breaker::new("x")).unwrap();
        let error = registry.breakers().register(Breaker::new("x")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "circuit breaker 'x' is already registered"
        );
    }

    #[tokio::test]
    async fn registry_events_say_added_changed_removed() {
        let registry = Registry::new();
        let mut feed = registry.watch();
        registry.breakers().get("db");
        registry.breakers().get_keyed("db", "eu").unwrap();
        registry
            .breakers()
            .update_config("db", Overrides::new().set("minimum_calls", 2))
            .unwrap();
        registry.breakers().remove("db", Some("eu")).unwrap();
        let mut seen = Vec::new();
        while let Some(event) = feed.try_recv() {
            seen.push((event.what.as_str(), event.key));
        }
        assert_eq!(
            seen,
            [
                ("added", None),
                ("added", Some("eu".to_owned())),
                ("changed", None),
                ("changed", Some("eu".to_owned())),
                ("removed", Some("eu".to_owned())),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_breakers_own_events_are_forwarded_and_rejections_counted() {
        let registry = Registry::builder()
            .breaker_default(
                BreakerConfig::builder()
                    .count_window(2)
                    .minimum_calls(2)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let db = registry.breakers().get("db");
        let mut feed = registry.watch();
        fail(&db, 2);
        for _ in 0..5 {
            assert!(db.try_acquire().is_err());
        }
        // The crossing that opened it, the transition, then the
        // rejections, counted into one event.
        let crossed = feed.recv().await.unwrap();
        assert_eq!(
            crossed.what,
            EventKind::ThresholdCrossed {
                threshold: "failure_rate",
                value: 100.0
            }
        );
        let transition = feed.recv().await.unwrap();
        assert_eq!(
            transition.what,
            EventKind::Transition {
                from: State::Closed,
                to: State::Open,
                reason: "failure rate 100.0% reached the threshold".to_owned()
            }
        );
        let next = feed.recv().await.unwrap();
        assert_eq!(
            next.what,
            EventKind::Rejected {
                count: 5,
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(next.name, "db");
        assert_eq!(
            (crossed.id + 1, transition.id + 1),
            (transition.id, next.id),
            "numbered in order"
        );
        assert_eq!(registry.recent_events().last().unwrap().id, next.id);
    }

    #[tokio::test]
    async fn without_collection_no_instance_event_is_forwarded() {
        let registry = Registry::builder().collect_events(false).build().unwrap();
        let mut feed = registry.watch();
        let db = registry.breakers().get("db");
        db.force_open();
        tokio::task::yield_now().await;
        assert_eq!(feed.try_recv().unwrap().what, EventKind::Added);
        assert_eq!(feed.try_recv(), None);
    }

    #[tokio::test]
    async fn the_default_can_be_updated_by_name() {
        let registry = Registry::builder()
            .breaker_config("own", Overrides::new().set("minimum_calls", 3))
            .build()
            .unwrap();
        let plain = registry.breakers().get("plain");
        let own = registry.breakers().get("own");
        let changed = registry
            .breakers()
            .update_config(
                "default",
                Overrides::new().set("failure_rate_threshold", 40.0),
            )
            .unwrap();
        assert_eq!(changed, 2);
        assert_eq!(plain.config().failure_rate_threshold(), 40.0);
        assert_eq!(own.config().failure_rate_threshold(), 40.0);
        assert_eq!(own.config().minimum_calls(), 3);
        let error = registry
            .breakers()
            .update_config("default", Overrides::new().set("minimum_calls", 0))
            .unwrap_err();
        assert_eq!(error.field(), "breakers.default.minimum_calls");
        assert_eq!(plain.config().failure_rate_threshold(), 40.0, "unchanged");
    }

    #[test]
    fn breakers_made_outside_a_runtime_are_watched_once_inside_one() {
        let registry = Registry::new();
        let db = registry.breakers().get("db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut feed = registry.watch();
            // The hook was attached when the breaker was made: no task to start.
            db.force_open();
            let event = feed.recv().await.unwrap();
            assert_eq!(
                event.what,
                EventKind::Transition {
                    from: State::Closed,
                    to: State::ForcedOpen,
                    reason: "manual transition".to_owned()
                }
            );
        });
    }
}
