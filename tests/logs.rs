//! What the logs say: every event of a config-built stack runs in a span
//! naming its route or upstream, a timeout logs, and a fallback names its
//! answer in words, and a per-host breaker names its host. Captured with a
//! minimal `tracing` subscriber.
#![cfg(not(loom))]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use portcullis::config::Routes;
use portcullis::registry::Registry;
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event as `span fields > ... : message fields`.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<String>>>,
    stack: Arc<Mutex<Vec<usize>>>,
    events: Arc<Mutex<Vec<String>>>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields(attributes.metadata().name().to_owned());
        attributes.record(&mut fields);
        let mut spans = self.spans.lock().unwrap();
        spans.push(fields.0);
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let spans = self.spans.lock().unwrap();
        let context: Vec<&str> = self
            .stack
            .lock()
            .unwrap()
            .iter()
            .map(|id| spans[id - 1].as_str())
            .collect();
        self.events
            .lock()
            .unwrap()
            .push(format!("{}: {}", context.join(" > "), fields.0));
    }

    fn enter(&self, id: &Id) {
        self.stack.lock().unwrap().push(id.into_u64() as usize);
    }

    fn exit(&self, _: &Id) {
        self.stack.lock().unwrap().pop();
    }
}

/// Runs `test` on a paused current-thread runtime with a [`Capture`] as
/// the subscriber, and returns the events it logged.
fn logged<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) -> Vec<String> {
    let capture = Capture::default();
    let events = capture.events.clone();
    tracing::subscriber::with_default(capture, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
    });
    std::mem::take(&mut *events.lock().unwrap())
}

/// The first event that contains `needle`.
fn find<'a>(events: &'a [String], needle: &str) -> &'a str {
    events
        .iter()
        .find(|event| event.contains(needle))
        .unwrap_or_else(|| panic!("no event with {needle:?} in {events:#?}"))
}

const ROUTES: &str = r#"
    [profiles.slow.timeout]
    timeout = "1s"
    [profiles.slow.fallback]
    status = 200
    body = "later"
    on = "error"

    [routes.reports]
    profile = "slow"
"#;

#[test]
fn a_routes_timeout_and_fallback_log_in_its_span_in_plain_words() {
    let events = logged(|| async {
        let routes = Routes::from_toml(ROUTES, Registry::new()).unwrap();
        let app: Router = Router::new()
            .route(
                "/reports",
                get(std::future::pending::<&'static str>)
                    .route_layer(routes.route_layer("reports").unwrap()),
            )
            .with_state(());
        let request = axum::http::Request::get("/reports")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "the fallback answered");
    });
    let timed_out = find(&events, "timed out");
    assert!(
        timed_out.starts_with("portcullis route=reports"),
        "{timed_out}"
    );
    let fallback = find(&events, "fallback taken");
    assert!(
        fallback.starts_with("portcullis route=reports"),
        "{fallback}"
    );
    assert!(
        fallback.contains("source=a response made from the failure"),
        "not a type name: {fallback}"
    );
}

/// A per-host breaker's transition names its host: the breaker's own line
/// says which breaker, the span around the call which host.
#[test]
fn a_per_host_breakers_transition_names_its_host() {
    use portcullis::breaker::BreakerConfig;
    use portcullis::client::PerAuthorityLayer;
    use portcullis::core::HttpClassifier;
    use tower::Layer;

    let events = logged(|| async {
        let registry = Registry::builder()
            .breaker_default(
                BreakerConfig::builder()
                    .count_window(1)
                    .minimum_calls(1)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let failing = tower::service_fn(|_: http::Request<()>| async {
            let mut response = http::Response::new(());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, std::convert::Infallible>(response)
        });
        let client = PerAuthorityLayer::new(registry.clone(), "payments")
            .classifier(HttpClassifier)
            .layer(failing);
        let request = http::Request::get("http://pay.example:8443/charge")
            .body(())
            .unwrap();
        let response = client.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
    });
    let opened = find(&events, "state changed");
    assert!(
        opened.starts_with("portcullis host=pay.example:8443"),
        "{opened}"
    );
    assert!(opened.contains("breaker=payments"), "{opened}");
}
