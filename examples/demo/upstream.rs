//! The chaos upstream: a small axum service behind a `ChaosLayer`, driven
//! by a scripted timeline, that counts the calls it receives per gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use portcullis::chaos::{Chaos, ChaosConfig, ChaosLayer};
use portcullis::core::BoxError;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tower::util::MapRequestLayer;

/// The header a gateway adds to every call it makes, with its name.
pub(crate) const GATEWAY_HEADER: &str = "x-demo-gateway";

/// The gateways the upstream counts calls for.
pub(crate) const GATEWAYS: [&str; 2] = ["bare", "portcullis"];

/// What the upstream does during one phase of the timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Phase {
    /// Its name, as printed.
    pub(crate) name: &'static str,
    /// How long it lasts.
    pub(crate) length: Duration,
    /// The share of calls delayed, and the range of the delay.
    pub(crate) latency: (f64, Duration, Duration),
    /// The share of calls answered with an injected `503`.
    pub(crate) error_rate: f64,
    /// Every call is answered with a `503` at once.
    pub(crate) outage: bool,
}

/// A scripted sequence of phases, replayed from the same seed.
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    /// The phases, in order.
    pub(crate) phases: Vec<Phase>,
    /// The seed of the fault sequence, applied at the start of each run.
    pub(crate) seed: u64,
}

/// A running upstream.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Where it listens (loopback).
    pub(crate) addr: SocketAddr,
    /// The switchboard of its faults.
    pub(crate) chaos: Chaos,
    counts: Arc<Counts>,
    server: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Calls per gateway, in the order of [`GATEWAYS`]; the last slot
    /// counts calls without a known gateway.
    calls: [AtomicU64; 3],
    orders: AtomicU64,
}

const CALM: Phase = Phase {
    name: "calm",
    length: Duration::ZERO,
    latency: (0.0, Duration::ZERO, Duration::ZERO),
    error_rate: 0.0,
    outage: false,
};

impl Phase {
    /// A phase with no fault, lasting `length`.
    pub(crate) const fn calm(name: &'static str, length: Duration) -> Self {
        Self {
            name,
            length,
            ..CALM
        }
    }

    /// Delays `rate` of the calls by `min..=max`.
    pub(crate) const fn latency(
        name: &'static str,
        length: Duration,
        rate: f64,
        min: Duration,
        max: Duration,
    ) -> Self {
        Self {
            name,
            length,
            latency: (rate, min, max),
            ..CALM
        }
    }

    /// Answers `rate` of the calls with a `503`.
    pub(crate) const fn errors(name: &'static str, length: Duration, rate: f64) -> Self {
        Self {
            name,
            length,
            error_rate: rate,
            ..CALM
        }
    }

    /// Answers every call with a `503`, at once.
    pub(crate) const fn outage(name: &'static str, length: Duration) -> Self {
        Self {
            name,
            length,
            outage: true,
            ..CALM
        }
    }

    /// Sets `chaos` to this phase.
    pub(crate) fn apply(&self, chaos: &Chaos) -> Result<(), BoxError> {
        let (rate, min, max) = self.latency;
        chaos.set_latency_range(min, max)?;
        chaos.set_latency_rate(rate)?;
        chaos.set_response_rate(self.error_rate)?;
        if self.outage {
            chaos.outage_for(self.length);
        } else {
            chaos.end_outage();
        }
        Ok(())
    }
}

impl Timeline {
    /// The demo's script: calm, a slow tail, latency spikes, an error
    /// burst, an outage, recovery.
    pub(crate) fn demo() -> Self {
        let ms = Duration::from_millis;
        Self {
            phases: vec![
                Phase::calm("calm", ms(3_000)),
                Phase::latency("slow tail", ms(4_000), 0.05, ms(200), ms(200)),
                Phase::latency("latency spikes", ms(4_000), 0.2, ms(200), ms(800)),
                Phase::errors("error burst", ms(4_000), 0.3),
                Phase::outage("outage", ms(4_000)),
                Phase::calm("recovery", ms(5_000)),
            ],
            seed: 0x5EED,
        }
    }

    /// The length of one run of the script.
    pub(crate) fn length(&self) -> Duration {
        self.phases.iter().map(|phase| phase.length).sum()
    }

    /// When the phase named `name` starts and ends, since the start of a
    /// run.
    pub(crate) fn window(&self, name: &str) -> Option<std::ops::Range<Duration>> {
        let mut start = Duration::ZERO;
        for phase in &self.phases {
            if phase.name == name {
                return Some(start..start + phase.length);
            }
            start += phase.length;
        }
        None
    }

    /// The phase at `elapsed` since the start of a run, if still running.
    pub(crate) fn phase_at(&self, elapsed: Duration) -> Option<&Phase> {
        let mut end = Duration::ZERO;
        self.phases.iter().find(|phase| {
            end += phase.length;
            elapsed < end
        })
    }

    /// Plays the script once on `chaos`, from `start`; calm at the end.
    pub(crate) async fn play(&self, chaos: &Chaos, start: Instant) -> Result<(), BoxError> {
        chaos.reseed(self.seed);
        let mut at = start;
        for phase in &self.phases {
            sleep_until(at).await;
            phase.apply(chaos)?;
            at += phase.length;
        }
        sleep_until(at).await;
        CALM.apply(chaos)
    }
}

impl Upstream {
    /// Starts an upstream on `127.0.0.1:0`, calm, with `seed`.
    pub(crate) async fn start(seed: u64) -> Result<Self, BoxError> {
        let config = ChaosConfig::builder().seed(seed).build()?;
        let chaos = Chaos::from_config("upstream", config)?;
        let counts = Arc::new(Counts::default());

        let counting = {
            let counts = counts.clone();
            move |request: Request| {
                let gateway = request
                    .headers()
                    .get(GATEWAY_HEADER)
                    .and_then(|value| value.to_str().ok());
                let slot = GATEWAYS
                    .iter()
                    .position(|name| Some(*name) == gateway)
                    .unwrap_or(GATEWAYS.len());
                counts.calls[slot].fetch_add(1, Ordering::Relaxed);
                request
            }
        };
        let orders = counts.clone();
        let app = Router::new()
            .route("/items/{id}", get(item))
            .route(
                "/orders",
                post(move || {
                    let n = orders.orders.fetch_add(1, Ordering::Relaxed) + 1;
                    async move {
                        sleep(Duration::from_millis(2)).await;
                        (StatusCode::CREATED, format!("order {n} accepted\n"))
                    }
                }),
            )
            // Injected faults are 503s, so the router stays `Infallible`;
            // an outage answers every call with one, at once.
            .layer(
                ChaosLayer::new(chaos.clone())
                    .without_errors()
                    .respond_with_status(StatusCode::SERVICE_UNAVAILABLE),
            )
            // Outermost: every call that reaches the upstream is counted,
            // the ones its chaos fails included.
            .layer(MapRequestLayer::new(counting))
            .with_state(());

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            chaos,
            counts,
            server,
        })
    }

    /// The calls received from `gateway` so far.
    pub(crate) fn calls_from(&self, gateway: &str) -> u64 {
        let slot = GATEWAYS
            .iter()
            .position(|name| *name == gateway)
            .unwrap_or(GATEWAYS.len());
        self.counts.calls[slot].load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn item(Path(id): Path<u32>) -> String {
    // The work of a real lookup.
    sleep(Duration::from_millis(2)).await;
    format!("item {id}: 12 in stock\n")
}
