use std::fmt;
use std::task::{Context, Poll};

use portcullis_core::{BoxError, Classify};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{Detector, Route};

/// Sends each call to the next endpoint in rotation, skipping the ejected
/// ones, and records its outcome for that endpoint. Made by
/// [`OutlierLayer`](crate::OutlierLayer).
///
/// `poll_ready` is the inner service's: one inner service (an HTTP client,
/// say) carries the calls to every endpoint, and the route points each
/// request at its endpoint. Errors are the inner service's, boxed, or the
/// route's.
#[derive(Clone)]
pub struct Outlier<S, R, C> {
    inner: S,
    detector: Detector,
    route: R,
    classifier: C,
}

impl<S, R, C> Outlier<S, R, C> {
    pub(crate) fn new(inner: S, detector: Detector, route: R, classifier: C) -> Self {
        Self {
            inner,
            detector,
            route,
            classifier,
        }
    }

    /// The shared detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, C, Req> Service<Req> for Outlier<S, R, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Route<Req>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Req) -> Self::Future {
        let endpoint = self.detector.pick();
        let index = endpoint.index();
        if let Err(error) = self.route.route(&mut request, endpoint) {
            return ResponseFuture::failed(error);
        }
        ResponseFuture::new(
            self.inner.call(request),
            self.detector.clone(),
            index,
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, R, C: fmt::Debug> fmt::Debug for Outlier<S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outlier")
            .field("inner", &self.inner)
            .field("detector", &self.detector)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
