//! A bounded event channel whose sending side costs nothing when nobody
//! listens (feature `events`).
//!
//! Every Portcullis layer that reports events (breaker transitions, retries)
//! uses it: subscribers get a bounded broadcast stream; one that falls
//! behind loses the oldest events, and is told how many, but never slows a
//! call down. With no subscriber, [`Events::wanted`] is one relaxed load and
//! no event value is built.
//!
//! ```
//! use portcullis_core::events::{Events, RecvError};
//!
//! let events = Events::<u32>::new(2);
//! assert!(!events.wanted());
//! let mut stream = events.subscribe();
//! assert!(events.wanted());
//! for n in 1..=3 {
//!     events.send(n);
//! }
//! assert_eq!(stream.try_recv(), Some(Err(RecvError::Lagged(1))));
//! assert_eq!(stream.try_recv(), Some(Ok(2)));
//! assert_eq!(stream.try_recv(), Some(Ok(3)));
//! assert_eq!(stream.try_recv(), None);
//! drop(stream);
//! assert!(!events.wanted());
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

/// The sending side, kept by the layer that reports the events.
pub struct Events<T> {
    sender: broadcast::Sender<T>,
    listeners: Arc<AtomicUsize>,
}

/// A subscription to a layer's events.
pub struct EventStream<T> {
    receiver: broadcast::Receiver<T>,
    listeners: Arc<AtomicUsize>,
}

/// Why [`EventStream::recv`] returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The layer that sent the events is gone.
    Closed,
    /// The subscriber fell behind and this many events were dropped; the
    /// next call goes on with the oldest event still kept.
    Lagged(u64),
}

impl<T: Clone> Events<T> {
    /// A channel that keeps at most `capacity` events for a slow subscriber.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::Sender::new(capacity),
            listeners: Arc::default(),
        }
    }

    /// Whether anybody listens; when not, build no event.
    pub fn wanted(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    /// Sends `event` to every subscriber; never waits.
    pub fn send(&self, event: T) {
        // An error only means every subscriber left in the meantime.
        let _ = self.sender.send(event);
    }

    /// A new subscription, receiving the events sent from now on.
    pub fn subscribe(&self) -> EventStream<T> {
        self.listeners.fetch_add(1, Ordering::AcqRel);
        EventStream {
            receiver: self.sender.subscribe(),
            listeners: self.listeners.clone(),
        }
    }
}

impl<T: Clone> EventStream<T> {
    /// The next event, waiting for one if need be.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        self.receiver.recv().await.map_err(|error| match error {
            broadcast::error::RecvError::Closed => RecvError::Closed,
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
        })
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<T, RecvError>> {
        match self.receiver.try_recv() {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
        }
    }
}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        self.listeners.fetch_sub(1, Ordering::Release);
    }
}

impl<T> fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("subscribers", &self.listeners.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("pending", &self.receiver.len())
            .finish()
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the sender of the events is gone"),
            Self::Lagged(n) => write!(f, "fell behind and missed {n} events"),
        }
    }
}

impl std::error::Error for RecvError {}
