//! The last good response for each request, served when the call fails.
//!
//! A shared cache is where one user's response can reach another, so what
//! is stored is narrow: 2xx answers to `GET` and `HEAD`, never with a
//! `Set-Cookie`, never `no-store`, never `private` unless the entry is
//! keyed by the request's credentials, and always with the request headers
//! its `Vary` names.

use std::collections::VecDeque;
use std::collections::hash_map::HashMap;
use std::fmt;
use std::future::{Ready, ready};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE, VARY};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
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
///     max_variants_per_path = 4
///     ttl = "10m"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.ttl(), Duration::from_secs(600));
/// assert!(!config.key_by_credentials(), "credentialed requests bypass by default");
///
/// let error = StaleCacheConfig::builder().max_entries(0).build().unwrap_err();
/// assert_eq!(error.to_string(), "max_entries: must be in [1, 1000000], got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaleCacheConfig {
    max_entries: usize,
    max_variants_per_path: usize,
    #[serde(with = "duration::serde")]
    ttl: Duration,
    key_by_credentials: bool,
}

/// Builds a [`StaleCacheConfig`]; every setter has a default (see each).
#[derive(Clone, Debug, Default)]
pub struct StaleCacheConfigBuilder {
    config: StaleCacheConfig,
}

/// The last good response of each `GET` or `HEAD` request, kept for a
/// while to answer the same request when it fails: a cheap, cloneable
/// handle to one shared, bounded, in-memory store.
///
/// Use it as the source of a fallback with
/// [`FallbackLayer::stale`](crate::FallbackLayer::stale). What it does:
///
/// - **Keys** an entry by the request's method and URI. A request with
///   credentials (`Authorization`, `Cookie`, `Proxy-Authorization`)
///   bypasses the cache, neither stored nor served, unless
///   [`key_by_credentials`](StaleCacheConfigBuilder::key_by_credentials)
///   is set: then its key also holds a 128-bit digest of those headers,
///   keyed at random per cache, so a user is only ever served their own
///   responses.
/// - **Stores** a response that passed the trigger with a 2xx status, for
///   a `GET` or `HEAD` request, unless it sets a cookie (`Set-Cookie`), says
///   `Cache-Control: no-store`, says `Cache-Control: private` on a key
///   without credentials, or has `Vary: *`. The body must be `Clone`
///   (`String`, `Bytes`, `Full<Bytes>`, ...): it is stored whole, with the
///   status, version and headers (not the extensions). A streaming body
///   cannot be stored as it is: buffer it first (e.g. `axum::body::to_bytes`
///   in a `map_response`).
/// - **Honours `Vary`**: an entry is served only to a request whose headers
///   named by the response's `Vary` equal those of the request it answered.
/// - **Serves** the stored response for the same request when the call
///   fails and the entry is younger than `ttl`, with the header
///   `x-portcullis-fallback: stale` and without any `Set-Cookie`. Other
///   methods, and requests with no fresh entry, get the failure as it was
///   (the error, or the response classified as a failure).
/// - **Bounds** memory: at most `max_entries` entries, the oldest stored
///   evicted first; expired entries are dropped on the way, with no task.
///   One path (with its query strings and `Vary` variants) holds at most
///   `max_variants_per_path` entries, and a full path admits no new variant
///   until one expires, so a flood of query strings can neither evict the
///   entries of other paths beyond its share nor those of its own path.
///
/// The store is behind a mutex, taken once per stored response and once
/// per fallback; the request's headers are copied for every `GET` and
/// `HEAD` so that `Vary` can be honoured.
pub struct StaleCache<B> {
    shared: Arc<Shared<B>>,
}

/// What a [`StaleCache`] keeps of a request: its method, URI, a digest of
/// its credentials when the cache is keyed by them, and its headers, to
/// match a `Vary`. Its `Debug` shows no header value.
#[derive(Clone)]
pub struct StaleKey {
    primary: Primary,
    headers: HeaderMap,
}

/// A [`StaleCache`]'s figures, as plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StaleStats {
    /// Entries held now (some may have expired but not been dropped yet).
    pub entries: usize,
    /// Responses stored.
    pub stored: u64,
    /// Good responses not stored: they set a cookie, were `private`,
    /// `no-store` or `Vary: *`, or their path was full.
    pub refused: u64,
    /// Requests that bypassed the cache because they carried credentials.
    pub bypassed: u64,
    /// Failures answered from the cache.
    pub hits: u64,
    /// Failures of cacheable requests that found no fresh entry.
    pub misses: u64,
}

struct Shared<B> {
    config: StaleCacheConfig,
    /// Two independent keys for the 128-bit credential digest.
    seeds: [RandomState; 2],
    store: Mutex<Store<B>>,
    stored: AtomicU64,
    refused: AtomicU64,
    bypassed: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The method, URI and credential digest: what an entry is found by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Primary {
    method: Method,
    uri: Uri,
    credentials: Option<[u64; 2]>,
}

/// The method, path and credential digest: what the variant cap counts by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PathKey {
    method: Method,
    path: Box<str>,
    credentials: Option<[u64; 2]>,
}

struct Store<B> {
    /// Each key's variants (one per distinct `Vary` match).
    entries: HashMap<Primary, Vec<Entry<B>>>,
    /// Entries held per path.
    paths: HashMap<PathKey, usize>,
    /// Entries in the order they were stored, by key and generation; a
    /// record whose generation is no longer held is skipped.
    order: VecDeque<(Primary, u64)>,
    len: usize,
    generation: u64,
}

struct Entry<B> {
    generation: u64,
    stored_at: Instant,
    /// The request headers the response's `Vary` named, as they were.
    vary: Vec<(HeaderName, Vec<HeaderValue>)>,
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: B,
}

/// Why a good response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    SetsCookie,
    NoStore,
    Private,
    VaryAny,
    VaryMalformed,
    PathFull,
}

const MAX_ENTRIES: usize = 1_000_000;
const MAX_VARIANTS: usize = 1_024;
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
const CREDENTIALS: [HeaderName; 3] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];

impl Default for StaleCacheConfig {
    /// 1,000 entries, 8 per path, for 5 minutes; credentialed requests
    /// bypass.
    fn default() -> Self {
        Self {
            max_entries: 1_000,
            max_variants_per_path: 8,
            ttl: Duration::from_secs(5 * 60),
            key_by_credentials: false,
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

    /// The most entries one path holds, across its query strings and
    /// `Vary` variants.
    pub fn max_variants_per_path(&self) -> usize {
        self.max_variants_per_path
    }

    /// How long an entry may be served after it was stored.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether requests with credentials are cached, each under a digest
    /// of its credentials (else they bypass the cache).
    pub fn key_by_credentials(&self) -> bool {
        self.key_by_credentials
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ENTRIES).contains(&self.max_entries) {
            return Err(ConfigError::new(
                "max_entries",
                format!("must be in [1, {MAX_ENTRIES}], got {}", self.max_entries),
            ));
        }
        if !(1..=MAX_VARIANTS).contains(&self.max_variants_per_path) {
            return Err(ConfigError::new(
                "max_variants_per_path",
                format!(
                    "must be in [1, {MAX_VARIANTS}], got {}",
                    self.max_variants_per_path
                ),
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

    /// The most entries one path holds across its query strings and `Vary`
    /// variants, in [1, 1,024] (default: 8). A full path stores no new
    /// variant until one of its entries expires.
    pub fn max_variants_per_path(mut self, max: usize) -> Self {
        self.config.max_variants_per_path = max;
        self
    }

    /// How long an entry may be served, more than zero (default: 5 min).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Caches requests that carry `Authorization`, `Cookie` or
    /// `Proxy-Authorization`, each under a keyed digest of those headers,
    /// so that only the same credentials are served the entry (default:
    /// `false`, such requests bypass the cache). `Cache-Control: private`
    /// responses are then stored for their own user.
    pub fn key_by_credentials(mut self, key: bool) -> Self {
        self.config.key_by_credentials = key;
        self
    }

    /// The validated configuration.
    pub fn build(self) -> Result<StaleCacheConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

impl<B> StaleCache<B> {
    /// A cache with the default limits (1,000 entries, 8 per path,
    /// 5 minutes).
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
                seeds: [RandomState::new(), RandomState::new()],
                store: Mutex::new(Store {
                    entries: HashMap::new(),
                    paths: HashMap::new(),
                    order: VecDeque::new(),
                    len: 0,
                    generation: 0,
                }),
                stored: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                bypassed: AtomicU64::new(0),
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
        self.lock().len
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut store = self.lock();
        store.entries.clear();
        store.paths.clear();
        store.order.clear();
        store.len = 0;
    }

    /// The cache's figures.
    pub fn stats(&self) -> StaleStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StaleStats {
            entries: self.len(),
            stored: read(&self.shared.stored),
            refused: read(&self.shared.refused),
            bypassed: read(&self.shared.bypassed),
            hits: read(&self.shared.hits),
            misses: read(&self.shared.misses),
        }
    }

    /// The key of `request` in this cache: `None` if its method is not
    /// `GET` or `HEAD`, or if it carries credentials and the cache is not
    /// keyed by them.
    pub fn key_for<ReqBody>(&self, request: &Request<ReqBody>) -> Option<StaleKey> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let headers = request.headers();
        let credentialed = CREDENTIALS.iter().any(|name| headers.contains_key(name));
        let credentials = match (credentialed, self.shared.config.key_by_credentials) {
            (false, _) => None,
            (true, true) => Some(self.digest(headers)),
            (true, false) => {
                self.shared.bypassed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        Some(StaleKey {
            primary: Primary {
                method: method.clone(),
                uri: request.uri().clone(),
                credentials,
            },
            headers: headers.clone(),
        })
    }

    /// A 128-bit digest of the credential headers, under this cache's keys.
    fn digest(&self, headers: &HeaderMap) -> [u64; 2] {
        self.shared.seeds.each_ref().map(|seed| {
            let mut hasher = seed.build_hasher();
            for name in &CREDENTIALS {
                for value in headers.get_all(name) {
                    hasher.write(name.as_str().as_bytes());
                    hasher.write_usize(value.len());
                    hasher.write(value.as_bytes());
                }
                hasher.write_u8(0xff);
            }
            hasher.finish()
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
    /// Stores `response` to the request `key` was made from, if it is a
    /// 2xx response a shared cache may keep (see [`StaleCache`]).
    pub fn store(&self, key: &StaleKey, response: &Response<B>) {
        if !response.status().is_success() {
            return;
        }
        match self.insert(key, response) {
            Ok(()) => self.shared.stored.fetch_add(1, Ordering::Relaxed),
            Err(refusal) => {
                tracing::trace!(?refusal, uri = %key.primary.uri, "stale cache: not stored");
                self.shared.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn insert(&self, key: &StaleKey, response: &Response<B>) -> Result<(), Refusal> {
        let headers = response.headers();
        if headers.contains_key(SET_COOKIE) {
            return Err(Refusal::SetsCookie);
        }
        for directive in list(headers, &CACHE_CONTROL) {
            let name = directive.split('=').next().unwrap_or_default().trim();
            if name == UNREADABLE {
                // Not visible ASCII: it may say anything, so it says no.
                return Err(Refusal::NoStore);
            }
            if name.eq_ignore_ascii_case("no-store") {
                return Err(Refusal::NoStore);
            }
            if name.eq_ignore_ascii_case("private") && key.primary.credentials.is_none() {
                return Err(Refusal::Private);
            }
        }
        let mut vary = Vec::new();
        for name in list(headers, &VARY) {
            if name == "*" {
                return Err(Refusal::VaryAny);
            }
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| Refusal::VaryMalformed)?;
            let values = key.headers.get_all(&name).iter().cloned().collect();
            vary.push((name, values));
        }

        let now = Instant::now();
        let config = &self.shared.config;
        let mut guard = self.lock();
        let store = &mut *guard;
        store.sweep(now, config.ttl, config.max_entries);
        let path = key.path();
        let same = store
            .entries
            .get(&key.primary)
            .and_then(|variants| variants.iter().position(|entry| entry.vary == vary));
        if same.is_none()
            && store.paths.get(&path).copied().unwrap_or(0) >= config.max_variants_per_path
        {
            return Err(Refusal::PathFull);
        }
        store.generation += 1;
        let entry = Entry {
            generation: store.generation,
            stored_at: now,
            vary,
            status: response.status(),
            version: response.version(),
            headers: headers.clone(),
            body: response.body().clone(),
        };
        store
            .order
            .push_back((key.primary.clone(), entry.generation));
        let variants = store.entries.entry(key.primary.clone()).or_default();
        match same {
            Some(index) => variants[index] = entry,
            None => {
                variants.push(entry);
                *store.paths.entry(path).or_default() += 1;
                store.len += 1;
            }
        }
        store.sweep(now, config.ttl, config.max_entries);
        // Keys stored again and again leave records behind: compact now and
        // then, so that the queue stays within twice the bound.
        if store.order.len() > 2 * config.max_entries + 16 {
            let entries = &store.entries;
            store
                .order
                .retain(|(primary, generation)| find(entries, primary, *generation).is_some());
        }
        Ok(())
    }

    /// The fresh response stored for the request `key` was made from,
    /// marked `x-portcullis-fallback: stale`, if there is one.
    pub fn lookup(&self, key: &StaleKey) -> Option<Response<B>> {
        let now = Instant::now();
        let ttl = self.shared.config.ttl;
        let mut store = self.lock();
        let found = store.entries.get(&key.primary).and_then(|variants| {
            variants
                .iter()
                .find(|entry| entry.matches(&key.headers))
                .map(|entry| (entry.generation, now.duration_since(entry.stored_at) < ttl))
        });
        let response = match found {
            Some((generation, true)) => {
                let entry =
                    find(&store.entries, &key.primary, generation).expect("the entry just found");
                let mut response = Response::new(entry.body.clone());
                *response.status_mut() = entry.status;
                *response.version_mut() = entry.version;
                *response.headers_mut() = entry.headers.clone();
                Some(response)
            }
            Some((generation, false)) => {
                store.remove(&key.primary, generation);
                None
            }
            None => None,
        };
        drop(store);
        let counter = if response.is_some() {
            &self.shared.hits
        } else {
            &self.shared.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        response.map(|mut response| {
            let headers = response.headers_mut();
            // Never stored, and never replayed: a cookie is one user's.
            headers.remove(SET_COOKIE);
            headers.insert(STALE_HEADER, HeaderValue::from_static("stale"));
            response
        })
    }
}

/// What [`list`] gives for a header value that is not visible ASCII.
const UNREADABLE: &str = "\u{0}";

/// The comma-separated elements of every `name` header, trimmed, empty
/// ones skipped; a value that is not visible ASCII gives [`UNREADABLE`],
/// which is no directive and no header name.
fn list<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or(UNREADABLE).split(','))
        .map(str::trim)
        .filter(|element| !element.is_empty())
}

fn find<'a, B>(
    entries: &'a HashMap<Primary, Vec<Entry<B>>>,
    primary: &Primary,
    generation: u64,
) -> Option<&'a Entry<B>> {
    entries
        .get(primary)?
        .iter()
        .find(|entry| entry.generation == generation)
}

impl<B> Store<B> {
    /// Drops from the front what is left over, expired, or over the bound.
    fn sweep(&mut self, now: Instant, ttl: Duration, max: usize) {
        while let Some((primary, generation)) = self.order.front() {
            let (primary, generation) = (primary.clone(), *generation);
            match find(&self.entries, &primary, generation) {
                Some(entry) if now.duration_since(entry.stored_at) >= ttl || self.len > max => {
                    self.remove(&primary, generation);
                }
                Some(_) => break,
                None => {}
            }
            self.order.pop_front();
        }
    }

    /// Removes one entry, and its key and path when they hold no other.
    fn remove(&mut self, primary: &Primary, generation: u64) {
        let Some(variants) = self.entries.get_mut(primary) else {
            return;
        };
        let Some(index) = variants.iter().position(|e| e.generation == generation) else {
            return;
        };
        variants.swap_remove(index);
        if variants.is_empty() {
            self.entries.remove(primary);
        }
        self.len -= 1;
        let path = PathKey::of(primary);
        if let Some(count) = self.paths.get_mut(&path) {
            *count -= 1;
            if *count == 0 {
                self.paths.remove(&path);
            }
        }
    }
}

impl<B> Entry<B> {
    /// Whether a request with `headers` sent the headers this entry varies on.
    fn matches(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, values)| headers.get_all(name).iter().eq(values.iter()))
    }
}

impl PathKey {
    fn of(primary: &Primary) -> Self {
        Self {
            method: primary.method.clone(),
            path: primary.uri.path().into(),
            credentials: primary.credentials,
        }
    }
}

impl StaleKey {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.primary.method
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.primary.uri
    }

    /// Whether the key holds a digest of the request's credentials.
    pub fn is_credentialed(&self) -> bool {
        self.primary.credentials.is_some()
    }

    fn path(&self) -> PathKey {
        PathKey::of(&self.primary)
    }
}

impl fmt::Debug for StaleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleKey")
            .field("method", &self.primary.method)
            .field("uri", &self.primary.uri)
            .field("credentialed", &self.is_credentialed())
            .finish_non_exhaustive()
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
        self.key_for(request)
    }

    fn passed(&self, response: &Response<B>, context: &Option<StaleKey>) {
        if let Some(key) = context {
            self.store(key, response);
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

    type Cache = StaleCache<&'static str>;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    fn key(cache: &Cache, path: &str) -> StaleKey {
        cache.key_for(&get(path)).unwrap()
    }

    fn ok(body: &'static str) -> Response<&'static str> {
        Response::new(body)
    }

    fn with(header: HeaderName, value: &'static str) -> Response<&'static str> {
        let mut response = ok("x");
        response
            .headers_mut()
            .append(header, HeaderValue::from_static(value));
        response
    }

    fn cache(max: usize, ttl: Duration) -> Cache {
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
        let error = StaleCacheConfig::builder()
            .max_variants_per_path(0)
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "max_variants_per_path: must be in [1, 1024], got 0"
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
    fn only_safe_methods_without_credentials_have_keys() {
        let c = Cache::new();
        assert!(c.key_for(&get("/a")).is_some());
        assert!(c.key_for(&Request::head("/a").body(()).unwrap()).is_some());
        assert!(c.key_for(&Request::post("/a").body(()).unwrap()).is_none());
        assert!(
            c.key_for(&Request::delete("/a").body(()).unwrap())
                .is_none()
        );
        for name in ["authorization", "cookie", "proxy-authorization"] {
            let request = Request::get("/a").header(name, "secret").body(()).unwrap();
            assert!(c.key_for(&request).is_none(), "{name}");
        }
        assert_eq!(c.stats().bypassed, 3);
    }

    #[test]
    fn keyed_credentials_tell_users_apart_and_debug_shows_no_secret() {
        let c = Cache::from_config(
            StaleCacheConfig::builder()
                .key_by_credentials(true)
                .build()
                .unwrap(),
        )
        .unwrap();
        let as_user = |token: &str| {
            let request = Request::get("/me")
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .unwrap();
            c.key_for(&request).unwrap()
        };
        let alice = as_user("alice-secret");
        assert!(alice.is_credentialed());
        assert_eq!(alice.primary, as_user("alice-secret").primary);
        assert_ne!(alice.primary, as_user("bob-secret").primary);
        assert!(!format!("{alice:?}").contains("alice-secret"), "{alice:?}");
        c.store(&alice, &with(CACHE_CONTROL, "private, max-age=60"));
        assert!(
            c.lookup(&alice).is_some(),
            "private is kept for its own user"
        );
        assert!(c.lookup(&as_user("bob-secret")).is_none());
        assert!(
            c.lookup(&key(&c, "/me")).is_none(),
            "nor served anonymously"
        );
    }

    #[test]
    fn responses_a_shared_cache_must_not_keep_are_refused() {
        let c = Cache::new();
        let k = key(&c, "/a");
        c.store(&k, &with(SET_COOKIE, "session=alice"));
        c.store(&k, &with(CACHE_CONTROL, "no-store"));
        c.store(&k, &with(CACHE_CONTROL, "max-age=0, No-Store"));
        c.store(&k, &with(CACHE_CONTROL, "private"));
        c.store(&k, &with(CACHE_CONTROL, "private=\"x-user\""));
        c.store(&k, &with(VARY, "*"));
        c.store(&k, &with(VARY, "accept, *"));
        c.store(&k, &with(VARY, "bad header"));
        let mut opaque = ok("x");
        opaque
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_bytes(b"\xff").unwrap());
        c.store(&k, &opaque);
        assert!(c.is_empty());
        assert_eq!(c.stats().refused, 9);
        c.store(&k, &with(CACHE_CONTROL, "public, max-age=60"));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn vary_serves_only_matching_requests() {
        let c = Cache::new();
        let lang = |value: Option<&str>| {
            let mut request = Request::get("/page");
            if let Some(value) = value {
                request = request.header("accept-language", value);
            }
            c.key_for(&request.body(()).unwrap()).unwrap()
        };
        let mut french = ok("bonjour");
        french
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("Accept-Language"));
        c.store(&lang(Some("fr")), &french);
        let mut plain = ok("hello");
        plain
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("accept-language"));
        c.store(&lang(None), &plain);
        assert_eq!(c.len(), 2, "two variants of one path");
        assert_eq!(*c.lookup(&lang(Some("fr"))).unwrap().body(), "bonjour");
        assert_eq!(*c.lookup(&lang(None)).unwrap().body(), "hello");
        assert!(c.lookup(&lang(Some("de"))).is_none());
    }

    #[test]
    fn a_full_path_admits_no_new_variant_and_keeps_what_it_has() {
        let c = Cache::new();
        for i in 0..100 {
            c.store(&key(&c, &format!("/search?q={i}")), &ok("x"));
        }
        assert_eq!(c.len(), 8);
        assert!(
            c.lookup(&key(&c, "/search?q=0")).is_some(),
            "the first stay"
        );
        assert!(c.lookup(&key(&c, "/search?q=8")).is_none());
        c.store(&key(&c, "/search?q=0"), &ok("again"));
        assert_eq!(*c.lookup(&key(&c, "/search?q=0")).unwrap().body(), "again");
        c.store(&key(&c, "/other"), &ok("y"));
        assert_eq!(c.len(), 9, "other paths have their own share");
        assert_eq!(c.stats().refused, 92);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_path_takes_new_variants_once_its_entries_expire() {
        let c = cache(100, Duration::from_secs(10));
        for i in 0..8 {
            c.store(&key(&c, &format!("/s?q={i}")), &ok("old"));
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        c.store(&key(&c, "/s?q=new"), &ok("new"));
        assert_eq!(c.len(), 1);
        assert_eq!(*c.lookup(&key(&c, "/s?q=new")).unwrap().body(), "new");
    }

    #[tokio::test(start_paused = true)]
    async fn serves_the_last_good_response_until_its_ttl() {
        let c = cache(10, Duration::from_secs(60));
        c.store(&key(&c, "/a"), &ok("one"));
        c.store(&key(&c, "/a"), &ok("two"));
        let mut error = ok("broken");
        *error.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        c.store(&key(&c, "/a"), &error);
        let served = c.lookup(&key(&c, "/a")).unwrap();
        assert_eq!(*served.body(), "two", "the last 2xx response");
        assert_eq!(served.headers()[STALE_HEADER], "stale");
        assert!(c.lookup(&key(&c, "/b")).is_none());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(c.lookup(&key(&c, "/a")).is_none(), "expired");
        assert!(c.is_empty(), "and dropped");
        assert!(c.lock().paths.is_empty() && c.lock().entries.is_empty());
        let stats = c.stats();
        assert_eq!((stats.stored, stats.hits, stats.misses), (2, 1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn holds_at_most_max_entries_the_oldest_going_first() {
        let c = cache(3, Duration::from_secs(60));
        for path in ["/1", "/2", "/3"] {
            c.store(&key(&c, path), &ok("x"));
        }
        c.store(&key(&c, "/1"), &ok("again")); // /1 is now the newest
        c.store(&key(&c, "/4"), &ok("x"));
        assert_eq!(c.len(), 3);
        assert!(c.lookup(&key(&c, "/2")).is_none(), "the oldest went first");
        assert!(c.lookup(&key(&c, "/1")).is_some());
        assert!(c.lookup(&key(&c, "/3")).is_some());
        assert!(c.lookup(&key(&c, "/4")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_stays_bounded_when_one_key_is_stored_again_and_again() {
        let c = cache(2, Duration::from_secs(60));
        for _ in 0..10_000 {
            c.store(&key(&c, "/hot"), &ok("x"));
        }
        c.store(&key(&c, "/cold"), &ok("y"));
        assert!(c.lock().order.len() <= 2 * 2 + 16);
        assert_eq!(c.len(), 2);
        assert_eq!(*c.lookup(&key(&c, "/cold")).unwrap().body(), "y");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_as_new_ones_come() {
        let c = cache(100, Duration::from_secs(10));
        for i in 0..50 {
            c.store(&key(&c, &format!("/{i}")), &ok("x"));
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        c.store(&key(&c, "/new"), &ok("x"));
        assert_eq!(c.len(), 1, "the 50 expired entries were dropped");
        assert_eq!(c.lock().paths.len(), 1);
        c.clear();
        assert!(c.is_empty());
    }
}
