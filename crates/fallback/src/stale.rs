//! The last good response for each key, served when the call fails.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::fmt;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use portcullis_core::{BoxError, ConfigError, duration};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{Failure, Source, Trigger};

/// The header that marks a response served from a [`StaleCache`].
pub const STALE_HEADER: &str = "x-portcullis-fallback";

/// The limits of a [`StaleCache`]. Build it with
/// [`StaleCacheConfig::builder`] or read it with serde:
///
/// ```
/// use portcullis_fallback::StaleCacheConfig;
/// use std::time::Duration;
///
/// let config: StaleCacheConfig = toml::from_str(r#"
///     max_entries = 500
///     ttl = "10m"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.ttl(), Duration::from_secs(600));
///
/// let error = StaleCacheConfig::builder().max_entries(0).build().unwrap_err();
/// assert_eq!(error.to_string(), "max_entries: must be in [1, 1000000], got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaleCacheConfig {
    max_entries: usize,
    #[serde(with = "duration::serde")]
    ttl: Duration,
}

/// Builds a [`StaleCacheConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct StaleCacheConfigBuilder {
    config: StaleCacheConfig,
}

/// The last good response of each `GET` or `HEAD` request (by method and
/// URI), kept for a while to answer the same request when it fails: a
/// cheap, cloneable handle to one shared, bounded, in-memory store.
///
/// Use it as the source of a fallback with
/// [`FallbackLayer::stale`](crate::FallbackLayer::stale). What it does:
///
/// - **Stores** every response that passed the trigger with a 2xx status,
///   for a `GET` or `HEAD` request, under the request's method and URI. The
///   body must be `Clone` (`String`, `Bytes`, `Full<Bytes>`, ...): it is
///   stored whole, with the status, version and headers (not the
///   extensions). A streaming body cannot be stored as it is: buffer it
///   first (e.g. `axum::body::to_bytes` in a `map_response`).
/// - **Serves** the stored response for the same method and URI when the
///   call fails and the entry is younger than `ttl`, with the header
///   `x-portcullis-fallback: stale`. Other methods, and requests with no
///   fresh entry, get the failure as it was (the error, or the response
///   classified as a failure).
/// - **Bounds** memory: at most `max_entries` entries, the oldest stored
///   evicted first; expired entries are dropped on the way, with no task.
///
/// The store is behind a mutex, taken once per stored response and once
/// per fallback.
pub struct StaleCache<B> {
    shared: Arc<Shared<B>>,
}

/// The key of a [`StaleCache`] entry: the request's method and URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StaleKey {
    method: Method,
    uri: Uri,
}

/// A [`StaleCache`]'s figures, as plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StaleStats {
    /// Entries held now (some may have expired but not been dropped yet).
    pub entries: usize,
    /// Responses stored.
    pub stored: u64,
    /// Failures answered from the cache.
    pub hits: u64,
    /// Failures of cacheable requests that found no fresh entry.
    pub misses: u64,
}

struct Shared<B> {
    config: StaleCacheConfig,
    store: Mutex<Store<B>>,
    stored: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Store<B> {
    entries: HashMap<StaleKey, Entry<B>>,
    /// Keys in the order they were stored, with the generation stored;
    /// a record whose generation is not its entry's is left over from an
    /// earlier store of that key and is skipped.
    order: VecDeque<(StaleKey, u64)>,
    generation: u64,
}

struct Entry<B> {
    generation: u64,
    stored_at: Instant,
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: B,
}

const MAX_ENTRIES: usize = 1_000_000;
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

impl Default for StaleCacheConfig {
    /// 1,000 entries, for 5 minutes.
    fn default() -> Self {
        Self {
            max_entries: 1_000,
            ttl: Duration::from_secs(5 * 60),
        }
    }
}

impl StaleCacheConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> StaleCacheConfigBuilder {
        StaleCacheConfigBuilder::default()
    }

    /// The most entries the cache holds.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// How long an entry may be served after it was stored.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ENTRIES).contains(&self.max_entries) {
            return Err(ConfigError::new(
                "max_entries",
                format!("must be in [1, {MAX_ENTRIES}], got {}", self.max_entries),
            ));
        }
        if self.ttl.is_zero() {
            return Err(ConfigError::new("ttl", "must be greater than zero"));
        }
        if self.ttl > MAX_TTL {
            return Err(ConfigError::new(
                "ttl",
                format!("must be at most 365d, got {}", duration::format(self.ttl)),
            ));
        }
        Ok(())
    }
}

impl StaleCacheConfigBuilder {
    /// The most entries the cache holds, in [1, 1,000,000] (default: 1,000).
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.config.max_entries = max_entries;
        self
    }

    /// How long an entry may be served, more than zero (default: 5 min).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<StaleCacheConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

impl<B> StaleCache<B> {
    /// A cache with the default limits (1,000 entries, 5 minutes).
    pub fn new() -> Self {
        Self::build(StaleCacheConfig::default())
    }

    /// A cache with `config`, validated first.
    pub fn from_config(config: StaleCacheConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: StaleCacheConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                store: Mutex::new(Store {
                    entries: HashMap::new(),
                    order: VecDeque::new(),
                    generation: 0,
                }),
                stored: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// The limits.
    pub fn config(&self) -> &StaleCacheConfig {
        &self.shared.config
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut store = self.lock();
        store.entries.clear();
        store.order.clear();
    }

    /// The cache's figures.
    pub fn stats(&self) -> StaleStats {
        StaleStats {
            entries: self.len(),
            stored: self.shared.stored.load(Ordering::Relaxed),
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
        }
    }

    /// The key of `request`, if its method is `GET` or `HEAD`.
    pub fn key<ReqBody>(request: &Request<ReqBody>) -> Option<StaleKey> {
        let method = request.method();
        (method == Method::GET || method == Method::HEAD).then(|| StaleKey {
            method: method.clone(),
            uri: request.uri().clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Store<B>> {
        self.shared
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B: Clone> StaleCache<B> {
    /// Stores `response` under `key`, if its status is 2xx.
    pub fn store(&self, key: StaleKey, response: &Response<B>) {
        if !response.status().is_success() {
            return;
        }
        let now = Instant::now();
        let ttl = self.shared.config.ttl;
        let max = self.shared.config.max_entries;
        let mut guard = self.lock();
        let store = &mut *guard;
        store.generation += 1;
        let entry = Entry {
            generation: store.generation,
            stored_at: now,
            status: response.status(),
            version: response.version(),
            headers: response.headers().clone(),
            body: response.body().clone(),
        };
        store.order.push_back((key.clone(), entry.generation));
        store.entries.insert(key, entry);
        // Drop from the front what is left over, expired, or over the bound.
        while let Some((key, generation)) = store.order.front() {
            let live = match store.entries.get(key) {
                Some(entry) if entry.generation == *generation => Some(entry),
                _ => None,
            };
            match live {
                None => {}
                Some(entry) if now.duration_since(entry.stored_at) >= ttl => {
                    store.entries.remove(key);
                }
                Some(_) if store.entries.len() > max => {
                    store.entries.remove(key);
                }
                Some(_) => break,
            }
            store.order.pop_front();
        }
        // Keys stored again and again leave records behind: compact now and
        // then, so that the queue stays within twice the bound.
        if store.order.len() > 2 * max + 16 {
            let entries = &store.entries;
            store.order.retain(|(key, generation)| {
                entries
                    .get(key)
                    .is_some_and(|e| e.generation == *generation)
            });
        }
        drop(guard);
        self.shared.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// The fresh response stored under `key`, marked
    /// `x-portcullis-fallback: stale`, if there is one.
    pub fn lookup(&self, key: &StaleKey) -> Option<Response<B>> {
        let now = Instant::now();
        let ttl = self.shared.config.ttl;
        let mut store = self.lock();
        let found = match store.entries.entry(key.clone()) {
            MapEntry::Occupied(entry) if now.duration_since(entry.get().stored_at) >= ttl => {
                entry.remove();
                None
            }
            MapEntry::Occupied(entry) => {
                let entry = entry.get();
                let mut response = Response::new(entry.body.clone());
                *response.status_mut() = entry.status;
                *response.version_mut() = entry.version;
                *response.headers_mut() = entry.headers.clone();
                Some(response)
            }
            MapEntry::Vacant(_) => None,
        };
        drop(store);
        let counter = if found.is_some() {
            &self.shared.hits
        } else {
            &self.shared.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(|mut response| {
            response
                .headers_mut()
                .insert(STALE_HEADER, HeaderValue::from_static("stale"));
            response
        })
    }
}

impl StaleKey {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl<ReqBody, B, T> Source<Request<ReqBody>, Response<B>, T> for StaleCache<B>
where
    T: Trigger<Response<B>>,
    T::Error: Into<BoxError>,
    B: Clone,
{
    type Error = BoxError;
    type Context = Option<StaleKey>;
    type Future = Ready<Result<Response<B>, BoxError>>;

    fn context(&self, request: &Request<ReqBody>) -> Option<StaleKey> {
        Self::key(request)
    }

    fn passed(&self, response: &Response<B>, context: &Option<StaleKey>) {
        if let Some(key) = context {
            self.store(key.clone(), response);
        }
    }

    fn pass_error(error: T::Error) -> BoxError {
        error.into()
    }

    fn answer(
        &self,
        failure: Failure<Response<B>>,
        context: Option<StaleKey>,
        _trigger: &T,
    ) -> Self::Future {
        let stale = context.and_then(|key| self.lookup(&key));
        match stale {
            Some(response) => {
                tracing::debug!(cause = %failure.cause(), "fallback: served a stale response");
                ready(Ok(response))
            }
            None => ready(failure.into_result()),
        }
    }
}

impl<B> Default for StaleCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Clone for StaleCache<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<B> fmt::Debug for StaleCache<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCache")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> StaleKey {
        StaleCache::<()>::key(&Request::get(path).body(()).unwrap()).unwrap()
    }

    fn ok(body: &'static str) -> Response<&'static str> {
        Response::new(body)
    }

    fn cache(max: usize, ttl: Duration) -> StaleCache<&'static str> {
        StaleCache::from_config(
            StaleCacheConfig::builder()
                .max_entries(max)
                .ttl(ttl)
                .build()
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn config_errors_name_the_field() {
        let error = StaleCacheConfig::builder()
            .ttl(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(error.to_string(), "ttl: must be greater than zero");
        let error = StaleCacheConfig::builder()
            .max_entries(2_000_000)
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "max_entries: must be in [1, 1000000], got 2000000"
        );
        let error = toml::from_str::<StaleCacheConfig>("size = 3").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `size`"),
            "{error}"
        );
        assert_eq!(
            StaleCacheConfig::builder().build().unwrap(),
            StaleCacheConfig::default()
        );
    }

    #[test]
    fn only_safe_methods_have_keys() {
        assert!(StaleCache::<()>::key(&Request::get("/a").body(()).unwrap()).is_some());
        assert!(StaleCache::<()>::key(&Request::head("/a").body(()).unwrap()).is_some());
        assert!(StaleCache::<()>::key(&Request::post("/a").body(()).unwrap()).is_none());
        assert!(StaleCache::<()>::key(&Request::delete("/a").body(()).unwrap()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn serves_the_last_good_response_until_its_ttl() {
        let c = cache(10, Duration::from_secs(60));
        c.store(key("/a"), &ok("one"));
        c.store(key("/a"), &ok("two"));
        let mut error = ok("broken");
        *error.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        c.store(key("/a"), &error);
        let served = c.lookup(&key("/a")).unwrap();
        assert_eq!(*served.body(), "two", "the last 2xx response");
        assert_eq!(served.headers()[STALE_HEADER], "stale");
        assert!(c.lookup(&key("/b")).is_none());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(c.lookup(&key("/a")).is_none(), "expired");
        assert!(c.is_empty(), "and dropped");
        let stats = c.stats();
        assert_eq!((stats.stored, stats.hits, stats.misses), (2, 1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn holds_at_most_max_entries_the_oldest_going_first() {
        let c = cache(3, Duration::from_secs(60));
        for path in ["/1", "/2", "/3"] {
            c.store(key(path), &ok("x"));
        }
        c.store(key("/1"), &ok("again")); // /1 is now the newest
        c.store(key("/4"), &ok("x"));
        assert_eq!(c.len(), 3);
        assert!(c.lookup(&key("/2")).is_none(), "the oldest went first");
        assert!(c.lookup(&key("/1")).is_some());
        assert!(c.lookup(&key("/3")).is_some());
        assert!(c.lookup(&key("/4")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_stays_bounded_when_one_key_is_stored_again_and_again() {
        let c = cache(2, Duration::from_secs(60));
        for _ in 0..10_000 {
            c.store(key("/hot"), &ok("x"));
        }
        c.store(key("/cold"), &ok("y"));
        assert!(c.lock().order.len() <= 2 * 2 + 16);
        assert_eq!(c.len(), 2);
        assert_eq!(*c.lookup(&key("/cold")).unwrap().body(), "y");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_as_new_ones_come() {
        let c = cache(100, Duration::from_secs(10));
        for i in 0..50 {
            c.store(key(&format!("/{i}")), &ok("x"));
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        c.store(key("/new"), &ok("x"));
        assert_eq!(c.len(), 1, "the 50 expired entries were dropped");
        c.clear();
        assert!(c.is_empty());
    }
}
