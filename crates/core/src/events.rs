//! A bounded event channel whose sending side costs nothing when nobody
//! listens (feature `events`).
//!
//! Every Portcullis layer that reports events (breaker transitions, retries)
//! uses it: subscribers get a bounded broadcast stream; one that falls
//! behind loses the oldest events, and is told how many, but never slows a
//! call down. With no subscriber, [`Events::wanted`] is one relaxed load and
//! no event value is built. The channel and its buffer are only made at the
//! first [`Events::subscribe`]: a layer nobody listens to holds no buffer.
//!
//! Besides streams there are [`Hooks`]: functions called synchronously, on
//! the thread that caused the event, for the rare events a layer pushes to
//! whoever keeps its state (a registry, a metrics exporter). A hook costs
//! no task and no buffer; it is detached when its [`HookId`] is given back.
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::broadcast;

/// The sending side, kept by the layer that reports the events.
pub struct Events<T> {
    /// Made at the first subscription.
    channel: OnceLock<Channel<T>>,
    capacity: usize,
}

struct Channel<T> {
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
    ///
    /// Nothing is allocated until the first subscription.
    pub fn new(capacity: usize) -> Self {
        Self {
            channel: OnceLock::new(),
            capacity,
        }
    }

    /// Whether anybody listens; when not, build no event.
    #[inline]
    pub fn wanted(&self) -> bool {
        self.channel
            .get()
            .is_some_and(|channel| channel.listeners.load(Ordering::Relaxed) > 0)
    }

    /// Sends `event` to every subscriber; never waits.
    pub fn send(&self, event: T) {
        if let Some(channel) = self.channel.get() {
            // An error only means every subscriber left in the meantime.
            let _ = channel.sender.send(event);
        }
    }

    /// A new subscription, receiving the events sent from now on.
    pub fn subscribe(&self) -> EventStream<T> {
        let channel = self.channel.get_or_init(|| Channel {
            sender: broadcast::Sender::new(self.capacity),
            listeners: Arc::default(),
        });
        channel.listeners.fetch_add(1, Ordering::AcqRel);
        EventStream {
            receiver: channel.sender.subscribe(),
            listeners: channel.listeners.clone(),
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
        let subscribers = self
            .channel
            .get()
            .map_or(0, |channel| channel.listeners.load(Ordering::Relaxed));
        f.debug_struct("Events")
            .field("subscribers", &subscribers)
            .field("capacity", &self.capacity)
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

/// A function called with each event a layer pushes; see [`Hooks`].
pub type Hook<T> = Arc<dyn Fn(&T) + Send + Sync>;

/// Names one attached hook, to detach it with [`Hooks::detach`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HookId(u64);

/// Functions called synchronously with each event, in the order they were
/// attached.
///
/// For rare events only (transitions, resets): a hook runs on the caller's
/// thread, inside the call that caused the event, so it must be quick and
/// must not wait. A hook may attach or detach hooks, or cause another
/// event: the list is copied out (one reference count) before the hooks
/// run, and no lock is held meanwhile. With no hook attached,
/// [`Hooks::attached`] is one relaxed load and nothing is allocated.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use portcullis_core::events::Hooks;
///
/// let hooks = Hooks::<u32>::default();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let id = hooks.attach({
///     let seen = seen.clone();
///     Arc::new(move |event: &u32| seen.lock().unwrap().push(*event))
/// });
/// assert!(hooks.attached());
/// hooks.call(&1);
/// assert!(hooks.detach(id));
/// hooks.call(&2);
/// assert_eq!(*seen.lock().unwrap(), [1]);
/// assert!(!hooks.attached());
/// ```
pub struct Hooks<T> {
    count: AtomicUsize,
    list: Mutex<HookList<T>>,
}

struct HookList<T> {
    hooks: Attached<T>,
}

/// The next [`HookId`]: unique in the process, so that a list of hooks
/// needs no counter of its own.
static NEXT_HOOK: AtomicU64 = AtomicU64::new(0);

/// The attached hooks: none and one are kept without an allocation of
/// their own (a registry attaches one hook to each of its instances).
enum Attached<T> {
    None,
    One((HookId, Hook<T>)),
    Many(Arc<[(HookId, Hook<T>)]>),
}

impl<T> Clone for Attached<T> {
    fn clone(&self) -> Self {
        match self {
            Self::None => Self::None,
            Self::One(one) => Self::One(one.clone()),
            Self::Many(hooks) => Self::Many(hooks.clone()),
        }
    }
}

impl<T> Attached<T> {
    fn as_slice(&self) -> &[(HookId, Hook<T>)] {
        match self {
            Self::None => &[],
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(hooks) => hooks,
        }
    }

    fn from_vec(mut hooks: Vec<(HookId, Hook<T>)>) -> Self {
        match hooks.len() {
            0 => Self::None,
            1 => Self::One(hooks.pop().expect("one hook")),
            _ => Self::Many(hooks.into()),
        }
    }
}

impl<T> Hooks<T> {
    /// Whether any hook is attached; when not, build no event.
    #[inline]
    pub fn attached(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Attaches `hook`; it is called with every event from now on.
    pub fn attach(&self, hook: Hook<T>) -> HookId {
        let id = HookId(NEXT_HOOK.fetch_add(1, Ordering::Relaxed));
        let mut list = self.lock();
        list.hooks = match &list.hooks {
            Attached::None => Attached::One((id, hook)),
            attached => {
                let hooks = attached.as_slice().iter().cloned().chain([(id, hook)]);
                Attached::from_vec(hooks.collect())
            }
        };
        self.count
            .store(list.hooks.as_slice().len(), Ordering::Relaxed);
        id
    }

    /// Detaches the hook `id`; false if it was not attached. A call of the
    /// hooks already under way may still call it once.
    pub fn detach(&self, id: HookId) -> bool {
        let mut list = self.lock();
        let hooks = list.hooks.as_slice();
        if !hooks.iter().any(|(attached, _)| *attached == id) {
            return false;
        }
        let kept: Vec<_> = hooks
            .iter()
            .filter(|(attached, _)| *attached != id)
            .cloned()
            .collect();
        self.count.store(kept.len(), Ordering::Relaxed);
        list.hooks = Attached::from_vec(kept);
        true
    }

    /// Calls every attached hook with `event`.
    pub fn call(&self, event: &T) {
        if !self.attached() {
            return;
        }
        let hooks = self.lock().hooks.clone();
        for (_, hook) in hooks.as_slice() {
            hook(event);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HookList<T>> {
        // A hook never runs under the lock, so a poisoned lock only means
        // a panic in `attach` or `detach`, after which the list is whole.
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Default for Hooks<T> {
    fn default() -> Self {
        Self {
            count: AtomicUsize::new(0),
            list: Mutex::new(HookList {
                hooks: Attached::None,
            }),
        }
    }
}

impl<T> fmt::Debug for Hooks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("attached", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[test]
    fn no_channel_is_made_before_the_first_subscriber() {
        let events = Events::<u32>::new(1024);
        assert!(events.channel.get().is_none());
        events.send(1);
        assert!(!events.wanted());
        let mut stream = events.subscribe();
        assert!(events.channel.get().is_some());
        events.send(2);
        assert_eq!(stream.try_recv(), Some(Ok(2)));
    }

    #[test]
    fn a_hook_may_detach_itself_and_cause_another_event() {
        let hooks = Arc::new(Hooks::<u32>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let id = Arc::new(OnceLock::new());
        let hook: Hook<u32> = {
            let (hooks, calls, id) = (Arc::downgrade(&hooks), calls.clone(), id.clone());
            Arc::new(move |event: &u32| {
                calls.fetch_add(1, Ordering::Relaxed);
                let hooks = hooks.upgrade().unwrap();
                if *event == 1 {
                    hooks.call(&2);
                    assert!(hooks.detach(*id.get().unwrap()));
                }
            })
        };
        id.set(hooks.attach(hook)).unwrap();
        hooks.call(&1);
        hooks.call(&3);
        assert_eq!(calls.load(Ordering::Relaxed), 2, "1 and 2, not 3");
        assert!(!hooks.attached());
        assert!(!hooks.detach(*id.get().unwrap()), "only once");
    }

    #[test]
    fn hooks_run_in_the_order_they_were_attached() {
        let hooks = Hooks::<u32>::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ids: Vec<_> = (0..3)
            .map(|n| {
                let seen = seen.clone();
                hooks.attach(Arc::new(move |event: &u32| {
                    seen.lock().unwrap().push((n, *event));
                }))
            })
            .collect();
        assert!(hooks.detach(ids[1]));
        hooks.call(&7);
        assert_eq!(*seen.lock().unwrap(), [(0, 7), (2, 7)]);
    }
}
