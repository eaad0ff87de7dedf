//! Every duration setting of the registry and its service, for any
//! duration: refused at build time with an error that names it, or
//! accepted and then served without a panic.
#![cfg(not(loom))]

use std::time::Duration;

use http_body_util::BodyExt;
use portcullis_breaker::State;
use portcullis_registry::{EventKind, Registry, RegistryService, ResponseBody};
use proptest::prelude::*;
use tokio::time::{Instant, timeout};
use tower::ServiceExt;

/// Longer than any accepted setting: a bound on waiting, never reached by
/// a registry that works.
const BOUND: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// A service setting under test.
#[derive(Clone, Copy, Debug)]
enum Setting {
    Retry,
    KeepAlive,
    MaxAge,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Self::Retry => "events_retry",
            Self::KeepAlive => "events_keep_alive",
            Self::MaxAge => "events_max_age",
        }
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn next_frame(body: &mut ResponseBody) -> Option<String> {
    let frame = timeout(BOUND, body.frame())
        .await
        .expect("the stream said something")?
        .unwrap();
    Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
}

/// Builds a service with `setting` at `value`; when it is accepted, opens
/// `GET /events` and checks the preamble, an event, and what comes after
/// the first silence.
async fn serve_events_with(setting: Setting, value: Duration) {
    let registry = Registry::new();
    let breaker = registry.breakers().get("db");
    let builder = RegistryService::builder(registry.clone());
    let (retry, keep_alive, max_age) = match setting {
        Setting::Retry => (value, Some(Duration::from_secs(15)), None),
        Setting::KeepAlive => (Duration::from_secs(3), Some(value), None),
        Setting::MaxAge => (
            Duration::from_secs(3),
            Some(Duration::from_secs(15)),
            Some(value),
        ),
    };
    let built = builder
        .events_retry(retry)
        .events_keep_alive(keep_alive)
        .events_max_age(max_age)
        .build();
    let service = match built {
        Ok(service) => service,
        Err(error) => {
            assert_eq!(error.field(), setting.name(), "{error}");
            assert!(error.message().starts_with("must be in ["), "{error}");
            return;
        }
    };
    let request = http::Request::get("/events").body(String::new()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(
        next_frame(&mut body).await.unwrap(),
        format!("retry: {}\n: connected\n\n", retry.as_millis())
    );

    // An event rearms the keep-alive timer.
    breaker.force_open();
    let event = next_frame(&mut body).await.unwrap();
    assert!(event.contains("event: transition\n"), "{event}");

    let quiet = Instant::now();
    let next = next_frame(&mut body).await;
    let waited = quiet.elapsed();
    let keep_alive_first = keep_alive.is_some_and(|every| max_age.is_none_or(|age| every < age));
    if keep_alive_first {
        let every = keep_alive.unwrap();
        assert_eq!(next.as_deref(), Some(": keep-alive\n\n"));
        // Paused time moves in whole milliseconds.
        assert!(
            waited >= every && waited <= every + Duration::from_millis(1),
            "{waited:?} for {every:?}"
        );
    } else {
        assert_eq!(next, None, "the stream ended at its maximum age");
    }
}

/// Builds a registry with `interval` between rejection reports; when it
/// is accepted, checks that a breaker's rejection is reported and that
/// its forwarder still forwards what comes after.
async fn forward_rejections_with(interval: Duration) {
    let registry = match Registry::builder()
        .rejection_report_interval(interval)
        .build()
    {
        Ok(registry) => registry,
        Err(error) => {
            assert_eq!(error.field(), "rejection_report_interval", "{error}");
            assert!(error.message().starts_with("must be in ["), "{error}");
            return;
        }
    };
    let mut feed = registry.watch();
    let breaker = registry.breakers().get("db");
    let mut next = async || {
        timeout(BOUND, feed.recv())
            .await
            .expect("the forwarder is alive")
            .expect("the feed is open")
            .what
    };
    assert_eq!(next().await, EventKind::Added);
    breaker.force_open();
    assert!(matches!(
        next().await,
        EventKind::Transition {
            to: State::ForcedOpen,
            ..
        }
    ));
    assert!(breaker.try_acquire().is_err());
    assert!(
        matches!(next().await, EventKind::Rejected { count: 1, .. }),
        "reported at the interval's end"
    );
    breaker.close();
    assert!(matches!(
        next().await,
        EventKind::Transition {
            to: State::Closed,
            ..
        }
    ));
}

fn check_all(value: Duration) {
    paused_runtime().block_on(async {
        for setting in [Setting::Retry, Setting::KeepAlive, Setting::MaxAge] {
            serve_events_with(setting, value).await;
        }
        forward_rejections_with(value).await;
    });
}

#[test]
fn the_edges_of_every_duration_setting() {
    for value in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(3600),
        Duration::from_secs(3600) + Duration::from_nanos(1),
        Duration::from_secs(365 * 24 * 60 * 60),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ] {
        check_all(value);
    }
}

#[test]
fn out_of_range_settings_name_their_field_and_range() {
    let registry = Registry::new();
    let error = RegistryService::builder(registry.clone())
        .events_keep_alive(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "events_keep_alive: must be in [1s, 1h], got 0s"
    );
    let error = RegistryService::builder(registry.clone())
        .events_keep_alive(Some(Duration::MAX))
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "events_keep_alive");
    let error = RegistryService::builder(registry.clone())
        .events_retry(Duration::from_millis(99))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "events_retry: must be in [100ms, 1h], got 99ms"
    );
    let error = RegistryService::builder(registry)
        .events_max_age(Some(Duration::from_millis(500)))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "events_max_age: must be in [1s, 365d], got 500ms"
    );
    let error = Registry::builder()
        .rejection_report_interval(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "rejection_report_interval");
    assert!(
        error
            .to_string()
            .starts_with("rejection_report_interval: must be in [0s, 1h], got "),
        "{error}"
    );
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..7_200, 0u32..1_000_000_000).prop_map(|(secs, nanos)| Duration::new(secs, nanos)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Duration::new(secs, nanos)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the duration, each setting is refused naming itself, or
    /// the service streams events and the breaker's forwarder reports.
    #[test]
    fn no_duration_setting_panics(value in any_duration()) {
        check_all(value);
    }
}
