//! The shared handle that owns a breaker's state.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use portcullis_core::clock::Clock;
use portcullis_core::{BreakerOpen, ConfigError, Outcome};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::counters::BreakerCounters;
use crate::error::IllegalTransition;
use crate::event::{BreakerEvent, EventHook, EventStream, Events, Hooks};
use crate::settings::{CALL_EVENTS, Profile};
use crate::state::{Core, Reading, Signal, State, Ticket, micros};
use crate::window::{FAILED, RECORDED, SLOW, TIMED};

/// A circuit breaker: a cheap, cloneable handle to one shared state.
///
/// Every clone, every service built from it and every route that uses it
/// sees and changes the same window and state. Use it with
/// [`CircuitBreakerLayer::new`](crate::CircuitBreakerLayer::new), or on its
/// own around any call with [`try_acquire`](Self::try_acquire):
///
/// ```
/// use portcullis_breaker::{Breaker, BreakerConfig, State};
/// use portcullis_core::Outcome;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = BreakerConfig::builder().count_window(4).minimum_calls(2).build().unwrap();
/// let breaker = Breaker::from_config("inventory", config).unwrap();
/// for _ in 0..2 {
///     let permit = breaker.try_acquire().expect("closed");
///     permit.record(Outcome::Failure);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.name(), "inventory");
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

/// The right to make one call, handed out by [`Breaker::try_acquire`].
///
/// Record the call's outcome with [`record`](Self::record). A permit dropped
/// without an outcome (a cancelled call) records nothing and, in half-open,
/// gives its probe slot back.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct Permit {
    breaker: Breaker,
    ticket: Option<Ticket>,
    started: Option<Instant>,
    /// Whether a per-call event may be wanted (calls were timed for it).
    report: bool,
}

/// A breaker's figures at one moment, as plain data.
///
/// The call figures (`buffered_calls`, `failed_calls`, `slow_calls` and
/// their rates) are those the current state judges on:
///
/// | state | figures |
/// |-------|---------|
/// | `Closed`, `MetricsOnly` | the sliding window |
/// | `HalfOpen` | the probes of this half-open episode: those whose outcome is in; rates defined from the first one |
/// | `Open` | what opened it: the window after a trip from `Closed` (a time window keeps ageing), the probes after they failed |
/// | `Disabled`, `ForcedOpen` | nothing is recorded: zeros, rates `None` |
///
/// The durations (`timed_calls`, `total_call_duration`,
/// `average_call_duration`) are those of the same calls, counting only
/// the calls that were timed: every call with
/// [`record_call_durations`](crate::BreakerConfigBuilder::record_call_durations)
/// or a slow-call rule, otherwise only those made while a
/// [`subscribe_with_calls`](Breaker::subscribe_with_calls) stream exists.
///
/// The totals `*_in_state` start again at every transition (a re-open and a
/// reset included), the `*_since_reset` ones (and `not_permitted_calls`)
/// when the breaker is made or [reset](Breaker::reset); `counters` never
/// start again. See the table in the crate docs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// Failure rate in percent over the calls judged on; `None` below the
    /// minimum number of calls (in half-open: before the first probe's
    /// outcome). Serialized with two decimals.
    #[serde(with = "portcullis_core::percent::serde::option")]
    pub failure_rate: Option<f32>,
    /// Slow-call rate in percent, defined like `failure_rate`.
    #[serde(with = "portcullis_core::percent::serde::option")]
    pub slow_call_rate: Option<f32>,
    /// Calls judged on: in the window, or probes whose outcome is in.
    pub buffered_calls: u64,
    /// Failed calls among them.
    pub failed_calls: u64,
    /// Slow calls among them.
    pub slow_calls: u64,
    /// In half-open, probe permits held by calls whose outcome is not in
    /// yet; 0 in every other state.
    pub permits_in_use: u32,
    /// Calls rejected since the breaker was made or reset.
    pub not_permitted_calls: u64,
    /// Calls rejected since the current state was entered.
    pub not_permitted_calls_in_state: u64,
    /// Recorded successes since the current state was entered (in
    /// `Closed` and `MetricsOnly` the window's, in `HalfOpen` the probes').
    pub successful_calls_in_state: u64,
    /// Recorded successes since the breaker was made or reset.
    pub successful_calls_since_reset: u64,
    /// Admitted calls whose outcome was ignored, since the current state
    /// was entered.
    pub ignored_calls_in_state: u64,
    /// Admitted calls whose outcome was ignored, since the breaker was made
    /// or reset.
    pub ignored_calls_since_reset: u64,
    /// Timed calls among `buffered_calls`: those whose duration is known.
    pub timed_calls: u64,
    /// The sum of the durations of the timed calls; `None` when there is
    /// none. Serialized rounded up to the millisecond (to the microsecond
    /// below one), like `average_call_duration`.
    #[serde(with = "portcullis_core::duration::serde::rounded::option")]
    pub total_call_duration: Option<Duration>,
    /// Their average duration; `None` when there is none.
    #[serde(with = "portcullis_core::duration::serde::rounded::option")]
    pub average_call_duration: Option<Duration>,
    /// Failures in a row, right now: among the recorded calls in `Closed`
    /// and `MetricsOnly`, among the probes in `HalfOpen`, the run that
    /// opened it in `Open`; 0 in `Disabled` and `ForcedOpen`.
    pub consecutive_failures: u32,
    /// When an open breaker lets a probe through. Serialized rounded up to
    /// the millisecond (`"2s425ms"`).
    #[serde(with = "portcullis_core::duration::serde::rounded::option")]
    pub retry_after: Option<Duration>,
    /// The configured failure-rate threshold, in percent.
    pub failure_rate_threshold: f64,
    /// The configured slow-call-rate threshold, in percent.
    pub slow_call_rate_threshold: f64,
    /// The configured minimum number of calls.
    pub minimum_calls: u32,
    /// The configured number of probes in half-open.
    pub permitted_calls_in_half_open: u32,
    /// The cumulative counts, which never start again.
    pub counters: BreakerCounters,
}

pub(crate) struct Shared {
    /// The state machine, with the profile (name, clock, configuration)
    /// it shares with the breaker's siblings.
    core: Core,
    /// Functions called with every event but the per-call ones.
    hooks: Hooks,
    /// The event streams and what delivers to them, made at the first
    /// subscription or the first event a hook is sent: a keyed breaker
    /// nobody subscribes to keeps none.
    listeners: OnceLock<Box<Listeners>>,
}

/// Event delivery: what a breaker nobody listens to does without.
#[derive(Debug)]
struct Listeners {
    events: Events,
    /// Every event and the per-call ones, for those who asked.
    with_calls: Events,
    /// Events waiting for the thread that delivers.
    outbox: Mutex<Outbox>,
    /// Rejections not reported yet, and when the last report was sent.
    rejections: Rejections,
}

/// Rejections are reported in batches: one [`BreakerEvent::Rejected`] per
/// [`REJECTION_REPORT_MICROS`] at most, carrying the count, so that a flood
/// of rejected calls cannot fill the event channel and push the transitions
/// out of a subscriber's reach.
#[derive(Debug, Default)]
struct Rejections {
    /// Rejected calls since the last report.
    pending: AtomicU64,
    /// The `retry_after` of the last of them, in microseconds; `NO_WAIT`
    /// when unknown.
    retry_after: AtomicU64,
    /// When the last report was sent, in microseconds since the epoch,
    /// plus one (0: never).
    sent_at: AtomicU64,
}

/// Events sent while another is being delivered; see [`Breaker::send`].
#[derive(Debug, Default)]
struct Outbox {
    delivering: bool,
    queue: VecDeque<BreakerEvent>,
}

/// Should a hook panic, lets the next event be delivered (the queued ones
/// go with the panic).
struct Unwind<'a>(&'a Mutex<Outbox>);

impl Drop for Unwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut outbox = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            outbox.delivering = false;
            outbox.queue = VecDeque::new();
        }
    }
}

impl Shared {
    fn name(&self) -> &Arc<str> {
        &self.core.profile().name
    }

    fn clock(&self) -> Clock {
        self.core.profile().clock
    }

    fn listeners(&self) -> &Listeners {
        self.listeners.get_or_init(|| {
            Box::new(Listeners {
                events: Events::new(crate::event::CAPACITY),
                with_calls: Events::new(crate::event::CALLS_CAPACITY),
                outbox: Mutex::default(),
                rejections: Rejections::default(),
            })
        })
    }
}

/// The shortest span between two rejection reports: 10 ms.
const REJECTION_REPORT_MICROS: u64 = 10_000;
const NO_WAIT: u64 = u64::MAX;

impl Breaker {
    /// A breaker named `name` with the default configuration.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(name.into(), BreakerConfig::default())
    }

    /// A breaker named `name` with `config`, validated first.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config))
    }

    fn build(name: Arc<str>, config: BreakerConfig) -> Self {
        let window = config.window();
        let (seed, initial) = (config.seed(), config.initial_state());
        let profile = Arc::new(Profile::new(name, config));
        Self::with_profile(profile, window, seed, initial, 0)
    }

    fn with_profile(
        profile: Arc<Profile>,
        window: crate::window::Window,
        seed: u64,
        initial: State,
        now: u64,
    ) -> Self {
        let core = Core::new(profile, window, seed).start_in(initial, now);
        Self {
            shared: Arc::new(Shared {
                core,
                hooks: Hooks::default(),
                listeners: OnceLock::new(),
            }),
        }
    }

    /// A new breaker with this one's name and configuration, and a state of
    /// its own: an empty window, in the configured initial state, no
    /// subscriber, no hook.
    ///
    /// Siblings share one copy of their configuration instead of keeping
    /// one each, which is what makes many small breakers cheap (a
    /// registry's keyed breakers of one name are siblings):
    /// [`reconfigure_siblings`](Self::reconfigure_siblings) on any of them
    /// changes it for all, while [`reconfigure`](Self::reconfigure) still
    /// changes the one breaker it is called on (which then keeps a copy of
    /// its own). The sibling is made with the shared configuration, not
    /// with one given to this breaker alone.
    ///
    /// ```
    /// use portcullis_breaker::{Breaker, BreakerConfig, State};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let config = BreakerConfig::builder().count_window(100).build().unwrap();
    /// let first = Breaker::from_config("upstream", config).unwrap();
    /// let second = first.sibling();
    /// first.force_open();
    /// assert_eq!(second.state(), State::Closed, "a state of its own");
    ///
    /// let wider = BreakerConfig::builder().count_window(100).minimum_calls(5).build().unwrap();
    /// first.reconfigure_siblings(wider.clone()).unwrap();
    /// assert_eq!(second.config(), wider, "one configuration for both");
    /// # }
    /// ```
    pub fn sibling(&self) -> Breaker {
        let profile = self.shared.core.shared_profile().clone();
        let config = profile.config();
        let now = profile.clock.now() / 1_000;
        Self::with_profile(
            profile,
            config.window(),
            config.seed(),
            config.initial_state(),
            now,
        )
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.core.profile().name
    }

    /// Its configuration.
    pub fn config(&self) -> BreakerConfig {
        self.shared.core.profile().config()
    }

    /// Changes the configuration of this live breaker, keeping its window,
    /// state, permits and counts: thresholds, minimum calls, waits, probe
    /// count and the slow-call duration take effect from the next call.
    ///
    /// The window's shape cannot change under live traffic: a `config` with
    /// another [`SlidingWindow`](crate::SlidingWindow) is refused with an
    /// error on `sliding_window` (make a new breaker instead).
    ///
    /// It changes this breaker only, not its [siblings](Self::sibling).
    ///
    /// ```
    /// use portcullis_breaker::{Breaker, BreakerConfig, State};
    /// use portcullis_core::Outcome;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let strict = BreakerConfig::builder().count_window(10).minimum_calls(4).build().unwrap();
    /// let breaker = Breaker::from_config("db", strict).unwrap();
    /// for _ in 0..3 {
    ///     breaker.try_acquire().unwrap().record(Outcome::Failure);
    /// }
    /// let relaxed = BreakerConfig::builder().count_window(10).minimum_calls(3).build().unwrap();
    /// breaker.reconfigure(relaxed).unwrap();
    /// // The three failures are still in the window: one more opens it.
    /// breaker.try_acquire().unwrap().record(Outcome::Failure);
    /// assert_eq!(breaker.state(), State::Open);
    /// # }
    /// ```
    pub fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let core = &self.shared.core;
        // Checked first, so that a refused change makes no copy.
        core.profile().check(&config)?;
        core.own_profile().reconfigure(config)
    }

    /// Like [`reconfigure`](Self::reconfigure), for this breaker and every
    /// [sibling](Self::sibling) that shares its configuration, in one
    /// write however many they are. A sibling that was reconfigured on its
    /// own keeps its own configuration (until this is called on it).
    pub fn reconfigure_siblings(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let core = &self.shared.core;
        core.profile().check(&config)?;
        core.shared_profile().check(&config)?;
        if let Some(own) = core.own_copy() {
            own.reconfigure(config.clone())?;
        }
        core.shared_profile().reconfigure(config)
    }

    /// Its current state. An open breaker whose wait is over still reads
    /// `Open` until the next call makes it half-open.
    pub fn state(&self) -> State {
        self.shared.core.state()
    }

    /// Admits a call, or rejects it with [`BreakerOpen`].
    ///
    /// Never waits. In `Closed` this is one atomic load; the clock is read
    /// only when a slow-call rule is configured or the breaker is open or
    /// half-open.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        match self.shared.core.acquire_closed() {
            Some(ticket) => Ok(self.permit(ticket)),
            None => self.try_acquire_slow(),
        }
    }

    /// A permit for `ticket`, timed if a slow-call rule is configured.
    #[inline]
    fn permit(&self, ticket: Ticket) -> Permit {
        let timing = self.shared.core.timing();
        Permit {
            breaker: self.clone(),
            ticket: Some(ticket),
            started: (timing != 0).then(Instant::now),
            report: timing & CALL_EVENTS != 0,
        }
    }

    /// Admission in any state but `Closed`.
    #[inline(never)]
    fn try_acquire_slow(&self) -> Result<Permit, BreakerOpen> {
        let shared = &*self.shared;
        match shared.core.acquire(|| self.now(), &mut |s| self.emit(s)) {
            Ok(ticket) => Ok(self.permit(ticket)),
            Err(retry_micros) => {
                let retry_after = retry_micros.map(Duration::from_micros);
                tracing::debug!(breaker = %shared.name(), ?retry_after, "call rejected");
                if self.listened() {
                    self.count_rejection(retry_micros);
                }
                Err(BreakerOpen::new(shared.name().clone(), retry_after))
            }
        }
    }

    /// Subscribes to this breaker's events (bounded: a subscriber that falls
    /// more than 256 events behind loses the oldest).
    pub fn subscribe(&self) -> EventStream {
        self.shared.listeners().events.subscribe()
    }

    /// Subscribes to this breaker's events and, besides, to every call's
    /// outcome with its duration ([`BreakerEvent::Call`]), for a log of
    /// calls or a latency histogram. Bounded at 1,024 events; a subscriber
    /// that falls behind loses the oldest.
    ///
    /// Calls are timed for it only while such a stream exists (from the
    /// calls admitted after it was made); without one, per-call events
    /// cost nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_breaker::{Breaker, BreakerEvent};
    /// use portcullis_core::Outcome;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let breaker = Breaker::new("profile");
    /// let mut events = breaker.subscribe_with_calls();
    /// let permit = breaker.try_acquire().unwrap();
    /// tokio::time::advance(Duration::from_millis(30)).await;
    /// permit.record(Outcome::Failure);
    /// match events.try_recv() {
    ///     Some(Ok(BreakerEvent::Call { outcome, duration, .. })) => {
    ///         assert_eq!(outcome, Outcome::Failure);
    ///         assert_eq!(duration, Duration::from_millis(30));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub fn subscribe_with_calls(&self) -> EventStream {
        let stream = self.shared.listeners().with_calls.subscribe();
        self.shared.core.time_for_call_events();
        stream
    }

    /// Calls `hook` with each of this breaker's events but the per-call
    /// ones, synchronously, on the thread of the call (or of the manual
    /// transition) that caused it, until the returned [`EventHook`] is
    /// dropped.
    ///
    /// This is how the state of a breaker is pushed to whoever keeps it (a
    /// registry, an exporter) without a task or a buffer per breaker: a
    /// hook costs nothing until an event happens, and transitions,
    /// crossings and resets are rare. Rejections reach it counted, as they
    /// reach subscribers: one [`BreakerEvent::Rejected`] per 10 ms at most,
    /// the rest at the next report (see [`report_rejections`]). A hook must
    /// be quick and must not block: it runs inside a call.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use portcullis_breaker::{Breaker, BreakerEvent, State};
    ///
    /// let breaker = Breaker::new("ledger");
    /// let opened = Arc::new(Mutex::new(Vec::new()));
    /// let hook = breaker.on_event({
    ///     let opened = opened.clone();
    ///     move |event| {
    ///         if let BreakerEvent::Transition { to, .. } = event {
    ///             opened.lock().unwrap().push(*to);
    ///         }
    ///     }
    /// });
    /// breaker.force_open();
    /// drop(hook);
    /// breaker.reset();
    /// assert_eq!(*opened.lock().unwrap(), [State::ForcedOpen]);
    /// ```
    ///
    /// [`report_rejections`]: Self::report_rejections
    pub fn on_event(&self, hook: impl Fn(&BreakerEvent) + Send + Sync + 'static) -> EventHook {
        let id = self.shared.hooks.attach(Arc::new(hook));
        EventHook::new(Arc::downgrade(&self.shared), id)
    }

    /// A handle that does not keep the breaker alive, for a hook or a
    /// registry entry that must not make a cycle.
    pub fn downgrade(&self) -> WeakBreaker {
        WeakBreaker {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Whether any subscriber or hook listens for events.
    #[inline]
    fn listened(&self) -> bool {
        let shared = &*self.shared;
        shared.hooks.attached()
            || shared
                .listeners
                .get()
                .is_some_and(|l| l.events.wanted() || l.with_calls.wanted())
    }

    /// Sends `event` to the hooks and the subscribers of either stream.
    ///
    /// One thread delivers at a time, so that hooks and streams see the
    /// events in one order: an event sent while another thread (or a hook
    /// of this one) delivers is queued, and delivered by it next.
    fn send(&self, event: BreakerEvent) {
        let outbox = &self.shared.listeners().outbox;
        {
            let mut outbox = outbox.lock().unwrap_or_else(PoisonError::into_inner);
            if outbox.delivering {
                outbox.queue.push_back(event);
                return;
            }
            outbox.delivering = true;
        }
        let _unwind = Unwind(outbox);
        let mut next = Some(event);
        while let Some(event) = next {
            self.deliver(event);
            let mut outbox = outbox.lock().unwrap_or_else(PoisonError::into_inner);
            next = outbox.queue.pop_front();
            if next.is_none() {
                outbox.delivering = false;
                // A breaker keeps no buffer between bursts of events.
                outbox.queue = VecDeque::new();
            }
        }
    }

    fn deliver(&self, event: BreakerEvent) {
        let shared = &*self.shared;
        shared.hooks.call(&event);
        let listeners = shared.listeners();
        if listeners.with_calls.wanted() {
            if listeners.events.wanted() {
                listeners.events.send(event.clone());
            }
            listeners.with_calls.send(event);
        } else {
            listeners.events.send(event);
        }
    }

    /// Reports a call's outcome to the subscribers of every call, or stops
    /// timing calls for them if they are gone.
    #[cold]
    #[inline(never)]
    fn report_call(&self, outcome: Outcome, duration: Duration, slow: bool) {
        let shared = &*self.shared;
        let wanted = || {
            shared
                .listeners
                .get()
                .is_some_and(|listeners| listeners.with_calls.wanted())
        };
        if wanted() {
            shared.listeners().with_calls.send(BreakerEvent::Call {
                name: shared.name().clone(),
                outcome,
                duration,
                slow,
            });
        } else {
            shared.core.stop_timing_for_call_events(wanted);
        }
    }

    /// The breaker's figures now.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let shared = &*self.shared;
        let Reading {
            state,
            figures,
            permits_in_use,
            consecutive_failures,
            retry_after,
            durations,
            in_state,
            since_reset,
            counters,
        } = shared.core.read(|| self.now());
        let settings = shared.core.settings();
        let counts = figures.counts;
        let defined = figures.defined();
        let rate = |part: u64| defined.then(|| (part as f64 * 100.0 / counts.calls as f64) as f32);
        BreakerSnapshot {
            name: shared.name().to_string(),
            state,
            failure_rate: rate(counts.failures),
            slow_call_rate: rate(counts.slow),
            buffered_calls: counts.calls,
            failed_calls: counts.failures,
            slow_calls: counts.slow,
            permits_in_use: permits_in_use as u32,
            not_permitted_calls: since_reset.not_permitted,
            not_permitted_calls_in_state: in_state.not_permitted,
            successful_calls_in_state: in_state.successes,
            successful_calls_since_reset: since_reset.successes,
            ignored_calls_in_state: in_state.ignored,
            ignored_calls_since_reset: since_reset.ignored,
            timed_calls: durations.calls,
            total_call_duration: (durations.calls > 0)
                .then(|| Duration::from_micros(durations.micros)),
            average_call_duration: (durations.calls > 0)
                .then(|| Duration::from_micros(durations.micros / durations.calls)),
            consecutive_failures,
            retry_after: retry_after.map(Duration::from_micros),
            failure_rate_threshold: settings.failure_bp() as f64 / 100.0,
            slow_call_rate_threshold: settings.slow_bp() as f64 / 100.0,
            minimum_calls: settings.minimum_calls() as u32,
            permitted_calls_in_half_open: settings.permitted_in_half_open() as u32,
            counters,
        }
    }

    /// The cumulative counts now: calls by outcome, rejections and
    /// transitions since the breaker was made. Unlike the figures of a
    /// [`snapshot`](Self::snapshot), they never go down.
    pub fn counters(&self) -> BreakerCounters {
        self.shared.core.counters()
    }

    /// Closes the breaker (from any state), clearing its window.
    pub fn close(&self) {
        self.force(State::Closed, None)
            .expect("closing is always allowed");
    }

    /// Forces it open: every call is rejected until another manual
    /// transition.
    pub fn force_open(&self) {
        self.force(State::ForcedOpen, None)
            .expect("forcing open is always allowed");
    }

    /// Disables it: every call passes, nothing is recorded.
    pub fn disable(&self) {
        self.force(State::Disabled, None)
            .expect("disabling is always allowed");
    }

    /// Records without ever rejecting; threshold crossings are reported once
    /// per episode.
    pub fn metrics_only(&self) {
        self.force(State::MetricsOnly, None)
            .expect("metrics-only is always allowed");
    }

    /// Opens it for `wait`, then it probes as usual. Only from `Closed`,
    /// `Open` or `HalfOpen`: a breaker under manual control (disabled,
    /// forced open, metrics-only) must be closed or reset first.
    pub fn open_for(&self, wait: Duration) -> Result<(), IllegalTransition> {
        self.force(State::Open, Some(micros(wait)))
    }

    /// Opens it until `deadline`, then it probes as usual; like
    /// [`open_for`](Self::open_for) the time left (a deadline already past
    /// lets the next call probe).
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_breaker::{Breaker, State};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let breaker = Breaker::new("billing");
    /// // Closed for maintenance until a known time.
    /// breaker.open_until(Instant::now() + Duration::from_secs(600)).unwrap();
    /// let open = breaker.try_acquire().unwrap_err();
    /// assert_eq!(open.retry_after(), Some(Duration::from_secs(600)));
    /// # }
    /// ```
    pub fn open_until(&self, deadline: Instant) -> Result<(), IllegalTransition> {
        self.open_for(deadline.saturating_duration_since(Instant::now()))
    }

    /// Opens it for the configured wait, as a trip would: the base
    /// `wait_in_open` from `Closed`; from `Open` or `HalfOpen` a re-open,
    /// which grows the wait (with
    /// [`open_wait_backoff`](crate::BreakerConfigBuilder::open_wait_backoff))
    /// until the breaker closes. Only from `Closed`, `Open` or `HalfOpen`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_breaker::{Breaker, BreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config = BreakerConfig::builder()
    ///     .wait_in_open(Duration::from_secs(1))
    ///     .open_wait_backoff(2.0, Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// let breaker = Breaker::from_config("search", config).unwrap();
    /// let retry_after = || breaker.try_acquire().unwrap_err().retry_after().unwrap();
    /// breaker.open().unwrap();
    /// assert_eq!(retry_after(), Duration::from_secs(1));
    /// breaker.open().unwrap();
    /// assert_eq!(retry_after(), Duration::from_secs(2));
    /// breaker.open().unwrap();
    /// assert_eq!(retry_after(), Duration::from_secs(4));
    /// breaker.close();
    /// breaker.open().unwrap();
    /// assert_eq!(retry_after(), Duration::from_secs(1), "closing resets the growth");
    /// # }
    /// ```
    pub fn open(&self) -> Result<(), IllegalTransition> {
        self.force(State::Open, None)
    }

    /// Moves an open breaker to half-open now, without waiting.
    pub fn half_open(&self) -> Result<(), IllegalTransition> {
        self.force(State::HalfOpen, None)
    }

    /// Back to `Closed` with every count cleared (window, rejections,
    /// consecutive failures, open-wait growth, the `*_since_reset` totals),
    /// from any state. The [`counters`](Self::counters) go on.
    pub fn reset(&self) {
        self.shared.core.reset(&mut |s| self.emit(s));
    }

    fn force(&self, to: State, open_for: Option<u64>) -> Result<(), IllegalTransition> {
        self.shared
            .core
            .force(to, open_for, || self.now(), &mut |s| self.emit(s))
            .map_err(|illegal| IllegalTransition::new(self.shared.name().clone(), illegal.from, to))
    }

    /// Microseconds on the breaker's clock.
    #[inline]
    fn now(&self) -> u64 {
        self.shared.clock().now() / 1_000
    }

    /// Counts a rejection, and reports the pending ones unless a report
    /// went out less than [`REJECTION_REPORT_MICROS`] ago. The ones left
    /// pending go with the next report, or before the next other event.
    fn count_rejection(&self, retry_after: Option<u64>) {
        let rejections = &self.shared.listeners().rejections;
        rejections.pending.fetch_add(1, Ordering::Relaxed);
        rejections
            .retry_after
            .store(retry_after.unwrap_or(NO_WAIT), Ordering::Relaxed);
        let now = self.now().saturating_add(1);
        let sent_at = rejections.sent_at.load(Ordering::Relaxed);
        if sent_at != 0 && now < sent_at.saturating_add(REJECTION_REPORT_MICROS) {
            return;
        }
        if rejections
            .sent_at
            .compare_exchange(sent_at, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.report_rejections();
        }
    }

    /// Sends the rejections counted since the last report now, as one
    /// [`BreakerEvent::Rejected`], if there are any and anybody listens.
    ///
    /// Rejections are reported at most once per 10 ms, so the last ones of
    /// a burst wait for the next report or the next other event; a
    /// subscriber that wants them by a deadline of its own (the registry,
    /// once per report interval) calls this.
    pub fn report_rejections(&self) {
        let shared = &*self.shared;
        if !self.listened() {
            return;
        }
        let rejections = &shared.listeners().rejections;
        let count = rejections.pending.swap(0, Ordering::Relaxed);
        if count > 0 {
            let retry_after = rejections.retry_after.load(Ordering::Relaxed);
            self.send(BreakerEvent::Rejected {
                name: shared.name().clone(),
                retry_after: (retry_after != NO_WAIT).then(|| Duration::from_micros(retry_after)),
                count,
            });
        }
    }

    fn emit(&self, signal: Signal) {
        let shared = &*self.shared;
        let event = match signal {
            Signal::Transition { from, to, reason } => {
                tracing::info!(breaker = %shared.name(), ?from, ?to, %reason, "circuit breaker state changed");
                BreakerEvent::Transition {
                    name: shared.name().clone(),
                    from,
                    to,
                    reason,
                }
            }
            Signal::Crossed(threshold) => {
                tracing::info!(breaker = %shared.name(), ?threshold, "circuit breaker threshold reached");
                BreakerEvent::ThresholdCrossed {
                    name: shared.name().clone(),
                    threshold,
                }
            }
            Signal::Reset => {
                tracing::info!(breaker = %shared.name(), "circuit breaker reset");
                BreakerEvent::Reset {
                    name: shared.name().clone(),
                }
            }
        };
        if self.listened() {
            // Rejections that came first are reported first.
            self.report_rejections();
            self.send(event);
        }
    }
}

impl Permit {
    /// Records the call's outcome. `Ignored` records nothing and gives a
    /// half-open probe slot back.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        self.record_with(outcome, None);
    }

    /// Records the outcome with a server-directed wait (see
    /// [`BreakerConfig::max_retry_after`]).
    #[inline]
    pub fn record_with(mut self, outcome: Outcome, retry_after: Option<Duration>) {
        self.record_in_place(outcome, retry_after);
    }

    /// [`record_with`](Self::record_with) through a reference, for a
    /// response future that keeps its permit where it is rather than move
    /// it out (a move costs more than the rest of the recording). Records
    /// at most once: the permit is spent afterwards.
    #[inline]
    pub(crate) fn record_in_place(&mut self, outcome: Outcome, retry_after: Option<Duration>) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let breaker = &self.breaker;
        let shared = &*breaker.shared;
        let mut bits = RECORDED;
        match outcome {
            Outcome::Ignored => {
                if let (true, Some(started)) = (self.report, self.started) {
                    breaker.report_call(outcome, started.elapsed(), false);
                }
                return shared.core.ignore(ticket);
            }
            Outcome::Failure => bits |= FAILED,
            Outcome::Success => {}
        }
        if shared.core.window.needs_clock() || self.started.is_some() {
            // The slow-call rule and the per-call event time the call on
            // tokio's clock, exactly; the time window reads the breaker's.
            let mut took_micros = 0;
            if let Some(started) = self.started {
                let took = started.elapsed();
                bits |= TIMED;
                took_micros = micros(took);
                if let Some(slow) = shared.core.settings().slow_call_duration()
                    && took > slow
                {
                    bits |= SLOW;
                }
                if self.report {
                    breaker.report_call(outcome, took, bits & SLOW != 0);
                }
            }
            let now = breaker.now();
            shared.core.record(
                ticket,
                bits,
                took_micros,
                retry_after.map(micros),
                || now,
                &mut |s| breaker.emit(s),
            );
        } else {
            shared.core.record(
                ticket,
                bits,
                0,
                retry_after.map(micros),
                || breaker.now(),
                &mut |s| breaker.emit(s),
            );
        }
    }

    /// Records a success.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Records a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Whether the breaker wants a server-directed wait with the outcome
    /// (it does only when configured to open on one).
    #[inline]
    pub(crate) fn wants_retry_after(&self) -> bool {
        self.breaker
            .shared
            .core
            .settings()
            .max_retry_after()
            .is_some()
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.shared.core.release(ticket);
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.name())
            .field("state", &self.state())
            .field("config", &self.config())
            .field("listeners", &self.shared.listeners.get())
            .field("hooks", &self.shared.hooks)
            .finish()
    }
}

/// A breaker handle that does not keep it alive; see [`Breaker::downgrade`].
#[derive(Clone)]
pub struct WeakBreaker {
    shared: Weak<Shared>,
}

impl WeakBreaker {
    /// The breaker, if any handle of it is still alive.
    pub fn upgrade(&self) -> Option<Breaker> {
        self.shared.upgrade().map(|shared| Breaker { shared })
    }
}

impl fmt::Debug for WeakBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shared.upgrade() {
            Some(shared) => f.debug_tuple("WeakBreaker").field(&shared.name()).finish(),
            None => f.write_str("WeakBreaker(gone)"),
        }
    }
}

/// Detaches a hook from the breaker, if it is still there.
pub(crate) fn detach(breaker: &Weak<Shared>, id: portcullis_core::events::HookId) {
    if let Some(shared) = breaker.upgrade() {
        shared.hooks.detach(id);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.shared.name())
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Calls are timed for per-call events only while somebody may listen:
    /// the first outcome after the last subscriber left stops the timing.
    #[tokio::test(start_paused = true)]
    async fn calls_are_timed_for_call_events_only_while_subscribed() {
        let breaker = Breaker::new("timing");
        assert!(breaker.try_acquire().unwrap().started.is_none());
        let events = breaker.subscribe_with_calls();
        let permit = breaker.try_acquire().unwrap();
        assert!(permit.started.is_some() && permit.report);
        drop(events);
        permit.success();
        let permit = breaker.try_acquire().unwrap();
        assert!(permit.started.is_none() && !permit.report);
        permit.success();
        let _again = breaker.subscribe_with_calls();
        assert!(breaker.try_acquire().unwrap().report);
    }

    fn config(minimum_calls: u32) -> BreakerConfig {
        BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(minimum_calls)
            .build()
            .unwrap()
    }

    /// Siblings share one configuration: `reconfigure_siblings` changes it
    /// for all of them in one write, `reconfigure` changes one breaker only
    /// (which then keeps a copy of its own, still reached by a later
    /// `reconfigure_siblings` called on it).
    #[tokio::test(start_paused = true)]
    async fn siblings_share_their_configuration_until_one_is_reconfigured_alone() {
        let first = Breaker::from_config("upstream", config(10)).unwrap();
        let second = first.sibling();
        let third = second.sibling();
        assert_eq!(third.name(), "upstream");
        assert!(Arc::ptr_eq(
            first.shared.core.shared_profile(),
            third.shared.core.shared_profile()
        ));

        first.reconfigure_siblings(config(5)).unwrap();
        for breaker in [&first, &second, &third] {
            assert_eq!(breaker.config(), config(5));
            assert_eq!(breaker.snapshot().minimum_calls, 5);
        }

        second.reconfigure(config(3)).unwrap();
        assert_eq!(second.config(), config(3));
        assert_eq!((first.config(), third.config()), (config(5), config(5)));

        third.reconfigure_siblings(config(4)).unwrap();
        assert_eq!(first.config(), config(4));
        assert_eq!(second.config(), config(3), "its own copy is its own");
        second.reconfigure_siblings(config(2)).unwrap();
        assert_eq!(
            [first.config(), second.config(), third.config()],
            [config(2), config(2), config(2)]
        );

        let time = BreakerConfig::builder()
            .time_window(Duration::from_secs(10), 10)
            .build()
            .unwrap();
        let refused = first.reconfigure_siblings(time.clone()).unwrap_err();
        assert_eq!(refused.field(), "sliding_window");
        assert!(third.reconfigure(time).is_err());
        assert_eq!(third.config(), config(2));
    }

    /// A breaker alone reconfigures its profile in place; a sibling has a
    /// state of its own, its own window, and starts in the configured
    /// initial state for the whole wait although its clock is shared.
    #[tokio::test(start_paused = true)]
    async fn a_sibling_has_a_state_of_its_own() {
        let alone = Breaker::from_config("alone", config(10)).unwrap();
        alone.reconfigure(config(5)).unwrap();
        assert!(alone.shared.core.own_copy().is_none());

        let open = BreakerConfig::builder()
            .count_window(10)
            .minimum_calls(1)
            .wait_in_open(Duration::from_secs(30))
            .initial_state(State::Open)
            .build()
            .unwrap();
        let first = Breaker::from_config("db", open).unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        let second = first.sibling();
        assert_eq!(second.state(), State::Open);
        let rejected = second.try_acquire().unwrap_err();
        assert_eq!(rejected.retry_after(), Some(Duration::from_secs(30)));
        // The first one's wait is long over: it probes.
        first.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(first.state(), State::HalfOpen);
        assert_eq!(second.snapshot().counters.failed_calls, 0);
        assert_eq!(first.snapshot().counters.failed_calls, 1);
    }
}
