//! The breaker's state machine: a handful of atomic words, no lock.
//!
//! - `state`: `generation << 3 | kind`. Every transition is one
//!   compare-and-swap that bumps the generation, so of all the callers that
//!   see the same threshold crossing exactly one moves the breaker, and every
//!   admission can be tagged with the generation it was made in: an outcome
//!   that comes back after a transition is dropped, not counted.
//! - `deadline`: for `Open`, when it may let a probe through; for `HalfOpen`,
//!   when it gives up waiting for its probes. Tagged with the low 16 bits of
//!   the generation it belongs to, written right after the transition.
//! - `probes`: the half-open bookkeeping (permits handed out, outcomes in,
//!   failures and slow calls among them), tagged the same way; and
//!   `probe_time`, the timed probes and the sum of their durations.
//!
//! Only `state`, the run of failures and the window are needed by a breaker
//! that never left `Closed`; the open and half-open words and the rarer
//! counts live in a box made at the first transition (or slow, ignored or
//! rejected call), before the transition's compare-and-swap, so that a
//! keyed breaker that never trips costs the few words it uses.
//!
//! Time is a plain `u64` of microseconds since the breaker's profile was
//! made (its siblings count from the same epoch), passed in by the caller,
//! and read only when the state needs it: the closed path of a count window
//! never reads the clock.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis_core::backoff::{Exponential, JitterKind};
use portcullis_core::rng::SplitMix64;

use portcullis_core::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

use crate::counters::{BreakerCounters, Counted, Tally, Totals};
use crate::event::{Threshold, TransitionReason};
use crate::settings::{CALL_EVENTS, Profile, Settings};
use crate::window::{Counts, Durations, FAILED, RECORDED, SLOW, TIMED, Window};

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Calls flow and their outcomes are recorded.
    Closed,
    /// Calls are rejected with [`BreakerOpen`](crate::BreakerOpen) until the
    /// open wait is over.
    Open,
    /// A few probe calls are let through; their outcomes decide whether the
    /// breaker closes or opens again.
    HalfOpen,
    /// Manual: every call passes and nothing is recorded.
    Disabled,
    /// Manual: every call is rejected; the breaker never leaves by itself.
    ForcedOpen,
    /// Manual: outcomes are recorded and threshold crossings reported, but no
    /// call is ever rejected.
    MetricsOnly,
}

/// Every state, in the order of the variants.
pub(crate) const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::Disabled,
    State::ForcedOpen,
    State::MetricsOnly,
];

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const DISABLED: u64 = 3;
const FORCED_OPEN: u64 = 4;
const METRICS_ONLY: u64 = 5;
const KIND_BITS: u32 = 3;
const KIND_MASK: u64 = (1 << KIND_BITS) - 1;

const TAG_SHIFT: u32 = 48;
const LOW_48: u64 = (1 << TAG_SHIFT) - 1;
const ADMITTED_ONE: u64 = 1 << 36;
const DONE_ONE: u64 = 1 << 24;
const FAILED_ONE: u64 = 1 << 12;
const SLOW_ONE: u64 = 1;
const FIELD_12: u64 = (1 << 12) - 1;
/// `probe_time`: the tag, timed probes in bits 36..48, micros below.
const TIMED_ONE: u64 = 1 << 36;
const FIELD_36: u64 = (1 << 36) - 1;

/// Metrics-only episodes, one per threshold.
const FAILURE_EPISODE: u8 = 1;
const SLOW_EPISODE: u8 = 2;
const RUN_EPISODE: u8 = 4;

/// What a caller was admitted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// Closed in generation `.0`: the outcome goes to the window.
    Closed(u64),
    /// A half-open probe of generation `.0`.
    Probe(u64),
    /// Metrics-only in generation `.0`: recorded, never rejected.
    Metrics(u64),
    /// Disabled: nothing is recorded.
    Free,
}

/// Something the handle turns into events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Signal {
    Transition {
        from: State,
        to: State,
        reason: TransitionReason,
    },
    Crossed(Threshold),
    Reset,
}

/// A state-machine transition that the current state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Illegal {
    pub(crate) from: State,
}

#[derive(Debug)]
pub(crate) struct Core {
    /// The configuration, shared with the breaker's siblings.
    profile: Arc<Profile>,
    /// A copy of `profile` of this breaker's own, made when it is
    /// reconfigured on its own while it shares `profile`.
    own: OnceLock<Box<Profile>>,
    pub(crate) window: Window,
    state: AtomicU64,
    consecutive: AtomicU32,
    /// Calls are timed for per-call events (set while somebody may listen).
    /// A plain `std` atomic even under loom, like the settings.
    call_events: AtomicBool,
    /// The cumulative counts of the window's calls.
    tally: Tally,
    /// What only a breaker that left `Closed`, or saw a slow or ignored
    /// call, needs: made then, so that most keyed breakers never make it.
    rare: OnceLock<Box<Rare>>,
    /// The open wait's jitter.
    rng: SplitMix64,
}

/// The part of [`Core`] made at the first transition (or slow, ignored or
/// rejected call): the open and half-open bookkeeping and the rarer
/// cumulative counts. A transition makes it before its compare-and-swap,
/// so whoever sees a state other than the first finds it made.
#[derive(Debug, Default)]
struct Rare {
    deadline: AtomicU64,
    probes: AtomicU64,
    reopens: AtomicU32,
    /// Rejected calls since the breaker was made: never reset.
    not_permitted: AtomicU64,
    /// The timed probes of a half-open episode and the sum of their
    /// durations, tagged like `probes`.
    probe_time: AtomicU64,
    /// `probe_time` of the half-open episode that re-opened the breaker.
    opened_on_time: AtomicU64,
    /// The thresholds (`*_EPISODE` bits) whose crossing was reported in
    /// their current metrics-only episode.
    crossed: AtomicU8,
    /// What an open breaker was judged on: 0 for the window, else
    /// `FROM_PROBES` with the low 48 bits of the probes word of the
    /// half-open episode that re-opened it.
    opened_on: AtomicU64,
    /// The other cumulative counts, and the marks they start again from.
    counts: Counted,
}

/// What the handle reads for a snapshot.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    pub(crate) state: State,
    pub(crate) figures: Figures,
    /// Half-open permits held by probes whose outcome is not in yet.
    pub(crate) permits_in_use: u64,
    pub(crate) consecutive_failures: u32,
    pub(crate) retry_after: Option<u64>,
    /// The timed calls among those of `figures`.
    pub(crate) durations: Durations,
    /// Counted since the current state was entered, and since the breaker
    /// was made or reset.
    pub(crate) in_state: Totals,
    pub(crate) since_reset: Totals,
    pub(crate) counters: BreakerCounters,
}

/// The calls a state is judged on: the window's (closed, metrics-only, and
/// open after a trip from closed) or the probes' (half-open, and open after
/// the probes failed). Rates are defined from `minimum` calls on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    pub(crate) counts: Counts,
    pub(crate) minimum: u64,
}

const FROM_PROBES: u64 = 1 << 63;

impl Figures {
    fn of_probes(probes: u64) -> Self {
        Self {
            counts: Counts {
                calls: (probes >> 24) & FIELD_12,
                failures: (probes >> 12) & FIELD_12,
                slow: probes & FIELD_12,
            },
            minimum: 1,
        }
    }

    /// Whether the rates are defined.
    pub(crate) fn defined(&self) -> bool {
        self.counts.calls >= self.minimum && self.counts.calls > 0
    }
}

#[inline]
fn kind(word: u64) -> u64 {
    word & KIND_MASK
}

#[inline]
fn generation(word: u64) -> u64 {
    word >> KIND_BITS
}

#[inline]
fn word(generation: u64, kind: u64) -> u64 {
    generation << KIND_BITS | kind
}

fn tag(generation: u64) -> u64 {
    (generation & 0xFFFF) << TAG_SHIFT
}

fn state_of(kind: u64) -> State {
    match kind {
        CLOSED => State::Closed,
        OPEN => State::Open,
        HALF_OPEN => State::HalfOpen,
        DISABLED => State::Disabled,
        FORCED_OPEN => State::ForcedOpen,
        _ => State::MetricsOnly,
    }
}

/// The position of `state` in [`STATES`].
pub(crate) fn index_of(state: State) -> usize {
    kind_of(state) as usize
}

fn of_probe_time(word: u64) -> Durations {
    Durations {
        calls: (word >> 36) & FIELD_12,
        micros: word & FIELD_36,
    }
}

fn kind_of(state: State) -> u64 {
    match state {
        State::Closed => CLOSED,
        State::Open => OPEN,
        State::HalfOpen => HALF_OPEN,
        State::Disabled => DISABLED,
        State::ForcedOpen => FORCED_OPEN,
        State::MetricsOnly => METRICS_ONLY,
    }
}

fn rate(part: u64, whole: u64) -> f32 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 100.0 / whole as f64) as f32
    }
}

#[inline]
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .min(LOW_48)
}

impl Core {
    pub(crate) fn new(profile: Arc<Profile>, window: Window, seed: u64) -> Self {
        let core = Self {
            profile,
            own: OnceLock::new(),
            window,
            state: AtomicU64::new(word(0, CLOSED)),
            consecutive: AtomicU32::new(0),
            call_events: AtomicBool::new(false),
            tally: Tally::default(),
            rare: OnceLock::new(),
            rng: SplitMix64::new(seed),
        };
        // Loom does not see the ordering a std `OnceLock` gives (made in
        // one thread, used in another): under loom the rare part is made
        // at once, as if before the first transition, and the models check
        // the protocol on it. Its lazy making is `OnceLock`'s own.
        #[cfg(loom)]
        core.rare();
        core
    }

    /// The profile the breaker runs on: its own copy if it has one, else
    /// the one it shares.
    #[inline]
    pub(crate) fn profile(&self) -> &Profile {
        match self.own.get() {
            Some(own) => own,
            None => &self.profile,
        }
    }

    /// The profile it shares with its siblings.
    pub(crate) fn shared_profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// The profile that [`Breaker::reconfigure`](crate::Breaker::reconfigure)
    /// changes: the breaker's own, made first if it shares its profile.
    pub(crate) fn own_profile(&self) -> &Profile {
        if let Some(own) = self.own.get() {
            return own;
        }
        if Arc::strong_count(&self.profile) == 1 {
            return &self.profile;
        }
        self.own.get_or_init(|| Box::new(self.profile.copy()))
    }

    /// Its own copy of the profile, if it has one.
    pub(crate) fn own_copy(&self) -> Option<&Profile> {
        self.own.get().map(|own| &**own)
    }

    #[inline]
    pub(crate) fn settings(&self) -> &Settings {
        &self.profile().settings
    }

    /// Why calls are timed (`SLOW_RULE`, `CALL_EVENTS`, `DURATIONS`), 0
    /// when they are not.
    #[inline]
    pub(crate) fn timing(&self) -> u8 {
        let events = if self.call_events.load(Ordering::Relaxed) {
            CALL_EVENTS
        } else {
            0
        };
        self.settings().timing() | events
    }

    /// Calls are timed for per-call events, for a subscriber that just
    /// subscribed.
    pub(crate) fn time_for_call_events(&self) {
        self.call_events.fetch_or(true, Ordering::AcqRel);
    }

    /// Calls are no longer timed for per-call events, unless a subscriber
    /// came meanwhile (`listening` is asked after the flag is cleared: a
    /// subscriber counts itself before it sets the flag).
    pub(crate) fn stop_timing_for_call_events(&self, listening: impl Fn() -> bool) {
        self.call_events.fetch_and(false, Ordering::AcqRel);
        if listening() {
            self.call_events.fetch_or(true, Ordering::AcqRel);
        }
    }

    #[inline]
    fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    /// Starts a breaker that nobody uses yet in `state` (not `HalfOpen`),
    /// at time `now`; `Open` for the base open wait.
    pub(crate) fn start_in(self, state: State, now: u64) -> Self {
        let kind = kind_of(state);
        self.state.store(word(0, kind), Ordering::Release);
        if kind != CLOSED {
            self.rare();
        }
        if kind == OPEN {
            let until = now.saturating_add(self.open_wait(0));
            self.rare()
                .deadline
                .store(tag(0) | until.min(LOW_48), Ordering::Release);
        }
        self
    }

    pub(crate) fn state(&self) -> State {
        state_of(kind(self.state.load(Ordering::Acquire)))
    }

    /// Admits a call if the breaker is closed: one load.
    #[inline]
    pub(crate) fn acquire_closed(&self) -> Option<Ticket> {
        let current = self.state.load(Ordering::Acquire);
        (kind(current) == CLOSED).then_some(Ticket::Closed(generation(current)))
    }

    /// Admits a call or rejects it with the wait until a probe may pass
    /// (`Err(None)` when it is unknown or never). Reads the clock only when
    /// the breaker is open or half-open.
    pub(crate) fn acquire(
        &self,
        now: impl Fn() -> u64,
        signal: &mut impl FnMut(Signal),
    ) -> Result<Ticket, Option<u64>> {
        loop {
            let current = self.state.load(Ordering::Acquire);
            let generation = generation(current);
            match kind(current) {
                CLOSED => return Ok(Ticket::Closed(generation)),
                METRICS_ONLY => return Ok(Ticket::Metrics(generation)),
                DISABLED => return Ok(Ticket::Free),
                FORCED_OPEN => return Err(self.reject(None)),
                OPEN => {
                    let now = now();
                    match self.deadline_of(generation) {
                        Some(until) if now >= until => {
                            let deadline = self
                                .settings()
                                .max_wait_in_half_open()
                                .map_or(LOW_48, |wait| now.saturating_add(wait));
                            self.transition(
                                current,
                                HALF_OPEN,
                                TransitionReason::OpenWaitElapsed,
                                Some(deadline),
                                signal,
                            );
                        }
                        Some(until) => return Err(self.reject(Some(until - now))),
                        // Either the state moved on since it was loaded (look
                        // again), or this transition is a moment old and its
                        // deadline not written yet.
                        None if self.state.load(Ordering::Acquire) != current => continue,
                        None => return Err(self.reject(Some(self.settings().wait_in_open()))),
                    }
                }
                _ => {
                    let now = now();
                    if let Some(until) = self.deadline_of(generation)
                        && now >= until
                    {
                        if self.settings().closes_after_half_open_wait() {
                            self.transition(
                                current,
                                CLOSED,
                                TransitionReason::HalfOpenTimeout,
                                None,
                                signal,
                            );
                            continue;
                        }
                        let wait = self.open_wait(self.rare().reopens.load(Ordering::Acquire) + 1);
                        if self.transition(
                            current,
                            OPEN,
                            TransitionReason::HalfOpenTimeout,
                            Some(now.saturating_add(wait)),
                            signal,
                        ) {
                            self.rare().reopens.fetch_add(1, Ordering::AcqRel);
                            // Rejected for the new wait, without looking
                            // again: once the clock is past the 48 bits a
                            // deadline holds (8.9 years after the breaker
                            // was made), a deadline never lies ahead of
                            // `now`, and looking again would loop.
                            return Err(self.reject(Some(wait)));
                        }
                        continue;
                    }
                    return match self.admit_probe(generation) {
                        true => Ok(Ticket::Probe(generation)),
                        false => Err(self.reject(None)),
                    };
                }
            }
        }
    }

    fn reject(&self, retry_after: Option<u64>) -> Option<u64> {
        self.rare().not_permitted.fetch_add(1, Ordering::Relaxed);
        retry_after
    }

    fn deadline_of(&self, generation: u64) -> Option<u64> {
        let deadline = self.rare().deadline.load(Ordering::Acquire);
        (deadline & !LOW_48 == tag(generation)).then_some(deadline & LOW_48)
    }

    fn admit_probe(&self, generation: u64) -> bool {
        let mut probes = self.rare().probes.load(Ordering::Acquire);
        loop {
            let next = if probes & !LOW_48 != tag(generation) {
                // The first probe of this half-open episode starts the count.
                tag(generation) | ADMITTED_ONE
            } else if (probes >> 36) & FIELD_12 < self.settings().permitted_in_half_open() {
                probes + ADMITTED_ONE
            } else {
                return false;
            };
            match self.rare().probes.compare_exchange(
                probes,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => probes = actual,
            }
        }
    }

    /// Counts an ignored outcome (unless it is stale) and gives the permit
    /// back.
    pub(crate) fn ignore(&self, ticket: Ticket) {
        let current = match ticket {
            Ticket::Free => return,
            Ticket::Closed(generation) => word(generation, CLOSED),
            Ticket::Probe(generation) => word(generation, HALF_OPEN),
            Ticket::Metrics(generation) => word(generation, METRICS_ONLY),
        };
        if self.state.load(Ordering::Acquire) == current {
            self.rare().counts.ignored();
        }
        self.release(ticket);
    }

    /// Gives a permit back without an outcome: the call was cancelled or its
    /// outcome was ignored.
    pub(crate) fn release(&self, ticket: Ticket) {
        let Ticket::Probe(generation) = ticket else {
            return;
        };
        let mut probes = self.rare().probes.load(Ordering::Acquire);
        while probes & !LOW_48 == tag(generation) && (probes >> 36) & FIELD_12 > 0 {
            match self.rare().probes.compare_exchange(
                probes,
                probes - ADMITTED_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => probes = actual,
            }
        }
    }

    /// Records the outcome of an admitted call: `outcome` has `FAILED`,
    /// `SLOW` and `TIMED` set as they apply, `micros` is the call's duration
    /// when it was timed. `retry_after` is a server-directed wait that came
    /// with a failure. Ignored outcomes are released, not recorded.
    #[inline]
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        outcome: u8,
        micros: u64,
        retry_after: Option<u64>,
        now: impl Fn() -> u64,
        signal: &mut impl FnMut(Signal),
    ) {
        let (generation, recording) = match ticket {
            Ticket::Free => return,
            Ticket::Probe(generation) => {
                return self.record_probe(generation, outcome, micros, retry_after, now, signal);
            }
            Ticket::Closed(generation) => (generation, CLOSED),
            Ticket::Metrics(generation) => (generation, METRICS_ONLY),
        };
        let current = word(generation, recording);
        if self.state.load(Ordering::Acquire) != current {
            return; // admitted before a transition: stale
        }
        if outcome & FAILED != 0 {
            self.tally.window_failure();
        }
        let counts = self
            .window
            .record(outcome, micros, &now, self.settings().minimum_calls());
        if outcome & !TIMED == RECORDED && recording == CLOSED {
            // The common case, kept short: a success while closed.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Release);
            }
            if let Some(threshold) = counts.and_then(|counts| self.crossing(counts)) {
                self.trip_now(current, threshold, now, signal);
            }
            return;
        }
        self.judge(
            current,
            recording,
            outcome,
            counts,
            retry_after,
            now,
            signal,
        );
    }

    /// The rest of [`record`](Self::record), for every outcome but a
    /// success while closed: the window already holds `outcome`.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn judge(
        &self,
        current: u64,
        recording: u64,
        outcome: u8,
        counts: Option<Counts>,
        retry_after: Option<u64>,
        now: impl Fn() -> u64,
        signal: &mut impl FnMut(Signal),
    ) {
        let mut run = 0;
        if outcome & SLOW != 0 {
            self.rare().counts.slow();
        }
        if outcome & FAILED != 0 {
            run = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
            if let (Window::Time(_), Some(counts)) = (&self.window, counts)
                && u64::from(run) > counts.calls
            {
                // The oldest failures of the run left the window with their
                // buckets: what is left of it is every call in the window.
                run = counts.calls as u32;
                self.consecutive.fetch_min(run, Ordering::AcqRel);
            }
        } else if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Release);
        }
        if recording == METRICS_ONLY {
            // Every outcome is judged on the real figures: a count window's
            // `None` only says that a success cannot have raised a rate, not
            // that the rates are below their thresholds.
            let counts = counts.unwrap_or_else(|| self.window.counts(&now));
            return self.report_crossings(counts, run, signal);
        }
        let limit = self.settings().consecutive_failures();
        let crossed = if limit > 0 && run >= limit {
            Some(Threshold::ConsecutiveFailures { count: run })
        } else {
            counts.and_then(|counts| self.crossing(counts))
        };
        if let Some(threshold) = crossed {
            self.trip_now(current, threshold, now, signal);
        } else if let (Some(wait), Some(cap)) = (retry_after, self.settings().max_retry_after())
            && outcome & FAILED != 0
            && wait > 0
        {
            let wait = wait.min(cap);
            self.transition(
                current,
                OPEN,
                TransitionReason::RetryAfter {
                    wait: Duration::from_micros(wait),
                },
                Some(now().saturating_add(wait)),
                signal,
            );
        }
    }

    /// Opens the breaker from `current` for `threshold`, for the base wait
    /// from `now`.
    #[cold]
    #[inline(never)]
    fn trip_now(
        &self,
        current: u64,
        threshold: Threshold,
        now: impl Fn() -> u64,
        signal: &mut impl FnMut(Signal),
    ) {
        let wait = self.open_wait(0);
        let until = now().saturating_add(wait);
        self.trip(current, threshold, until, signal);
    }

    /// Opens the breaker from `current` for a threshold crossing; reports the
    /// crossing only if this caller made the transition.
    fn trip(
        &self,
        current: u64,
        threshold: Threshold,
        until: u64,
        signal: &mut impl FnMut(Signal),
    ) {
        let mut crossed = false;
        self.transition(current, OPEN, threshold.into(), Some(until), &mut |s| {
            if !crossed {
                crossed = true;
                signal(Signal::Crossed(threshold));
            }
            signal(s);
        });
    }

    /// Reports, in metrics-only, each threshold that `counts` and the run of
    /// `run` failures reach, once per episode of its own: an episode ends
    /// when that figure is below its threshold again (or a rate undefined).
    #[cold]
    fn report_crossings(&self, counts: Counts, run: u32, signal: &mut impl FnMut(Signal)) {
        let Counts {
            calls,
            failures,
            slow,
        } = counts;
        let settings = &self.settings();
        let defined = calls >= settings.minimum_calls() && calls > 0;
        let limit = settings.consecutive_failures();
        let thresholds = [
            (
                FAILURE_EPISODE,
                defined && failures * 10_000 >= settings.failure_bp() * calls,
                Threshold::FailureRate {
                    rate: rate(failures, calls),
                },
            ),
            (
                SLOW_EPISODE,
                defined && slow * 10_000 >= settings.slow_bp() * calls,
                Threshold::SlowCallRate {
                    rate: rate(slow, calls),
                },
            ),
            (
                RUN_EPISODE,
                limit > 0 && run >= limit,
                Threshold::ConsecutiveFailures { count: run },
            ),
        ];
        for (bit, reached, threshold) in thresholds {
            if reached {
                if self.rare().crossed.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
                    signal(Signal::Crossed(threshold));
                }
            } else if self.rare().crossed.load(Ordering::Acquire) & bit != 0 {
                self.rare().crossed.fetch_and(!bit, Ordering::AcqRel);
            }
        }
    }

    /// The threshold that `counts` crosses, if any.
    #[inline]
    fn crossing(&self, counts: Counts) -> Option<Threshold> {
        let Counts {
            calls,
            failures,
            slow,
        } = counts;
        if calls < self.settings().minimum_calls() || calls == 0 {
            return None;
        }
        if failures * 10_000 >= self.settings().failure_bp() * calls {
            return Some(Threshold::FailureRate {
                rate: rate(failures, calls),
            });
        }
        if slow * 10_000 >= self.settings().slow_bp() * calls {
            return Some(Threshold::SlowCallRate {
                rate: rate(slow, calls),
            });
        }
        None
    }

    #[inline(never)]
    fn record_probe(
        &self,
        generation: u64,
        outcome: u8,
        micros: u64,
        retry_after: Option<u64>,
        now: impl Fn() -> u64,
        signal: &mut impl FnMut(Signal),
    ) {
        if outcome & TIMED != 0 {
            // Before the outcome: the probe that ends the episode has its
            // duration in.
            self.add_probe_time(generation, micros);
        }
        let add = DONE_ONE
            + if outcome & FAILED != 0 { FAILED_ONE } else { 0 }
            + if outcome & SLOW != 0 { SLOW_ONE } else { 0 };
        let mut probes = self.rare().probes.load(Ordering::Acquire);
        let done = loop {
            if probes & !LOW_48 != tag(generation) {
                return; // stale
            }
            match self.rare().probes.compare_exchange(
                probes,
                probes + add,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break probes + add,
                Err(actual) => probes = actual,
            }
        };
        self.rare().counts.probe(outcome & FAILED != 0);
        if outcome & SLOW != 0 {
            self.rare().counts.slow();
        }
        // The run of failures among the probes, for the snapshot (probes
        // are judged on their rates, not on the run).
        if outcome & FAILED != 0 {
            self.consecutive.fetch_add(1, Ordering::AcqRel);
        } else {
            self.consecutive.store(0, Ordering::Release);
        }
        let current = word(generation, HALF_OPEN);
        if let (Some(wait), Some(cap)) = (retry_after, self.settings().max_retry_after())
            && outcome & FAILED != 0
            && wait > 0
        {
            let wait = wait.min(cap);
            let reason = TransitionReason::RetryAfter {
                wait: Duration::from_micros(wait),
            };
            if self.transition(
                current,
                OPEN,
                reason,
                Some(now().saturating_add(wait)),
                signal,
            ) {
                self.rare().reopens.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        let permitted = self.settings().permitted_in_half_open();
        if (done >> 24) & FIELD_12 < permitted {
            return;
        }
        let failed = (done >> 12) & FIELD_12;
        let slow = done & FIELD_12;
        if failed * 10_000 >= self.settings().failure_bp() * permitted
            || slow * 10_000 >= self.settings().slow_bp() * permitted
        {
            let reopens = self.rare().reopens.load(Ordering::Acquire) + 1;
            let reason = TransitionReason::ProbesFailed {
                failure_rate: rate(failed, permitted),
                slow_call_rate: rate(slow, permitted),
            };
            let until = now().saturating_add(self.open_wait(reopens));
            if self.transition(current, OPEN, reason, Some(until), signal) {
                self.rare().reopens.store(reopens, Ordering::Release);
            }
        } else {
            self.transition(
                current,
                CLOSED,
                TransitionReason::ProbesSucceeded,
                None,
                signal,
            );
        }
    }

    /// Adds a probe's duration to `probe_time`; the first of an episode
    /// starts it again, unless the episode is over (a stale probe).
    fn add_probe_time(&self, generation: u64, micros: u64) {
        let mut time = self.rare().probe_time.load(Ordering::Acquire);
        loop {
            let next = if time & !LOW_48 == tag(generation) {
                let timed = ((time >> 36) & FIELD_12) + 1;
                tag(generation)
                    | timed.min(FIELD_12) << 36
                    | (time & FIELD_36).saturating_add(micros).min(FIELD_36)
            } else if self::generation(self.state.load(Ordering::Acquire)) == generation {
                tag(generation) | TIMED_ONE | micros.min(FIELD_36)
            } else {
                return;
            };
            match self.rare().probe_time.compare_exchange(
                time,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => time = actual,
            }
        }
    }

    /// Moves from `current` to `to`; `false` if another caller moved first.
    /// The window is cleared before a recording state is entered (it is not
    /// in use in the states that lead there), and the run of failures before
    /// any state but `Open` (which shows what opened it).
    fn transition(
        &self,
        current: u64,
        to: u64,
        reason: TransitionReason,
        deadline: Option<u64>,
        signal: &mut impl FnMut(Signal),
    ) -> bool {
        // Made before the state moves: see `Rare`.
        let rare = self.rare();
        let entering_recording = matches!(to, CLOSED | METRICS_ONLY);
        if entering_recording {
            self.window.reset();
            self.rare().crossed.store(0, Ordering::Release);
        }
        if to != OPEN {
            self.consecutive.store(0, Ordering::Release);
        }
        let next_generation = generation(current) + 1;
        if self
            .state
            .compare_exchange(
                current,
                word(next_generation, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        if let Some(deadline) = deadline {
            self.rare().deadline.store(
                tag(next_generation) | deadline.min(LOW_48),
                Ordering::Release,
            );
        }
        if to == CLOSED {
            self.rare().reopens.store(0, Ordering::Release);
        }
        if to == OPEN {
            match kind(current) {
                // The probes that re-opened it are all in: their outcomes
                // were added before the transition.
                HALF_OPEN => {
                    let probes = self.rare().probes.load(Ordering::Acquire);
                    let probes = if probes & !LOW_48 == tag(generation(current)) {
                        probes & LOW_48
                    } else {
                        0
                    };
                    self.rare()
                        .opened_on
                        .store(FROM_PROBES | probes, Ordering::Release);
                    let time = self.rare().probe_time.load(Ordering::Acquire);
                    let time = if time & !LOW_48 == tag(generation(current)) {
                        time & LOW_48
                    } else {
                        0
                    };
                    self.rare().opened_on_time.store(time, Ordering::Release);
                }
                OPEN => {}
                _ => self.rare().opened_on.store(0, Ordering::Release),
            }
        }
        self.tally.mark(
            &rare.counts,
            self.window.recorded(),
            rare.not_permitted.load(Ordering::Relaxed),
            false,
        );
        if kind(current) != to {
            self.rare()
                .counts
                .transition(state_of(kind(current)), state_of(to));
            signal(Signal::Transition {
                from: state_of(kind(current)),
                to: state_of(to),
                reason,
            });
        }
        true
    }

    /// The open wait after `reopens` consecutive re-openings: the base wait
    /// times `multiplier^reopens` (at most 64 growths), capped, with
    /// proportional jitter — the exponential backoff of `portcullis-core`.
    fn open_wait(&self, reopens: u32) -> u64 {
        let settings = &self.settings();
        let max = Duration::from_micros(settings.max_wait_in_open());
        let backoff = Exponential::new(
            Duration::from_micros(settings.wait_in_open()),
            settings.multiplier(),
            max,
        );
        let mut wait = backoff.delay(reopens.min(64));
        if settings.jitter() > 0.0 {
            // The whole of `wait × (1 ± jitter)`, then the cap: a wait at the
            // cap stays there for half the draws (a retry's jitter spreads
            // within its cap instead).
            let jitter = JitterKind::Proportional(settings.jitter());
            let draw = self.rng.next_u64();
            wait = jitter
                .apply(wait, Duration::ZERO, backoff.base(), Duration::MAX, draw)
                .min(max);
        }
        u64::try_from(wait.as_micros()).unwrap_or(u64::MAX).max(1)
    }

    /// A manual transition to `to`; `open_for` is the wait for `Open`.
    /// Transitions to the current state are silent.
    pub(crate) fn force(
        &self,
        to: State,
        open_for: Option<u64>,
        now: impl Fn() -> u64,
        signal: &mut impl FnMut(Signal),
    ) -> Result<(), Illegal> {
        let to = kind_of(to);
        loop {
            let current = self.state.load(Ordering::Acquire);
            let from = kind(current);
            let legal = match to {
                OPEN => matches!(from, CLOSED | OPEN | HALF_OPEN),
                HALF_OPEN => matches!(from, OPEN | HALF_OPEN),
                _ => true,
            };
            if !legal {
                return Err(Illegal {
                    from: state_of(from),
                });
            }
            if from == to && to != OPEN {
                return Ok(());
            }
            // A manual open without a wait takes the configured one: the
            // base wait from `Closed`, grown as a re-open from `Open` or
            // `HalfOpen`.
            let reopens = match from {
                CLOSED => 0,
                _ => self.rare().reopens.load(Ordering::Acquire) + 1,
            };
            let deadline = match to {
                OPEN => {
                    Some(now().saturating_add(open_for.unwrap_or_else(|| self.open_wait(reopens))))
                }
                HALF_OPEN => Some(
                    self.settings()
                        .max_wait_in_half_open()
                        .map_or(LOW_48, |wait| now().saturating_add(wait)),
                ),
                _ => None,
            };
            if self.transition(current, to, TransitionReason::Manual, deadline, signal) {
                if to == OPEN && open_for.is_none() {
                    self.rare().reopens.store(reopens, Ordering::Release);
                }
                return Ok(());
            }
        }
    }

    /// Back to `Closed` with every count cleared, from any state.
    pub(crate) fn reset(&self, signal: &mut impl FnMut(Signal)) {
        loop {
            let current = self.state.load(Ordering::Acquire);
            if self.transition(current, CLOSED, TransitionReason::Manual, None, signal) {
                let rare = self.rare();
                self.tally.mark(
                    &rare.counts,
                    self.window.recorded(),
                    rare.not_permitted.load(Ordering::Relaxed),
                    true,
                );
                signal(Signal::Reset);
                return;
            }
        }
    }

    pub(crate) fn read(&self, now: impl Fn() -> u64) -> Reading {
        let current = self.state.load(Ordering::Acquire);
        let generation = generation(current);
        let retry_after = match kind(current) {
            OPEN => self
                .deadline_of(generation)
                .map(|until| until.saturating_sub(now())),
            _ => None,
        };
        let window = || Figures {
            counts: self.window.counts(&now),
            minimum: self.settings().minimum_calls(),
        };
        let durations = match kind(current) {
            CLOSED | METRICS_ONLY => self.window.durations(&now),
            HALF_OPEN => match self.rare().probe_time.load(Ordering::Acquire) {
                time if time & !LOW_48 == tag(generation) => of_probe_time(time),
                _ => Durations::default(),
            },
            OPEN => match self.rare().opened_on.load(Ordering::Acquire) {
                0 => self.window.durations(&now),
                _ => of_probe_time(self.rare().opened_on_time.load(Ordering::Acquire)),
            },
            _ => Durations::default(),
        };
        let mut permits_in_use = 0;
        let mut run = self.consecutive.load(Ordering::Relaxed);
        let mut window = || {
            let figures = window();
            if let Window::Time(_) = self.window {
                // A time window forgets the run with its buckets.
                run = run.min(figures.counts.calls as u32);
            }
            figures
        };
        let figures = match kind(current) {
            CLOSED | METRICS_ONLY => window(),
            HALF_OPEN => {
                let probes = self.rare().probes.load(Ordering::Acquire);
                if probes & !LOW_48 == tag(generation) {
                    let figures = Figures::of_probes(probes);
                    let admitted = (probes >> 36) & FIELD_12;
                    permits_in_use = admitted.saturating_sub(figures.counts.calls);
                    figures
                } else {
                    // No probe admitted yet in this episode.
                    Figures::of_probes(0)
                }
            }
            OPEN => match self.rare().opened_on.load(Ordering::Acquire) {
                0 => window(),
                probes => Figures::of_probes(probes & LOW_48),
            },
            // Nothing is recorded in the manual states that do not record.
            _ => Figures::default(),
        };
        let recorded = self.window.recorded();
        let rare = self.rare.get().map(|rare| &**rare);
        let not_permitted = rare.map_or(0, |rare| rare.not_permitted.load(Ordering::Relaxed));
        let counts = rare.map(|rare| &rare.counts);
        let (in_state, since_reset) = self.tally.read(counts, recorded, not_permitted);
        Reading {
            state: state_of(kind(current)),
            figures,
            permits_in_use,
            consecutive_failures: run,
            retry_after,
            durations,
            in_state,
            since_reset,
            counters: self.tally.counters(counts, recorded, not_permitted),
        }
    }

    /// The cumulative counts now.
    pub(crate) fn counters(&self) -> BreakerCounters {
        let rare = self.rare.get().map(|rare| &**rare);
        self.tally.counters(
            rare.map(|rare| &rare.counts),
            self.window.recorded(),
            rare.map_or(0, |rare| rare.not_permitted.load(Ordering::Relaxed)),
        )
    }

    /// The generation of the current state (for tests and models).
    #[cfg(all(test, loom))]
    pub(crate) fn generation(&self) -> u64 {
        generation(self.state.load(Ordering::Acquire))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::window::CountWindow;
    use portcullis_core::rng;
    use proptest::prelude::*;

    proptest! {
        /// The open wait is the float formula it was computed with before
        /// it came from `portcullis-core`, to the microsecond.
        #[test]
        fn open_waits_keep_the_former_formula(
            base_ms in 1_u64..100_000,
            multiplier in 1.0_f64..10.0,
            cap in 1_u64..100,
            jitter in prop_oneof![Just(0.0), 0.0_f64..1.0],
            reopens in 0_u32..80,
            seed: u64,
        ) {
            let config = crate::BreakerConfig::builder()
                .wait_in_open(Duration::from_millis(base_ms))
                .open_wait_backoff(multiplier, Duration::from_millis(base_ms * cap))
                .open_wait_jitter(jitter)
                .build()
                .unwrap();
            let profile = Arc::new(Profile::new("test".into(), config));
            let core = Core::new(profile, Window::Count(CountWindow::new(4)), seed);
            let (base, max) = (base_ms as f64 * 1000.0, (base_ms * cap) as f64 * 1000.0);
            let mut former = (base * multiplier.powi(reopens.min(64) as i32)).min(max);
            if jitter > 0.0 {
                let unit = rng::unit(SplitMix64::new(seed).next_u64());
                former = (former * (1.0 - jitter + 2.0 * jitter * unit)).min(max);
            }
            let former = (former as u64).max(1);
            let wait = core.open_wait(reopens);
            prop_assert!(wait.abs_diff(former) <= 1, "{wait} µs, formerly {former} µs");
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::window::CountWindow;
    use loom::sync::Arc;
    use loom::thread;

    fn core(permitted: u64, minimum_calls: u64, failure_bp: u64) -> Core {
        let config = crate::BreakerConfig::builder()
            .count_window(4)
            .minimum_calls(minimum_calls as u32)
            .failure_rate_threshold(failure_bp as f64 / 100.0)
            .permitted_calls_in_half_open(permitted as u32)
            .wait_in_open(std::time::Duration::from_millis(1))
            .build()
            .unwrap();
        let profile = std::sync::Arc::new(Profile::new("model".into(), config));
        Core::new(profile, Window::Count(CountWindow::new(4)), 1)
    }

    fn transitions(signals: &[Signal]) -> usize {
        signals
            .iter()
            .filter(|s| matches!(s, Signal::Transition { .. }))
            .count()
    }

    /// Two failures recorded at once cross a 100 % threshold with a minimum
    /// of two calls: exactly one of the recorders opens the breaker, whatever
    /// the interleaving (and neither misses the crossing).
    #[test]
    fn a_crossing_opens_exactly_once() {
        loom::model(|| {
            let core = Arc::new(core(1, 2, 10_000));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let core = core.clone();
                    thread::spawn(move || {
                        let mut signals = Vec::new();
                        let ticket = core.acquire(|| 0, &mut |s| signals.push(s)).unwrap();
                        core.record(ticket, RECORDED | FAILED, 0, None, || 0, &mut |s| {
                            signals.push(s)
                        });
                        transitions(&signals)
                    })
                })
                .collect();
            let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(total, 1);
            assert_eq!(core.state(), State::Open);
            assert_eq!(core.generation(), 1);
        });
    }

    /// A success on the closed fast path races a failure that opens the
    /// breaker on its own (50 %, a minimum of one call): the breaker opens
    /// exactly once, whether the success is recorded before the failure,
    /// after it, or found stale. (Loom models `SeqCst` as `AcqRel`, so the
    /// window's "the later of two recorders sees both outcomes" is argued in
    /// `window.rs`, not modelled here.)
    #[test]
    fn a_fast_path_success_races_a_trip() {
        loom::model(|| {
            let core = Arc::new(core(1, 1, 5_000));
            let handles: Vec<_> = [RECORDED, RECORDED | FAILED]
                .into_iter()
                .map(|outcome| {
                    let core = core.clone();
                    thread::spawn(move || {
                        let mut signals = Vec::new();
                        // The success may come after the breaker opened.
                        let Some(ticket) = core.acquire_closed() else {
                            return 0;
                        };
                        core.record(ticket, outcome, 0, None, || 0, &mut |s| signals.push(s));
                        transitions(&signals)
                    })
                })
                .collect();
            let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(total, 1);
            assert_eq!(core.state(), State::Open);
        });
    }

    /// Three callers race for two half-open permits: exactly two are
    /// admitted, whatever the interleaving, and a permit given back can be
    /// taken again.
    #[test]
    fn half_open_admits_at_most_the_permitted_probes() {
        loom::model(|| {
            let core = Arc::new(core(2, 1, 5_000));
            core.force(State::Open, Some(10), || 0, &mut |_| {})
                .unwrap();
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let core = core.clone();
                    thread::spawn(move || core.acquire(|| 100, &mut |_| {}).ok())
                })
                .collect();
            let admitted: Vec<Ticket> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            assert_eq!(admitted.len(), 2);
            assert!(core.acquire(|| 100, &mut |_| {}).is_err());
            core.release(admitted[0]);
            assert!(core.acquire(|| 100, &mut |_| {}).is_ok());
            assert_eq!(core.state(), State::HalfOpen);
        });
    }

    /// A probe cancelled while another caller asks for the only permit:
    /// the permit count always matches the permits held.
    #[test]
    fn a_cancelled_probe_races_an_admission() {
        loom::model(|| {
            let core = Arc::new(core(1, 1, 5_000));
            core.force(State::Open, Some(10), || 0, &mut |_| {})
                .unwrap();
            let first = core.acquire(|| 100, &mut |_| {}).unwrap();
            let canceller = {
                let core = core.clone();
                thread::spawn(move || core.release(first))
            };
            let second = core.acquire(|| 100, &mut |_| {});
            canceller.join().unwrap();
            let admitted = (core.rare().probes.load(Ordering::Acquire) >> 36) & FIELD_12;
            assert_eq!(admitted, u64::from(second.is_ok()));
        });
    }

    /// The last probe outcome closes the breaker exactly once, and an
    /// outcome of the earlier closed generation is dropped, not counted.
    #[test]
    fn probes_close_once_and_stale_outcomes_are_dropped() {
        loom::model(|| {
            let core = Arc::new(core(2, 1, 5_000));
            let stale = core.acquire(|| 0, &mut |_| {}).unwrap();
            core.force(State::Open, Some(10), || 0, &mut |_| {})
                .unwrap();
            let first = core.acquire(|| 100, &mut |_| {}).unwrap();
            let second = core.acquire(|| 100, &mut |_| {}).unwrap();
            let handles: Vec<_> = [first, second, stale]
                .into_iter()
                .map(|ticket| {
                    let core = core.clone();
                    thread::spawn(move || {
                        let mut signals = Vec::new();
                        let outcome = if ticket == stale {
                            RECORDED | FAILED
                        } else {
                            RECORDED
                        };
                        core.record(ticket, outcome, 0, None, || 100, &mut |s| signals.push(s));
                        transitions(&signals)
                    })
                })
                .collect();
            let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(total, 1);
            assert_eq!(core.state(), State::Closed);
            assert_eq!(core.window.counts(|| 100).failures, 0);
        });
    }
}
