//! The body of the registry service's responses: a whole buffer, or a
//! stream of server-sent events.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep, sleep};

use crate::clock::deadline_after;
use crate::event::EventFeed;
use crate::hub::SlotGuard;

/// The body of a [`RegistryService`](crate::RegistryService) response:
/// either whole (JSON, text, the dashboard), or the endless stream of
/// `GET /events`. It never fails.
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Events(Box<Events>),
}

struct Events {
    feed: EventFeed,
    head: Option<Bytes>,
    keep_alive: Option<(Pin<Box<Sleep>>, Duration)>,
    max_age: Option<Pin<Box<Sleep>>>,
    /// The stream's place among the service's streams, given back when
    /// the stream ends or its body is dropped (the client went away).
    slot: Option<SlotGuard>,
    done: bool,
}

/// Sent to a client that was dropped for falling behind, before its stream
/// ends; an `EventSource` reconnects by itself and is replayed the recent
/// events it missed.
const DROPPED: &str = "event: dropped\ndata: {\"type\":\"dropped\",\"reason\":\"the client fell behind and was dropped; reconnect to resume\"}\n\n";

impl ResponseBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())).non_empty(),
        }
    }

    /// A stream of `feed`'s frames, opened by `retry: <ms>`, with a comment
    /// every `keep_alive` of silence, ending after `max_age`, holding
    /// `slot` while it lasts.
    pub(crate) fn events(
        feed: EventFeed,
        retry: Duration,
        keep_alive: Option<Duration>,
        max_age: Option<Duration>,
        slot: Option<SlotGuard>,
    ) -> Self {
        Self {
            kind: Kind::Events(Box::new(Events {
                feed,
                head: Some(Bytes::from(format!(
                    "retry: {}\n: connected\n\n",
                    retry.as_millis()
                ))),
                keep_alive: keep_alive.map(|every| (Box::pin(sleep(every)), every)),
                max_age: max_age.map(|age| Box::pin(sleep(age))),
                slot,
                done: false,
            })),
        }
    }
}

impl Kind {
    fn non_empty(self) -> Self {
        match self {
            Self::Full(Some(bytes)) if bytes.is_empty() => Self::Full(None),
            other => other,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Events(events) => events
                .poll(cx)
                .map(|bytes| bytes.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Events(events) => events.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events(_) => SizeHint::default(),
        }
    }
}

impl Events {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let polled = self.poll_inner(cx);
        if self.done {
            self.slot = None;
        }
        polled
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(head));
        }
        if let Some(max_age) = &mut self.max_age
            && max_age.as_mut().poll(cx).is_ready()
        {
            // The client reconnects (with Last-Event-ID) after `retry`.
            self.done = true;
            return Poll::Ready(None);
        }
        match self.feed.poll_frame(cx) {
            Poll::Ready(Some(frame)) => {
                self.rearm();
                return Poll::Ready(Some(frame.sse.clone()));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(
                    self.feed
                        .was_dropped()
                        .then(|| Bytes::from_static(DROPPED.as_bytes())),
                );
            }
            Poll::Pending => {}
        }
        if let Some((timer, _)) = &mut self.keep_alive {
            ready!(timer.as_mut().poll(cx));
            self.rearm();
            return Poll::Ready(Some(Bytes::from_static(b": keep-alive\n\n")));
        }
        Poll::Pending
    }

    fn rearm(&mut self) {
        if let Some((timer, every)) = &mut self.keep_alive {
            timer.as_mut().reset(deadline_after(Instant::now(), *every));
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("ResponseBody")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Events(events) => f
                .debug_struct("ResponseBody")
                .field("events", &events.feed)
                .field("slot", &events.slot.is_some())
                .field("done", &events.done)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;
    use crate::event::EventKind;
    use crate::hub::{Hub, Settings, Slots};
    use crate::kind::{InstanceKind, Source};

    #[tokio::test]
    async fn a_full_body_is_one_frame() {
        let body = ResponseBody::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert!(ResponseBody::full("").is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_stream_says_retry_then_events_then_keeps_alive_then_ends() {
        let hub = Hub::new(Settings::default());
        let mut body = ResponseBody::events(
            hub.subscribe(None),
            Duration::from_secs(3),
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(25)),
            None,
        );
        let mut next = async || -> Option<String> {
            let frame = body.frame().await?.unwrap();
            Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
        };
        assert_eq!(next().await.unwrap(), "retry: 3000\n: connected\n\n");
        hub.publish(
            &Source::new(InstanceKind::Breaker, "db".into(), None),
            EventKind::Reset,
        );
        assert!(next().await.unwrap().starts_with("id: 1\nevent: reset\n"));
        assert_eq!(next().await.unwrap(), ": keep-alive\n\n");
        assert_eq!(next().await.unwrap(), ": keep-alive\n\n");
        assert_eq!(next().await, None, "ended at its maximum age");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_gives_its_slot_back_when_it_ends_or_is_dropped() {
        let hub = Hub::new(Settings::default());
        let slots = Slots::new(2);
        let stream = |max_age| {
            let slot = slots.try_take().unwrap();
            ResponseBody::events(
                hub.subscribe_in(None, Some(slot.clone())),
                Duration::from_secs(3),
                None,
                max_age,
                Some(SlotGuard::new(slot)),
            )
        };
        let mut aging = stream(Some(Duration::from_secs(5)));
        let dropped = stream(None);
        assert_eq!(slots.taken(), 2);
        while aging.frame().await.is_some() {}
        assert_eq!(slots.taken(), 1, "ended at its maximum age, body kept");
        drop(dropped);
        assert_eq!(slots.taken(), 0, "its client went away");
        drop(aging);
        assert_eq!(slots.taken(), 0);
    }

    #[tokio::test]
    async fn a_dropped_client_is_told_before_its_stream_ends() {
        let hub = Hub::new(Settings {
            buffer: 1,
            ..Settings::default()
        });
        let mut body = ResponseBody::events(
            hub.subscribe(None),
            Duration::from_secs(3),
            None,
            None,
            None,
        );
        let source = Source::new(InstanceKind::Breaker, "db".into(), None);
        hub.publish(&source, EventKind::Reset);
        hub.publish(&source, EventKind::Reset);
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap());
        }
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert!(frames[1].starts_with("id: 1\n"));
        assert!(frames[2].starts_with("event: dropped\n"));
        assert!(body.is_end_stream());
    }
}
