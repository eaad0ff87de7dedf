//! A circuit breaker for `tower`: lock-free, allocation-free on the closed
//! path, and strict about what it counts.
//!
//! A breaker watches the outcomes of the calls to one dependency. When too
//! many fail (or are slow), it *opens*: calls are rejected at once with
//! [`BreakerOpen`] instead of piling onto a dependency that is down. After a
//! wait it lets a few *probe* calls through (*half-open*); their outcomes
//! decide whether it closes again or waits longer.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_breaker::{Breaker, BreakerConfig, BreakerOpen, CircuitBreakerLayer, State};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = BreakerConfig::builder()
//!     .count_window(10)
//!     .minimum_calls(5)
//!     .failure_rate_threshold(50.0)
//!     .wait_in_open(Duration::from_secs(5))
//!     .build()
//!     .expect("a valid configuration");
//! let breaker = Breaker::from_config("flaky", config).unwrap();
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) }));
//!
//! for _ in 0..5 {
//!     let error = service.ready().await.unwrap().call(()).await.unwrap_err();
//!     assert!(error.is::<std::io::Error>());
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // Now calls fail fast, without reaching the service.
//! let error = service.ready().await.unwrap().call(()).await.unwrap_err();
//! let open = error.downcast_ref::<BreakerOpen>().expect("rejected");
//! assert_eq!(open.name(), "flaky");
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(5));
//! # }
//! ```
//!
//! # The rules
//!
//! - **Windows.** Rates are computed over a [`SlidingWindow`]: the last N
//!   calls, or the calls of the last span of time in buckets (calls leave a
//!   bucket at a time). Both cost O(1) per call and O(window) memory whatever
//!   the traffic: a million calls in a time window cost what a thousand do.
//!   A count window keeps three bits per call.
//! - **Memory.** A breaker holds a few words of state and its window; what
//!   it rarely needs (event channels and their delivery, the open and
//!   half-open bookkeeping, the rarer counts, a timed call's durations) is
//!   made on first need. Breakers made with [`Breaker::sibling`] (a
//!   registry's keyed breakers of one name) share one copy of their name
//!   and configuration: a closed sibling with a 100-call window and no
//!   subscriber is about 280 bytes.
//! - **Trip rules**, any of which opens the breaker: the failure rate is at
//!   or above its threshold; the slow-call rate is at or above its threshold,
//!   a call being slow when it takes *longer* than the slow-call duration;
//!   N failures in a row. Rates are undefined (`None` in a
//!   [`BreakerSnapshot`]) below `minimum_calls`, and then never trip.
//! - **Failures in a row** are the recorded failures since the last
//!   recorded success: any success ends the run, ignored outcomes do not
//!   touch it (as in Linkerd and Envoy). A count window has no time, so a
//!   run lasts until a success, however far apart its failures are. A time
//!   window forgets the run with its buckets: failures that left the window
//!   no longer count, so failures hours apart are not "in a row". Entering
//!   any state but `Open` starts a new run (half-open counts its probes').
//! - **Outcomes** come from a [`Classify`](portcullis_core::Classify)
//!   implementation: by default any error is a failure, except the
//!   rejections of inner Portcullis layers, which are ignored. An `Ignored`
//!   outcome is counted nowhere. For HTTP use
//!   [`HttpClassifier`](portcullis_core::HttpClassifier) (feature `http`):
//!   5xx, 408 and 429 responses are failures.
//! - **Open** rejects at once with [`BreakerOpen`], carrying the breaker's
//!   name and `retry_after`. The wait is `wait_in_open`, optionally growing by
//!   a multiplier each time the probes fail (capped, with jitter), back to the
//!   base when the breaker closes. A failure that carries a server-directed
//!   wait (`Retry-After` on a 429 or 503) can open it for that wait
//!   ([`BreakerConfigBuilder::open_on_retry_after`]).
//! - **Half-open** comes lazily, on the first call after the wait (no timer
//!   task). It lets `permitted_calls_in_half_open` probes through and decides
//!   over exactly their outcomes. A probe permit is a guard: a cancelled call
//!   or an ignored outcome gives it back, so the breaker cannot be stuck
//!   half-open; `max_wait_in_half_open` bounds slow probes too, after which
//!   it opens again (or closes, with
//!   [`BreakerConfigBuilder::state_after_max_wait_in_half_open`]).
//! - **Stale outcomes** are dropped: each admission is tagged with the
//!   generation of the state it was made in, and an outcome that arrives
//!   after a transition is not counted into the new state.
//! - **Manual control** on the handle: [`Breaker::force_open`],
//!   [`Breaker::disable`], [`Breaker::metrics_only`], [`Breaker::close`],
//!   [`Breaker::reset`], [`Breaker::open`] (for the configured, growing
//!   wait), [`Breaker::open_for`], [`Breaker::open_until`],
//!   [`Breaker::half_open`]. A transition to the current state is silent;
//!   one the state does not allow is an [`IllegalTransition`]. A new
//!   breaker starts in [`BreakerConfigBuilder::initial_state`] (`Closed` by
//!   default).
//! - **Events**: transitions with their [`TransitionReason`], rejections and
//!   threshold crossings go to `tracing` and to [`Breaker::subscribe`]rs; no
//!   event is built when nobody subscribes. Rejections reach subscribers in
//!   batches (one [`BreakerEvent::Rejected`] with a count, at most every
//!   10 ms, and before the next other event), so that a flood of rejected
//!   calls cannot push the transitions out of a subscriber's buffer.
//!
//! # What each figure counts, and when it starts again
//!
//! | figure | starts again |
//! |--------|--------------|
//! | the window (`buffered_calls`, `failed_calls`, `slow_calls`, rates) | on entering `Closed` or `MetricsOnly` (a time window also forgets calls with their buckets) |
//! | the probes (the same fields in `HalfOpen`) | at each half-open episode; shown in `Open` after they failed |
//! | the durations (`timed_calls`, `total_call_duration`, `average_call_duration`) | with the calls above: they are those calls' |
//! | `consecutive_failures` | at any recorded success, and on entering any state but `Open` |
//! | `permits_in_use` | with each half-open episode (0 in other states) |
//! | `successful_calls_in_state`, `ignored_calls_in_state`, `not_permitted_calls_in_state` | at every transition (a re-open and a reset included) |
//! | `successful_calls_since_reset`, `ignored_calls_since_reset`, `not_permitted_calls` | only on [`Breaker::reset`] |
//! | [`BreakerCounters`] ([`Breaker::counters`], and `counters` in a snapshot) | never: not on a transition, a reset or [`Breaker::reconfigure`] |
//! | the growth of the open wait | when the breaker closes |
//!
//! The counters are for rates (Prometheus's `rate()`): calls by outcome
//! (successful, failed, ignored; a slow call is also counted as slow),
//! rejections, and transitions by the state left and the state entered.
//! Outcomes are counted where they are recorded — in `Closed`,
//! `MetricsOnly` and as half-open probes — so a `Disabled` breaker counts
//! none, and an outcome dropped as stale counts nowhere. Durations are
//! measured only for timed calls: all of them with
//! [`BreakerConfigBuilder::record_call_durations`] or a slow-call rule
//! (the closed path reads no clock otherwise).
//!
//! ```
//! use std::time::Duration;
//! use portcullis_breaker::{Breaker, BreakerConfig, State};
//! use portcullis_core::Outcome;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = BreakerConfig::builder()
//!     .count_window(4)
//!     .minimum_calls(2)
//!     .record_call_durations(true)
//!     .build()
//!     .unwrap();
//! let breaker = Breaker::from_config("search", config).unwrap();
//! for took in [10, 30] {
//!     let permit = breaker.try_acquire().unwrap();
//!     tokio::time::advance(Duration::from_millis(took)).await;
//!     permit.record(Outcome::Success);
//! }
//! breaker.try_acquire().unwrap().record(Outcome::Ignored);
//! let snapshot = breaker.snapshot();
//! assert_eq!(snapshot.average_call_duration, Some(Duration::from_millis(20)));
//! assert_eq!(snapshot.total_call_duration, Some(Duration::from_millis(40)));
//! assert_eq!(snapshot.successful_calls_in_state, 2);
//! assert_eq!(snapshot.ignored_calls_in_state, 1);
//!
//! breaker.force_open();
//! assert!(breaker.try_acquire().is_err());
//! let snapshot = breaker.snapshot();
//! assert_eq!(snapshot.successful_calls_in_state, 0, "a new state");
//! assert_eq!(snapshot.successful_calls_since_reset, 2);
//! assert_eq!(snapshot.not_permitted_calls_in_state, 1);
//!
//! breaker.reset();
//! assert_eq!(breaker.snapshot().successful_calls_since_reset, 0);
//! let counters = breaker.counters();
//! assert_eq!(counters.successful_calls, 2, "counters never start again");
//! assert_eq!(counters.not_permitted_calls, 1);
//! assert_eq!(counters.transitions(State::Closed, State::ForcedOpen), 1);
//! assert_eq!(counters.transitions(State::ForcedOpen, State::Closed), 1);
//! # }
//! ```
//!
//! # Shared or per route
//!
//! All state lives in the [`Breaker`] handle. A [`CircuitBreakerLayer`]
//! built with [`CircuitBreakerLayer::new`] from a handle gives every service
//! it makes (every clone, every route) that one breaker. One built with
//! [`CircuitBreakerLayer::per_service`] makes a new breaker each time
//! `layer` is called, which in axum is once per route — provided the router
//! is given its state (`Router::with_state`, with `()` if it has none) before
//! it is served; otherwise axum applies handler layers once per connection.
//! When in doubt, build from a handle.
//!
//! # Where it goes in a stack
//!
//! Inside a retry, the breaker sees every attempt and the retry skips the
//! attempts that it rejects (Portcullis retries never retry a
//! [`BreakerOpen`]). Outside a retry it sees one outcome per request, after
//! all the attempts: it opens later, but a request that succeeded on its
//! second attempt counts as a success.
//!
//! # Cost
//!
//! In `Closed`, admission is one atomic load and recording a success in a
//! count window is one `fetch_add`; no lock, no allocation, no boxed future.
//! The counters add nothing to it: the successes recorded in the window are
//! its recorded calls, which it counts anyway, minus the failures.
//! The clock is read once per call only for a time window or a slow-call
//! rule. A time window's buckets and the open wait read the breaker's
//! clock: in a running runtime the coarse time of
//! [`portcullis_core::clock`], one atomic load, which lags the real time by
//! about a millisecond (a bucket starts, and an open breaker lets its first
//! probe through, up to that much late; never early); where tokio's time is
//! paused, tokio's clock, so paused-time tests are exact. A slow-call rule
//! times the call itself on tokio's clock, exactly. The state machine is
//! checked with `loom` (run with `RUSTFLAGS="--cfg loom"`).
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | the HTTP classifier of `portcullis-core` |
//! | `grpc`  | the gRPC classifier of `portcullis-core` |

mod breaker;
mod config;
mod counters;
pub mod error;
pub mod event;
pub mod future;
mod layer;
mod service;
mod settings;
mod state;
mod window;

pub use breaker::{Breaker, BreakerSnapshot, Permit, WeakBreaker};
pub use config::{BreakerConfig, BreakerConfigBuilder, SlidingWindow};
pub use counters::BreakerCounters;
pub use error::{BreakerOpen, IllegalTransition};
pub use event::{BreakerEvent, EventHook, EventStream, Threshold, TransitionReason};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use state::State;
