//! The fleet breaker: a local [`Breaker`] that every instance runs as
//! today, and a sync task that, once a period, shares its counts with the
//! fleet through Redis and applies the fleet's state to it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_breaker::{Breaker, BreakerEvent, EventHook, State};
use portcullis_core::ConfigError;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::Serialize;
use tokio::time::Instant;

use crate::breaker_config::{FleetBreakerConfig, Quorum};
use crate::client::{self, SyncClient, SyncFigures};
use crate::metrics::bump;
use crate::script;

/// A circuit breaker shared by the instances of a service through Redis:
/// a cheap, cloneable handle.
///
/// Each instance keeps deciding on its own window with its local
/// [`Breaker`] ([`breaker`](Self::breaker): use it in a
/// [`CircuitBreakerLayer`](portcullis_breaker::CircuitBreakerLayer) or
/// register it in a registry); no call waits on Redis. A task on the tokio
/// runtime syncs with the fleet once a period and acts on the local
/// breaker: it opens it when the fleet opens, elects one prober for the
/// whole fleet, and spreads manual states. The task stops when the last
/// handle is dropped. See the [crate docs](crate#the-fleet-breaker) for
/// the protocol.
#[derive(Clone)]
pub struct FleetBreaker {
    shared: Arc<Shared>,
}

/// The state the fleet is in, as the state key in Redis holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FleetState {
    /// Each instance decides on its own window.
    Closed,
    /// The fleet opened: every instance rejects until the open time is
    /// over, then one elected instance probes.
    Open,
    /// Forced open on some instance: every instance rejects.
    ForcedOpen,
    /// Disabled on some instance: every instance lets every call through.
    Disabled,
    /// Metrics-only on some instance: every instance records and never
    /// rejects.
    MetricsOnly,
}

/// What the last sync read about the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FleetView {
    /// The fleet's state.
    pub state: FleetState,
    /// The state's generation: one more at every fleet transition.
    pub generation: u64,
    /// The fleet's calls over the window (since the last close).
    pub calls: u64,
    /// Its failed calls.
    pub failures: u64,
    /// The instances that see the failure rate over the threshold.
    pub seeing: u64,
    /// The instances that synced within the last three periods.
    pub live: u64,
    /// Whether this instance is the elected prober.
    pub prober: bool,
}

/// A fleet breaker's figures at one moment, as plain data. The counts run
/// from its creation and never go back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FleetBreakerSnapshot {
    /// The breaker's name (its key in Redis, after the prefix).
    pub name: String,
    /// This instance's id.
    pub instance: String,
    /// The local breaker's state.
    pub state: State,
    /// The fleet as the last answered sync read it; `None` before one.
    pub fleet: Option<FleetView>,
    /// How its syncs with Redis went.
    pub redis: SyncFigures,
    /// Sync rounds that Redis did not answer: the instance ran on its own.
    pub unsynced_rounds: u64,
    /// Fleet opens that this instance's sync decided.
    pub fleet_opens: u64,
    /// Elections this instance won.
    pub elections: u64,
    /// Probe results it published.
    pub probes_published: u64,
    /// Manual states (and their clearing) it published.
    pub manual_published: u64,
    /// Fleet states it applied to its local breaker.
    pub applied: u64,
}

struct Shared {
    instance: Arc<str>,
    config: FleetBreakerConfig,
    breaker: Breaker,
    sync: SyncClient,
    script: Script,
    keys: Keys,
    counters: Counters,
    view: Mutex<Option<FleetView>>,
    /// Set while the task applies the fleet's state, so that its own
    /// transitions do not wake it again.
    applying: Arc<AtomicBool>,
    _hook: EventHook,
}

/// The Redis keys of one fleet breaker.
struct Keys {
    state: String,
    prober: String,
    live: String,
    sees: String,
    buckets: String,
}

#[derive(Debug, Default)]
struct Counters {
    unsynced: AtomicU64,
    opens: AtomicU64,
    elections: AtomicU64,
    probes: AtomicU64,
    manual: AtomicU64,
    applied: AtomicU64,
}

/// What the task remembers between rounds.
#[derive(Debug, Default)]
struct Memory {
    /// The local breaker's cumulative recorded, failed and rejected calls
    /// at the last round.
    recorded: u64,
    failed: u64,
    rejected: u64,
    /// This instance's calls and failures per round, over the window.
    rounds: VecDeque<(Instant, u64, u64)>,
    /// The fleet state last applied: its generation and state.
    known: Option<(u64, FleetState)>,
    /// The generation in which this instance was elected and went
    /// half-open. While it is half-open in that generation, every sync
    /// refreshes its `prober` key; a sync that finds the key held by
    /// another instance holds this one open again (see `apply`).
    probing: Option<u64>,
}

/// The reply of the sync script.
type Reply = (String, u64, i64, u8, u8, u8, u64, u64, u64, u64);

impl FleetState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "closed" => Self::Closed,
            "open" => Self::Open,
            "forced_open" => Self::ForcedOpen,
            "disabled" => Self::Disabled,
            "metrics_only" => Self::MetricsOnly,
            _ => return None,
        })
    }

    /// The manual fleet state of a local manual state.
    fn manual(state: State) -> Option<Self> {
        match state {
            State::ForcedOpen => Some(Self::ForcedOpen),
            State::Disabled => Some(Self::Disabled),
            State::MetricsOnly => Some(Self::MetricsOnly),
            _ => None,
        }
    }

    fn is_manual(self) -> bool {
        matches!(self, Self::ForcedOpen | Self::Disabled | Self::MetricsOnly)
    }
}

impl FleetBreaker {
    /// Shares `breaker` with the fleet on the Redis behind `redis`, as an
    /// instance with a random id. The breaker's name (after the configured
    /// prefix) names its keys: instances with the same name are one fleet.
    ///
    /// Must be called inside a tokio runtime: it spawns the sync task.
    pub fn new(
        breaker: Breaker,
        config: FleetBreakerConfig,
        redis: ConnectionManager,
    ) -> Result<Self, ConfigError> {
        Self::make(breaker, config, redis, None)
    }

    /// Like [`new`](Self::new), as the instance `instance` (unique in the
    /// fleet, e.g. the host name; not empty).
    pub fn with_instance(
        breaker: Breaker,
        config: FleetBreakerConfig,
        redis: ConnectionManager,
        instance: impl Into<Arc<str>>,
    ) -> Result<Self, ConfigError> {
        Self::make(breaker, config, redis, Some(instance.into()))
    }

    fn make(
        breaker: Breaker,
        config: FleetBreakerConfig,
        redis: ConnectionManager,
        instance: Option<Arc<str>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let instance = client::instance_id(instance)?;
        let base = format!("{}{}:", config.key_prefix(), breaker.name());
        let sync = SyncClient::new(
            breaker.name(),
            redis,
            config.redis_breaker(),
            config.timeout(),
        )?;
        let applying = Arc::new(AtomicBool::new(false));
        let hook = breaker.on_event({
            let (wake, applying) = (sync.wake.clone(), applying.clone());
            move |event| {
                if matches!(
                    event,
                    BreakerEvent::Transition { .. } | BreakerEvent::Reset { .. }
                ) && !applying.load(Ordering::Relaxed)
                {
                    wake.notify_one();
                }
            }
        });
        let shared = Arc::new(Shared {
            instance,
            keys: Keys {
                state: format!("{base}state"),
                prober: format!("{base}prober"),
                live: format!("{base}live"),
                sees: format!("{base}sees"),
                buckets: format!("{base}b:"),
            },
            config,
            breaker,
            sync,
            script: script::fleet_breaker(),
            counters: Counters::default(),
            view: Mutex::new(None),
            applying,
            _hook: hook,
        });
        shared.sync.spawn(
            &shared,
            shared.config.period(),
            Memory::default(),
            |shared: Arc<Shared>, mut memory| async move {
                shared.round(&mut memory).await;
                memory
            },
        );
        Ok(Self { shared })
    }

    /// A Redis connection for fleet breakers (the one of
    /// [`FleetLimiter::connection`](crate::FleetLimiter::connection)).
    pub fn connection(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
        client::connection(client)
    }

    /// The local breaker: admit calls with it (or a layer built on it),
    /// steer it by hand (a manual state spreads to the fleet).
    pub fn breaker(&self) -> &Breaker {
        &self.shared.breaker
    }

    /// This instance's id in the fleet.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Its configuration.
    pub fn config(&self) -> &FleetBreakerConfig {
        &self.shared.config
    }

    /// The breaker around the Redis client.
    pub fn redis_breaker(&self) -> &Breaker {
        self.shared.sync.breaker()
    }

    /// Its figures now.
    pub fn snapshot(&self) -> FleetBreakerSnapshot {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FleetBreakerSnapshot {
            name: shared.breaker.name().to_owned(),
            instance: shared.instance.to_string(),
            state: shared.breaker.state(),
            fleet: shared
                .view
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            redis: shared.sync.figures(),
            unsynced_rounds: read(&counters.unsynced),
            fleet_opens: read(&counters.opens),
            elections: read(&counters.elections),
            probes_published: read(&counters.probes),
            manual_published: read(&counters.manual),
            applied: read(&counters.applied),
        }
    }
}

impl Shared {
    /// One sync: report, read, apply.
    async fn round(&self, memory: &mut Memory) {
        let breaker = &self.breaker;
        let config = &self.config;
        let before = breaker.state();
        let now = Instant::now();

        // This instance's calls since the last round, and over the window.
        let counters = breaker.counters();
        let recorded = counters.successful_calls + counters.failed_calls;
        let mut calls = recorded.saturating_sub(memory.recorded);
        let mut failures = counters.failed_calls.saturating_sub(memory.failed);
        let rejected = counters.not_permitted_calls.saturating_sub(memory.rejected);
        (memory.recorded, memory.failed, memory.rejected) = (
            recorded,
            counters.failed_calls,
            counters.not_permitted_calls,
        );
        // Rejected on a trip of its own (the fleet closed, no manual
        // state): its callers saw those calls fail, so they count as
        // failures. Otherwise an instance that tripped would stop
        // reporting while the others go on reporting successes, and
        // dilute the fleet's rate below the threshold.
        let fleet_closed = matches!(memory.known, None | Some((_, FleetState::Closed)));
        if fleet_closed && FleetState::manual(before).is_none() {
            calls += rejected;
            failures += rejected;
        }
        memory.rounds.push_back((now, calls, failures));
        while memory
            .rounds
            .front()
            .is_some_and(|(at, ..)| now.duration_since(*at) >= config.window())
        {
            memory.rounds.pop_front();
        }
        let (own_calls, own_failures) = memory
            .rounds
            .iter()
            .fold((0, 0), |(c, f), (_, calls, failures)| {
                (c + calls, f + failures)
            });
        let sees = own_calls >= u64::from(config.instance_minimum_calls())
            && own_failures * 10_000 >= u64::from(config.threshold_bp()) * own_calls;

        // A manual state set here, or cleared here, since the last round.
        let known = memory.known.map(|(_, state)| state);
        let manual = match (FleetState::manual(before), known) {
            (Some(local), known) if known != Some(local) => Some(local),
            (None, Some(known)) if known.is_manual() => Some(FleetState::Closed),
            _ => None,
        };

        // The elected prober's result, or that its probe is in flight.
        let mut reopen = Duration::ZERO;
        let probe = match (memory.probing, memory.known) {
            (Some(probing), Some((generation, _))) if probing == generation => match before {
                State::Closed => "ok",
                State::Open => {
                    // At least the configured wait: a re-open whose wait
                    // reads as nothing left would let the same sync elect
                    // again at once, and probe again into the failure.
                    let left = breaker.snapshot().retry_after.unwrap_or_default();
                    reopen = left.max(breaker.config().wait_in_open());
                    "fail"
                }
                // Half-open, whether a probe is in flight or none came
                // yet: the role is refreshed at every sync, so that it does
                // not expire under sparse traffic and elect a second
                // prober while this one is still half-open.
                State::HalfOpen => "probing",
                _ => "",
            },
            _ => "",
        };

        let (quorum_count, quorum_fraction) = match config.quorum() {
            Quorum::Instances(count) => (count, 0),
            Quorum::Fraction(fraction) => (0, (fraction * 1e6).round() as u64),
        };
        let mut invocation = self.script.key(&self.keys.live);
        invocation
            .key(&self.keys.state)
            .key(&self.keys.prober)
            .key(&self.keys.sees)
            .arg(&*self.instance)
            .arg(millis(config.period() * 3))
            .arg(memory.known.map_or(-1, |(generation, _)| generation as i64))
            .arg(calls)
            .arg(failures)
            .arg(u8::from(sees))
            .arg(manual.map_or("", FleetState::as_str))
            .arg(probe)
            .arg(memory.probing.unwrap_or(0))
            .arg(millis(reopen))
            .arg(millis(breaker.config().wait_in_open()))
            .arg(config.window().as_secs())
            .arg(config.threshold_bp())
            .arg(config.minimum_calls())
            .arg(quorum_count)
            .arg(quorum_fraction)
            .arg(millis(config.prober_ttl()))
            .arg(&self.keys.buckets);
        let reply: Option<Reply> = self.sync.call(&invocation, breaker.name()).await;
        let Some((
            state,
            generation,
            left_ms,
            prober,
            elected,
            opened,
            fleet_calls,
            fleet_failures,
            seeing,
            live,
        )) = reply
        else {
            // Redis away: the local breaker decides alone, as without a
            // fleet.
            bump(&self.counters.unsynced);
            return;
        };
        if manual.is_some() {
            bump(&self.counters.manual);
        }
        if probe == "ok" || probe == "fail" {
            bump(&self.counters.probes);
        }
        if opened == 1 {
            bump(&self.counters.opens);
            tracing::info!(breaker = %breaker.name(), instance = %self.instance, "fleet breaker opened");
        }
        if elected == 1 {
            bump(&self.counters.elections);
            tracing::info!(breaker = %breaker.name(), instance = %self.instance, "elected half-open prober");
        }
        let Some(state) = FleetState::parse(&state) else {
            tracing::warn!(breaker = %breaker.name(), state, "fleet breaker: unknown state in redis");
            return;
        };
        *self.view.lock().unwrap_or_else(PoisonError::into_inner) = Some(FleetView {
            state,
            generation,
            calls: fleet_calls,
            failures: fleet_failures,
            seeing,
            live,
            prober: prober == 1,
        });
        if breaker.state() != before {
            // Changed by hand (or by a call) meanwhile: the next round
            // reports it rather than overwrite it. If this round published
            // a manual state, Redis holds it now under a new generation:
            // remember that, so that the next round compares the local
            // state with it and publishes the difference (a reset right
            // after a force clears the force fleet-wide).
            if manual.is_some() {
                memory.known = Some((generation, state));
                memory.probing = None;
            }
            return;
        }
        let changed = memory.known.map(|(known, _)| known) != Some(generation);
        if changed {
            // Calls of an earlier fleet state see nothing of this one.
            memory.rounds.clear();
        }
        self.applying.store(true, Ordering::Relaxed);
        let applied = self.apply(memory, before, state, changed, prober == 1, left_ms);
        self.applying.store(false, Ordering::Relaxed);
        if applied {
            bump(&self.counters.applied);
        }
        memory.known = Some((generation, state));
        if !(state == FleetState::Open && prober == 1) {
            memory.probing = None;
        } else {
            memory.probing = Some(generation);
        }
    }

    /// Brings the local breaker, found in `local`, to the fleet's `state`;
    /// whether it changed it.
    fn apply(
        &self,
        memory: &Memory,
        local: State,
        state: FleetState,
        changed: bool,
        prober: bool,
        left_ms: i64,
    ) -> bool {
        let breaker = &self.breaker;
        match state {
            // A new closed generation (a probe succeeded, a manual state was
            // cleared) closes the instances that were held open or under
            // the manual state; otherwise each instance decides alone.
            FleetState::Closed => {
                if changed && memory.known.is_some() && local != State::Closed {
                    breaker.close();
                    return true;
                }
                false
            }
            FleetState::Open if prober => {
                if local == State::HalfOpen || FleetState::manual(local).is_some() {
                    return false;
                }
                if local == State::Closed {
                    let _ = breaker.open_for(Duration::ZERO);
                }
                breaker.half_open().is_ok()
            }
            // Held open past the fleet's open time by three periods, and
            // again while another instance probes: extended whenever less
            // than two periods past it are left, so that a late sync never
            // lets this one probe on its own.
            FleetState::Open => {
                if FleetState::manual(local).is_some() {
                    return false;
                }
                let period = self.config.period();
                let remaining = Duration::from_millis(left_ms.max(0) as u64);
                let left = match local {
                    State::Open => breaker.snapshot().retry_after.unwrap_or_default(),
                    _ => Duration::ZERO,
                };
                if local != State::Open || left < remaining + period * 2 {
                    return breaker.open_for(remaining + period * 3).is_ok();
                }
                false
            }
            manual => {
                if FleetState::manual(local) == Some(manual) {
                    return false;
                }
                match manual {
                    FleetState::ForcedOpen => breaker.force_open(),
                    FleetState::Disabled => breaker.disable(),
                    _ => breaker.metrics_only(),
                }
                true
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for FleetBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &*self.shared;
        f.debug_struct("FleetBreaker")
            .field("name", &shared.breaker.name())
            .field("instance", &shared.instance)
            .field("state", &shared.breaker.state())
            .field("config", &shared.config)
            .finish_non_exhaustive()
    }
}
