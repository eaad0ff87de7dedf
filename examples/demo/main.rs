//! Portcullis in front of an upstream that misbehaves, beside a gateway
//! without it.
//!
//! Run it with `cargo run --release --example demo`; it needs nothing
//! installed and finishes by itself in about 25 seconds. Everything runs in
//! this process, on loopback:
//!
//! - **the upstream**, an axum service behind a `ChaosLayer`, plays a seeded
//!   script: calm (3 s), a slow tail (4 s: one call in 20 takes 200 ms),
//!   latency spikes (4 s: a fifth of the calls take 200–800 ms), an error burst (4 s: 30 % of the calls answer `503`), an
//!   outage (4 s: every call answers `503`), recovery (5 s). It counts the
//!   calls it receives from each gateway.
//! - **the bare gateway** forwards every request as it is, with a pooled
//!   hyper client.
//! - **the Portcullis gateway** forwards with a stack per route, in the
//!   order of the design (fallback → total timeout → retry → breaker →
//!   bulkhead → attempt timeout). Reads (`GET /items/{id}`) get a 300 ms
//!   deadline, up to 3 attempts of 100 ms each within a retry budget (20 %
//!   of the requests plus 5 a second), a hedge (a second attempt beside one
//!   that takes over 25 ms, within a budget of its own: 10 % plus 5 a
//!   second), a breaker, a bulkhead and the last
//!   good response as a fallback. Writes (`POST /orders`) get a breaker, a
//!   bulkhead and a 250 ms deadline, and no retry: an order is not
//!   idempotent. Its breakers and bulkheads live in a registry, served
//!   under `/admin` (the dashboard is `/admin/`).
//!
//! The same load goes through both gateways at the same time: 100 requests
//! a second for 24 seconds (2,400 each; one in five a write, the reads over
//! 20 items), request `i` sent to both at the same moment, at most 64 in
//! flight per gateway. Both see the same phases of the upstream at the same
//! moments.
//!
//! # Reading the table
//!
//! - **useful answers**: requests answered `2xx`, fresh from the upstream
//!   or from a fallback; the rest are errors, counted by kind: fast
//!   rejections (an open breaker or a full bulkhead, `503` in well under a
//!   millisecond), timeouts (`504`), and failures (the upstream's `503`
//!   passed on, or a `502`). Lost requests got no answer at all; there
//!   should be none.
//! - **fallbacks served**: stale answers (`x-portcullis-fallback: stale`),
//!   the last good response to the same read.
//! - **upstream calls** are counted by the upstream itself. **Spared** is
//!   requests minus upstream calls: what an open breaker kept off the
//!   upstream, less what the retries added. The bare gateway spares nothing.
//! - **latency** is measured by the client, from the moment each request
//!   was due until its answer was read.
//!
//! Under the table, the slow-tail phase's reads are shown on their own: the
//! p50 and p99 of each gateway, and the hedges sent. There the upstream is
//! healthy but for its tail, and the hedge is what cuts the p99 (from the
//! 200 ms of the slow calls to about the hedge delay).
//!
//! The Portcullis gateway is **better** when it gave more useful answers
//! *and* a lower p99 latency, overall and on the slow tail's reads, and
//! lost no request; the demo exits non-zero if it is not. Breaker transitions are listed under the table, with
//! their time since the start.
//!
//! With `--serve` the demo keeps running after the table: the script
//! plays again and again with a lighter load (it says so when it starts
//! looping), and the dashboard URL is printed at the start, where the
//! breakers are seen opening and closing. Ctrl-C ends it. `--port N` puts
//! the Portcullis gateway (and so the dashboard) on `127.0.0.1:N` instead
//! of a free port.

mod gateway;
mod load;
mod upstream;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis::breaker::{BreakerEvent, State};
use portcullis::core::BoxError;
use portcullis::core::events::RecvError;
use tokio::time::{Instant, interval};

use crate::gateway::{Gateway, Resilience};
use crate::load::{Lane, Outcome, Plan, Tally, drive};
use crate::upstream::{Timeline, Upstream};

/// The breaker transitions seen, with their time since the start, until
/// the table takes them (`None` from then on).
type Transitions = Arc<Mutex<Option<Vec<(Duration, String)>>>>;

/// What the command line asked for.
#[derive(Debug, Default)]
struct Args {
    /// Keep serving after the table (`--serve`).
    serve: bool,
    /// The Portcullis gateway's port (`--port N`); 0 for a free one.
    port: u16,
}

const USAGE: &str = "usage: demo [--serve] [--port N]";

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--serve" => parsed.serve = true,
                "--port" => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("--port needs a number\n{USAGE}"))?;
                    parsed.port = value.parse().map_err(|_| {
                        format!("--port expects a port number (0 to 65535), got {value:?}\n{USAGE}")
                    })?;
                }
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(parsed)
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode, BoxError> {
    let Args { serve, port } = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return Ok(ExitCode::from(2));
        }
    };
    let timeline = Timeline::demo();
    let plan = Plan {
        requests: (timeline.length().as_secs_f64() * 100.0) as u64,
        rate: 100.0,
        concurrency: 64,
        write_every: 5,
        items: 20,
    };

    let upstream = Upstream::start(timeline.seed).await?;
    let bare = Gateway::bare(upstream.addr).await?;
    let (resilient, resilience) = Gateway::resilient(upstream.addr, port).await?;
    let lanes = [
        Lane::new(bare.addr, &plan),
        Lane::new(resilient.addr, &plan),
    ];

    println!(
        "upstream on {}, bare gateway on {}, Portcullis gateway on {}",
        upstream.addr, bare.addr, resilient.addr
    );
    if serve {
        println!("dashboard: http://{}/admin/", resilient.addr);
    }
    println!(
        "{} requests to each gateway, {} a second, through {}\n",
        plan.requests,
        plan.rate,
        timeline
            .phases
            .iter()
            .map(|phase| phase.name)
            .collect::<Vec<_>>()
            .join(" → ")
    );

    let start = Instant::now();
    let transitions = watch_breakers(&resilience, start, serve);
    let script = {
        let (timeline, chaos) = (timeline.clone(), upstream.chaos.clone());
        tokio::spawn(async move { timeline.play(&chaos, start).await })
    };
    let progress = tokio::spawn(progress(
        timeline.clone(),
        plan,
        lanes.clone(),
        resilience.clone(),
        start,
    ));
    drive(plan, &lanes, start).await;
    progress.abort();
    script.await??;
    let took = start.elapsed();
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }

    let tallies = [lanes[0].take(), lanes[1].take()];
    let calls = [
        upstream.calls_from("bare"),
        upstream.calls_from("portcullis"),
    ];
    let tail = timeline
        .window("slow tail")
        .ok_or("the script has a slow tail")?;
    let better = report(&plan, &tallies, calls, &resilience, took, &tail);
    let seen = transitions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    for (at, line) in seen.unwrap_or_default() {
        println!("  {:>5.1} s  {line}", at.as_secs_f64());
    }
    println!();
    println!("{}", better.1);

    if serve {
        let steady = Plan {
            requests: (timeline.length().as_secs_f64() * 50.0) as u64,
            rate: 50.0,
            ..plan
        };
        println!(
            "\nstill serving: the script now plays again every {:.0} s, with {} requests a second \
             to each gateway, until Ctrl-C; the dashboard is http://{}/admin/",
            timeline.length().as_secs_f64(),
            steady.rate,
            resilient.addr
        );
        tokio::select! {
            result = rounds(&timeline, steady, &upstream, &lanes) => result?,
            _ = tokio::signal::ctrl_c() => println!("\nbye"),
        }
    }
    Ok(if better.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Plays the script and its load again and again (`--serve`).
async fn rounds(
    timeline: &Timeline,
    plan: Plan,
    upstream: &Upstream,
    lanes: &[Arc<Lane>],
) -> Result<(), BoxError> {
    loop {
        let round = Instant::now();
        let (played, ()) = tokio::join!(
            timeline.play(&upstream.chaos, round),
            drive(plan, lanes, round)
        );
        played?;
        for lane in lanes {
            lane.take();
        }
    }
}

/// Records the transitions of the registry's breakers until the table
/// takes them; then prints them as they happen if `live` (`--serve`).
fn watch_breakers(resilience: &Resilience, start: Instant, live: bool) -> Transitions {
    let seen: Transitions = Arc::new(Mutex::new(Some(Vec::new())));
    for name in ["upstream-read", "upstream-write"] {
        let mut events = resilience.registry.breakers().get(name).subscribe();
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(BreakerEvent::Transition {
                        name,
                        from,
                        to,
                        reason,
                        ..
                    }) => {
                        let at = start.elapsed();
                        let line = format!("{name}: {from:?} → {to:?}: {reason}");
                        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                        match seen.as_mut() {
                            Some(seen) => seen.push((at, line)),
                            None if live => println!("  {:>5.1} s  {line}", at.as_secs_f64()),
                            None => {}
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
    }
    seen
}

/// A one-line progress bar on stderr (a line per phase when stderr is not
/// a terminal).
async fn progress(
    timeline: Timeline,
    plan: Plan,
    lanes: [Arc<Lane>; 2],
    resilience: Resilience,
    start: Instant,
) {
    let terminal = std::io::stderr().is_terminal();
    let total = timeline.length();
    let read = resilience.registry.breakers().get("upstream-read");
    let mut tick = interval(Duration::from_millis(100));
    let mut last_phase = "";
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let phase = timeline.phase_at(elapsed).map_or("draining", |p| p.name);
        let state = match read.state() {
            State::Closed => "closed",
            State::Open => "OPEN",
            State::HalfOpen => "half-open",
            _ => "manual",
        };
        if terminal {
            let width = 24;
            let filled = ((elapsed.as_secs_f64() / total.as_secs_f64()) * width as f64)
                .min(width as f64) as usize;
            eprint!(
                "\r\x1b[K[{}{}] {:>4.1} s  {:<14}  done: bare {:>4}/{}  portcullis {:>4}/{}  read breaker {state}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                elapsed.as_secs_f64(),
                phase,
                lanes[0].done(),
                plan.requests,
                lanes[1].done(),
                plan.requests,
            );
            let _ = std::io::stderr().flush();
        } else if phase != last_phase {
            eprintln!(
                "{:>5.1} s  {phase} (sent {} to each gateway)",
                elapsed.as_secs_f64(),
                lanes[0].sent().max(lanes[1].sent())
            );
        }
        last_phase = phase;
    }
}

/// Prints the side-by-side table; returns whether the Portcullis gateway
/// did better, and the verdict line.
fn report(
    plan: &Plan,
    tallies: &[Tally; 2],
    calls: [u64; 2],
    resilience: &Resilience,
    took: Duration,
    tail: &std::ops::Range<Duration>,
) -> (bool, String) {
    let [bare, ours] = tallies;
    let pct = |tally: &Tally| 100.0 * tally.useful() as f64 / tally.total().max(1) as f64;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let row = |label: &str, a: String, b: String| println!("{label:<30}{a:>14}{b:>14}");
    let count = |outcome| {
        (
            bare.count(outcome).to_string(),
            ours.count(outcome).to_string(),
        )
    };

    println!("after {:.1} s:\n", took.as_secs_f64());
    row("", "bare".into(), "portcullis".into());
    row(
        "requests",
        bare.total().to_string(),
        ours.total().to_string(),
    );
    row(
        "useful answers (2xx)",
        format!("{:.1} %", pct(bare)),
        format!("{:.1} %", pct(ours)),
    );
    let (a, b) = count(Outcome::Fresh);
    row("  fresh from the upstream", a, b);
    let (a, b) = count(Outcome::Fallback);
    row("  fallbacks served (stale)", a, b);
    let errors = |t: &Tally| (t.total() - t.useful()).to_string();
    row("errors", errors(bare), errors(ours));
    for (label, outcome) in [
        ("  fast rejections (503)", Outcome::Rejected),
        ("  timeouts (504)", Outcome::TimedOut),
        ("  upstream failures", Outcome::Failed),
        ("  lost (no answer)", Outcome::Lost),
    ] {
        let (a, b) = count(outcome);
        row(label, a, b);
    }
    row("upstream calls", calls[0].to_string(), calls[1].to_string());
    let spared = |t: &Tally, calls: u64| (t.total() as i64 - calls as i64).to_string();
    row(
        "calls the upstream was spared",
        spared(bare, calls[0]),
        spared(ours, calls[1]),
    );
    for (label, q) in [
        ("latency p50", 0.5),
        ("latency p99", 0.99),
        ("latency max", 1.0),
    ] {
        row(label, ms(bare.quantile(q)), ms(ours.quantile(q)));
    }
    let retry = resilience.read_retry.metrics();
    println!(
        "\nPortcullis read route: {} retries ({} budget left), {} fallbacks; {} of {} requests per gateway were writes",
        retry.retries,
        resilience.budget.available(),
        resilience.fallbacks.total(),
        plan.requests / plan.write_every.max(1),
        plan.requests,
    );

    println!(
        "\nslow tail ({:.0}–{:.0} s, one upstream call in 20 takes 200 ms), reads only:\n",
        tail.start.as_secs_f64(),
        tail.end.as_secs_f64()
    );
    row("", "bare".into(), "portcullis".into());
    for (label, q) in [("latency p50", 0.5), ("latency p99", 0.99)] {
        row(
            label,
            ms(bare.read_quantile(q, tail)),
            ms(ours.read_quantile(q, tail)),
        );
    }
    let hedge = resilience.read_hedge.metrics();
    println!(
        "Portcullis read route, whole run: {} hedges sent after {} ms, {} answered first, {} denied by the hedge budget",
        hedge.hedges,
        crate::gateway::HEDGE_DELAY.as_millis(),
        hedge.hedges_won,
        hedge.budget_denied,
    );
    println!("\nbreaker transitions:");

    let more_useful = ours.useful() > bare.useful();
    let lower_p99 = ours.quantile(0.99) < bare.quantile(0.99);
    let tail_p99 = (
        ours.read_quantile(0.99, tail),
        bare.read_quantile(0.99, tail),
    );
    let none_lost = ours.count(Outcome::Lost) == 0;
    let better = more_useful && lower_p99 && tail_p99.0 < tail_p99.1 && none_lost;
    let verdict = format!(
        "verdict: {} — better means more useful answers ({} vs {}) and a lower p99 ({} vs {}; on the slow tail's reads {} vs {}), with no request lost ({} lost)",
        if better {
            "Portcullis did better"
        } else {
            "Portcullis did NOT do better"
        },
        ours.useful(),
        bare.useful(),
        ms(ours.quantile(0.99)),
        ms(bare.quantile(0.99)),
        ms(tail_p99.0),
        ms(tail_p99.1),
        ours.count(Outcome::Lost),
    );
    (better, verdict)
}
