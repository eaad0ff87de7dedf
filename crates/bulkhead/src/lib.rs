//! A bulkhead for `tower`: a bound on the calls in flight to one dependency,
//! with a lock-free admission path and an optional, bounded FIFO wait.
//!
//! A ship's bulkheads keep one flooded compartment from sinking the ship. A
//! software bulkhead keeps one slow dependency from taking every worker,
//! connection and byte of memory of the service that calls it: at most
//! `max_concurrent_calls` calls are in flight at once, and the others are
//! turned away with [`BulkheadFull`] at once (the default), or after waiting
//! at most `max_wait` for a permit.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis_bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = BulkheadConfig::builder()
//!     .max_concurrent_calls(1)
//!     .build()
//!     .expect("a valid configuration");
//! let bulkhead = Bulkhead::from_config("inventory", config).unwrap();
//!
//! let (release, released) = tokio::sync::oneshot::channel::<()>();
//! let released = std::sync::Arc::new(std::sync::Mutex::new(Some(released)));
//! let mut service = ServiceBuilder::new()
//!     .layer(BulkheadLayer::new(bulkhead.clone()))
//!     .service(service_fn(move |_: ()| {
//!         let gate = released.lock().unwrap().take();
//!         async move {
//!             if let Some(gate) = gate {
//!                 let _ = gate.await; // the first call is slow
//!             }
//!             Ok::<_, std::io::Error>("done")
//!         }
//!     }));
//!
//! let slow = tokio::spawn(service.ready().await.unwrap().call(()));
//! tokio::task::yield_now().await;
//! assert_eq!(bulkhead.in_flight(), 1);
//!
//! // The bulkhead is full: the next call fails fast, without reaching the service.
//! let error = service.ready().await.unwrap().call(()).await.unwrap_err();
//! assert_eq!(error.downcast_ref::<BulkheadFull>().unwrap().name(), "inventory");
//!
//! release.send(()).unwrap();
//! assert_eq!(slow.await.unwrap().unwrap(), "done");
//! assert_eq!(bulkhead.in_flight(), 0, "the permit came back with the response");
//! assert_eq!(service.ready().await.unwrap().call(()).await.unwrap(), "done");
//! # }
//! ```
//!
//! # The rules
//!
//! - **Fail fast by default.** With `max_wait` zero a call that finds no free
//!   permit is rejected at once with [`BulkheadFull`]; the service still
//!   reports ready, and the response future resolves to the error.
//! - **Waiting is opt-in and bounded.** With `max_wait` above zero the call
//!   joins a first-come, first-served queue (optionally bounded by
//!   `max_queued_calls`) and is rejected with `BulkheadFull` if no permit
//!   comes within `max_wait`. Its place in the queue is taken when `call` is
//!   made. A permit given back goes to the first waiter, never to a newcomer:
//!   while anyone waits, no permit is free.
//! - **Permits are guards.** A call holds its permit until its response
//!   future completes or is dropped (a client that hangs up, an outer
//!   timeout). A waiting future that is dropped leaves the queue; if it was
//!   handed a permit at that very moment, the permit goes to the next waiter.
//!   For HTTP, [`BulkheadLayer::hold_until_body_end`] (feature `http`) keeps
//!   the permit in the response body until the body ends or is dropped; the
//!   [`HoldPermit`] trait does the same for any other streaming response.
//! - **Keyed bulkheads** ([`KeyedBulkhead`], [`KeyedBulkheadLayer`]) keep one
//!   pool per key (upstream host, tenant, client), made on the key's first
//!   call, in a table bounded by `max_keys`. When the table is full, idle
//!   pools are evicted; when none is idle, a new key's calls are rejected
//!   with `BulkheadFull` (no shared overflow pool: see [`KeyedBulkhead`]).
//! - **Metrics** on the handle: [`Bulkhead::in_flight`],
//!   [`Bulkhead::queued`], [`Bulkhead::available`], [`Bulkhead::rejected`],
//!   and [`Bulkhead::snapshot`] as serde data.
//!
//! # Shared or per route
//!
//! All state lives in the [`Bulkhead`] handle. A [`BulkheadLayer`] built
//! with [`BulkheadLayer::new`] from a handle gives every service it makes
//! (every clone, every route) that one pool. One built with
//! [`BulkheadLayer::per_service`] makes a new bulkhead each time `layer` is
//! called, which in axum is once per route — provided the router is given
//! its state (`Router::with_state`, with `()` if it has none) before it is
//! served. When in doubt, build from a handle. The handle also works
//! without tower: [`Bulkhead::try_acquire`] and [`Bulkhead::acquire`].
//!
//! # Design
//!
//! - **The permit is taken in `call`, not in `poll_ready`.** tower's
//!   `ConcurrencyLimit` reserves in `poll_ready`, so that a caller that polls
//!   readiness and then does not call (a balancer probing its endpoints, a
//!   router that picks another route) holds a permit meanwhile. Here
//!   `poll_ready` is the inner service's and holds nothing. So that a full
//!   bulkhead can fail fast, the rejection is the response future's.
//! - **Waiting happens in the response future**, which then needs the inner
//!   service: the service that `poll_ready` made ready goes into the future
//!   with the request, and a clone takes its place (`std::mem::replace`
//!   with a clone, as tower's `Service` docs advise for a service moved into
//!   a future, and as `tower-resilience-bulkhead` does). Hence
//!   [`BulkheadService`] requires `S: Clone`, as almost every service is
//!   (axum routes, hyper and tonic clients); wrap another in
//!   `tower::buffer::Buffer`. The clone is made only when a call must wait.
//! - **Its own semaphore**, not tokio's. tokio's `Semaphore` is fair and
//!   would do, but it takes its waiters' mutex on every release, and loom
//!   cannot see inside it. Here admission is one compare-and-swap on a
//!   counter of free permits, and a release with nobody waiting is one more:
//!   no lock, no allocation. Only the slow paths — joining the queue,
//!   handing a permit to a waiter, leaving the queue — take a mutex over a
//!   `VecDeque` of waiters. The protocol, and the invariant that makes it
//!   fair, are written down in the `semaphore` module; its atomics come from
//!   `portcullis_core::sync`, and `loom` models check that no more calls
//!   than permits are ever admitted, that no wakeup is lost, and that a
//!   cancelled waiter leaves the queue and passes on a permit it was handed
//!   (run them with `RUSTFLAGS="--cfg loom"`).
//! - **Time comes from `tokio::time`**: a waiting call needs a tokio runtime
//!   with its time driver, and paused time drives the tests. A call that
//!   does not wait reads no clock.
//!
//! # Where it goes in a stack
//!
//! Inside the circuit breaker and the retry, around the per-attempt timeout:
//! a rejection is [`never_sent`](portcullis_core::Rejection::never_sent), so
//! an outer breaker ignores it and an outer retry does not retry it, and the
//! permit is held for one attempt at a time.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `http`  | [`UntilBodyEnd`] and [`PermitBody`]: hold the permit until the response body ends |

#[cfg(feature = "http")]
mod body;
mod bulkhead;
mod config;
pub mod error;
pub mod future;
mod hold;
mod keyed;
mod layer;
mod semaphore;
mod service;

#[cfg(feature = "http")]
pub use body::{PermitBody, UntilBodyEnd};
pub use bulkhead::{Acquire, Bulkhead, BulkheadPermit, BulkheadSnapshot};
pub use config::{BulkheadConfig, BulkheadConfigBuilder};
pub use error::BulkheadFull;
pub use hold::{HoldPermit, UntilResponse};
pub use keyed::{KeyedBulkhead, KeyedBulkheadSnapshot};
pub use layer::{BulkheadLayer, KeyedBulkheadLayer};
pub use service::{BulkheadService, KeyedBulkheadService};
