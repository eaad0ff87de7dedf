//! The dashboard in a real headless Chromium: the page lists every breaker
//! with its state, and every bulkhead, rate limiter and retry budget with
//! its figures, applies a transition
//! that arrives over `GET /events`, and a screenshot of it is saved as a
//! test artifact.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_breaker::{Breaker, BreakerConfig, State};
use portcullis_core::Outcome;
use portcullis_registry::{Overrides, Registry, RegistryService};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::Service;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Serves `service`, and tells `connected` each time an event stream opens.
async fn serve(service: RegistryService, connected: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service.clone();
            let connected = connected.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let mut service = service.clone();
                    let connected = connected.clone();
                    async move {
                        let events = request.uri().path() == "/events";
                        // The subscription is made by `call`, before the response.
                        let response = service.call(request).await;
                        if events {
                            connected.notify_one();
                        }
                        response
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout.
async fn chromium(url: &str, extra: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "portcullis-dashboard-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let mut command = tokio::process::Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium finished (a bound, not a measurement)")
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The attributes of every `<tag ...>` in `html`.
fn elements(html: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag} ");
    html.match_indices(&open)
        .map(|(start, _)| {
            let rest = &html[start + open.len()..];
            let end = rest.find('>').unwrap();
            let mut attributes = HashMap::new();
            let mut text = &rest[..end];
            while let Some(eq) = text.find("=\"") {
                let name = text[..eq].trim().to_owned();
                let value_end = text[eq + 2..].find('"').unwrap();
                attributes.insert(name, text[eq + 2..eq + 2 + value_end].to_owned());
                text = &text[eq + 2 + value_end + 1..];
            }
            attributes
        })
        .collect()
}

fn fail(breaker: &Breaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
}

fn chromium_present() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing, and under CI the dashboard test must run: install Debian's `chromium` package"
    );
    eprintln!(
        "SKIPPED: {CHROMIUM} is missing (install Debian's `chromium` package to run the dashboard test)"
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_tripped_breaker_open_live_in_a_real_browser() {
    if !chromium_present() {
        return;
    }
    let registry = Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(4)
                .minimum_calls(2)
                .wait_in_open(Duration::from_secs(600))
                .build()
                .unwrap(),
        )
        .bulkhead_config("db", Overrides::new().set("max_concurrent_calls", 2))
        .rate_limiter_config(
            "api",
            // Slow enough that the burst stays spent while the page loads.
            Overrides::new()
                .set("rate", 10)
                .set("period", "1h")
                .set("burst", 3),
        )
        .build()
        .unwrap();
    let payments = registry.breakers().get("payments");
    let inventory = registry.breakers().get("inventory");
    let live = registry.breakers().get("live");
    let eu = registry.breakers().get_keyed("search", "eu").unwrap();
    eu.metrics_only();
    fail(&payments, 2);
    assert_eq!(payments.state(), State::Open);
    inventory.try_acquire().unwrap().record(Outcome::Success);
    let db = registry.bulkheads().get("db");
    let _permit = db.try_acquire().unwrap();
    let tenant = registry.bulkheads().get_keyed("tenants", "acme").unwrap();
    let _first = tenant.try_acquire().unwrap();
    let api = registry.rate_limiters().get("api");
    for _ in 0..3 {
        api.try_acquire().unwrap();
    }
    assert!(api.try_acquire().is_err());
    registry
        .rate_limiters()
        .get_keyed("clients", "10.0.0.1")
        .unwrap();
    let budget = registry.budgets().get("orders");
    for _ in 0..5 {
        budget.deposit();
    }
    assert!(budget.try_withdraw());

    let service = RegistryService::builder(registry.clone())
        // Each stream ends after 2 s and is not reopened within the page's
        // virtual time, so that Chromium's virtual clock can run out.
        .events_max_age(Some(Duration::from_secs(2)))
        .events_retry(Duration::from_secs(600))
        .build()
        .unwrap();
    let connected = Arc::new(Notify::new());
    let addr = serve(service, connected.clone()).await;
    let url = format!("http://127.0.0.1:{}/", addr.port());

    // Trip `live` once the page is listening: only the event stream can
    // tell the page before its next refresh.
    let tripper = tokio::spawn({
        let live = live.clone();
        async move {
            connected.notified().await;
            fail(&live, 2);
        }
    });
    let dom = chromium(&url, &["--dump-dom".to_owned()]).await;
    tripper.await.unwrap();
    assert_eq!(live.state(), State::Open);

    let cards = elements(&dom, "article");
    let state_of = |name: &str| {
        cards
            .iter()
            .find(|card| card.get("data-name").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no card for {name} in\n{dom}"))["data-state"]
            .clone()
    };
    assert_eq!(cards.len(), 4, "{dom}");
    assert_eq!(state_of("payments"), "OPEN", "{dom}");
    assert_eq!(state_of("inventory"), "CLOSED");
    assert_eq!(state_of("live"), "OPEN", "the transition reached the page");
    assert_eq!(state_of("search"), "METRICS_ONLY");
    assert!(
        cards
            .iter()
            .any(|card| card.get("data-key").map(String::as_str) == Some("eu"))
    );
    let live_events: Vec<_> = elements(&dom, "li")
        .into_iter()
        .filter(|li| li.get("data-via").map(String::as_str) == Some("live"))
        .collect();
    assert!(
        live_events
            .iter()
            .any(|li| li["data-type"] == "transition" && li["data-name"] == "live"),
        "the page received the transition over /events:\n{dom}"
    );
    let status = elements(&dom, "span")
        .into_iter()
        .find(|span| span.get("id").map(String::as_str) == Some("status"))
        .unwrap();
    assert_eq!(status["data-status"], "DEGRADED");
    assert!(dom.contains("failure rate 100.0 %"), "the rates are shown");

    let all_rows = elements(&dom, "tr");
    let rows_with = |flag: &str| -> Vec<&HashMap<String, String>> {
        all_rows
            .iter()
            .filter(|row| row.contains_key(flag))
            .collect()
    };
    let rows = rows_with("data-full");
    let row_of = |name: &str| {
        rows.iter()
            .find(|row| row.get("data-name").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no bulkhead row for {name} in\n{dom}"))
    };
    assert_eq!(rows.len(), 2, "{dom}");
    assert_eq!(row_of("db")["data-full"], "false");
    assert_eq!(row_of("tenants")["data-key"], "acme");
    assert!(dom.contains(">1 / 2<"), "in flight of max for db:\n{dom}");
    assert!(
        dom.contains(">1 / 25<"),
        "in flight of max for tenants:\n{dom}"
    );

    let limiters = rows_with("data-exhausted");
    assert_eq!(limiters.len(), 2, "two rate limiters:\n{dom}");
    assert_eq!(limiters[0]["data-name"], "api");
    assert_eq!(limiters[0]["data-exhausted"], "true", "its burst is spent");
    assert_eq!(limiters[1]["data-name"], "clients");
    assert_eq!(limiters[1]["data-key"], "10.0.0.1");
    assert_eq!(limiters[1]["data-exhausted"], "false");
    assert!(dom.contains(">10 per 1h<"), "the limit of api:\n{dom}");
    assert!(
        dom.contains(">100 / 100<"),
        "the default limit's burst, all available:\n{dom}"
    );
    assert!(
        dom.contains("api: rate limiter added"),
        "the log says the kind:\n{dom}"
    );
    let budgets = rows_with("data-spent");
    assert_eq!(budgets.len(), 1, "one budget:\n{dom}");
    assert_eq!(budgets[0]["data-name"], "orders");
    assert!(
        dom.contains(">1 / 0<"),
        "one retry taken, none refused:\n{dom}"
    );

    // The screenshot, kept as an artifact of the test run.
    let shot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".to_owned(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 10_000,
        "with something on it: {} bytes",
        png.len()
    );
    println!("dashboard screenshot: {}", shot.display());
}
