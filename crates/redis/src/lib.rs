//! Fleet rate limiting on Redis (docs to follow).

mod config;
pub mod future;
mod layer;
mod limiter;
mod metrics;
mod script;
mod service;
mod state;

pub use config::{FailPolicy, FleetConfig, FleetConfigBuilder, TimeSource};
pub use layer::FleetRateLimitLayer;
pub use limiter::FleetLimiter;
pub use metrics::FleetSnapshot;
pub use portcullis_core::RateLimited;
pub use service::FleetRateLimit;
