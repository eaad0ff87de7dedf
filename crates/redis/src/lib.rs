//! Fleet-wide rate limiting on Redis for `tower`: one limit for every
//! replica of a service, not one per process.
//!
//! Ten replicas behind a load balancer that each allow "100 per second"
//! together allow 1,000. A [`FleetLimiter`] keeps the limit in Redis
//! instead, so that the fleet as a whole allows 100, and answers most
//! calls without asking Redis.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_ratelimit::RateLimitConfig;
//! use portcullis_redis::{FailPolicy, FleetConfig};
//!
//! let config = FleetConfig::builder(RateLimitConfig::per_second(200).burst(10).build().unwrap())
//!     .timeout(Duration::from_millis(5))   // the longest a call waits for Redis
//!     .fail_policy(FailPolicy::Local)      // Redis away: 200 / 4 per instance
//!     .instances(4)
//!     .leases(5, Duration::from_millis(50))
//!     .build()
//!     .expect("a valid configuration");
//! assert_eq!(config.local_limit().rate(), 50);
//! ```
//!
//! With a Redis at hand (inside a tokio runtime):
//!
//! ```no_run
//! # use portcullis_ratelimit::RateLimitConfig;
//! # use portcullis_redis::{FleetConfig, FleetLimiter, FleetRateLimitLayer};
//! # use tower::{ServiceBuilder, service_fn};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = redis::Client::open("redis://127.0.0.1/").unwrap();
//! let connection = FleetLimiter::connection(client).unwrap();
//! let config = FleetConfig::builder(RateLimitConfig::per_second(200).build().unwrap()).build().unwrap();
//! let limiter = FleetLimiter::new("search", config, connection).unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(FleetRateLimitLayer::new(limiter.clone()))
//!     .service(service_fn(|q: String| async move { Ok::<_, std::io::Error>(q.len()) }));
//! # let _ = service;
//! // Or around any call: limiter.acquire().await, limiter.acquire_key("tenant-7").await
//! # }
//! ```
//!
//! # How a call is decided
//!
//! 1. **Leased tokens** (if leases are on): a token this process holds
//!    admits the call at once — one atomic compare-and-swap.
//! 2. **"Denied until"**: when Redis last said no token conforms before
//!    `t`, the call is rejected at once with [`RateLimited`] and the exact
//!    wait to `t` — one atomic load of the coarse clock
//!    ([`portcullis_core::clock`]). A GCRA's theoretical arrival time
//!    (TAT) only grows, so this never rejects a call that Redis would
//!    admit (up to the coarse clock's lag of about a millisecond).
//! 3. **One shared round trip**: otherwise the call goes to Redis, and the
//!    calls of one key share their round trips: at most one is in flight
//!    per key and process, and the calls that come meanwhile form the next
//!    one, which asks for all of them at once. One script call
//!    (`EVALSHA`) decides any number of calls.
//! 4. **The fail policy** ([`FailPolicy`]) decides when Redis did not:
//!    an error, no answer within the timeout, or the breaker around the
//!    Redis client open.
//!
//! Steps 1 and 2 take no lock and allocate nothing for the limit's own key
//! (a keyed call takes its shard's lock to find its key's state). Step 3
//! takes a short lock on the key's round trips and, in the tower service,
//! boxes the decision's future: it waits on the network anyway.
//!
//! # The script
//!
//! GCRA in Lua, on one Redis key per limit (and one per key of a keyed
//! limit: `{prefix}{name}` and `{prefix}{name}:{key}`). The key holds the
//! TAT in microseconds; the time is Redis's own (`TIME` in the script),
//! or the caller's where `TIME` is refused ([`TimeSource::Caller`]). A
//! request for `n` tokens is granted `min(n, room)`, where `room` is how
//! many conform now (the TAT may run at most `(burst - 1)` emission
//! intervals ahead before each), and the TAT moves one interval per token
//! granted. The key is written with a TTL of exactly how far the TAT is
//! ahead of now, plus 1 ms — at most the burst's span plus one interval:
//! past it an absent key means the same. The reply is the tokens granted
//! and the wait until the next one conforms.
//!
//! # Leases and their over-admission bound
//!
//! With [`leases(k, L)`](FleetConfigBuilder::leases), a round trip asks
//! for `k` tokens beyond the calls waiting for it and keeps what it gets
//! in a pool, usable for `L` after the grant (unused tokens expire and are
//! lost: they never come back). A leased token is granted by Redis's GCRA
//! like any other, so over a run from a fresh key the fleet never admits
//! more than Redis granted. What leases move is *when* a token is used:
//!
//! > Every admitted call uses a token that Redis granted at most `S`
//! > before, where `S = max(L, timeout)` (a round's own tokens are used when
//! > its answer arrives, within the timeout), plus the coarse clock's lag.
//! > So over any interval of length `W` the fleet admits at most
//! > `floor((W + S + τ) / T) + 1` calls, with `T` the emission interval and
//! > `τ = (burst - 1) · T` — at most `ceil(S / T)` more than the limit itself
//! > admits over `W`. Also, no instance ever holds more than `k` unused
//! > tokens of a key, so at any moment the fleet holds at most `N · k`.
//!
//! The tests measure the busiest second of three instances under load and
//! check it against this bound.
//!
//! # When Redis is slow or down
//!
//! Every Redis call is bounded by the configured
//! [`timeout`](FleetConfigBuilder::timeout) (milliseconds): a call's
//! deadline is set when it starts, and every wait of that call — for the
//! round in flight, for its own round's answer — ends by then. No call
//! waits on Redis longer than the timeout. Around the Redis client there
//! is a [`portcullis_breaker`] breaker ([`FleetLimiter::breaker`]):
//! errors and timeouts open it, and while it is open calls go to the
//! policy without touching the network; its half-open probes find Redis
//! again. [`FleetLimiter::connection`] reconnects quickly in the
//! background. Then:
//!
//! - [`FailPolicy::FailOpen`] admits every call Redis did not decide;
//! - [`FailPolicy::FailClosed`] rejects it with [`RateLimited`] without a
//!   `retry_after` (nobody knows when Redis is back);
//! - [`FailPolicy::Local`] decides it with a limiter of this process at
//!   the limit divided by the expected instances
//!   ([`FleetConfigBuilder::instances`], `N`): `rate / N` and `burst / N`,
//!   at least 1 each.
//!
//! Leased tokens still admit and a denial still rejects while Redis is
//! away: they were Redis's answers.
//!
//! # Shadow mode
//!
//! [`shadow(true)`](FleetConfigBuilder::shadow): every call is decided
//! and counted as usual, and every call is admitted; the calls the limit
//! would have rejected are counted in
//! [`FleetSnapshot::shadow_rejections`], so a limit can be tried in
//! production before it is enforced.
//!
//! # Metrics
//!
//! [`FleetLimiter::snapshot`] reads the counters (relaxed atomics):
//! calls, admissions and rejections, how many the cache and the leases
//! decided, how many shared a round trip, Redis calls, errors and
//! timeouts, calls that found the breaker open, calls decided by the fail
//! policy, and shadow would-rejects.
//!
//! # Rejections
//!
//! A rejection is the shared [`RateLimited`] of `portcullis-core`: the
//! `rate-limited` row of the one rejection table
//! ([`ErrorKind`](portcullis_core::ErrorKind)), `429 Too Many Requests`
//! with `Retry-After` over HTTP, ignored by an outer breaker, never
//! retried.

mod breaker_config;
mod budget;
mod client;
mod config;
mod fleet_breaker;
pub mod future;
mod layer;
mod limiter;
mod metrics;
mod script;
mod service;
mod state;

pub use breaker_config::{FleetBreakerConfig, FleetBreakerConfigBuilder, Quorum};
pub use budget::{BudgetView, FleetBudget, FleetBudgetConfig, FleetBudgetSnapshot};
pub use config::{FailPolicy, FleetConfig, FleetConfigBuilder, TimeSource};
pub use fleet_breaker::{FleetBreaker, FleetBreakerSnapshot, FleetState, FleetView};
pub use layer::FleetRateLimitLayer;
pub use limiter::FleetLimiter;
pub use metrics::FleetSnapshot;
pub use portcullis_core::RateLimited;
pub use service::FleetRateLimit;
