//! Circuit breakers in the registry.

use std::sync::Arc;

use portcullis_breaker::{Breaker, BreakerConfig, BreakerEvent, BreakerSnapshot, State, Threshold};
use portcullis_core::{ConfigError, percent};

use crate::event::EventKind;
use crate::hub::{Hub, Reporter};
use crate::kind::{Attachment, Instance, InstanceKind, Source};
use crate::store::{Store, Stores};

impl Instance for Breaker {
    type Config = BreakerConfig;
    type Snapshot = BreakerSnapshot;

    const KIND: InstanceKind = InstanceKind::Breaker;

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.breakers
    }

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

    fn attach(&self, source: Source, hub: Hub) -> Option<Attachment> {
        let breaker = self.downgrade();
        // The reporter is made when a rejection first waits for the ticker:
        // a breaker that never rejects costs no allocation for it.
        let reporter = move || -> Reporter {
            let breaker = breaker.clone();
            Arc::new(move || {
                if let Some(breaker) = breaker.upgrade() {
                    breaker.report_rejections();
                }
            })
        };
        let hook = self.on_event(move |event| match event {
            BreakerEvent::Rejected {
                retry_after, count, ..
            } => hub.rejected(&source, *count, *retry_after, &reporter),
            event => {
                if let Some(what) = translate(event) {
                    hub.publish(&source, what);
                }
            }
        });
        Some(Box::new(hook))
    }
}

fn translate(event: &BreakerEvent) -> Option<EventKind> {
    Some(match event {
        BreakerEvent::Transition {
            from, to, reason, ..
        } => EventKind::Transition {
            from: *from,
            to: *to,
            reason: reason.to_string(),
        },
        BreakerEvent::ThresholdCrossed { threshold, .. } => {
            let (threshold, value) = match threshold {
                Threshold::FailureRate { rate } => ("failure_rate", percent::round(*rate)),
                Threshold::SlowCallRate { rate } => ("slow_call_rate", percent::round(*rate)),
                Threshold::ConsecutiveFailures { count } => {
                    ("consecutive_failures", f64::from(*count))
                }
                _ => return None,
            };
            EventKind::ThresholdCrossed { threshold, value }
        }
        BreakerEvent::Reset { .. } => EventKind::Reset,
        _ => return None,
    })
}
