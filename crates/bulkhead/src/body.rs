//! Holding an HTTP call's permit until its response body ends.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{BulkheadPermit, HoldPermit};

/// Holds an HTTP call's permit until the response body has been read to
/// its end, or dropped: a streaming download or a server-sent event stream
/// occupies its upstream for as long as it flows, not only until its
/// headers are in.
///
/// ```
/// use http_body_util::{BodyExt, Full};
/// use portcullis_bulkhead::{Bulkhead, BulkheadLayer};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bulkhead = Bulkhead::new("downloads");
/// let mut service = ServiceBuilder::new()
///     .layer(BulkheadLayer::new(bulkhead.clone()).hold_until_body_end())
///     .service(service_fn(|_: ()| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(&b"data"[..])))
///     }));
///
/// let response = service.ready().await.unwrap().call(()).await.unwrap();
/// assert_eq!(bulkhead.in_flight(), 1, "the body has not been read yet");
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(&body[..], b"data");
/// assert_eq!(bulkhead.in_flight(), 0, "given back at the end of the body");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UntilBodyEnd;

pin_project! {
    /// A response body that holds a bulkhead permit and gives it back at the
    /// end of the stream (the last frame, an error, or
    /// [`is_end_stream`](Body::is_end_stream)), or when it is dropped.
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<BulkheadPermit>,
    }
}

impl<B> HoldPermit<http::Response<B>> for UntilBodyEnd {
    type Response = http::Response<PermitBody<B>>;

    fn hold(&self, response: http::Response<B>, permit: BulkheadPermit) -> Self::Response {
        response.map(|body| PermitBody::new(body, permit))
    }
}

impl<B> PermitBody<B> {
    fn new(inner: B, permit: BulkheadPermit) -> Self {
        Self {
            inner,
            permit: Some(permit),
        }
    }

    /// Whether the body still holds its permit.
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body, unwrapped; the permit is given back.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !this.inner.is_end_stream() => {}
            // The last frame, an error, or the end: the call is over.
            _ => drop(this.permit.take()),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for PermitBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitBody")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}
