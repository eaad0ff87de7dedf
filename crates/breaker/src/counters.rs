//! Counts that only go up, for rates: a breaker's calls by outcome, its
//! rejections and its transitions since it was made.
//!
//! The figures of a snapshot that start again (with a state, on a reset)
//! are differences of these counts and a mark of them taken when the state
//! was entered or the breaker reset, so that no call pays for more than one
//! count of its own.
//!
//! The successes of the calls recorded in the window are not counted at
//! all: they are the window's recorded calls, which it counts anyway, minus
//! the failures recorded in it. These counts are plain `std` atomics even
//! under loom: they are figures, not part of the protocol the models check.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::state::{STATES, State, index_of};

/// A breaker's cumulative counts: they never go down, not on a transition,
/// not on [`Breaker::reset`](crate::Breaker::reset), not on
/// [`Breaker::reconfigure`](crate::Breaker::reconfigure), so that a
/// monitoring system can take their rates.
///
/// Calls are counted when their outcome is recorded, in `Closed`,
/// `MetricsOnly` and as half-open probes; a `Disabled` breaker records
/// nothing, and an outcome that arrives after a transition (stale) is not
/// counted. Every recorded call is either successful or failed; a slow call
/// is one of those too, and counted again in `slow_calls`.
///
/// ```
/// use portcullis_breaker::{Breaker, State};
/// use portcullis_core::Outcome;
///
/// let breaker = Breaker::new("ledger");
/// breaker.try_acquire().unwrap().record(Outcome::Success);
/// breaker.try_acquire().unwrap().record(Outcome::Ignored);
/// breaker.force_open();
/// assert!(breaker.try_acquire().is_err());
/// breaker.reset();
///
/// let counters = breaker.counters();
/// assert_eq!(counters.successful_calls, 1);
/// assert_eq!(counters.ignored_calls, 1);
/// assert_eq!(counters.not_permitted_calls, 1, "a reset keeps the counts");
/// assert_eq!(counters.transitions(State::Closed, State::ForcedOpen), 1);
/// assert_eq!(counters.transitions(State::ForcedOpen, State::Closed), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerCounters {
    /// Recorded calls whose outcome was a success.
    pub successful_calls: u64,
    /// Recorded calls whose outcome was a failure.
    pub failed_calls: u64,
    /// Recorded calls that took longer than the slow-call duration; each is
    /// also counted in `successful_calls` or `failed_calls`.
    pub slow_calls: u64,
    /// Admitted calls whose outcome was ignored.
    pub ignored_calls: u64,
    /// Calls rejected: open, forced open, or half-open with every probe
    /// permit taken.
    pub not_permitted_calls: u64,
    /// Transitions by state left and state entered (`[from][to]`, in the
    /// order of [`State`]'s variants). Serialized as a list of
    /// `{ "from", "to", "count" }` for the pairs that happened.
    #[serde(serialize_with = "serialize_transitions")]
    transitions: [[u64; STATES.len()]; STATES.len()],
}

/// One count of [`BreakerCounters::transitions`], as serialized.
#[derive(Serialize)]
struct TransitionCount {
    from: State,
    to: State,
    count: u64,
}

/// The figures of a snapshot that start again: counted since the current
/// state was entered, or since the breaker was made or reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) successes: u64,
    pub(crate) ignored: u64,
    pub(crate) not_permitted: u64,
}

/// The cumulative counts of the calls recorded in the window, which every
/// breaker keeps.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Failures recorded in the window, counted before the window counts
    /// the call: the window's recorded calls minus these are never more
    /// than its successes.
    window_failures: AtomicU64,
    /// The most window successes ever read, so that a reading taken while
    /// a failure is half counted cannot go back.
    window_successes: AtomicU64,
}

/// The other cumulative counts, made with the rest of what a breaker
/// rarely needs (at its first transition, or slow or ignored call): a
/// breaker that has none of these reads zeros.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    probe_successes: AtomicU64,
    probe_failures: AtomicU64,
    slow: AtomicU64,
    ignored: AtomicU64,
    transitions: Matrix,
    /// The totals when the current state was entered, and when the breaker
    /// was last reset.
    state_marks: Marks,
    reset_marks: Marks,
}

type Matrix = [[AtomicU64; STATES.len()]; STATES.len()];

#[derive(Debug, Default)]
struct Marks {
    successes: AtomicU64,
    ignored: AtomicU64,
    not_permitted: AtomicU64,
}

impl BreakerCounters {
    /// The transitions from `from` to `to`.
    pub fn transitions(&self, from: State, to: State) -> u64 {
        self.transitions[index_of(from)][index_of(to)]
    }

    /// Every pair of different states with the transitions between them,
    /// those that never happened included.
    pub fn all_transitions(&self) -> impl Iterator<Item = (State, State, u64)> + '_ {
        STATES.iter().flat_map(move |&from| {
            STATES
                .iter()
                .filter(move |&&to| to != from)
                .map(move |&to| (from, to, self.transitions(from, to)))
        })
    }
}

fn serialize_transitions<S: Serializer>(
    transitions: &[[u64; STATES.len()]; STATES.len()],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let happened = STATES.iter().flat_map(|&from| {
        STATES.iter().filter_map(move |&to| {
            let count = transitions[index_of(from)][index_of(to)];
            (count > 0).then_some(TransitionCount { from, to, count })
        })
    });
    let mut seq = serializer.serialize_seq(None)?;
    for count in happened {
        seq.serialize_element(&count)?;
    }
    seq.end()
}

impl Marks {
    fn store(&self, totals: Totals) {
        self.successes.store(totals.successes, Relaxed);
        self.ignored.store(totals.ignored, Relaxed);
        self.not_permitted.store(totals.not_permitted, Relaxed);
    }

    /// `totals` since this mark.
    fn since(&self, totals: Totals) -> Totals {
        Totals {
            successes: totals
                .successes
                .saturating_sub(self.successes.load(Relaxed)),
            ignored: totals.ignored.saturating_sub(self.ignored.load(Relaxed)),
            not_permitted: totals
                .not_permitted
                .saturating_sub(self.not_permitted.load(Relaxed)),
        }
    }
}

impl Counted {
    /// A probe's outcome, counted once it is in.
    pub(crate) fn probe(&self, failed: bool) {
        match failed {
            true => self.probe_failures.fetch_add(1, Relaxed),
            false => self.probe_successes.fetch_add(1, Relaxed),
        };
    }

    pub(crate) fn slow(&self) {
        self.slow.fetch_add(1, Relaxed);
    }

    pub(crate) fn ignored(&self) {
        self.ignored.fetch_add(1, Relaxed);
    }

    pub(crate) fn transition(&self, from: State, to: State) {
        self.transitions[index_of(from)][index_of(to)].fetch_add(1, Relaxed);
    }
}

impl Tally {
    /// A failure about to be recorded in the window.
    #[inline]
    pub(crate) fn window_failure(&self) {
        self.window_failures.fetch_add(1, Relaxed);
    }

    /// The successes so far, given the window's recorded calls (read
    /// before this call).
    fn successes(&self, counted: Option<&Counted>, recorded: u64) -> u64 {
        let window = recorded.saturating_sub(self.window_failures.load(Relaxed));
        let window = self.window_successes.fetch_max(window, Relaxed).max(window);
        window + counted.map_or(0, |counted| counted.probe_successes.load(Relaxed))
    }

    fn totals(&self, counted: Option<&Counted>, recorded: u64, not_permitted: u64) -> Totals {
        Totals {
            successes: self.successes(counted, recorded),
            ignored: counted.map_or(0, |counted| counted.ignored.load(Relaxed)),
            not_permitted,
        }
    }

    /// Marks the start of a new state (and, with `reset`, of a reset).
    pub(crate) fn mark(&self, counted: &Counted, recorded: u64, not_permitted: u64, reset: bool) {
        let totals = self.totals(Some(counted), recorded, not_permitted);
        counted.state_marks.store(totals);
        if reset {
            counted.reset_marks.store(totals);
        }
    }

    /// The totals since the current state was entered and since the last
    /// reset.
    pub(crate) fn read(
        &self,
        counted: Option<&Counted>,
        recorded: u64,
        not_permitted: u64,
    ) -> (Totals, Totals) {
        let totals = self.totals(counted, recorded, not_permitted);
        match counted {
            Some(counted) => (
                counted.state_marks.since(totals),
                counted.reset_marks.since(totals),
            ),
            None => (totals, totals),
        }
    }

    pub(crate) fn counters(
        &self,
        counted: Option<&Counted>,
        recorded: u64,
        not_permitted: u64,
    ) -> BreakerCounters {
        let mut transitions = [[0; STATES.len()]; STATES.len()];
        let made = counted.map(|counted| &counted.transitions);
        for (counts, atomics) in transitions.iter_mut().zip(made.into_iter().flatten()) {
            for (count, atomic) in counts.iter_mut().zip(atomics) {
                *count = atomic.load(Relaxed);
            }
        }
        let load = |field: fn(&Counted) -> &AtomicU64| {
            counted.map_or(0, |counted| field(counted).load(Relaxed))
        };
        BreakerCounters {
            successful_calls: self.successes(counted, recorded),
            failed_calls: self.window_failures.load(Relaxed) + load(|c| &c.probe_failures),
            slow_calls: load(|c| &c.slow),
            ignored_calls: load(|c| &c.ignored),
            not_permitted_calls: not_permitted,
            transitions,
        }
    }
}
