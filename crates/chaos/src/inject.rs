//! What a chaos layer injects: errors and responses, from factories.

use portcullis_core::BoxError;

use crate::ChaosError;

/// Makes the errors a [`ChaosService`](crate::ChaosService) injects, and
/// fixes the service's error type.
///
/// `E` is the inner service's error type. Implemented for:
///
/// - [`DefaultError`]: a [`ChaosError`]; the service's error is [`BoxError`];
/// - closures `Fn() -> Err` where `Err: Into<BoxError>` (a user error
///   factory); the service's error is [`BoxError`];
/// - [`NoErrors`]: no error is ever injected and the service keeps the inner
///   error type (`Infallible` under axum); the error rate is then ignored.
pub trait MakeError<E> {
    /// The error type of the service.
    type Error;

    /// Whether this factory injects errors at all; when it does not, the
    /// error rate is ignored and no error is counted.
    const INJECTS: bool = true;

    /// An injected error, or `None` if this factory injects none.
    /// `outage` tells whether an outage window caused it.
    fn make_error(&self, outage: bool) -> Option<Self::Error>;
}

/// Makes the responses a [`ChaosService`](crate::ChaosService) injects.
///
/// Implemented for closures `Fn() -> Res`, for [`NoResponse`] (none: the
/// response rate is then ignored), and with the `http` feature for
/// [`StatusResponse`].
pub trait MakeResponse<Res> {
    /// Whether this factory injects responses at all; when it does not,
    /// the response rate is ignored and no response is counted.
    const INJECTS: bool = true;

    /// An injected response, or `None` if this factory injects none.
    fn make_response(&self) -> Option<Res>;
}

/// Injects a [`ChaosError`] (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultError;

/// Injects no error: the service keeps the inner service's error type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoErrors;

/// Injects no response (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoResponse;

/// Injects an empty `http::Response` with a status, and the header
/// `x-portcullis-chaos: injected` so that it can be told from a real one.
#[cfg(feature = "http")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusResponse {
    status: http::StatusCode,
}

impl<E> MakeError<E> for DefaultError {
    type Error = BoxError;

    fn make_error(&self, outage: bool) -> Option<BoxError> {
        let error = if outage {
            ChaosError::outage()
        } else {
            ChaosError::new()
        };
        Some(Box::new(error))
    }
}

impl<F, Err, E> MakeError<E> for F
where
    F: Fn() -> Err,
    Err: Into<BoxError>,
{
    type Error = BoxError;

    fn make_error(&self, _outage: bool) -> Option<BoxError> {
        Some(self().into())
    }
}

impl<E> MakeError<E> for NoErrors {
    type Error = E;
    const INJECTS: bool = false;

    fn make_error(&self, _outage: bool) -> Option<E> {
        None
    }
}

impl<Res> MakeResponse<Res> for NoResponse {
    const INJECTS: bool = false;

    fn make_response(&self) -> Option<Res> {
        None
    }
}

impl<F, Res> MakeResponse<Res> for F
where
    F: Fn() -> Res,
{
    fn make_response(&self) -> Option<Res> {
        Some(self())
    }
}

#[cfg(feature = "http")]
impl StatusResponse {
    /// The name of the header that marks an injected response.
    pub const HEADER: &'static str = "x-portcullis-chaos";

    /// Responses with `status`.
    pub const fn new(status: http::StatusCode) -> Self {
        Self { status }
    }

    /// The status of the injected responses.
    pub const fn status(&self) -> http::StatusCode {
        self.status
    }
}

#[cfg(feature = "http")]
impl<B: Default> MakeResponse<http::Response<B>> for StatusResponse {
    fn make_response(&self) -> Option<http::Response<B>> {
        let mut response = http::Response::new(B::default());
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(Self::HEADER, http::HeaderValue::from_static("injected"));
        Some(response)
    }
}
