use std::fmt;
use std::task::{Context, Poll};

use portcullis_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{Limiter, Partition};

/// A service behind an adaptive concurrency limit.
///
/// `poll_ready` is the inner service's; room is taken in `call`, so a
/// caller that polls readiness and never calls holds nothing. With room,
/// the inner service is called at once (admission is one compare-and-swap,
/// with no lock and no allocation; recording the response is a few relaxed
/// atomics, plus the algorithm's update for the call that closes a window,
/// which with a zero `window` is every call). Without, the call is shed at
/// once — the future resolves to [`LimitExceeded`](crate::LimitExceeded) —
/// or, with a queue, waits with the request and the readied inner service
/// (a clone takes its place here, hence `S: Clone`).
///
/// When the response comes, the classifier `C` judges it: a success is a
/// latency sample for the algorithm, a failure a drop, an ignored outcome
/// nothing. The partition of each call is chosen by `P`.
#[derive(Clone)]
pub struct Limit<S, C = DefaultClassifier, P = NoPartition> {
    inner: S,
    limiter: Limiter,
    classifier: C,
    partition: P,
}

/// Chooses the [`Partition`] of a request.
pub trait SelectPartition<Req> {
    /// The request's partition; `None` for none (the call may only use
    /// the room the partitions leave).
    fn partition(&self, request: &Req) -> Option<Partition>;
}

/// No partitions: every call draws from the whole limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPartition;

/// Partitions chosen by a function of the request
/// ([`LimitLayer::partition_by`](crate::LimitLayer::partition_by)).
#[derive(Clone, Copy)]
pub struct PartitionBy<F>(pub F);

impl<Req> SelectPartition<Req> for NoPartition {
    #[inline]
    fn partition(&self, _: &Req) -> Option<Partition> {
        None
    }
}

impl<Req, F> SelectPartition<Req> for PartitionBy<F>
where
    F: Fn(&Req) -> Option<Partition>,
{
    #[inline]
    fn partition(&self, request: &Req) -> Option<Partition> {
        (self.0)(request)
    }
}

impl<S> Limit<S> {
    /// `inner` behind `limiter`, with the default classifier (any error is
    /// a failure, but the rejections of inner Portcullis layers, which are
    /// ignored) and no partitions.
    pub fn new(inner: S, limiter: Limiter) -> Self {
        Self {
            inner,
            limiter,
            classifier: DefaultClassifier,
            partition: NoPartition,
        }
    }
}

impl<S, C, P> Limit<S, C, P> {
    /// The same service, judging outcomes with `classifier`.
    pub fn with_classifier<C2>(self, classifier: C2) -> Limit<S, C2, P> {
        Limit {
            inner: self.inner,
            limiter: self.limiter,
            classifier,
            partition: self.partition,
        }
    }

    /// The same service, choosing partitions with `partition`.
    pub fn with_partition<P2>(self, partition: P2) -> Limit<S, C, P2> {
        Limit {
            inner: self.inner,
            limiter: self.limiter,
            classifier: self.classifier,
            partition,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, P, Req> Service<Req> for Limit<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
    P: SelectPartition<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let partition = self.partition.partition(&request).map(|p| p.0);
        let admission = self.limiter.admit(partition);
        ResponseFuture::admit(admission, &mut self.inner, request, self.classifier.clone())
    }
}

impl<S: fmt::Debug, C: fmt::Debug, P: fmt::Debug> fmt::Debug for Limit<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("classifier", &self.classifier)
            .field("partition", &self.partition)
            .finish()
    }
}

impl<F> fmt::Debug for PartitionBy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PartitionBy").finish_non_exhaustive()
    }
}
