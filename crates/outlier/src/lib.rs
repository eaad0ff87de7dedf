//! Outlier ejection for `tower`: spread calls over a set of endpoints, and
//! take out of rotation, for a while, the ones that fail more than the
//! others.
//!
//! A [`Detector`] holds the endpoints (the replicas of one upstream) and
//! their figures; an [`OutlierLayer`] sends each call to the next endpoint
//! in rotation, skipping the ejected ones, through one inner service (an
//! HTTP client, say), and records the call's outcome for its endpoint.
//! For HTTP ([`OutlierLayer::http`], feature `http`) the endpoint is set as
//! the request URI's authority.
//!
//! # The rules
//!
//! They are Envoy's outlier detection, with its defaults
//! ([`OutlierConfig`]):
//!
//! - **Failures in a row.** An endpoint is ejected when
//!   [`consecutive_failures`](OutlierConfig::consecutive_failures) calls in
//!   a row to it fail (Envoy's `consecutive_5xx`, 5). What a failure is, is
//!   the classifier's to say: for HTTP, an error, a 5xx, a 408 or a 429;
//!   a rejection of an inner Portcullis layer (a breaker open, a bulkhead
//!   full) is ignored. A success ends the run; an ejection starts it again.
//! - **Success rate.** Every [`interval`](OutlierConfig::interval) (10 s),
//!   the endpoints in rotation that had at least
//!   [`success_rate_request_volume`](OutlierConfig::success_rate_request_volume)
//!   calls (100) are compared, if there are at least
//!   [`success_rate_minimum_hosts`](OutlierConfig::success_rate_minimum_hosts)
//!   of them (5): one whose success rate is below the mean by more than
//!   [`success_rate_stdev_factor`](OutlierConfig::success_rate_stdev_factor)
//!   (1.9) standard deviations is ejected. The interval's counts then start
//!   again.
//! - **Ejection time.** The n-th ejection of an endpoint lasts n times
//!   [`base_ejection_time`](OutlierConfig::base_ejection_time) (30 s), at
//!   most [`max_ejection_time`](OutlierConfig::max_ejection_time) (300 s).
//!   Each interval an endpoint spends in rotation lowers n by one, so an
//!   endpoint that recovered is soon back to the base time.
//! - **A cap.** No more than
//!   [`max_ejection_percent`](OutlierConfig::max_ejection_percent) (10 %)
//!   of the endpoints, rounded down, are ejected at once, and at least one
//!   always may be (as in Envoy since 1.24). An outlier found over the cap
//!   stays in rotation and is counted
//!   ([`refused`](DetectorSnapshot::refused)). So of three endpoints with a
//!   cap of 50 %, one may be out: two failing ones are not both ejected.
//!   The cap is kept with atomics, not a lock: an ejection that races
//!   with a readmission (between its two steps) may be refused although a
//!   place is just being given back; it is counted, and the endpoint's
//!   next failure (or the next sweep) tries again. The cap itself is never
//!   exceeded (checked with `loom`).
//! - **Nobody left.** When every endpoint is ejected (one endpoint, or a
//!   cap of 100 %), calls go to the next one in rotation anyway, as Envoy
//!   routes in "panic": a call is never turned away for want of an
//!   endpoint.
//!
//! Where this differs from Envoy: an endpoint comes back as soon as its
//! time is over (on the first pick after it), not at the next interval; and
//! the failure-percentage and gateway-error rules, off by default in Envoy,
//! are not here (a classifier that calls only 502, 503 and 504 failures
//! gives the gateway rule).
//!
//! # Cost
//!
//! A call is two atomic additions (the rotation, shared by the endpoints,
//! and the endpoint's own count) and a clock read, with no lock and no allocation (an allocation-counting
//! test checks the HTTP path). Each endpoint's figures are on a cache line
//! of their own. Ejections, readmissions and the once-an-interval sweep
//! scan the endpoints; the sweep allocates one small vector.
//!
//! # With per-authority breakers
//!
//! Put the layer outside a per-authority client stack (the `portcullis`
//! facade's `PerAuthorityLayer`): the route writes each endpoint's
//! authority into the URI, so that every endpoint gets its own breaker in
//! the registry, and the ejection decides where calls go while the breaker
//! decides whether one endpoint's calls are sent at all. An open breaker's
//! rejection is ignored by the default classifiers, so it does not eject.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use portcullis_core::BoxError;
//! use portcullis_outlier::{Detector, OutlierConfig, OutlierLayer};
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let config = OutlierConfig::builder()
//!     .consecutive_failures(3)
//!     .base_ejection_time(Duration::from_secs(10))
//!     .max_ejection_percent(50)
//!     .build()
//!     .unwrap();
//! let detector = Detector::new("inventory", ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"], config).unwrap();
//! // A client where 10.0.0.2 answers 503.
//! let client = service_fn(|request: http::Request<()>| async move {
//!     let status = if request.uri().authority().unwrap() == "10.0.0.2:8080" { 503 } else { 200 };
//!     let mut response = http::Response::new(());
//!     *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
//!     Ok::<_, BoxError>(response)
//! });
//! let client = OutlierLayer::http(detector.clone()).unwrap().layer(client);
//! for _ in 0..12 {
//!     let request = http::Request::get("/items").body(()).unwrap();
//!     client.clone().oneshot(request).await.unwrap();
//! }
//! let snapshot = detector.snapshot();
//! assert!(snapshot.endpoints[1].ejected);
//! assert_eq!(snapshot.consecutive_ejections, 1);
//! # }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```

mod config;
mod detector;
pub mod future;
mod layer;
mod route;
mod service;

pub use config::{OutlierConfig, OutlierConfigBuilder};
pub use detector::{Detector, DetectorSnapshot, Endpoint, EndpointSnapshot, Reason};
pub use layer::OutlierLayer;
#[cfg(feature = "http")]
pub use route::HttpRoute;
pub use route::Route;
pub use service::Outlier;
