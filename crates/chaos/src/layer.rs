use std::fmt;

use tower_layer::Layer;

use crate::inject::{DefaultError, NoErrors, NoResponse};
use crate::{Chaos, ChaosService};

/// Wraps services in a [`ChaosService`] driven by one [`Chaos`] handle.
///
/// Every service it makes (every clone, every route) shares the handle:
/// switching it off or changing a rate changes them all. What is injected
/// is chosen here:
///
/// - errors: a [`ChaosError`](crate::ChaosError) by default,
///   [`error_with`](Self::error_with) a factory of your own, or none
///   ([`without_errors`](Self::without_errors), which keeps the inner error
///   type, e.g. `Infallible` under axum);
/// - responses: none by default, [`respond_with`](Self::respond_with) a
///   factory, or with the `http` feature
///   [`respond_with_status`](Self::respond_with_status).
///
/// ```
/// use portcullis_chaos::{Chaos, ChaosConfig, ChaosLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let chaos = Chaos::from_config("db", ChaosConfig::builder().error_rate(1.0).build().unwrap()).unwrap();
/// let service = ServiceBuilder::new()
///     .layer(ChaosLayer::new(chaos.clone()).error_with(|| std::io::Error::other("connection reset")))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let error = service.clone().oneshot(1).await.unwrap_err();
/// assert_eq!(error.to_string(), "connection reset");
///
/// chaos.disable();
/// assert_eq!(service.oneshot(2).await.unwrap(), 2);
/// # }
/// ```
#[derive(Clone)]
pub struct ChaosLayer<E = DefaultError, R = NoResponse> {
    chaos: Chaos,
    errors: E,
    responses: R,
}

impl ChaosLayer {
    /// Faults from `chaos`: [`ChaosError`](crate::ChaosError)s, and no
    /// injected response.
    pub fn new(chaos: Chaos) -> Self {
        Self {
            chaos,
            errors: DefaultError,
            responses: NoResponse,
        }
    }
}

impl<E, R> ChaosLayer<E, R> {
    /// Inject the errors `factory` makes (`Fn() -> Err`, `Err:
    /// Into<BoxError>`).
    pub fn error_with<F>(self, factory: F) -> ChaosLayer<F, R> {
        ChaosLayer {
            chaos: self.chaos,
            errors: factory,
            responses: self.responses,
        }
    }

    /// Inject no error, and keep the inner service's error type. Use it
    /// with an injected response where the error type must stay
    /// `Infallible` (an axum route).
    pub fn without_errors(self) -> ChaosLayer<NoErrors, R> {
        ChaosLayer {
            chaos: self.chaos,
            errors: NoErrors,
            responses: self.responses,
        }
    }

    /// Inject the responses `factory` makes (`Fn() -> Response`).
    pub fn respond_with<F>(self, factory: F) -> ChaosLayer<E, F> {
        ChaosLayer {
            chaos: self.chaos,
            errors: self.errors,
            responses: factory,
        }
    }

    /// Inject empty HTTP responses with `status`, marked with the header
    /// `x-portcullis-chaos: injected` (for `http::Response<B>` with
    /// `B: Default`).
    #[cfg(feature = "http")]
    pub fn respond_with_status(
        self,
        status: http::StatusCode,
    ) -> ChaosLayer<E, crate::StatusResponse> {
        self.respond_with(crate::StatusResponse::new(status))
    }

    /// The handle.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }
}

impl<S, E: Clone, R: Clone> Layer<S> for ChaosLayer<E, R> {
    type Service = ChaosService<S, E, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService::from_parts(
            inner,
            self.chaos.clone(),
            self.errors.clone(),
            self.responses.clone(),
        )
    }
}

impl<E, R> fmt::Debug for ChaosLayer<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("chaos", &self.chaos)
            .field("errors", &std::any::type_name::<E>())
            .field("responses", &std::any::type_name::<R>())
            .finish()
    }
}
