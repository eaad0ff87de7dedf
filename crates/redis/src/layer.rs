use tower_layer::Layer;

use crate::{FleetLimiter, FleetRateLimit};

/// Wraps services in a [`FleetRateLimit`] on one shared [`FleetLimiter`]:
/// every service it makes, every clone and every route draws on the one
/// fleet limit (and this process's one cache and lease pool).
#[derive(Clone, Debug)]
pub struct FleetRateLimitLayer {
    limiter: FleetLimiter,
}

impl FleetRateLimitLayer {
    /// Every service shares `limiter`.
    pub fn new(limiter: FleetLimiter) -> Self {
        Self { limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &FleetLimiter {
        &self.limiter
    }
}

impl<S> Layer<S> for FleetRateLimitLayer {
    type Service = FleetRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FleetRateLimit::new(inner, self.limiter.clone())
    }
}
