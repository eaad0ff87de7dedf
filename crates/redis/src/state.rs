//! What this process keeps about one key of a fleet limit: the "denied
//! until" cache, the pool of leased tokens, and the round trip in flight
//! that concurrent calls share.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// One key's local state.
#[derive(Debug)]
pub(crate) struct KeyState {
    /// The caller's key (`None` for the limit's own key), for the local
    /// limiter of [`FailPolicy::Local`](crate::FailPolicy::Local).
    pub(crate) key: Option<Arc<str>>,
    /// The key in Redis.
    pub(crate) redis_key: String,
    /// Until when (clock nanoseconds) Redis said no token conforms; 0:
    /// never said.
    denied_until: AtomicU64,
    /// The leased tokens: their number in the high 24 bits, the clock
    /// millisecond they expire at in the low 40 (34 years).
    pool: AtomicU64,
    /// The round trips of this key, under a lock taken only by calls that
    /// the cache and the pool could not decide (they go to Redis anyway).
    flight: Mutex<Flight>,
}

/// The round trips of one key: at most one in flight, and the next one
/// being formed by the calls that came meanwhile.
#[derive(Debug, Default)]
struct Flight {
    sending: Option<Arc<Round>>,
    forming: Option<Arc<Round>>,
}

/// One round trip, shared by the calls that joined it.
#[derive(Debug)]
pub(crate) struct Round {
    /// Its answer, once there is one. The leader holds the sender: a
    /// leader dropped before it answered closes the channel, and the calls
    /// that joined ask again.
    answer: watch::Receiver<Option<Answer>>,
    /// The calls waiting for it (fixed once it is sent).
    pub(crate) wanted: AtomicU32,
    /// The tokens it won for them, taken one by one.
    pub(crate) left: AtomicU32,
}

/// What a round trip found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Redis decided: a call without one of the round's tokens is rejected,
    /// with this wait (nanoseconds) until a token conforms.
    Fleet { wait: u64 },
    /// Redis did not decide (error, timeout, open breaker): a call without
    /// a token goes to the fail policy.
    Unavailable,
}

/// How a call takes part in a round trip.
pub(crate) enum Role<'a> {
    /// It waits for the answer of a round that another call leads.
    Join(Arc<Round>),
    /// It leads a round: after `after` (the one in flight) if any, it asks
    /// Redis for the round's calls and answers through `answer`.
    Lead {
        after: Option<Arc<Round>>,
        round: Leading<'a>,
        answer: watch::Sender<Option<Answer>>,
    },
}

/// A round that a call leads; dropped when the leader is done or gone, it
/// clears the round from its key's flight, so that no call joins a round
/// that nobody will send.
pub(crate) struct Leading<'a> {
    state: &'a KeyState,
    pub(crate) round: Arc<Round>,
}

const TOKEN_SHIFT: u32 = 40;
const EXPIRY_MASK: u64 = (1 << TOKEN_SHIFT) - 1;

impl KeyState {
    pub(crate) fn new(key: Option<Arc<str>>, redis_key: String) -> Self {
        Self {
            key,
            redis_key,
            denied_until: AtomicU64::new(0),
            pool: AtomicU64::new(0),
            flight: Mutex::new(Flight::default()),
        }
    }

    /// The wait in nanoseconds until a token may conform, if Redis said
    /// none does before then.
    #[inline]
    pub(crate) fn denied(&self, now: u64) -> Option<u64> {
        let until = self.denied_until.load(Ordering::Relaxed);
        (now < until).then(|| until - now)
    }

    /// Remembers that no token conforms before `until`. A TAT only grows,
    /// so a later "until" never makes an earlier one wrong: keep the
    /// latest.
    pub(crate) fn deny_until(&self, until: u64) {
        self.denied_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Takes one leased token, if one is left and has not expired: one
    /// load and one compare-and-swap.
    #[inline]
    pub(crate) fn take_lease(&self, now: u64) -> bool {
        self.take_leases(now, 1) == 1
    }

    /// Takes up to `wanted` leased tokens; returns how many.
    pub(crate) fn take_leases(&self, now: u64, wanted: u32) -> u32 {
        let now_ms = now / 1_000_000;
        let mut taken = 0;
        let _ = self
            .pool
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pool| {
                let tokens = (pool >> TOKEN_SHIFT) as u32;
                if tokens == 0 || now_ms >= pool & EXPIRY_MASK {
                    return None;
                }
                taken = tokens.min(wanted);
                Some(pack(tokens - taken, pool & EXPIRY_MASK))
            });
        taken
    }

    /// Puts `tokens` leased tokens in the pool, usable until the clock
    /// nanosecond `expiry` (rounded down to its millisecond). The pool was
    /// emptied by the round that won them, the only one in flight: this
    /// replaces what is left, so the pool never holds more than a lease.
    pub(crate) fn lease(&self, tokens: u32, expiry: u64) {
        self.pool
            .store(pack(tokens, expiry / 1_000_000), Ordering::Relaxed);
    }

    /// Whether nothing would be lost by forgetting this state: no denial
    /// and no leased token in force, no round trip.
    pub(crate) fn idle(&self, now: u64) -> bool {
        let pool = self.pool.load(Ordering::Relaxed);
        let leased = pool >> TOKEN_SHIFT > 0 && now / 1_000_000 < pool & EXPIRY_MASK;
        let flight = self.flight();
        self.denied(now).is_none()
            && !leased
            && flight.sending.is_none()
            && flight.forming.is_none()
    }

    /// Joins the round being formed, or starts one: in flight at once if
    /// none is, or as the next one otherwise.
    pub(crate) fn enter(&self) -> Role<'_> {
        let mut flight = self.flight();
        if let Some(round) = &flight.forming {
            round.wanted.fetch_add(1, Ordering::Relaxed);
            return Role::Join(round.clone());
        }
        let (answer, receiver) = watch::channel(None);
        let round = Arc::new(Round {
            answer: receiver,
            wanted: AtomicU32::new(1),
            left: AtomicU32::new(0),
        });
        let after = flight.sending.clone();
        if after.is_some() {
            flight.forming = Some(round.clone());
        } else {
            flight.sending = Some(round.clone());
        }
        Role::Lead {
            after,
            round: Leading { state: self, round },
            answer,
        }
    }

    fn flight(&self) -> MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Round {
    /// Waits for the answer; `None` if the leader went away without one.
    pub(crate) async fn answer(&self) -> Option<Answer> {
        let mut receiver = self.answer.clone();
        let answer = receiver.wait_for(Option::is_some).await.ok()?;
        *answer
    }

    /// Takes one of the round's tokens, if one is left.
    pub(crate) fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

impl Leading<'_> {
    /// Marks the round as the one in flight: no call joins it from now on,
    /// so its `wanted` is final.
    pub(crate) fn send(&self) {
        let mut flight = self.state.flight();
        if is(&flight.forming, &self.round) {
            flight.forming = None;
        }
        flight.sending = Some(self.round.clone());
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut flight = self.state.flight();
        if is(&flight.forming, &self.round) {
            flight.forming = None;
        }
        if is(&flight.sending, &self.round) {
            flight.sending = None;
        }
    }
}

fn is(slot: &Option<Arc<Round>>, round: &Arc<Round>) -> bool {
    slot.as_ref().is_some_and(|r| Arc::ptr_eq(r, round))
}

fn pack(tokens: u32, expiry_ms: u64) -> u64 {
    (u64::from(tokens) << TOKEN_SHIFT) | (expiry_ms & EXPIRY_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn leased_tokens_are_taken_until_they_run_out_or_expire() {
        let state = KeyState::new(None, "k".into());
        assert!(!state.take_lease(0));
        state.lease(3, 10 * MS);
        assert_eq!(state.take_leases(MS, 2), 2);
        assert!(state.take_lease(9 * MS));
        assert!(!state.take_lease(9 * MS), "all three taken");
        state.lease(5, 10 * MS);
        assert!(!state.take_lease(10 * MS), "expired at its millisecond");
        assert!(state.idle(10 * MS));
    }

    #[test]
    fn the_denial_keeps_the_latest_until() {
        let state = KeyState::new(None, "k".into());
        assert_eq!(state.denied(0), None);
        state.deny_until(50);
        state.deny_until(20);
        assert_eq!(state.denied(10), Some(40));
        assert_eq!(state.denied(50), None);
        assert!(!state.idle(10));
    }

    #[test]
    fn calls_that_come_while_a_round_is_in_flight_form_the_next_one() {
        let state = KeyState::new(None, "k".into());
        let Role::Lead {
            after: None,
            round: first,
            answer: _first,
        } = state.enter()
        else {
            panic!("the first call leads a round in flight");
        };
        first.send();
        let Role::Lead {
            after: Some(after),
            round: second,
            answer: _second,
        } = state.enter()
        else {
            panic!("the second call forms the next round");
        };
        assert!(Arc::ptr_eq(&after, &first.round));
        let Role::Join(joined) = state.enter() else {
            panic!("the third call joins the forming round");
        };
        assert!(Arc::ptr_eq(&joined, &second.round));
        assert_eq!(second.round.wanted.load(Ordering::Relaxed), 2);
        drop(first);
        second.send();
        assert!(matches!(state.enter(), Role::Lead { after: Some(_), .. }));
    }

    #[test]
    fn a_leader_that_gives_up_before_sending_leaves_no_round_to_join() {
        let state = KeyState::new(None, "k".into());
        let Role::Lead { round: first, .. } = state.enter() else {
            panic!("leads");
        };
        first.send();
        let Role::Lead { round: second, .. } = state.enter() else {
            panic!("forms the next");
        };
        drop(second);
        assert!(
            matches!(state.enter(), Role::Lead { after: Some(_), .. }),
            "a new round, not the abandoned one"
        );
    }

    #[tokio::test]
    async fn a_leader_dropped_without_an_answer_releases_its_callers() {
        let state = KeyState::new(None, "k".into());
        let Role::Lead { round, answer, .. } = state.enter() else {
            panic!("leads");
        };
        round.send();
        let shared = round.round.clone();
        drop(answer);
        drop(round);
        assert_eq!(shared.answer().await, None);
        assert!(state.idle(0));
    }
}
