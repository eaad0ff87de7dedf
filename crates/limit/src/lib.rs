//! Adaptive concurrency limits for `tower`: a bound on the calls in flight
//! that finds itself, from the latency and the failures of the calls.
//!
//! A fixed bulkhead needs its size chosen, and the right size moves with
//! the hardware, the callee's other callers, the size of the requests. Too
//! small and the service sheds load it could serve; too large and, when
//! the callee slows down, calls queue inside it and every caller waits for
//! the queue. By Little's law the right bound is the callee's throughput
//! times its latency without queueing, and both can be measured: when the
//! latency grows over its no-load value, calls are queueing, and the limit
//! should shrink; while it does not, the limit may grow. This is TCP
//! congestion control applied to requests, as in Netflix's
//! `concurrency-limits` library, whose algorithms and defaults this crate
//! follows. Calls over the limit are shed at once with [`LimitExceeded`]
//! (an HTTP adapter answers `503` with a `Retry-After`), or wait in a
//! short newest-first queue.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_limit::{AimdConfig, LimitConfig, LimitExceeded, LimitLayer, Limiter};
//! use portcullis_core::Rejection;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = LimitConfig::builder()
//!     .aimd(AimdConfig { initial_limit: 1, min_limit: 1, ..AimdConfig::default() })
//!     .build()
//!     .unwrap();
//! let limiter = Limiter::from_config("inventory", config).unwrap();
//! let mut service = ServiceBuilder::new()
//!     .layer(LimitLayer::new(limiter.clone()))
//!     .service(service_fn(|ms: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::io::Error>(ms)
//!     }));
//!
//! let slow = tokio::spawn(service.ready().await.unwrap().call(100));
//! tokio::task::yield_now().await;
//! assert_eq!(limiter.inflight(), 1);
//!
//! // At the limit: the next call is shed, without reaching the service.
//! let error = service.ready().await.unwrap().call(1).await.unwrap_err();
//! let shed = error.downcast_ref::<LimitExceeded>().unwrap();
//! assert_eq!((shed.name(), shed.status_hint()), ("inventory", 503));
//!
//! assert_eq!(slow.await.unwrap().unwrap(), 100);
//! assert_eq!(limiter.inflight(), 0, "the room came back with the response");
//! # }
//! ```
//!
//! # The algorithms
//!
//! Each admitted call that answers is a sample: its latency (measured from
//! admission to the response), the calls in flight when it was admitted,
//! and whether it was dropped (its outcome a failure). Samples are summed
//! on atomics into a window; when the window has lasted at least `window`
//! (1 s) and has at least `min_samples` (10) samples, the one caller that
//! closes it hands the algorithm the window's mean latency (`rtt`), its
//! most calls in flight (`inflight`), and whether any call was dropped
//! (Netflix's `WindowedLimit` with its defaults, averaging the latency).
//! The rules, with `limit` the current limit:
//!
//! - **AIMD** (`AIMDLimit`; initial 20, min 20, max 200, backoff 0.9,
//!   timeout 5 s). If a call was dropped or `rtt > timeout`, `limit =
//!   floor(limit · backoff)`; else if `inflight · 2 >= limit`, `limit + 1`;
//!   then clamped to [min, max]. Loss-based: it needs failures (a timeout
//!   inside the limit, 5xx with the HTTP classifier) to back off.
//! - **Gradient2** (`Gradient2Limit`; initial 20, min 20, max 200,
//!   smoothing 0.2, tolerance 1.5, long window 600, queue size 4; the
//!   default). `long` is an exponential average of `rtt` (a plain mean of
//!   the first 10 samples, then factor `2 / (600 + 1)`), `short` is the
//!   window's `rtt`. If `long / short > 2` (after an overload), `long` is
//!   multiplied by 0.95. If `inflight < limit / 2` the limit holds
//!   (application-limited). Otherwise `gradient = clamp(1.5 · long /
//!   short, 0.5, 1)`, `new = limit · gradient + 4`, and `limit = limit ·
//!   0.8 + new · 0.2`, clamped to [min, max]. (Netflix's queue size for
//!   Gradient2 is the constant 4; its first `GradientLimit` used the square
//!   root of the limit.) Drops do not move it: it reads latency alone.
//! - **Vegas** (`VegasLimit`; initial 20, max 1000, smoothing 1.0, probe
//!   multiplier 30; min 1). `rtt_noload` is the smallest `rtt` seen; it is
//!   set to the current `rtt` again after `jitter · 30 · limit` samples
//!   (`jitter` uniform in [0.5, 1)), so that a latency that grew for good
//!   is learned. With `log = max(1, floor(log10(limit)))`: a drop gives
//!   `limit − log`; else if `inflight · 2 < limit` the limit holds; else
//!   `queue = ceil(limit · (1 − rtt_noload / rtt))` and the limit becomes
//!   `limit + 6·log` if `queue <= log`, `limit + log` if `queue < 3·log`,
//!   `limit − log` if `queue > 6·log`, and holds otherwise; clamped to
//!   [min, max] and smoothed as `(1 − s) · limit + s · new`.
//!
//! The limit the gate enforces is the estimate rounded down. Netflix's
//! defaults are tuned for servers with limits in the tens to hundreds;
//! for a small dependency lower `min_limit` and `initial_limit`.
//!
//! # The rules
//!
//! - **Shed fast by default.** A call that finds `limit` calls in flight is
//!   shed at once: the service reports ready, and the response future
//!   resolves to [`LimitExceeded`] — a `503` with `Retry-After` through
//!   the facade's HTTP mapping, never sent, so an outer breaker ignores it
//!   and an outer retry does not retry it. Its hint is the last window's
//!   mean latency (as `Retry-After` in whole seconds, rounded up: 1).
//! - **Classification.** The outcome comes from a
//!   [`Classify`](portcullis_core::Classify) ([`DefaultClassifier`]
//!   unless [`LimitLayer::classifier`] says otherwise): a success is a
//!   latency sample, a failure a drop (for AIMD and Vegas a reason to
//!   shrink; it adds no latency), and an ignored outcome (an inner
//!   Portcullis rejection) records nothing.
//! - **The permit is a guard.** An admitted call holds its room until its
//!   response future completes or is dropped. A cancelled call (a client
//!   that hung up, an outer timeout) gives the room back and records
//!   nothing: its latency is unknown. So put the per-call timeout *inside*
//!   the limit: its [`Elapsed`](portcullis_core::Elapsed) is then a
//!   failure, and a drop.
//! - **Partitions** (optional: `partition("live", 0.9).partition("batch",
//!   0.1)`, chosen per request by [`LimitLayer::partition_by`]). Each
//!   partition is guaranteed `max(1, ceil(limit · share))` calls in flight,
//!   whatever the others do; past its share it may borrow room the others
//!   leave free, while the total is below the limit. A partition below its
//!   share is admitted even when borrowers have filled the limit, so the
//!   total may exceed the limit by what was borrowed, until those calls
//!   end (Netflix's `AbstractPartitionedLimiter`). Shares are rounded up,
//!   so the guarantees together may exceed the limit by up to one call per
//!   partition. A call of no partition
//!   may only use free room under the total.
//! - **The queue** (optional: `queue(max_queued, max_wait)`). A call that
//!   finds no room waits, newest first: room given back goes to the
//!   newest waiter it fits. When the queue is full, the oldest waiter is
//!   shed to make room; a waiter whose `max_wait` passes is shed. Under
//!   overload the calls that are served are then the fresh ones, whose
//!   callers still wait for them (see the `queue` module's notes).
//! - **Metrics**: [`Limiter::snapshot`] (limit, in flight, queued,
//!   admitted, shed, dropped, ignored, cancelled, updates, latencies,
//!   partitions) as serde data; a `tracing` debug event on every limit
//!   change; with feature `metrics`, the gauge `portcullis_limit_limit`
//!   and the counter `portcullis_limit_shed_total`.
//!
//! # Design
//!
//! - **The admitted path takes no lock and allocates nothing** (about
//!   150 ns a call on a small virtual machine, of which some 90 ns are the
//!   two clock reads, against 25 ns for tower's fixed `ConcurrencyLimit`):
//!   one
//!   compare-and-swap on the calls in flight against the limit (two with
//!   partitions), one clock read at admission and one at the response
//!   (`tokio::time::Instant`: exact to the nanosecond, and driven by paused
//!   time in tests; the coarse clock of `portcullis-core` ticks every
//!   millisecond, too coarse for latencies of a few milliseconds), and a
//!   handful of relaxed atomic adds into the window. The permit holds a
//!   clone of the limiter's `Arc`.
//! - **The limit moves at most once per window**, by the one caller that
//!   wins a flag; it then takes the algorithm's mutex, which nobody else
//!   holds but a [`snapshot`](Limiter::snapshot): uncontended, once per
//!   window. Samples that arrive while a window closes may fall into
//!   either window.
//! - **The protocol** (in-flight count, limit, partitions, queue hand-over)
//!   is written down in the `gate` and `queue` modules; its atomics come
//!   from `portcullis_core::sync`, and `loom` models check that no more
//!   than the limit is admitted while it holds still, that a release
//!   always gives back, a partition's guarantee, and that a release racing
//!   a call joining the queue never loses the room: run them with
//!   `RUSTFLAGS="--cfg loom" cargo test --release -p portcullis-limit --lib loom`.
//! - **The queue is the slow path**: joining, leaving and handing over
//!   take a mutex over the waiters, and each waiter is one allocation.
//!
//! # Where it goes in a stack
//!
//! Where a bulkhead would: inside the circuit breaker and the retry, around
//! the per-attempt timeout. On a server, outermost but for the error
//! mapping, so that shed calls cost nothing.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `metrics` | the limit gauge and the shed counter through the `metrics` crate |
//!
//! [`DefaultClassifier`]: portcullis_core::DefaultClassifier

mod algorithm;
mod config;
pub mod error;
pub mod future;
mod gate;
mod layer;
mod limiter;
mod metrics;
mod queue;
mod service;
mod sync;

pub use algorithm::{AimdConfig, AlgorithmKind, Gradient2Config, VegasConfig};
pub use config::{LimitConfig, LimitConfigBuilder, PartitionConfig, QueueConfig};
pub use error::LimitExceeded;
pub use layer::LimitLayer;
pub use limiter::{Acquire, LimitPermit, LimitSnapshot, Limiter, Partition, PartitionSnapshot};
pub use service::{Limit, NoPartition, PartitionBy, SelectPartition};
