//! Circuit breakers in the registry.

use std::pin::pin;
use std::time::Duration;

use portcullis_breaker::event::RecvError;
use portcullis_breaker::{
    Breaker, BreakerConfig, BreakerEvent, BreakerSnapshot, EventStream, State, Threshold,
};
use portcullis_core::{ConfigError, percent};
use tokio::time::{Instant, sleep_until};

use crate::clock::deadline_after;
use crate::event::EventKind;
use crate::hub::Hub;
use crate::kind::{Forward, InstanceKind, Kind, Source};

impl Kind for Breaker {
    type Config = BreakerConfig;
    type Snapshot = BreakerSnapshot;

    const KIND: InstanceKind = InstanceKind::Breaker;

    fn validate(config: &BreakerConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn build(name: &str, config: BreakerConfig) -> Self {
        Breaker::from_config(name, config).expect("the registry validates every config it keeps")
    }

    fn name(&self) -> &str {
        Breaker::name(self)
    }

    fn check_update(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        let current = self.config().sliding_window();
        if config.sliding_window() != current {
            return Err(ConfigError::new(
                "sliding_window",
                format!(
                    "cannot change on a live breaker (from {current:?} to {:?}); remove it and let it be made again",
                    config.sliding_window()
                ),
            ));
        }
        Ok(())
    }

    fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        Breaker::reconfigure(self, config)
    }

    fn snapshot(&self) -> BreakerSnapshot {
        Breaker::snapshot(self)
    }

    /// Only a closed breaker with nothing against its callee: a failure or
    /// slow call in its window, or a run of consecutive failures, is the
    /// beginning of a trip that a flood of new keys must not erase.
    fn evictable(&self) -> bool {
        if self.state() != State::Closed {
            return false;
        }
        let snapshot = Breaker::snapshot(self);
        snapshot.failed_calls == 0 && snapshot.slow_calls == 0 && snapshot.consecutive_failures == 0
    }

    fn forward(&self, source: Source, hub: Hub) -> Option<Forward> {
        let interval = hub.settings().rejection_interval;
        Some(Box::pin(forward(
            self.clone(),
            self.subscribe(),
            source,
            hub,
            interval,
        )))
    }
}

/// Forwards one breaker's events to the hub until the breaker is gone (or
/// the task is aborted), counting rejections into one event per
/// `interval`.
///
/// The breaker itself reports rejections in batches, at most one per
/// 10 ms; at each deadline the forwarder asks it for the ones still
/// pending, so that the last rejections of a burst are reported on time.
async fn forward(
    breaker: Breaker,
    mut stream: EventStream,
    source: Source,
    hub: Hub,
    interval: Duration,
) {
    let mut rejected = Rejections::default();
    let mut deadline = pin!(sleep_until(Instant::now()));
    let mut armed = false;
    let span = interval.max(TAIL);
    loop {
        tokio::select! {
            biased;
            event = stream.recv() => {
                let rejection = matches!(event, Ok(BreakerEvent::Rejected { .. }));
                if !handle(event, &mut rejected, &hub, &source) {
                    return;
                }
                if !rejection {
                    continue;
                }
                if interval.is_zero() {
                    rejected.flush(&hub, &source);
                }
                if !armed {
                    deadline.as_mut().reset(deadline_after(Instant::now(), span));
                    armed = true;
                } else if deadline.deadline() <= Instant::now() {
                    // Under a steady flood the timer branch may not
                    // get its turn: report on time all the same.
                    armed = false;
                    if !collect_pending(&breaker, &mut stream, &mut rejected, &hub, &source) {
                        return;
                    }
                }
            }
            () = &mut deadline, if armed => {
                armed = false;
                if !collect_pending(&breaker, &mut stream, &mut rejected, &hub, &source) {
                    return;
                }
            }
        }
    }
}

/// How soon after a rejection the breaker is asked for the ones it still
/// holds, when the report interval is shorter: the breaker's own span.
const TAIL: Duration = Duration::from_millis(10);

/// Asks the breaker for its pending rejections, takes every event already
/// waiting (that report among them), and publishes the count. False when
/// the breaker is gone.
fn collect_pending(
    breaker: &Breaker,
    stream: &mut EventStream,
    rejected: &mut Rejections,
    hub: &Hub,
    source: &Source,
) -> bool {
    breaker.report_rejections();
    while let Some(event) = stream.try_recv() {
        if !handle(event, rejected, hub, source) {
            return false;
        }
    }
    rejected.flush(hub, source);
    true
}

/// Counts a rejection report, or publishes any other event (after the
/// rejections counted before it). False when the breaker is gone.
fn handle(
    event: Result<BreakerEvent, RecvError>,
    rejected: &mut Rejections,
    hub: &Hub,
    source: &Source,
) -> bool {
    match event {
        Ok(BreakerEvent::Rejected {
            retry_after, count, ..
        }) => {
            rejected.count += count;
            rejected.retry_after = retry_after;
        }
        Ok(event) => {
            // Rejections that came first are reported first.
            rejected.flush(hub, source);
            if let Some(what) = translate(event) {
                hub.publish(source, what);
            }
        }
        Err(RecvError::Lagged(missed)) => {
            rejected.flush(hub, source);
            hub.publish(source, EventKind::Lagged { missed });
        }
        Err(RecvError::Closed) => {
            rejected.flush(hub, source);
            return false;
        }
    }
    true
}

#[derive(Default)]
struct Rejections {
    count: u64,
    retry_after: Option<Duration>,
}

impl Rejections {
    fn flush(&mut self, hub: &Hub, source: &Source) {
        if self.count > 0 {
            hub.publish(
                source,
                EventKind::Rejected {
                    count: std::mem::take(&mut self.count),
                    retry_after: self.retry_after.take(),
                },
            );
        }
    }
}

fn translate(event: BreakerEvent) -> Option<EventKind> {
    Some(match event {
        BreakerEvent::Transition {
            from, to, reason, ..
        } => EventKind::Transition {
            from,
            to,
            reason: reason.to_string(),
        },
        BreakerEvent::ThresholdCrossed { threshold, .. } => {
            let (threshold, value) = match threshold {
                Threshold::FailureRate { rate } => ("failure_rate", percent::round(rate)),
                Threshold::SlowCallRate { rate } => ("slow_call_rate", percent::round(rate)),
                Threshold::ConsecutiveFailures { count } => {
                    ("consecutive_failures", f64::from(count))
                }
                _ => return None,
            };
            EventKind::ThresholdCrossed { threshold, value }
        }
        BreakerEvent::Reset { .. } => EventKind::Reset,
        _ => return None,
    })
}
