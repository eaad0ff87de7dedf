//! Loopback HTTP load: the same hyper handler served bare and behind the
//! standard server route stack, driven by the same load generator.
//!
//! ```sh
//! cargo run --release -p portcullis-benches --example loopback            # about 55 s
//! cargo run --release -p portcullis-benches --example loopback -- --quick # about 1 s
//! cargo run --release -p portcullis-benches --example loopback -- --help
//! ```
//!
//! Two HTTP/1.1 servers listen on ephemeral ports of 127.0.0.1, on one
//! thread of their own (a current-thread tokio runtime). Both serve the same
//! handler, which answers `200` with a fixed body; one serves it bare, the
//! other behind `standard_server_route` with its documented defaults but for
//! the rate limit, which is 10⁹ a second with a burst of 10⁹ so that it never
//! rejects at this load (a rejection would be a `429`, which fails the run).
//!
//! The load generator runs on the main thread (another current-thread
//! runtime): a fixed number of keep-alive connections to each server, opened
//! once, each sending one request after the other (a closed loop). After a
//! warm-up of each server, a run is a number of pairs of segments, one
//! segment against each server, in ABBA order (bare then stacked, stacked
//! then bare, ...) so that a drift of the machine's speed falls on both
//! alike; the idle server's connections wait. A segment has a short
//! unmeasured lead-in, then measures for a fixed time: a request counts if
//! its response ends inside the measured window. Every response is checked
//! (status and body); the requests that end during a warm-up or lead-in, or
//! after the window, are checked and counted apart; the servers count the
//! requests they handle, and the run fails unless every request sent was
//! handled and answered correctly. A segment measures at most
//! `--max-requests` requests (the latencies are kept to sort them); the run
//! fails if that bound is reached.
//!
//! Each pair gives ratios stacked / bare of requests per second, of the
//! latencies, and of the CPU time per request of the servers' thread and of
//! the load generator's thread (from the kernel's accounting of each
//! thread, where Linux has it); the summary gives their median over the
//! pairs with the quartiles and the extremes, and a table per server with
//! every measured request pooled.
//!
//! `--only bare` or `--only stacked` drives one server alone, for a
//! profiler: under `valgrind --tool=callgrind --separate-threads=yes`, the
//! servers' thread's instructions over two runs of different lengths give
//! the instructions per request of each server.

use std::convert::Infallible;
use std::error::Error;
use std::fmt::Write as _;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use portcullis::preset::standard_server_route;
use portcullis::ratelimit::RateLimitConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};
use tower::{Layer, Service};

/// What the handler answers.
const BODY: &[u8] = b"hello, world";

/// The rate limit of the stacked route: far above any loopback load.
const UNLIMITED: u32 = 1_000_000_000;

/// Requests handled by each server, counted by the handler.
static HANDLED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Bare = 0,
    Stacked = 1,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Stacked => "stacked",
        }
    }
}

#[derive(Debug)]
struct Options {
    pairs: usize,
    warmup: Duration,
    settle: Duration,
    duration: Duration,
    connections: usize,
    max_requests: usize,
    only: Option<Variant>,
}

const USAGE: &str = "\
loopback: the same hyper handler, bare and behind standard_server_route

options:
  --pairs N          pairs of segments, one per server, ABBA order (default 40)
  --duration SECS    measured time of a segment (default 0.5)
  --settle SECS      unmeasured lead-in of a segment (default 0.05)
  --warmup SECS      warm-up of each server before the first pair (default 1.0)
  --connections N    keep-alive connections to each server (default 8)
  --max-requests N   bound on the requests measured in a segment (default 2000000)
  --only bare|stacked  drive one server only (its segments, no ratios), e.g. to profile it
  --quick            1 pair, 0.1 s warm-up, 0.2 s measured: a smoke check
";

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Self {
            pairs: 40,
            warmup: Duration::from_secs(1),
            settle: Duration::from_millis(50),
            duration: Duration::from_millis(500),
            connections: 8,
            max_requests: 2_000_000,
            only: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{arg}: a value is missing"))
            };
            match arg.as_str() {
                "--pairs" => options.pairs = parse_count(&value()?)?,
                "--duration" => options.duration = parse_seconds(&value()?)?,
                "--warmup" => options.warmup = parse_seconds(&value()?)?,
                "--settle" => options.settle = parse_seconds(&value()?)?,
                "--connections" => options.connections = parse_count(&value()?)?,
                "--max-requests" => options.max_requests = parse_count(&value()?)?,
                "--only" => {
                    options.only = Some(match value()?.as_str() {
                        "bare" => Variant::Bare,
                        "stacked" => Variant::Stacked,
                        other => return Err(format!("--only: bare or stacked, not {other}")),
                    });
                }
                "--quick" => {
                    options.pairs = 1;
                    options.warmup = Duration::from_millis(100);
                    options.settle = Duration::from_millis(20);
                    options.duration = Duration::from_millis(200);
                }
                "-h" | "--help" => return Err(String::new()),
                _ => return Err(format!("unknown argument: {arg}")),
            }
        }
        if options.duration.is_zero() {
            return Err("--duration: must be greater than zero".into());
        }
        if options.max_requests < options.connections {
            return Err("--max-requests: must be at least --connections".into());
        }
        Ok(options)
    }
}

fn parse_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("not a positive whole number: {value}")),
    }
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| *d <= Duration::from_secs(600))
        .ok_or_else(|| format!("not a number of seconds in [0, 600]: {value}"))
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            if message.is_empty() {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loopback: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn Error + Send + Sync>;

/// The handler both servers serve: `200` with [`BODY`], counted.
#[derive(Clone, Copy, Debug)]
struct Handler {
    handled: &'static AtomicU64,
}

impl Handler {
    fn new(variant: Variant) -> Self {
        Self {
            handled: &HANDLED[variant as usize],
        }
    }
}

impl<B> Service<Request<B>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        self.handled.fetch_add(1, Ordering::Relaxed);
        ready(Ok(Response::new(Full::new(Bytes::from_static(BODY)))))
    }
}

/// The servers' thread: where to reach each server and the thread's CPU
/// accounting, and how to stop it.
struct Servers {
    bare: SocketAddr,
    stacked: SocketAddr,
    accounting: Option<PathBuf>,
    stop: oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

fn start_servers() -> Result<Servers, BoxError> {
    let bare = std::net::TcpListener::bind("127.0.0.1:0")?;
    let stacked = std::net::TcpListener::bind("127.0.0.1:0")?;
    bare.set_nonblocking(true)?;
    stacked.set_nonblocking(true)?;
    let addresses = (bare.local_addr()?, stacked.local_addr()?);
    // The documented defaults, but for a rate limit that never rejects here.
    let route = standard_server_route("loopback")
        .rate_limit(
            RateLimitConfig::per_second(UNLIMITED)
                .burst(UNLIMITED)
                .build()?,
        )
        .build()?;
    let (stop, stopped) = oneshot::channel();
    let (started, accounting) = std::sync::mpsc::channel();
    let thread = thread::Builder::new()
        .name("servers".into())
        .spawn(move || {
            let _ = started.send(thread_accounting());
            let runtime = runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let bare = TcpListener::from_std(bare).expect("a listener");
                let stacked = TcpListener::from_std(stacked).expect("a listener");
                tokio::spawn(serve(bare, Handler::new(Variant::Bare)));
                tokio::spawn(serve(stacked, route.layer(Handler::new(Variant::Stacked))));
                let _ = stopped.await;
            });
        })?;
    Ok(Servers {
        bare: addresses.0,
        stacked: addresses.1,
        accounting: accounting.recv()?,
        stop,
        thread,
    })
}

/// Serves HTTP/1.1 on every connection of `listener`.
async fn serve<S, B>(listener: TcpListener, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                eprintln!("server connection: {error}");
            }
        });
    }
}

/// The kernel's accounting of the calling thread, where Linux has it: its
/// folder in `/proc`.
fn thread_accounting() -> Option<PathBuf> {
    let task = std::fs::read_link("/proc/thread-self").ok()?;
    let path = Path::new("/proc").join(task);
    read_cpu(&path).map(|_| path)
}

/// The CPU time of a thread so far.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    /// On the CPU, in nanoseconds (`schedstat`).
    nanos: u64,
    /// In user space and in the kernel, in clock ticks of 10 ms (`stat`).
    user_ticks: u64,
    system_ticks: u64,
}

impl std::ops::Sub for Cpu {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_sub(earlier.nanos),
            user_ticks: self.user_ticks.saturating_sub(earlier.user_ticks),
            system_ticks: self.system_ticks.saturating_sub(earlier.system_ticks),
        }
    }
}

impl std::ops::Add for Cpu {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            nanos: self.nanos + other.nanos,
            user_ticks: self.user_ticks + other.user_ticks,
            system_ticks: self.system_ticks + other.system_ticks,
        }
    }
}

fn read_cpu(task: &Path) -> Option<Cpu> {
    let schedstat = std::fs::read_to_string(task.join("schedstat")).ok()?;
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    // The fields after the command, which is in parentheses: the state is
    // the third field of the line, utime the 14th and stime the 15th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Cpu {
        nanos: schedstat.split_whitespace().next()?.parse().ok()?,
        user_ticks: fields.get(11)?.parse().ok()?,
        system_ticks: fields.get(12)?.parse().ok()?,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One segment against one server.
#[derive(Debug)]
struct Segment {
    variant: Variant,
    /// Latencies of the requests that ended in the window, in nanoseconds.
    latencies: Vec<u32>,
    /// Checked requests that ended during the warm-up.
    warm: u64,
    /// Checked requests that ended after the window.
    drained: u64,
    /// Requests the server handled during the window (sampled at its ends).
    server_handled: u64,
    /// The servers' thread's CPU time during the window.
    server_cpu: Option<Cpu>,
    /// The load generator's thread's CPU time during the window.
    client_cpu: Option<Cpu>,
    duration: Duration,
    bound_hit: bool,
}

impl Segment {
    fn counted(&self) -> u64 {
        self.latencies.len() as u64
    }

    fn rps(&self) -> f64 {
        self.counted() as f64 / self.duration.as_secs_f64()
    }

    fn server_cpu_per_request(&self) -> Option<f64> {
        self.server_cpu
            .filter(|_| self.server_handled > 0)
            .map(|cpu| cpu.nanos as f64 / self.server_handled as f64)
    }

    fn client_cpu_per_request(&self) -> Option<f64> {
        self.client_cpu
            .filter(|_| self.counted() > 0)
            .map(|cpu| cpu.nanos as f64 / self.counted() as f64)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// The load generator's keep-alive connections to one server.
struct Pool {
    variant: Variant,
    authority: String,
    senders: Vec<Sender>,
}

impl Pool {
    async fn open(
        variant: Variant,
        address: SocketAddr,
        connections: usize,
    ) -> Result<Self, BoxError> {
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("client connection: {error}");
                }
            });
            senders.push(sender);
        }
        Ok(Self {
            variant,
            authority: address.to_string(),
            senders,
        })
    }
}

/// What one connection did in a segment.
struct Driven {
    sender: Sender,
    latencies: Vec<u32>,
    warm: u64,
    drained: u64,
    bound_hit: bool,
}

/// Sends requests one after the other on `sender` until `end`, checking
/// every response.
async fn drive(
    sender: Sender,
    authority: String,
    warm_end: Instant,
    end: Instant,
    cap: usize,
) -> Result<Driven, BoxError> {
    let mut driven = Driven {
        sender,
        latencies: Vec::with_capacity(cap.min(1 << 16)),
        warm: 0,
        drained: 0,
        bound_hit: false,
    };
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        if driven.latencies.len() == cap {
            driven.bound_hit = true;
            break;
        }
        let request = Request::get("/")
            .header(http::header::HOST, authority.as_str())
            .body(Empty::new())?;
        driven.sender.ready().await?;
        let response = driven.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let done = Instant::now();
        if status != StatusCode::OK || body != BODY {
            return Err(format!("unexpected response: {status}, body {body:?}").into());
        }
        if done < warm_end {
            driven.warm += 1;
        } else if done < end {
            let nanos = (done - sent).as_nanos();
            driven
                .latencies
                .push(u32::try_from(nanos).unwrap_or(u32::MAX));
        } else {
            driven.drained += 1;
        }
    }
    Ok(driven)
}

/// Drives every connection of `pool` for `warmup`, then measures for
/// `duration`; the connections stay open for the next segment.
async fn segment(
    pool: &mut Pool,
    warmup: Duration,
    duration: Duration,
    max_requests: usize,
    server_accounting: Option<&Path>,
    client_accounting: Option<&Path>,
) -> Result<Segment, BoxError> {
    let cap = max_requests / pool.senders.len();
    let warm_end = Instant::now() + warmup;
    let end = warm_end + duration;
    let tasks: Vec<_> = pool
        .senders
        .drain(..)
        .map(|sender| tokio::spawn(drive(sender, pool.authority.clone(), warm_end, end, cap)))
        .collect();

    let handled = &HANDLED[pool.variant as usize];
    let cpu = |path: Option<&Path>| path.and_then(read_cpu);
    sleep_until(warm_end).await;
    let start = (
        handled.load(Ordering::Relaxed),
        cpu(server_accounting),
        cpu(client_accounting),
    );
    sleep_until(end).await;
    let stop = (
        handled.load(Ordering::Relaxed),
        cpu(server_accounting),
        cpu(client_accounting),
    );

    let mut result = Segment {
        variant: pool.variant,
        latencies: Vec::new(),
        warm: 0,
        drained: 0,
        server_handled: stop.0 - start.0,
        server_cpu: start.1.zip(stop.1).map(|(a, b)| b - a),
        client_cpu: start.2.zip(stop.2).map(|(a, b)| b - a),
        duration,
        bound_hit: false,
    };
    for task in tasks {
        let driven = task.await??;
        result.latencies.extend_from_slice(&driven.latencies);
        result.warm += driven.warm;
        result.drained += driven.drained;
        result.bound_hit |= driven.bound_hit;
        pool.senders.push(driven.sender);
    }
    result.latencies.sort_unstable();
    Ok(result)
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(values: &[u32]) -> f64 {
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64
}

fn micros(nanos: u32) -> f64 {
    f64::from(nanos) / 1_000.0
}

/// Median, quartiles, minimum and maximum of some values.
struct Spread {
    median: f64,
    q1: f64,
    q3: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        // Linear interpolation between the closest ranks.
        let at = |q: f64| {
            let position = q * (values.len() - 1) as f64;
            let low = position.floor() as usize;
            let high = position.ceil() as usize;
            values[low] + (values[high] - values[low]) * (position - low as f64)
        };
        Some(Self {
            median: at(0.5),
            q1: at(0.25),
            q3: at(0.75),
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

fn run(options: &Options) -> Result<(), BoxError> {
    let servers = start_servers()?;
    let client_accounting = thread_accounting();
    let runtime = runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let threads = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "loopback: {:?} warm-up, then {} pairs of {:?} unmeasured + {:?} measured, {} connections, {} CPUs, load average {}",
        options.warmup,
        options.pairs,
        options.settle,
        options.duration,
        options.connections,
        threads,
        load_average(),
    );

    let (mut pools, warmed) = runtime.block_on(async {
        let mut pools = [
            Pool::open(Variant::Bare, servers.bare, options.connections).await?,
            Pool::open(Variant::Stacked, servers.stacked, options.connections).await?,
        ];
        // Warm both servers and every connection up, unmeasured.
        let mut warmed = [0_u64; 2];
        for pool in &mut pools {
            if options.only.is_some_and(|only| only != pool.variant) {
                continue;
            }
            let segment = segment(
                pool,
                options.warmup,
                Duration::ZERO,
                options.max_requests,
                None,
                None,
            )
            .await?;
            warmed[pool.variant as usize] = segment.warm + segment.drained;
        }
        Ok::<_, BoxError>((pools, warmed))
    })?;

    let mut segments = Vec::with_capacity(options.pairs * 2);
    let mut sent = warmed;
    for pair in 0..options.pairs {
        let order = if pair % 2 == 0 {
            [Variant::Bare, Variant::Stacked]
        } else {
            [Variant::Stacked, Variant::Bare]
        };
        for variant in order {
            if options.only.is_some_and(|only| only != variant) {
                continue;
            }
            let segment = runtime.block_on(segment(
                &mut pools[variant as usize],
                options.settle,
                options.duration,
                options.max_requests,
                servers.accounting.as_deref(),
                client_accounting.as_deref(),
            ))?;
            if segment.bound_hit {
                return Err(format!(
                    "the bound of {} requests a segment was reached: raise --max-requests",
                    options.max_requests
                )
                .into());
            }
            sent[variant as usize] += segment.counted() + segment.warm + segment.drained;
            println!(
                "pair {:>2} {:<7} {:>8.0} req/s  mean {:>6.1} µs  p50 {:>6.1} µs  p99 {:>6.1} µs  max {:>8.1} µs  server {:>6} ns/req  client {:>6} ns/req",
                pair + 1,
                variant.name(),
                segment.rps(),
                mean(&segment.latencies) / 1_000.0,
                micros(percentile(&segment.latencies, 0.50)),
                micros(percentile(&segment.latencies, 0.99)),
                micros(percentile(&segment.latencies, 1.0)),
                segment
                    .server_cpu_per_request()
                    .map_or("-".into(), |ns| format!("{ns:.0}")),
                segment
                    .client_cpu_per_request()
                    .map_or("-".into(), |ns| format!("{ns:.0}")),
            );
            segments.push(segment);
        }
    }
    drop(pools);
    drop(runtime);
    let _ = servers.stop.send(());
    let _ = servers.thread.join();

    // Nothing lost: every request sent was handled, and answered correctly
    // (`drive` checked every response).
    for variant in [Variant::Bare, Variant::Stacked] {
        let handled = HANDLED[variant as usize].load(Ordering::Relaxed);
        if handled != sent[variant as usize] {
            return Err(format!(
                "{}: {} requests answered and checked, but {handled} handled",
                variant.name(),
                sent[variant as usize]
            )
            .into());
        }
    }

    print!("{}", summary(options, &segments, &sent));
    println!("load average at the end: {}", load_average());
    Ok(())
}

fn summary(options: &Options, segments: &[Segment], sent: &[u64; 2]) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| server | requests measured | req/s | mean | p50 | p99 | max | server CPU per request |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for variant in [Variant::Bare, Variant::Stacked] {
        let of: Vec<_> = segments.iter().filter(|s| s.variant == variant).collect();
        if of.is_empty() {
            continue;
        }
        let mut latencies: Vec<u32> = of
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        let seconds: f64 = of.iter().map(|s| s.duration.as_secs_f64()).sum();
        let handled: u64 = of.iter().map(|s| s.server_handled).sum();
        let cpu = of
            .iter()
            .map(|s| s.server_cpu)
            .try_fold(Cpu::default(), |sum, cpu| Some(sum + cpu?));
        let cpu = match cpu {
            Some(cpu) if handled > 0 => {
                let per_request = |ns: f64| ns / handled as f64 / 1_000.0;
                let ticks = (cpu.user_ticks + cpu.system_ticks).max(1) as f64;
                let nanos = cpu.nanos as f64;
                format!(
                    "{:.2} µs ({:.2} user, {:.2} kernel)",
                    per_request(nanos),
                    per_request(nanos * cpu.user_ticks as f64 / ticks),
                    per_request(nanos * cpu.system_ticks as f64 / ticks),
                )
            }
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {cpu} |",
            variant.name(),
            latencies.len(),
            latencies.len() as f64 / seconds,
            mean(&latencies) / 1_000.0,
            micros(percentile(&latencies, 0.50)),
            micros(percentile(&latencies, 0.99)),
            micros(percentile(&latencies, 1.0)),
        );
    }

    // One ratio per pair: stacked / bare.
    let pairs: Vec<(&Segment, &Segment)> = segments
        .chunks(2)
        .filter(|_| options.only.is_none())
        .filter_map(|pair| match pair {
            [a, b] if a.variant == Variant::Bare => Some((a, b)),
            [a, b] => Some((b, a)),
            _ => None,
        })
        .collect();
    let ratio = |f: &dyn Fn(&Segment) -> Option<f64>| {
        Spread::of(
            pairs
                .iter()
                .filter_map(|(bare, stacked)| Some(f(stacked)? / f(bare)?))
                .collect(),
        )
    };
    let rows: [(&str, Option<Spread>, &str); 6] = [
        ("req/s", ratio(&|s| Some(s.rps())), "at least 0.98"),
        ("mean latency", ratio(&|s| Some(mean(&s.latencies))), ""),
        (
            "p50",
            ratio(&|s| Some(f64::from(percentile(&s.latencies, 0.50)))),
            "",
        ),
        (
            "p99",
            ratio(&|s| Some(f64::from(percentile(&s.latencies, 0.99)))),
            "at most 1.05",
        ),
        (
            "server CPU per request",
            ratio(&|s| s.server_cpu_per_request()),
            "",
        ),
        (
            "client CPU per request",
            ratio(&|s| s.client_cpu_per_request()),
            "",
        ),
    ];
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| stacked / bare, over {} pairs | median | quartiles | min – max | goal |",
        pairs.len()
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for (name, spread, goal) in rows {
        if let Some(s) = spread.filter(|_| !pairs.is_empty()) {
            let _ = writeln!(
                out,
                "| {name} | {:.3} | {:.3} – {:.3} | {:.3} – {:.3} | {goal} |",
                s.median, s.q1, s.q3, s.min, s.max
            );
        }
    }
    let warm: u64 = segments.iter().map(|s| s.warm).sum();
    let drained: u64 = segments.iter().map(|s| s.drained).sum();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "every response checked: {} bare, {} stacked, all 200 with the body; \
         {warm} during warm-ups and {drained} after a window, not measured; \
         each server handled exactly what was sent",
        sent[0], sent[1],
    );
    out
}
