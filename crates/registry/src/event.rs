//! The registry's events: what happened to which instance, numbered in one
//! sequence, fanned out to bounded per-subscriber buffers.
//!
//! Every instance's own events (a breaker's transitions, rejections,
//! threshold crossings and resets) and the registry's (an instance added,
//! removed or reconfigured) go through one hub. Each subscriber
//! ([`Registry::watch`](crate::Registry::watch), or a client of `GET
//! /events`) has its own bounded buffer; a subscriber that lets it fill up is
//! dropped — its feed ends — rather than slowing anybody down. The last
//! events are also kept in a ring ([`Registry::recent_events`](crate::Registry::recent_events),
//! `GET /events/recent`), from which a reconnecting client is replayed.
//!
//! Rejections are counted, not sent one by one: a breaker that rejects
//! thousands of calls a second reports `rejected` with the count once per
//! [`rejection_report_interval`](crate::RegistryBuilder::rejection_report_interval).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use std::{fmt, future};

use portcullis_breaker::State;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::hub::Frame;
use crate::kind::InstanceKind;

/// Something that happened to an instance of the registry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// Its number: events are numbered 1, 2, 3, ... in the order they were
    /// published, across all instances (the `id` of a server-sent event).
    pub id: u64,
    /// When it was published, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The kind of instance.
    pub kind: InstanceKind,
    /// The instance's name.
    pub name: String,
    /// The instance's key, for a keyed instance.
    pub key: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub what: EventKind,
}

/// What happened; written as the `type` field of an event's JSON and as
/// the `event:` line of a server-sent event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The instance was created or registered.
    Added,
    /// The instance was removed from the registry.
    Removed,
    /// A new keyed instance (the event's key) took the place of one evicted
    /// to make room for it: one event where there would be a `removed` and
    /// an `added`.
    Replaced {
        /// The key of the evicted instance.
        evicted: String,
    },
    /// The instance's configuration was changed.
    Changed,
    /// A breaker changed state.
    Transition {
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
        /// Why, in words.
        reason: String,
    },
    /// A breaker rejected calls since its last `rejected` event.
    Rejected {
        /// How many.
        count: u64,
        /// The `retry_after` of the last one, rounded up to the
        /// millisecond.
        #[serde(with = "portcullis_core::duration::serde::rounded::option")]
        retry_after: Option<Duration>,
    },
    /// A breaker's figures reached a threshold.
    ThresholdCrossed {
        /// Which: `failure_rate`, `slow_call_rate` or
        /// `consecutive_failures`.
        threshold: &'static str,
        /// The figure (a rate in percent, or a count).
        value: f64,
    },
    /// A breaker was reset.
    Reset,
    /// The registry fell behind an instance's events and missed some.
    /// No longer produced (instances push their events synchronously);
    /// kept so that clients matching on it still build.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// A subscription to the registry's events; see
/// [`Registry::watch`](crate::Registry::watch).
///
/// Its buffer is bounded: when it is full because the subscriber does not
/// keep up, the subscriber is dropped and the feed ends (after the events
/// already buffered) with [`was_dropped`](Self::was_dropped) true.
pub struct EventFeed {
    receiver: mpsc::Receiver<Arc<Frame>>,
    dropped: Arc<AtomicBool>,
}

impl EventKind {
    /// The kind of event as written in JSON and server-sent events:
    /// `"transition"`, `"rejected"`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Replaced { .. } => "replaced",
            Self::Changed => "changed",
            Self::Transition { .. } => "transition",
            Self::Rejected { .. } => "rejected",
            Self::ThresholdCrossed { .. } => "threshold_crossed",
            Self::Reset => "reset",
            Self::Lagged { .. } => "lagged",
        }
    }
}

impl EventFeed {
    pub(crate) fn new(receiver: mpsc::Receiver<Arc<Frame>>, dropped: Arc<AtomicBool>) -> Self {
        Self { receiver, dropped }
    }

    /// The next event, waiting for one; `None` once the feed has ended
    /// (dropped for falling behind, or the registry is gone).
    pub async fn recv(&mut self) -> Option<Event> {
        future::poll_fn(|cx| self.poll_frame(cx))
            .await
            .map(|frame| frame.event.clone())
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.receiver
            .try_recv()
            .ok()
            .map(|frame| frame.event.clone())
    }

    /// Whether this subscriber was dropped for letting its buffer fill up.
    pub fn was_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Frame>>> {
        self.receiver.poll_recv(cx)
    }
}

impl fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFeed")
            .field("buffered", &self.receiver.len())
            .field("dropped", &self.was_dropped())
            .finish()
    }
}
