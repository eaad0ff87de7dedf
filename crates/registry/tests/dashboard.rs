//! The dashboard in a real headless Chromium: the page lists every breaker
//! with its state, its history and its time in state, and every bulkhead,
//! rate limiter and retry budget with its figures; applies a transition
//! that arrives over `GET /events`; folds a flood of identical events into
//! one line; says it is loading until the first answer and that nothing is
//! registered only when nothing is; and a screenshot of it with a minute's
//! traffic is saved as a test artifact.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_breaker::{Breaker, BreakerConfig, State};
use portcullis_core::Outcome;
use portcullis_registry::{Overrides, Registry, RegistryService, RouteOutcome};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::Service;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A function called with the number of each `GET /health/breakers`
/// request (1, 2, ...) before it is answered: traffic between polls.
type OnPoll = Arc<dyn Fn(u64) + Send + Sync>;

/// How the test server answers, around the service.
#[derive(Clone)]
struct Server {
    /// Told each time an event stream opens.
    connected: Arc<Notify>,
    on_poll: Option<OnPoll>,
    /// Answer every `/health/...` request with 503, as a registry that
    /// cannot be reached through a proxy.
    unreachable: bool,
    /// Serve `GET /health/routes`; without, it answers 404 as a server
    /// without per-route figures does.
    routes: bool,
}

impl Server {
    fn new() -> Self {
        Self {
            connected: Arc::new(Notify::new()),
            on_poll: None,
            unreachable: false,
            routes: false,
        }
    }
}

/// Serves `service` as `server` says.
async fn serve(service: RegistryService, server: Server) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let polls = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service.clone();
            let server = server.clone();
            let polls = polls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let mut service = service.clone();
                    let server = server.clone();
                    let polls = polls.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let refused = if path == "/health/routes" && !server.routes {
                            Some(StatusCode::NOT_FOUND)
                        } else if server.unreachable && path.starts_with("/health") {
                            Some(StatusCode::SERVICE_UNAVAILABLE)
                        } else {
                            None
                        };
                        if let Some(status) = refused {
                            // The service's own JSON error, with the status wanted.
                            let nowhere = http::Request::get("/nowhere")
                                .body(Empty::<Bytes>::new())
                                .unwrap();
                            let mut response = service.call(nowhere).await?;
                            *response.status_mut() = status;
                            return Ok(response);
                        }
                        if path == "/health/breakers"
                            && let Some(on_poll) = &server.on_poll
                        {
                            on_poll(polls.fetch_add(1, Ordering::Relaxed) + 1);
                        }
                        // The subscription is made by `call`, before the response.
                        let response = service.call(request).await;
                        if path == "/events" {
                            server.connected.notify_one();
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

/// Runs headless Chromium on `url` with `extra` flags, for `budget_ms` of
/// the page's virtual time, in the time zone `zone`; returns its stdout.
async fn chromium(url: &str, extra: &[String], budget_ms: u32, zone: &str) -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let profile = std::env::temp_dir().join(format!(
        "portcullis-dashboard-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
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
        ])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .env("TZ", zone)
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

/// The attributes of every `<tag ...>` in `html`; a bare attribute such as
/// `hidden` has the value "".
fn elements(html: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag} ");
    html.match_indices(&open)
        .map(|(start, _)| {
            let rest = &html[start + open.len()..];
            let end = rest.find('>').unwrap();
            let mut attributes = HashMap::new();
            let mut text = rest[..end].trim_end_matches('/');
            loop {
                text = text.trim_start();
                if text.is_empty() {
                    break;
                }
                let name_end = text.find(['=', ' ']).unwrap_or(text.len());
                let name = text[..name_end].to_owned();
                text = &text[name_end..];
                let value = if let Some(quoted) = text.strip_prefix("=\"") {
                    let value_end = quoted.find('"').unwrap();
                    text = &quoted[value_end + 1..];
                    quoted[..value_end].to_owned()
                } else {
                    String::new()
                };
                attributes.insert(name, value);
            }
            attributes
        })
        .collect()
}

/// The element of `html` with the id `id`: its attributes.
fn by_id(html: &str, tag: &str, id: &str) -> HashMap<String, String> {
    elements(html, tag)
        .into_iter()
        .find(|e| e.get("id").map(String::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no <{tag} id=\"{id}\"> in\n{html}"))
}

/// The text inside every `<tag ...>...</tag>` of `html` whose opening tag
/// contains `marker`, with inner tags taken out (no nesting of `tag`).
fn texts(html: &str, tag: &str, marker: &str) -> Vec<String> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    html.match_indices(&open)
        .filter_map(|(start, _)| {
            let rest = &html[start..];
            let head_end = rest.find('>').unwrap();
            if !rest[..head_end].contains(marker) {
                return None;
            }
            let inner = &rest[head_end + 1..rest.find(&close).unwrap()];
            let mut text = String::new();
            let mut in_tag = false;
            for c in inner.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            Some(text.replace("&nbsp;", " ").replace("&amp;", "&"))
        })
        .collect()
}

/// Whether `s` is a 24-hour `HH:MM:SS`.
fn is_clock(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
        && s[..2] < *"24"
        && s[3..5] < *"60"
        && s[6..] < *"60"
}

/// Whether `s` is a time as the page writes it: `HH:MM:SS ZONE` or a range
/// `HH:MM:SS–HH:MM:SS ZONE`, with the zone `UTC`, `UTC+1`, `UTC-3:30`, ...
fn is_time_with_zone(s: &str, zone: &str) -> bool {
    let Some((clocks, z)) = s.trim().rsplit_once(' ') else {
        return false;
    };
    z == zone && clocks.split('\u{2013}').all(is_clock)
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
    let work = registry.limiters().get("work");
    let _in_flight = work.try_acquire(None).unwrap();
    let budget = registry.budgets().get("orders");
    for _ in 0..5 {
        budget.deposit();
    }
    assert!(budget.try_withdraw());
    // A flood: six identical events in a row, the last ones before the
    // page loads, so that it reads them from `/events/recent`.
    for threshold in 60..66 {
        let overrides = Overrides::new().set("failure_rate_threshold", threshold);
        assert_eq!(
            registry.breakers().update_config("inventory", overrides),
            Ok(1)
        );
    }

    let server = Server::new();
    let addr = serve(service(&registry), server.clone()).await;
    let url = format!("http://127.0.0.1:{}/", addr.port());

    // Trip `live` once the page is listening (its first poll is in by
    // then): only the event stream can tell the page before its next
    // refresh, and its history must show the calls and the rejections.
    let tripper = tokio::spawn({
        let live = live.clone();
        let connected = server.connected.clone();
        async move {
            connected.notified().await;
            fail(&live, 2);
            for _ in 0..3 {
                assert!(live.try_acquire().is_err());
            }
        }
    });
    let dom = chromium(&url, &["--dump-dom".to_owned()], 5000, "Asia/Kolkata").await;
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
    let concurrency = rows_with("data-at-limit");
    assert_eq!(concurrency.len(), 1, "one concurrency limiter:\n{dom}");
    assert_eq!(concurrency[0]["data-name"], "work");
    assert_eq!(concurrency[0]["data-at-limit"], "false");
    assert!(
        dom.contains(">1 / 20<"),
        "one call in flight under Gradient2's initial limit:\n{dom}"
    );
    assert!(dom.contains(">gradient2<"), "the algorithm:\n{dom}");
    assert!(
        dom.contains("work: concurrency limiter added"),
        "the log says the kind:\n{dom}"
    );
    let budgets = rows_with("data-spent");
    assert_eq!(budgets.len(), 1, "one budget:\n{dom}");
    assert_eq!(budgets[0]["data-name"], "orders");
    assert!(
        dom.contains(">1 / 0<"),
        "one retry taken, none refused:\n{dom}"
    );

    assert_eq!(by_id(&dom, "body", "page")["data-loaded"], "true");
    assert!(by_id(&dom, "p", "loading").contains_key("hidden"));
    assert!(by_id(&dom, "p", "no-breakers").contains_key("hidden"));
    assert!(
        by_id(&dom, "section", "routes-section").contains_key("hidden"),
        "no routes section while `/health/routes` answers 404:\n{dom}"
    );

    // The history: `live` had no call at the page's first poll, then two
    // failures and three rejections; `payments` none since the page opened.
    let card = |name: &str| card_of(&dom, name);
    let live_card = &elements(card("live"), "article")[0];
    assert_eq!(live_card["data-calls"], "2", "the counts moved");
    assert_eq!(live_card["data-rejected"], "3");
    let calls = spark(card("live"), "calls");
    assert!(
        calls["data-points"].parse::<u32>().unwrap() > 1,
        "several samples: {calls:?}"
    );
    assert!(
        calls["data-max"].parse::<f64>().unwrap() > 0.0,
        "a call rate above zero: {calls:?}"
    );
    let rejections = spark(card("live"), "rejections");
    assert!(
        rejections["data-max"].parse::<f64>().unwrap() > 0.0,
        "a rejection rate above zero: {rejections:?}"
    );
    assert_eq!(spark(card("live"), "failure")["data-last"], "100", "{dom}");
    let quiet = spark(card("payments"), "calls");
    assert_eq!(
        quiet["data-max"], "0",
        "no call through payments: {quiet:?}"
    );
    assert!(card("live").contains(">2</dd>"), "calls since start shown");

    // Time in state: from the transition event the page received.
    let since = &elements(card("live"), "p")[0];
    assert_eq!(since["data-from"], "event", "{since:?}");
    let since_text = &texts(card("live"), "p", "class=\"since\"")[0];
    assert!(since_text.starts_with("OPEN for "), "{since_text}");

    // Transitions carry the state they entered, which colours them.
    let lines = elements(&dom, "li");
    assert!(lines.iter().any(|li| li["data-type"] == "transition"
        && li["data-name"] == "live"
        && li["data-state"] == "OPEN"));
    assert!(lines.iter().any(|li| li["data-type"] == "transition"
        && li["data-name"] == "search"
        && li["data-state"] == "METRICS_ONLY"));

    // The flood is one line with its count.
    let flood: Vec<_> = lines
        .iter()
        .filter(|li| li["data-type"] == "changed" && li["data-name"] == "inventory")
        .collect();
    assert_eq!(flood.len(), 1, "one line for six events:\n{dom}");
    assert_eq!(flood[0]["data-count"], "6");
    assert!(
        texts(&dom, "li", "data-count=\"6\"")[0].contains("inventory: changed\u{d7}6"),
        "{dom}"
    );

    // Every time is 24-hour with the zone (Asia/Kolkata is UTC+5:30, with
    // no summer time).
    let times = texts(&dom, "span", "class=\"when\"");
    assert!(times.len() >= 5, "{dom}");
    for time in &times {
        assert!(is_time_with_zone(time, "UTC+5:30"), "{time:?}");
    }
    let updated = &texts(&dom, "span", "id=\"updated\"")[0];
    let updated = updated.strip_prefix("updated ").unwrap();
    assert!(is_time_with_zone(updated, "UTC+5:30"), "{updated:?}");
}

/// The service as the tests serve it.
fn service(registry: &Registry) -> RegistryService {
    RegistryService::builder(registry.clone())
        // Each stream ends after 2 s and is not reopened within the page's
        // virtual time, so that Chromium's virtual clock can run out.
        .events_max_age(Some(Duration::from_secs(2)))
        .events_retry(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// The HTML of the breaker card named `name`, from `<article` to
/// `</article>`.
fn card_of<'a>(dom: &'a str, name: &str) -> &'a str {
    let marker = format!("data-name=\"{name}\"");
    let start = dom
        .match_indices("<article ")
        .map(|(i, _)| i)
        .find(|&i| dom[i..i + dom[i..].find('>').unwrap()].contains(&marker))
        .unwrap_or_else(|| panic!("no card for {name} in\n{dom}"));
    let end = start + dom[start..].find("</article>").unwrap();
    &dom[start..end]
}

/// The attributes of the sparkline of `series` in `card`.
fn spark(card: &str, series: &str) -> HashMap<String, String> {
    elements(card, "svg")
        .into_iter()
        .find(|svg| svg.get("data-series").map(String::as_str) == Some(series))
        .unwrap_or_else(|| panic!("no {series} sparkline in\n{card}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_says_loading_until_it_has_an_answer_and_empty_only_when_empty() {
    // Before any script runs: the loading line, no "nothing registered".
    let registry = Registry::new();
    let page = service(&registry)
        .call(http::Request::get("/").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let html = String::from_utf8(
        page.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(by_id(&html, "body", "page")["data-loaded"], "false");
    assert!(!by_id(&html, "p", "loading").contains_key("hidden"));
    for empty in [
        "no-breakers",
        "no-bulkheads",
        "no-ratelimiters",
        "no-concurrency-limiters",
        "no-budgets",
    ] {
        assert!(by_id(&html, "p", empty).contains_key("hidden"), "{empty}");
    }
    assert!(by_id(&html, "section", "routes-section").contains_key("hidden"));

    if !chromium_present() {
        return;
    }
    // While the figures cannot be had, it still says so, and never that
    // nothing is registered.
    registry.breakers().get("payments");
    let server = Server {
        unreachable: true,
        ..Server::new()
    };
    let addr = serve(service(&registry), server).await;
    let url = format!("http://127.0.0.1:{}/", addr.port());
    let dom = chromium(&url, &["--dump-dom".to_owned()], 3000, "UTC").await;
    let loading = by_id(&dom, "p", "loading");
    assert!(!loading.contains_key("hidden"), "{dom}");
    assert_eq!(loading["data-failed"], "true");
    assert_eq!(by_id(&dom, "body", "page")["data-loaded"], "false");
    assert!(
        by_id(&dom, "p", "no-breakers").contains_key("hidden"),
        "{dom}"
    );
    assert!(by_id(&dom, "p", "no-bulkheads").contains_key("hidden"));

    // With a registry that is really empty: the empty lines, no loading.
    let addr = serve(service(&Registry::new()), Server::new()).await;
    let url = format!("http://127.0.0.1:{}/", addr.port());
    let dom = chromium(&url, &["--dump-dom".to_owned()], 3000, "UTC").await;
    assert!(by_id(&dom, "p", "loading").contains_key("hidden"), "{dom}");
    assert_eq!(by_id(&dom, "body", "page")["data-loaded"], "true");
    for empty in [
        "no-breakers",
        "no-bulkheads",
        "no-ratelimiters",
        "no-concurrency-limiters",
        "no-budgets",
    ] {
        assert!(
            !by_id(&dom, "p", empty).contains_key("hidden"),
            "{empty}:\n{dom}"
        );
    }
    assert!(elements(&dom, "article").is_empty());
}

/// The text of the cell of class `class` in the row of route `name`.
fn route_cell(dom: &str, name: &str, class: &str) -> String {
    let start = dom
        .find(&format!("<tr data-name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no row of {name}:\n{dom}"));
    let row = &dom[start..start + dom[start..].find("</tr>").unwrap()];
    let cell = row
        .find(&format!("<td class=\"{class}\""))
        .unwrap_or_else(|| panic!("no {class} in {row}"));
    let text = &row[cell + row[cell..].find('>').unwrap() + 1..];
    text[..text.find('<').unwrap()].to_owned()
}

/// Each route's row moves with its traffic: the request rate, the p50 and
/// p99 of the last poll interval computed in the page from the histogram's
/// buckets, and the counts of timeouts and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_each_routes_rate_and_percentiles() {
    if !chromium_present() {
        return;
    }
    let registry = Registry::new();
    registry.breakers().get("payments");
    let search = registry.routes().get("search");
    let checkout = registry.routes().get("checkout");
    checkout.attach_retries(|| {
        let mut metrics = portcullis_retry::RetryMetrics::default();
        metrics.retries = 7;
        metrics
    });
    // Per poll: search answers 18 calls in 20 ms and 2 in 300 ms; checkout
    // one call in 80 ms and one timeout.
    let traffic: OnPoll = Arc::new(move |_| {
        for _ in 0..18 {
            search.record(RouteOutcome::Success, Duration::from_millis(20));
        }
        for _ in 0..2 {
            search.record(RouteOutcome::Success, Duration::from_millis(300));
        }
        checkout.record(RouteOutcome::Success, Duration::from_millis(80));
        checkout.record(RouteOutcome::Timeout, Duration::from_secs(2));
    });
    let server = Server {
        on_poll: Some(traffic),
        routes: true,
        ..Server::new()
    };
    let addr = serve(service(&registry), server).await;
    let url = format!("http://127.0.0.1:{}/", addr.port());
    let dom = chromium(&url, &["--dump-dom".to_owned()], 6000, "UTC").await;

    assert!(
        !by_id(&dom, "section", "routes-section").contains_key("hidden"),
        "{dom}"
    );
    let rate = route_cell(&dom, "search", "rps");
    let per_second: f64 = rate
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a rate, not {rate:?}"));
    assert!(per_second > 0.0, "search's rate moved: {rate}");
    // Over one poll's calls: the median is the 10th of 20, inside the
    // (10 ms, 25 ms] bucket; the 99th percentile inside (250 ms, 500 ms].
    assert_eq!(
        route_cell(&dom, "search", "latency\" data-interval=\"true"),
        "18.3 ms"
    );
    let start = dom.find("<tr data-name=\"search\">").unwrap();
    let row = &dom[start..start + dom[start..].find("</tr>").unwrap()];
    assert!(row.contains(">475 ms<"), "p99 of the interval: {row}");
    let timeouts: u64 = route_cell(&dom, "checkout", "timeouts").parse().unwrap();
    assert!(timeouts >= 1, "checkout's timeouts are counted");
    assert_eq!(route_cell(&dom, "checkout", "retries"), "7");
    assert_eq!(route_cell(&dom, "search", "timeouts"), "0");
}

/// A small deterministic generator, for traffic that looks like traffic.
fn noise(seed: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^ (x >> 33)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_of_the_dashboard_after_a_minute_of_traffic() {
    if !chromium_present() {
        return;
    }
    let registry = Registry::builder()
        .breaker_default(
            BreakerConfig::builder()
                .count_window(50)
                .minimum_calls(10)
                .wait_in_open(Duration::from_secs(600))
                .build()
                .unwrap(),
        )
        .bulkhead_config("db", Overrides::new().set("max_concurrent_calls", 8))
        .build()
        .unwrap();
    let breakers = ["checkout", "inventory", "recommendations", "search"];
    let handles: Vec<Breaker> = breakers
        .iter()
        .map(|name| registry.breakers().get(name))
        .collect();
    let eu = registry.breakers().get_keyed("search", "eu").unwrap();
    eu.metrics_only();
    let ledger = registry.breakers().get("ledger");
    ledger.force_open();
    let db = registry.bulkheads().get("db");
    let _permits: Vec<_> = (0..3).map(|_| db.try_acquire().unwrap()).collect();
    registry.rate_limiters().get("api");
    let routes = [
        registry.routes().get("GET /search"),
        registry.routes().get("POST /checkout"),
    ];
    let budget = registry.budgets().get("orders");
    for _ in 0..40 {
        budget.deposit();
    }

    // Between polls: steady traffic with a few failures, and, after half a
    // minute, `recommendations` failing more and more until it opens; its
    // callers keep knocking.
    let traffic: OnPoll = Arc::new(move |poll| {
        for (i, breaker) in handles.iter().chain([&eu]).enumerate() {
            let r = noise(poll * 31 + i as u64);
            let calls = 8 + (r % 16) + 12 * i as u64;
            // Failures per thousand calls.
            let failing = match breakers.get(i) {
                Some(&"recommendations") if poll > 30 => 100 + 60 * (poll - 30),
                _ => 20 + (noise(r) % 120),
            };
            for call in 0..calls {
                if let Ok(permit) = breaker.try_acquire() {
                    permit.record(if noise(r ^ call) % 1000 < failing {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    });
                }
            }
        }
        let _ = ledger.try_acquire();
        for (i, route) in routes.iter().enumerate() {
            let r = noise(poll * 17 + i as u64);
            for call in 0..(20 + r % 20) {
                let spread = noise(r ^ call) % 1000;
                let (outcome, millis) = match spread {
                    0..=4 => (RouteOutcome::Timeout, 2000),
                    5..=20 => (RouteOutcome::Failure, 40 + spread),
                    21..=60 => (RouteOutcome::Success, 150 + 4 * spread),
                    _ => (RouteOutcome::Success, 8 + spread / 25 + 20 * i as u64),
                };
                route.record(outcome, Duration::from_millis(millis));
            }
        }
    });
    let server = Server {
        on_poll: Some(traffic),
        routes: true,
        ..Server::new()
    };
    let addr = serve(service(&registry), server).await;
    let url = format!("http://127.0.0.1:{}/", addr.port());

    // The screenshot, kept as an artifact of the test run.
    let shot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,960".to_owned(),
        ],
        62_000,
        "Europe/Berlin",
    )
    .await;
    assert_eq!(
        registry.breakers().get("recommendations").state(),
        State::Open,
        "the picture shows one open"
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 10_000,
        "with something on it: {} bytes",
        png.len()
    );
    println!("dashboard screenshot: {}", shot.display());
}
