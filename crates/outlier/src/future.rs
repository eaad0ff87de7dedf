//! The response future of [`Outlier`](crate::Outlier).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use portcullis_core::{BoxError, Classify};

use crate::Detector;

pin_project! {
    /// Resolves to the inner service's answer, after recording its outcome
    /// for the endpoint the call went to. Dropped before it resolves, it
    /// records nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F>,
        record: Option<Record<C>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Call {
            #[pin]
            future: F,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

struct Record<C> {
    detector: Detector,
    index: usize,
    classifier: C,
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(future: F, detector: Detector, index: usize, classifier: C) -> Self {
        Self {
            state: State::Call { future },
            record: Some(Record {
                detector,
                index,
                classifier,
            }),
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            record: None,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Call { future } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(record) = this.record.take() {
                    let outcome = record.classifier.classify(result.as_ref());
                    record.detector.record(record.index, outcome);
                }
                Poll::Ready(result)
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after it resolved"))),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("endpoint", &self.record.as_ref().map(|record| record.index))
            .finish_non_exhaustive()
    }
}
