use std::fmt;

use portcullis_core::DefaultClassifier;
use tower_layer::Layer;

use crate::{Detector, Outlier};

/// Wraps a service in an [`Outlier`]: every call goes to the next endpoint
/// of `detector` in rotation, and its outcome, as `classifier` judges it,
/// may eject that endpoint.
///
/// Every service the layer makes shares its [`Detector`].
///
/// ```
/// use portcullis_core::BoxError;
/// use portcullis_outlier::{Detector, Endpoint, OutlierConfig, OutlierLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let detector = Detector::new("shards", ["a", "b"], OutlierConfig::default()).unwrap();
/// let route = |request: &mut (String, u32), endpoint: &Endpoint| -> Result<(), BoxError> {
///     request.0 = endpoint.name().to_owned();
///     Ok(())
/// };
/// let service = OutlierLayer::new(detector, route)
///     .layer(service_fn(|(shard, n): (String, u32)| async move { Ok::<_, BoxError>(format!("{shard}:{n}")) }));
/// assert_eq!(service.clone().oneshot((String::new(), 1)).await.unwrap(), "a:1");
/// assert_eq!(service.oneshot((String::new(), 2)).await.unwrap(), "b:2");
/// # }
/// ```
#[derive(Clone)]
pub struct OutlierLayer<R, C = DefaultClassifier> {
    detector: Detector,
    route: R,
    classifier: C,
}

impl<R> OutlierLayer<R> {
    /// Calls go to `detector`'s endpoints by `route`; outcomes are judged
    /// by the default classifier (an error is a failure, a rejection of an
    /// inner Portcullis layer is ignored).
    pub fn new(detector: Detector, route: R) -> Self {
        Self {
            detector,
            route,
            classifier: DefaultClassifier,
        }
    }
}

#[cfg(feature = "http")]
impl OutlierLayer<crate::HttpRoute, portcullis_core::HttpClassifier> {
    /// HTTP requests go to `detector`'s endpoints by their URI's authority
    /// ([`HttpRoute`](crate::HttpRoute)); a 5xx, 408 or 429 answer, or an
    /// error, is a failure ([`HttpClassifier`](portcullis_core::HttpClassifier)).
    /// An endpoint whose name is not an authority is an error naming it.
    pub fn http(detector: Detector) -> Result<Self, portcullis_core::ConfigError> {
        let route = crate::HttpRoute::new(&detector)?;
        Ok(Self {
            detector,
            route,
            classifier: portcullis_core::HttpClassifier,
        })
    }
}

impl<R, C> OutlierLayer<R, C> {
    /// Judge outcomes with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> OutlierLayer<R, C2> {
        OutlierLayer {
            detector: self.detector,
            route: self.route,
            classifier,
        }
    }

    /// The shared detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}

impl<S, R: Clone, C: Clone> Layer<S> for OutlierLayer<R, C> {
    type Service = Outlier<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Outlier::new(
            inner,
            self.detector.clone(),
            self.route.clone(),
            self.classifier.clone(),
        )
    }
}

impl<R, C: fmt::Debug> fmt::Debug for OutlierLayer<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierLayer")
            .field("detector", &self.detector)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
