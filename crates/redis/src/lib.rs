//! Fleet-wide resilience on Redis for `tower`: one rate limit, one circuit
//! breaker and one retry budget for every replica of a service, not one
//! per process.
//!
//! - [`FleetLimiter`]: a GCRA rate limit kept in Redis (below);
//! - [`FleetBreaker`]: each instance's breaker, opened fleet-wide when the
//!   fleet fails and a quorum of instances sees it, with one prober for the
//!   fleet and manual states that apply everywhere
//!   ([the fleet breaker](#the-fleet-breaker));
//! - [`FleetBudget`]: a retry budget over the fleet's requests
//!   ([the fleet retry budget](#the-fleet-retry-budget)).
//!
//! The breaker and the budget put no Redis call on the request path: a
//! task per handle syncs with Redis once a period.
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
//!
//! # The fleet breaker
//!
//! A [`FleetBreaker`] wraps an instance's own [`portcullis_breaker::Breaker`]:
//! calls go through that breaker as they always did (in a
//! `CircuitBreakerLayer`, in a registry), it trips on its own window, and
//! nothing on the request path waits on Redis. What the fleet adds comes from
//! a task per fleet breaker, spawned on the tokio runtime and stopped when
//! the last handle is dropped, which makes one script call (`EVALSHA`, one
//! round trip) per period (1 s by default), and one more soon after the
//! local breaker changes state (a trip, a probe's result, a manual change):
//! the transition wakes the task, which syncs again as soon as a twentieth
//! of the period has passed since its last sync started.
//!
//! ```
//! use std::time::Duration;
//! use portcullis_redis::{FleetBreakerConfig, Quorum};
//!
//! let config = FleetBreakerConfig::builder()
//!     .period(Duration::from_secs(1))
//!     .window(Duration::from_secs(10))
//!     .failure_rate_threshold(50.0)
//!     .minimum_calls(20)
//!     .quorum(Quorum::Fraction(0.5))
//!     .build()
//!     .unwrap();
//! assert_eq!(config.prober_ttl(), Duration::from_secs(5));
//! ```
//!
//! ```no_run
//! # use portcullis_breaker::{Breaker, CircuitBreakerLayer};
//! # use portcullis_redis::{FleetBreaker, FleetBreakerConfig};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = redis::Client::open("redis://127.0.0.1/").unwrap();
//! let connection = FleetBreaker::connection(client).unwrap();
//! let breaker = Breaker::new("payments");
//! let fleet = FleetBreaker::new(breaker.clone(), FleetBreakerConfig::default(), connection).unwrap();
//! let layer = CircuitBreakerLayer::new(breaker); // the same breaker, fleet-aware
//! # let _ = (fleet, layer);
//! # }
//! ```
//!
//! ## Keys
//!
//! Under `{prefix}{name}:` (prefix `portcullis:cb:` by default, `name` the
//! local breaker's):
//!
//! | key | holds | TTL |
//! |-----|-------|-----|
//! | `b:{second}` | a hash of the fleet's `calls` and `failures` recorded in that second of Redis's clock | window + 2 s |
//! | `live` | a sorted set: instance → when it last synced (ms) | 6 periods, refreshed by every sync; members older than 3 periods are dropped |
//! | `sees` | a sorted set: instance → when it last saw the rate over the threshold | the same |
//! | `state` | a hash: `mode` (`closed`, `open`, `forced_open`, `disabled`, `metrics_only`), `gen` (one more at every fleet transition), `until` (ms, while open), `since` (the second of the last close) | none: a manual state outlives the instances (`DEL` it to forget) |
//! | `prober` | the elected prober's instance id | the prober TTL (5 s by default) |
//!
//! A sync sums the window's buckets, one `HMGET` per second of the window:
//! its cost inside Redis, which runs one script at a time, grows with the
//! window, and `n` instances syncing once a period cost `n × window /
//! period` reads a second. The window is therefore at most 5 minutes (300
//! reads a sync); a longer memory belongs in the local breakers.
//!
//! **Redis Cluster** runs a script only on keys of one hash slot, and the
//! script names the bucket keys itself: give one breaker's keys a hash tag,
//! a name in braces (a breaker named `{payments}` has the keys
//! `portcullis:cb:{payments}:…`), or a prefix with one (`{portcullis}:cb:`,
//! which puts every breaker in one slot). The fleet budget's keys
//! (`live` and its buckets) need the same.
//!
//! ## A sync
//!
//! Each instance sends: its id; the generation it last applied; the calls
//! and failures its breaker recorded since its last sync (from
//! [`Breaker::counters`](portcullis_breaker::Breaker::counters)) — and,
//! while the fleet is closed and no manual state is set, the calls its
//! breaker rejected, as failures: an instance open on a trip of its own
//! records nearly nothing, and without its rejections the instances still
//! closed, reporting successes, would dilute the fleet's rate below the
//! threshold, though the callers of the tripped ones see every call fail;
//! whether it
//! *sees* the failure rate over the threshold — over its own calls of the
//! last window, at least `instance_minimum_calls` of them; a manual state to
//! publish, if any; the prober's result, if it is the prober; and its
//! breaker's `wait_in_open`. The script, on Redis's clock:
//!
//! 1. marks the instance live, and adds its counts to the current second's
//!    bucket and its "sees" to the set — only if it knew the current
//!    generation (counts of an earlier state count nowhere);
//! 2. publishes a manual state (last writer wins), or the prober's result
//!    if it still holds the `prober` key for the current generation: a
//!    success closes the fleet (`since` = now, `sees` and `prober` deleted),
//!    a failure opens it again for the wait the prober's breaker chose, and
//!    at least its `wait_in_open` (so the breaker's growing wait holds
//!    fleet-wide, and a failed probe never lets the same sync elect again);
//! 3. if the fleet is closed, sums the buckets of the window after `since`:
//!    it **opens** the fleet for the instance's `wait_in_open` when the
//!    fleet's calls are at least `minimum_calls`, its failure rate is at or
//!    above the threshold, **and** at least the quorum of instances sees it
//!    (`Quorum::Instances(n)`, or `ceil(fraction × live)`, at least 1);
//! 4. if the fleet is open and its time is over, **elects** a prober:
//!    `SET prober {id} NX PX {prober TTL}` — one instance wins;
//! 5. answers the state, its generation, the time left open, whether this
//!    instance is the prober, and the fleet's figures ([`FleetView`]).
//!
//! The instance then brings its breaker to the fleet's state:
//!
//! - **open**, not the prober: opened (`open_for`) until three periods
//!   past the fleet's open time, extended whenever less than two are left,
//!   and so held open while another instance probes: it never probes on
//!   its own, even when a sync comes late;
//! - **open**, the prober: made half-open; its breaker admits its
//!   `permitted_calls_in_half_open` probes and decides as always, and the
//!   result goes out with the next sync, which the transition brings
//!   forward (no sooner than a twentieth of the period after the last);
//! - **a new closed generation** (a probe succeeded, a manual state was
//!   cleared): closed; otherwise, while the fleet is closed, each breaker
//!   decides alone, as without a fleet;
//! - **a manual state**: applied (`force_open`, `disable`, `metrics_only`).
//!
//! ## Manual states
//!
//! A manual state set on one instance's breaker — as the registry's `POST
//! /breakers/{name}/state` does — goes to Redis at that instance's next sync
//! (brought forward by the transition, no sooner than a twentieth of the
//! period after its last one), and every other instance applies
//! it at its next sync: within a period. Clearing it (`close` or `reset`) on
//! any instance spreads the same way. There is no echo: an instance publishes
//! only a difference between its breaker and the fleet state it last applied,
//! and what it applies is that state; and a sync whose local state changed
//! during its round trip applies nothing (the next one publishes the change:
//! when the sync had published a manual state itself, the next one compares
//! with that state, so a force cleared during its round trip is cleared
//! fleet-wide).
//! `open_for` and `half_open` by hand stay local, and so do `close` and
//! `reset` on an instance the fleet holds open (the fleet open, not a manual
//! state): there is nothing manual to clear, and its next sync opens it
//! again. To close an open fleet by hand, force one instance open and then
//! close it: clearing the force closes every instance. An instance that
//! joins with its breaker in a manual state publishes it.
//!
//! ## Failure cases
//!
//! - **Redis away** (error, timeout, or the breaker around the client open):
//!   the round is counted ([`FleetBreakerSnapshot::unsynced_rounds`]) and
//!   the local breaker decides alone, as without a fleet — held open, it
//!   half-opens when its own wait is over and probes by itself. Calls never
//!   wait on Redis: Redis is not on their path.
//! - **The prober dies** (or loses Redis): it holds the `prober` key while
//!   it is half-open, refreshed by every one of its syncs, so the key
//!   expires within the prober TTL of its last sync and another instance is
//!   elected. An instance that finds the key held by another is held open
//!   again at that sync. A prober that gets no calls keeps the role as long
//!   as it syncs (a second prober would otherwise be elected while it is
//!   still half-open): the fleet stays open until it probes.
//! - **Before the fleet opens**, an instance that tripped on its own follows
//!   its own breaker; it learns of a fleet open within a period. Give the
//!   breakers a `wait_in_open` well above the period, or such an instance may
//!   half-open on its own before it learns.
//! - **Instances that stop syncing** leave `live` and `sees` after three
//!   periods, and the quorum is taken over those left.
//! - **Clocks**: every time in the protocol is Redis's (`TIME` in the
//!   script); the instances' clocks only measure their own waits.
//!
//! ## Figures
//!
//! [`FleetBreaker::snapshot`] reads them (relaxed atomics, plain data,
//! `serde`): the local state, the fleet as the last sync read it
//! ([`FleetView`]: state, generation, calls, failures, instances seeing
//! it, live instances, whether this one is the prober), the syncs and how
//! they went ([`SyncFigures`]: sent, errors, timeouts, refused by the
//! breaker around the client, its state), the rounds Redis did not answer,
//! the fleet opens this instance decided, its elections, and the probe
//! results, manual states and fleet states it published or applied.
//!
//! # The fleet retry budget
//!
//! A [`FleetBudget`] shares a [`portcullis_retry::BudgetConfig`] — `ratio`
//! of the requests plus `min_per_second`, over `ttl` — between the instances.
//! [`FleetBudget::deposit`] is two relaxed `fetch_add`s and the local
//! budget's deposit, [`FleetBudget::try_withdraw`] one clock read and one
//! compare-and-swap, and the local budget's withdrawal when it is granted;
//! no call waits on Redis. Once a
//! period, each instance's task sends its deposits and withdrawals into the
//! second's bucket (`{prefix}{name}:b:{second}`, prefix `portcullis:rb:`,
//! TTL window + 2 s; the window is `ttl` in whole seconds, at most 5 minutes,
//! since a sync reads each of its seconds as the breaker's does), gives back what
//! is left of its last grant, and is granted a share of what the fleet may
//! still retry:
//!
//! > allowance = floor(ratio × fleet deposits) + min_per_second × window −
//! > retries granted, over the window;
//! > this instance's grant = floor(allowance × (its deposits + 1) /
//! > (fleet deposits + live instances)).
//!
//! A grant counts as granted at once, so the instances' grants together
//! never exceed the allowance, and every retry spends a grant: the fleet's
//! retries over a window stay within `ratio × its requests + min_per_second
//! × window`, as one budget's would. A sync's counts are taken before it
//! is sent and not put back if Redis does not answer (the script may have
//! run): the fleet may under-count, never count twice. While the sync is in
//! flight the grant is empty; when Redis has not answered for two periods,
//! the instance decides with a local [`portcullis_retry::RetryBudget`] of the
//! same ratio and `min_per_second / instances`, and what it allows then
//! counts as granted once Redis is back. That budget gets every deposit and
//! every retry spent from a grant too, so when Redis goes away it allows
//! only what is left of this instance's share, not a fresh window on top
//! of what the grants allowed.
//!
//! `portcullis_retry`'s layer takes a `RetryBudget`, a concrete type, so a
//! `FleetBudget` does not plug into `RetryLayer` itself: call
//! [`FleetBudget::deposit`] per request and [`FleetBudget::try_withdraw`]
//! before each retry (in a `tower::retry::Policy`, or around the calls).

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
pub use client::SyncFigures;
pub use config::{FailPolicy, FleetConfig, FleetConfigBuilder, TimeSource};
pub use fleet_breaker::{FleetBreaker, FleetBreakerSnapshot, FleetState, FleetView};
pub use layer::FleetRateLimitLayer;
pub use limiter::FleetLimiter;
pub use metrics::FleetSnapshot;
pub use portcullis_core::RateLimited;
pub use service::FleetRateLimit;
