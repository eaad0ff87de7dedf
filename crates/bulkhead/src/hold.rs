//! How long a call keeps its permit: until its response, or longer.

use crate::BulkheadPermit;

/// Decides how long a call holds its permit once the inner service has
/// answered, by turning the response and the permit into the response the
/// caller gets.
///
/// [`UntilResponse`] (the default) drops the permit there and then.
/// [`UntilBodyEnd`](crate::UntilBodyEnd) (feature `http`) moves it into the
/// response body, which gives it back when the body ends. Implement it for
/// other streaming responses (a gRPC stream, a download) the same way. An
/// error from the inner service always gives the permit back at once.
pub trait HoldPermit<Res> {
    /// The response the caller gets.
    type Response;

    /// Takes charge of `permit` along with `response`.
    fn hold(&self, response: Res, permit: BulkheadPermit) -> Self::Response;
}

/// Gives the permit back as soon as the inner service has answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UntilResponse;

impl<Res> HoldPermit<Res> for UntilResponse {
    type Response = Res;

    #[inline]
    fn hold(&self, response: Res, permit: BulkheadPermit) -> Res {
        drop(permit);
        response
    }
}
