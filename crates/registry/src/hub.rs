//! The fan-out of events: one sequence, a ring of recent events, and a
//! bounded buffer per subscriber that is dropped when it fills up.
//!
//! Publishing never waits: it takes a short lock, serializes the event once,
//! and offers the shared frame to each subscriber with `try_send`. Instances
//! push their events in through a hook, synchronously, on the thread that
//! caused them: there is no task and no buffer per instance.
//!
//! Rejections come in counted (a breaker reports at most one count per
//! 10 ms); the hub adds them up per instance and one ticker, running only
//! while rejections come in, publishes them as one "rejected N" event per
//! instance and report interval. Without a runtime (or with an interval of
//! zero) each count is published as it comes.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::event::{Event, EventFeed, EventKind};
use crate::kind::Source;

/// A cheap handle to the hub, shared by the registry and the hooks of its
/// instances.
#[derive(Clone)]
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub struct Hub {
    inner: Arc<Inner>,
}

/// How events are collected and fanned out.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Whether instances' own events are collected at all.
    pub(crate) collect: bool,
    /// Events a subscriber may have waiting before it is dropped.
    pub(crate) buffer: usize,
    /// Events kept for `recent` and for replay.
    pub(crate) recent: usize,
    /// How often a breaker's rejections are reported (zero: each one).
    pub(crate) rejection_interval: Duration,
}

/// One published event, with its server-sent-event framing, serialized
/// once and shared by every subscriber.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) event: Event,
    pub(crate) sse: Bytes,
}

/// Asks an instance to report the rejections it still holds back; the
/// ticker calls it before each report so that the tail of a burst is
/// reported on time.
pub(crate) type Reporter = Arc<dyn Fn() + Send + Sync>;

struct Inner {
    state: Mutex<State>,
    settings: Settings,
    dropped: AtomicU64,
    rejections: Mutex<Rejections>,
}

/// Rejections counted but not published yet, per instance.
#[derive(Default)]
struct Rejections {
    pending: Vec<Pending>,
    /// Whether the ticker runs (it stops when a tick finds nothing).
    ticking: bool,
}

struct Pending {
    source: Source,
    count: u64,
    retry_after: Option<Duration>,
    report: Reporter,
}

struct State {
    next_id: u64,
    recent: VecDeque<Arc<Frame>>,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    sender: mpsc::Sender<Arc<Frame>>,
    dropped: Arc<AtomicBool>,
    /// Given back when the hub lets the subscriber go, so that a client
    /// dropped for not reading frees its place at once, even while its
    /// connection lingers.
    slot: Option<Arc<Slot>>,
}

/// A bounded number of places, such as the event streams one service may
/// have open.
#[derive(Debug)]
pub(crate) struct Slots {
    taken: AtomicUsize,
    max: usize,
}

/// One place taken from [`Slots`], given back exactly once: by whichever
/// of its holders lets go of it first (the stream's body, or the hub's
/// subscriber entry).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    released: AtomicBool,
}

/// Holds a [`Slot`]; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct SlotGuard(Arc<Slot>);

impl Default for Settings {
    fn default() -> Self {
        Self {
            collect: true,
            buffer: 256,
            recent: 100,
            rejection_interval: Duration::from_secs(1),
        }
    }
}

impl Hub {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_id: 1,
                    recent: VecDeque::with_capacity(settings.recent),
                    subscribers: Vec::new(),
                }),
                settings,
                dropped: AtomicU64::new(0),
                rejections: Mutex::default(),
            }),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Publishes `what` about `source` to the ring and every subscriber,
    /// after the rejections of `source` counted before it.
    pub(crate) fn publish(&self, source: &Source, what: EventKind) {
        let earlier = {
            let mut rejections = lock(&self.inner.rejections);
            let pending = &mut rejections.pending;
            pending
                .iter()
                .position(|pending| pending.source == *source)
                .map(|at| pending.swap_remove(at))
        };
        if let Some(earlier) = earlier {
            self.publish_now(source, earlier.what());
        }
        self.publish_now(source, what);
    }

    /// Counts `count` rejections by `source`, published by the ticker at
    /// the end of the report interval (at once without a runtime, or with
    /// an interval of zero).
    pub(crate) fn rejected(
        &self,
        source: &Source,
        count: u64,
        retry_after: Option<Duration>,
        reporter: impl FnOnce() -> Reporter,
    ) {
        let interval = self.inner.settings.rejection_interval;
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !interval.is_zero() => runtime,
            _ => {
                return self.publish(source, EventKind::Rejected { count, retry_after });
            }
        };
        let mut rejections = lock(&self.inner.rejections);
        match rejections
            .pending
            .iter_mut()
            .find(|pending| pending.source == *source)
        {
            Some(pending) => {
                pending.count += count;
                pending.retry_after = retry_after;
            }
            None => rejections.pending.push(Pending {
                source: source.clone(),
                count,
                retry_after,
                report: reporter(),
            }),
        }
        if !rejections.ticking {
            rejections.ticking = true;
            runtime.spawn(self.clone().tick(interval.max(TAIL)));
        }
    }

    /// Publishes the counted rejections once per `interval`, until an
    /// interval passes without any.
    async fn tick(self, interval: Duration) {
        // Should the runtime drop this task, the next rejection starts one.
        let mut stopped = Stopped(Some(&self));
        loop {
            tokio::time::sleep(interval).await;
            let reporters: Vec<Reporter> = lock(&self.inner.rejections)
                .pending
                .iter()
                .map(|pending| pending.report.clone())
                .collect();
            // Outside the lock: each reports back through `rejected`.
            for report in reporters {
                report();
            }
            let due = {
                let mut rejections = lock(&self.inner.rejections);
                if rejections.pending.is_empty() {
                    rejections.ticking = false;
                    stopped.0 = None;
                    return;
                }
                std::mem::take(&mut rejections.pending)
            };
            for pending in due {
                self.publish_now(&pending.source, pending.what());
            }
        }
    }

    fn publish_now(&self, source: &Source, what: EventKind) {
        let mut state = lock(&self.inner.state);
        let id = state.next_id;
        state.next_id += 1;
        let event = Event {
            id,
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            kind: source.kind,
            name: source.name.to_string(),
            key: source.key.as_deref().map(str::to_owned),
            what,
        };
        let json = serde_json::to_string(&event).expect("an event serializes");
        let sse = format!("id: {id}\nevent: {}\ndata: {json}\n\n", event.what.as_str());
        let frame = Arc::new(Frame {
            event,
            sse: Bytes::from(sse),
        });
        if self.inner.settings.recent > 0 {
            if state.recent.len() == self.inner.settings.recent {
                state.recent.pop_front();
            }
            state.recent.push_back(frame.clone());
        }
        let dropped = &self.inner.dropped;
        state.subscribers.retain(
            |subscriber| match subscriber.sender.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.dropped.store(true, Ordering::Release);
                    dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "an event subscriber fell {} events behind and was dropped",
                        subscriber.sender.max_capacity()
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
    }

    /// A new subscriber, first replayed the recent events numbered after
    /// `after` (for a client that reconnects with `Last-Event-ID`).
    pub(crate) fn subscribe(&self, after: Option<u64>) -> EventFeed {
        self.subscribe_in(after, None)
    }

    /// A new subscriber, as [`subscribe`](Self::subscribe), that gives
    /// `slot` back when the hub lets it go (it fell behind).
    pub(crate) fn subscribe_in(&self, after: Option<u64>, slot: Option<Arc<Slot>>) -> EventFeed {
        let mut state = lock(&self.inner.state);
        let replay: Vec<_> = match after {
            Some(after) => state
                .recent
                .iter()
                .filter(|frame| frame.event.id > after)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let (sender, receiver) = mpsc::channel(self.inner.settings.buffer + replay.len());
        for frame in replay {
            sender
                .try_send(frame)
                .expect("the buffer has room for the replay");
        }
        let dropped = Arc::new(AtomicBool::new(false));
        state.subscribers.push(Subscriber {
            sender,
            dropped: dropped.clone(),
            slot,
        });
        EventFeed::new(receiver, dropped)
    }

    /// The events in the ring, oldest first.
    pub(crate) fn recent(&self) -> Vec<Event> {
        lock(&self.inner.state)
            .recent
            .iter()
            .map(|frame| frame.event.clone())
            .collect()
    }

    /// Subscribers connected now (counting those that left but were not
    /// yet noticed, until the next event).
    pub(crate) fn subscribers(&self) -> usize {
        let mut state = lock(&self.inner.state);
        state
            .subscribers
            .retain(|subscriber| !subscriber.sender.is_closed());
        state.subscribers.len()
    }

    /// Subscribers dropped so far for falling behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The number the next event will get.
    pub(crate) fn next_id(&self) -> u64 {
        lock(&self.inner.state).next_id
    }
}

impl Slots {
    /// `max` places, none taken.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            taken: AtomicUsize::new(0),
            max,
        })
    }

    /// A place, or `None` when all are taken.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Arc<Slot>> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.max).then_some(taken + 1)
            })
            .ok()?;
        Some(Arc::new(Slot {
            slots: self.clone(),
            released: AtomicBool::new(false),
        }))
    }

    /// The places taken now.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// The number of places.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

impl Slot {
    /// Gives the place back, the first time only.
    pub(crate) fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.slots.taken.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl SlotGuard {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        Self(slot)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.release();
        }
    }
}

/// Marks the ticker stopped when it is dropped before it returns.
struct Stopped<'a>(Option<&'a Hub>);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Some(hub) = self.0 {
            lock(&hub.inner.rejections).ticking = false;
        }
    }
}

impl Pending {
    fn what(&self) -> EventKind {
        EventKind::Rejected {
            count: self.count,
            retry_after: self.retry_after,
        }
    }
}

/// The shortest report interval: a breaker holds rejections back for up to
/// 10 ms, so asking sooner finds nothing new.
const TAIL: Duration = Duration::from_millis(10);

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("Hub")
            .field("next_id", &state.next_id)
            .field("recent", &state.recent.len())
            .field("subscribers", &state.subscribers.len())
            .field("dropped", &self.dropped())
            .field("settings", &self.inner.settings)
            .finish()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::InstanceKind;

    fn source() -> Source {
        Source::new(InstanceKind::Breaker, "db".into(), None)
    }

    fn hub(buffer: usize, recent: usize) -> Hub {
        Hub::new(Settings {
            buffer,
            recent,
            ..Settings::default()
        })
    }

    #[test]
    fn events_are_numbered_and_framed() {
        let hub = hub(8, 8);
        let mut feed = hub.subscribe(None);
        hub.publish(&source(), EventKind::Added);
        hub.publish(&source(), EventKind::Reset);
        let first = feed.try_recv().unwrap();
        assert_eq!((first.id, &first.what), (1, &EventKind::Added));
        let second = feed.try_recv().unwrap();
        assert_eq!((second.id, &second.what), (2, &EventKind::Reset));
        assert_eq!(hub.next_id(), 3);
        let frame = lock(&hub.inner.state).recent[1].clone();
        let text = std::str::from_utf8(&frame.sse).unwrap();
        assert!(text.starts_with("id: 2\nevent: reset\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"), "{text}");
        assert!(text.contains(r#""type":"reset""#), "{text}");
        assert!(text.contains(r#""name":"db""#), "{text}");
    }

    #[test]
    fn a_full_subscriber_is_dropped_and_the_others_keep_going() {
        let hub = hub(2, 0);
        let mut slow = hub.subscribe(None);
        let mut fast = hub.subscribe(None);
        for round in 0..5 {
            hub.publish(&source(), EventKind::Changed);
            assert_eq!(fast.try_recv().unwrap().id, round + 1);
        }
        assert!(slow.was_dropped());
        assert!(!fast.was_dropped());
        assert_eq!(hub.dropped(), 1);
        assert_eq!(hub.subscribers(), 1);
        // The slow one still gets what was buffered, then nothing.
        assert_eq!(slow.try_recv().unwrap().id, 1);
        assert_eq!(slow.try_recv().unwrap().id, 2);
        assert_eq!(slow.try_recv(), None);
    }

    #[test]
    fn the_ring_keeps_the_last_events_and_replays_after_an_id() {
        let hub = hub(4, 3);
        for _ in 0..5 {
            hub.publish(&source(), EventKind::Changed);
        }
        let ids: Vec<_> = hub.recent().iter().map(|event| event.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        let mut feed = hub.subscribe(Some(3));
        assert_eq!(feed.try_recv().unwrap().id, 4);
        assert_eq!(feed.try_recv().unwrap().id, 5);
        assert_eq!(feed.try_recv(), None);
        hub.publish(&source(), EventKind::Changed);
        assert_eq!(feed.try_recv().unwrap().id, 6);
    }

    #[test]
    fn a_closed_subscriber_is_forgotten() {
        let hub = hub(4, 0);
        let feed = hub.subscribe(None);
        assert_eq!(hub.subscribers(), 1);
        drop(feed);
        assert_eq!(hub.subscribers(), 0);
    }

    #[test]
    fn a_slot_is_given_back_once_by_whoever_lets_go_first() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none(), "both taken");
        let guard = SlotGuard::new(a.clone());
        a.release();
        assert_eq!(slots.taken(), 1);
        drop(guard);
        assert_eq!(slots.taken(), 1, "released once only");
        drop(SlotGuard::new(b));
        assert_eq!(slots.taken(), 0);
    }

    #[test]
    fn a_subscriber_dropped_for_falling_behind_gives_its_slot_back_at_once() {
        let hub = hub(1, 0);
        let slots = Slots::new(1);
        let slot = slots.try_take().unwrap();
        // The stream's body keeps its guard and its feed, unread, as for a
        // client that stopped reading on a connection that stays open.
        let guard = SlotGuard::new(slot.clone());
        let feed = hub.subscribe_in(None, Some(slot));
        hub.publish(&source(), EventKind::Changed);
        assert_eq!(slots.taken(), 1);
        hub.publish(&source(), EventKind::Changed);
        assert!(feed.was_dropped());
        assert_eq!(slots.taken(), 0, "freed while the body still lives");
        assert!(slots.try_take().is_some());
        drop((guard, feed));
    }
}
