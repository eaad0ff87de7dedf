//! Circuit breakers in the registry.

use std::pin::pin;
use std::time::Duration;

use portcullis_breaker::event::RecvError;
use portcullis_breaker::{
    Breaker, BreakerConfig, BreakerEvent, BreakerSnapshot, EventStream, State, Threshold,
};
use portcullis_core::ConfigError;
use tokio::time::{Instant, sleep_until};

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

    fn evictable(&self) -> bool {
        self.state() == State::Closed
    }

    fn forward(&self, source: Source, hub: Hub) -> Option<Forward> {
        let interval = hub.settings().rejection_interval;
        Some(Box::pin(forward(self.subscribe(), source, hub, interval)))
    }
}

/// Forwards one breaker's events to the hub until the breaker is gone (or
/// the task is aborted), counting rejections into one event per
/// `interval`.
async fn forward(mut stream: EventStream, source: Source, hub: Hub, interval: Duration) {
    let mut rejected = Rejections::default();
    let mut deadline = pin!(sleep_until(Instant::now()));
    let mut armed = false;
    loop {
        tokio::select! {
            biased;
            event = stream.recv() => match event {
                Ok(BreakerEvent::Rejected { retry_after, count, .. }) => {
                    rejected.count += count;
                    rejected.retry_after = retry_after;
                    if interval.is_zero() {
                        rejected.flush(&hub, &source);
                    } else if !armed {
                        deadline.as_mut().reset(Instant::now() + interval);
                        armed = true;
                    } else if deadline.deadline() <= Instant::now() {
                        // Under a steady flood the timer branch may not
                        // get its turn: report on time all the same.
                        armed = false;
                        rejected.flush(&hub, &source);
                    }
                }
                Ok(event) => {
                    // Rejections that came first are reported first.
                    rejected.flush(&hub, &source);
                    if let Some(what) = translate(event) {
                        hub.publish(&source, what);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    rejected.flush(&hub, &source);
                    hub.publish(&source, EventKind::Lagged { missed });
                }
                Err(RecvError::Closed) => {
                    rejected.flush(&hub, &source);
                    return;
                }
            },
            () = &mut deadline, if armed => {
                armed = false;
                rejected.flush(&hub, &source);
            }
        }
    }
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
                Threshold::FailureRate { rate } => ("failure_rate", f64::from(rate)),
                Threshold::SlowCallRate { rate } => ("slow_call_rate", f64::from(rate)),
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
