//! A reqwest client configured by a config file, with one circuit breaker
//! and one bulkhead per upstream host, calling a healthy server and a
//! failing one.
//!
//! Run it with `cargo run --example reqwest_client`. Two axum servers
//! listen on loopback: `healthy` answers 200, `failing` answers 500. One
//! [`HttpClient`] (a `reqwest::Client` behind the `inventory` upstream's
//! stack from [`CONFIG`]) calls both. The upstream says `per_host = true`,
//! so each host gets its own breaker and bulkhead, made with the file's
//! `[defaults.breaker]` and the `api` profile. Each call to the failing
//! host is tried twice (the profile's retry), each attempt recorded by its
//! breaker, which opens after four failed attempts: its later calls are
//! refused before they are sent. The healthy host's breaker stays closed.
//! The example prints every call and the registry's breakers, and exits
//! with an error if that is not what happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use portcullis::breaker::State;
use portcullis::client::HttpClient;
use portcullis::config::Routes;
use portcullis::core::BoxError;
use portcullis::registry::Registry;

/// The client side of an app's config file.
const CONFIG: &str = r#"
# What every profile's breaker inherits: open when half of the last four
# calls failed, and stay open longer than the example runs.
[defaults.breaker]
sliding_window = { type = "count", size = 4 }
minimum_calls = 4
wait_in_open = "30s"

[profiles.api.timeout]            # the whole call, retries included
timeout = "3s"
[profiles.api.retry]              # each call tried at most twice
max_attempts = 2
backoff = { type = "constant", delay = "10ms" }
jitter = { type = "none" }
[profiles.api.breaker]            # inside the retry: sees every attempt
failure_rate_threshold = 50.0
[profiles.api.bulkhead]
max_concurrent_calls = 16
[profiles.api.attempt_timeout]    # each attempt, inside the breaker
timeout = "1s"

[upstreams.inventory]
profile = "api"
per_host = true                   # one breaker and bulkhead per host
"#;

/// What happened, for `main` to print and the tests to check.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// Calls that got a 200 from the healthy host.
    pub(crate) healthy_ok: u64,
    /// Calls that got a 500 from the failing host (after its retry).
    pub(crate) failing_errors: u64,
    /// Calls to the failing host refused by its open breaker.
    pub(crate) failing_rejected: u64,
    /// Requests each server received: healthy, failing.
    pub(crate) received: (u64, u64),
    /// The breakers' keys and states, as the registry lists them: the
    /// healthy host's first.
    pub(crate) breakers: Vec<(String, State)>,
    /// The `minimum_calls` and `failure_rate_threshold` each host's breaker
    /// was made with (from `defaults` and the profile).
    pub(crate) configs: Vec<(u32, f64)>,
}

const ROUNDS: u64 = 6;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let summary = run().await?;
    println!(
        "healthy: {} ok; failing: {} errors, {} refused by its breaker",
        summary.healthy_ok, summary.failing_errors, summary.failing_rejected
    );
    println!(
        "the servers received {} (healthy) and {} (failing) requests",
        summary.received.0, summary.received.1
    );
    for ((key, state), (minimum_calls, threshold)) in summary.breakers.iter().zip(&summary.configs)
    {
        println!(
            "breaker inventory[{key}]: {state:?} (minimum_calls {minimum_calls}, \
             failure_rate_threshold {threshold})"
        );
    }
    check(&summary)
}

/// Serves both hosts and sends [`ROUNDS`] calls to each.
pub(crate) async fn run() -> Result<Summary, BoxError> {
    let healthy_hits = Arc::new(AtomicU64::new(0));
    let failing_hits = Arc::new(AtomicU64::new(0));
    let healthy = serve(healthy_hits.clone(), StatusCode::OK).await?;
    let failing = serve(failing_hits.clone(), StatusCode::INTERNAL_SERVER_ERROR).await?;

    let registry = Registry::new();
    let routes = Routes::from_toml(CONFIG, registry.clone())?;
    // Loopback only: no proxy from the environment.
    let reqwest = reqwest::Client::builder().no_proxy().build()?;
    let inventory = HttpClient::new(&routes, "inventory", reqwest)?;

    let mut summary = Summary::default();
    for round in 1..=ROUNDS {
        for (host, addr) in [("healthy", healthy), ("failing", failing)] {
            match inventory.get(format!("http://{addr}/stock")).send().await {
                Ok(response) => {
                    let status = response.status();
                    println!("round {round} {host:>7}: {status}");
                    match (host, status.is_success()) {
                        ("healthy", true) => summary.healthy_ok += 1,
                        ("failing", false) => summary.failing_errors += 1,
                        _ => return Err(format!("{host} answered {status}").into()),
                    }
                }
                Err(error) => {
                    println!("round {round} {host:>7}: refused: {error}");
                    let refused = portcullis::ErrorKind::of(error.as_ref()).never_sent();
                    if host != "failing" || !refused {
                        return Err(error);
                    }
                    summary.failing_rejected += 1;
                }
            }
        }
    }
    summary.received = (
        healthy_hits.load(Ordering::SeqCst),
        failing_hits.load(Ordering::SeqCst),
    );
    let mut breakers = registry.breakers().list();
    // Sorted by key: the ports decide which host comes first.
    breakers.sort_by_key(|b| b.key.as_deref() != Some(healthy.to_string().as_str()));
    for breaker in breakers {
        let key = breaker.key.unwrap_or_default();
        let config = registry
            .breakers()
            .find("inventory", Some(&key))
            .ok_or("a breaker listed but not found")?
            .config();
        summary
            .configs
            .push((config.minimum_calls(), config.failure_rate_threshold()));
        summary.breakers.push((key, breaker.snapshot.state));
    }
    Ok(summary)
}

/// The breakers did their job: the failing host's opened after four
/// failed attempts (two calls, each tried twice), the healthy host's
/// stayed closed, and both were made with the file's values.
pub(crate) fn check(summary: &Summary) -> Result<(), BoxError> {
    let states: Vec<State> = summary.breakers.iter().map(|(_, s)| *s).collect();
    if summary.healthy_ok != ROUNDS
        || summary.failing_errors != 2
        || summary.failing_rejected != ROUNDS - 2
        || summary.received != (ROUNDS, 4)
        || states != [State::Closed, State::Open]
        || summary.configs != [(4, 50.0), (4, 50.0)]
    {
        return Err(format!("unexpected outcome: {summary:?}").into());
    }
    Ok(())
}

/// An axum server on loopback answering `status` to every request and
/// counting them, until the runtime ends.
async fn serve(hits: Arc<AtomicU64>, status: StatusCode) -> Result<SocketAddr, BoxError> {
    let app: Router = Router::new()
        .route(
            "/stock",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async move { (status, "in stock") }
            }),
        )
        .with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
