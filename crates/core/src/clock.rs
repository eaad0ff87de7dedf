//! A clock for the hot paths that paused time still drives (feature
//! `clock`).
//!
//! A rate limiter's GCRA and a retry budget's per-second buckets read the
//! time on every call. `tokio::time::Instant::now()` is a system call
//! through the vDSO, about 20 ns, often more than the rest of the call. A
//! [`Clock`] made in a running (not paused) runtime reads a **coarse**
//! time instead: one relaxed atomic load of a process-wide counter that a
//! background thread (`portcullis-clock`, started at the first coarse
//! clock) advances every millisecond.
//!
//! The coarse time is an approximation, stated precisely:
//!
//! - it never runs ahead of the real time, and never goes back;
//! - it lags the real time by at most the tick (1 ms) plus however long
//!   the machine keeps the thread from running (on an overloaded machine,
//!   a few milliseconds more);
//! - so a limiter reading it admits no more than one reading the real
//!   time would (its capacity comes back up to the lag late), and a bucket
//!   boundary moves by up to the lag.
//!
//! A clock made where tokio's time is **paused** (a test with
//! `start_paused`), or outside any runtime, reads `tokio::time::Instant`
//! instead, so paused time drives it exactly, as before: `advance` moves
//! it by what was asked, to the nanosecond. [`Clock::new`] tells the two
//! apart when the clock is made: a paused clock does not move while the
//! real one does. (A clock made in a running runtime that is paused later
//! keeps the coarse time; tokio offers no way to see the pause happen.)
//!
//! ```
//! use portcullis_core::clock::Clock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Paused: the clock is tokio's, and `advance` drives it exactly.
//! let clock = Clock::new();
//! assert!(!clock.is_coarse());
//! let before = clock.now();
//! tokio::time::advance(std::time::Duration::from_millis(1500)).await;
//! assert_eq!(clock.now() - before, 1_500_000_000);
//! # }
//! ```

// The one place that reads the system's clock beside tokio's: to tell
// whether tokio's is paused, and to advance the coarse time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use tokio::time::Instant;

/// A clock, as nanoseconds since it was made: coarse in a running runtime,
/// tokio's where time may be paused (see the [module](self)). Cheap to
/// copy.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Copy, Debug)]
enum Source {
    /// `tokio::time::Instant`, since `epoch`.
    Tokio { epoch: Instant },
    /// The coarse time, less `offset` (the coarse time when made), with
    /// `epoch` the instant it stands for.
    Coarse { offset: u64, epoch: Instant },
}

impl Clock {
    /// A clock for where it is made: coarse in a running runtime whose time
    /// is not paused, tokio's otherwise.
    pub fn new() -> Self {
        if cfg!(loom) || tokio::runtime::Handle::try_current().is_err() || paused() {
            Self::tokio()
        } else {
            Self::coarse()
        }
    }

    /// A clock that reads `tokio::time::Instant` on every call: exact, and
    /// driven by paused time wherever it is used.
    pub fn tokio() -> Self {
        Self {
            source: Source::Tokio {
                epoch: Instant::now(),
            },
        }
    }

    /// A clock that reads the coarse time (starting its thread if it is
    /// not running yet), whatever the runtime.
    #[cfg(not(loom))]
    pub fn coarse() -> Self {
        let offset = coarse::now();
        Self {
            source: Source::Coarse {
                offset,
                epoch: Instant::from_std(coarse::instant(offset)),
            },
        }
    }

    /// Under loom there is no clock thread: tokio's.
    #[cfg(loom)]
    pub fn coarse() -> Self {
        Self::tokio()
    }

    /// Whether it reads the coarse time.
    pub fn is_coarse(&self) -> bool {
        matches!(self.source, Source::Coarse { .. })
    }

    /// Nanoseconds since the clock was made.
    #[inline]
    pub fn now(&self) -> u64 {
        match self.source {
            Source::Tokio { epoch } => nanos(Instant::now().saturating_duration_since(epoch)),
            #[cfg(not(loom))]
            Source::Coarse { offset, .. } => coarse::now().saturating_sub(offset),
            #[cfg(loom)]
            Source::Coarse { .. } => unreachable!("no coarse clock under loom"),
        }
    }

    /// The instant `nanos` after the clock was made, to sleep until.
    pub fn instant(&self, nanos: u64) -> Instant {
        let epoch = match self.source {
            Source::Tokio { epoch } | Source::Coarse { epoch, .. } => epoch,
        };
        epoch + Duration::from_nanos(nanos)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether tokio's time is paused here: it does not move while the real
/// time does. Cheap when it is not paused and tokio's time is the system's
/// (a production build): three reads in order, the middle one between the
/// others. Otherwise it watches tokio's time over two microseconds of real
/// time.
fn paused() -> bool {
    let before = std::time::Instant::now();
    let tokio = Instant::now().into_std();
    let after = std::time::Instant::now();
    if before <= tokio && tokio <= after {
        return false;
    }
    let first = Instant::now();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
    Instant::now() == first
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Stores `now` unless the time already went past it, so that no store
/// ever takes the time back (the clock thread is the only writer, but a
/// delayed store must not undo a later one).
fn advance(time: &crate::sync::AtomicU64, now: u64) {
    time.fetch_max(now, crate::sync::Ordering::Relaxed);
}

/// The process-wide coarse time and the thread that advances it.
#[cfg(not(loom))]
mod coarse {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// How often the thread advances the time.
    const TICK: Duration = Duration::from_millis(1);

    /// Nanoseconds since the epoch, as last stored by the thread.
    static NOW: AtomicU64 = AtomicU64::new(0);

    /// When the coarse time began, and whether its thread runs; set by the
    /// first coarse clock.
    static STARTED: OnceLock<(Instant, bool)> = OnceLock::new();

    /// The coarse time now, in nanoseconds since its epoch. Without its
    /// thread (the system refused one), the exact time instead.
    #[inline]
    pub(super) fn now() -> u64 {
        let (epoch, running) = started();
        if running {
            NOW.load(Ordering::Relaxed)
        } else {
            super::nanos(epoch.elapsed())
        }
    }

    /// The instant `nanos` after the epoch.
    pub(super) fn instant(nanos: u64) -> Instant {
        started().0 + Duration::from_nanos(nanos)
    }

    fn started() -> (Instant, bool) {
        *STARTED.get_or_init(|| {
            let epoch = Instant::now();
            let running = std::thread::Builder::new()
                .name("portcullis-clock".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        super::advance(&NOW, super::nanos(epoch.elapsed()));
                    }
                })
                .is_ok();
            // Wait for the first tick: the thread has made whatever it makes
            // when it starts, and the time has begun to move, before the
            // first coarse clock is handed out (once per process, about a
            // millisecond).
            while running && NOW.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(TICK / 10);
            }
            (epoch, running)
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_drives_a_clock_made_under_it_exactly() {
        let clock = Clock::new();
        assert!(!clock.is_coarse());
        assert_eq!(clock.now(), 0);
        tokio::time::advance(Duration::from_nanos(1_234_567)).await;
        assert_eq!(clock.now(), 1_234_567);
        assert_eq!(clock.instant(5), clock.instant(0) + Duration::from_nanos(5));
    }

    #[tokio::test]
    async fn a_running_runtime_gets_the_coarse_time_which_never_runs_ahead() {
        let clock = Clock::new();
        assert!(clock.is_coarse());
        let mut last = clock.now();
        for _ in 0..1_000 {
            let now = clock.now();
            assert!(now >= last, "the time never goes back");
            assert!(
                clock.instant(now).into_std() <= std::time::Instant::now(),
                "the instant it stands for is never ahead of the real one"
            );
            last = now;
            std::thread::yield_now();
        }
    }

    #[test]
    fn outside_a_runtime_a_clock_is_tokios() {
        assert!(!Clock::new().is_coarse());
        assert!(Clock::coarse().is_coarse());
    }

    #[test]
    fn a_late_store_does_not_take_the_time_back() {
        let time = crate::sync::AtomicU64::new(0);
        advance(&time, 20);
        advance(&time, 10);
        assert_eq!(time.load(crate::sync::Ordering::Relaxed), 20);
    }
}

#[cfg(all(test, loom))]
mod loom {
    use super::advance;
    use crate::sync::{Arc, AtomicU64, Ordering};

    /// The clock thread stores two times in turn while a reader reads
    /// twice: the reader never sees the time go back.
    #[test]
    fn a_reader_never_sees_the_time_go_back() {
        loom::model(|| {
            let time = Arc::new(AtomicU64::new(0));
            let writer = {
                let time = time.clone();
                loom::thread::spawn(move || {
                    advance(&time, 10);
                    advance(&time, 20);
                })
            };
            let first = time.load(Ordering::Relaxed);
            let second = time.load(Ordering::Relaxed);
            assert!(second >= first);
            writer.join().unwrap();
            assert_eq!(time.load(Ordering::Relaxed), 20);
        });
    }
}
