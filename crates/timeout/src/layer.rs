use std::time::Duration;

use portcullis_core::ConfigError;
use tower_layer::Layer;

use crate::{Timeout, TimeoutConfig};

/// Wraps services in a [`Timeout`].
///
/// ```
/// use std::time::Duration;
/// use portcullis_timeout::{Elapsed, TimeoutLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let slow = service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
///     Ok::<_, std::io::Error>("late")
/// });
/// let service = ServiceBuilder::new()
///     .layer(TimeoutLayer::new(Duration::from_secs(1)))
///     .service(slow);
/// let error = service.oneshot(()).await.unwrap_err();
/// assert_eq!(error.downcast_ref::<Elapsed>().unwrap().after(), Duration::from_secs(1));
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Calls are limited to `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// A layer from a validated configuration.
    pub fn from_config(config: &TimeoutConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(config.timeout()))
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.timeout)
    }
}
