//! Many tasks on a multi-threaded runtime through one bulkhead: the calls in
//! flight in the inner service never outnumber the permits.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadLayer};
use portcullis_core::BoxError;
use tower::{Layer, Service, ServiceExt, service_fn};

const TASKS: usize = 10_000;
const LIMIT: u32 = 8;

/// Counts the calls inside the inner service and keeps the highest count.
#[derive(Default)]
struct Probe {
    now: AtomicUsize,
    max: AtomicUsize,
    calls: AtomicUsize,
}

/// One call inside the inner service; it leaves when dropped, also when the
/// call is cancelled in there.
struct Inside(Arc<Probe>);

impl Inside {
    fn enter(probe: Arc<Probe>) -> Self {
        let now = probe.now.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max.fetch_max(now, Ordering::SeqCst);
        probe.calls.fetch_add(1, Ordering::SeqCst);
        Self(probe)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn inner(
    probe: Arc<Probe>,
) -> impl Service<usize, Response = usize, Error = BoxError, Future: Send> + Clone + Send + 'static
{
    service_fn(move |request: usize| {
        let probe = probe.clone();
        async move {
            let inside = Inside::enter(probe);
            tokio::task::yield_now().await;
            drop(inside);
            Ok::<_, BoxError>(request)
        }
    })
}

fn bulkhead(wait: Duration) -> Bulkhead {
    let config = BulkheadConfig::builder()
        .max_concurrent_calls(LIMIT)
        .max_wait(wait)
        .build()
        .unwrap();
    Bulkhead::from_config("stress", config).unwrap()
}

fn assert_at_rest(bulkhead: &Bulkhead) {
    assert_eq!(
        (
            bulkhead.in_flight(),
            bulkhead.queued(),
            bulkhead.available()
        ),
        (0, 0, LIMIT),
        "every permit came back and no waiter was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_calls_never_exceed_the_limit() {
    let probe = Arc::new(Probe::default());
    // A wait long enough that no call is rejected: each call only yields.
    let bulkhead = bulkhead(Duration::from_secs(24 * 60 * 60));
    let service = BulkheadLayer::new(bulkhead.clone()).layer(inner(probe.clone()));

    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move {
                let call = service.oneshot(i);
                if i % 7 == 0 {
                    // Polled once, then dropped: cancelled while waiting or
                    // while in the inner service.
                    tokio::time::timeout(Duration::ZERO, call).await.ok()
                } else {
                    Some(call.await)
                }
            })
        })
        .collect();
    let (mut answered, mut cancelled) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Some(result) => {
                result.expect("no call is rejected");
                answered += 1;
            }
            None => cancelled += 1,
        }
    }

    let max = probe.max.load(Ordering::SeqCst);
    assert!(max <= LIMIT as usize, "{max} calls were in flight at once");
    assert!(max >= 1);
    assert_eq!(answered + cancelled, TASKS);
    assert!(
        answered >= TASKS - TASKS / 7 - 1,
        "only the dropped calls are missing"
    );
    assert!(probe.calls.load(Ordering::SeqCst) >= answered);
    assert_eq!(bulkhead.rejected(), 0);
    assert_at_rest(&bulkhead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_fast_calls_never_exceed_the_limit() {
    let probe = Arc::new(Probe::default());
    let bulkhead = bulkhead(Duration::ZERO);
    let service = BulkheadLayer::new(bulkhead.clone()).layer(inner(probe.clone()));

    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(i).await })
        })
        .collect();
    let (mut answered, mut rejected) = (0, 0);
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer, i);
                answered += 1;
            }
            Err(error) => {
                assert!(error.is::<BulkheadFull>(), "{error}");
                rejected += 1;
            }
        }
    }

    let max = probe.max.load(Ordering::SeqCst);
    assert!(max <= LIMIT as usize, "{max} calls were in flight at once");
    assert!(answered >= 1);
    assert_eq!(answered + rejected, TASKS);
    assert_eq!(probe.calls.load(Ordering::SeqCst), answered);
    assert_eq!(bulkhead.rejected(), rejected as u64);
    assert_at_rest(&bulkhead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_handle_alone_never_hands_out_more_permits_than_it_has() {
    let bulkhead = bulkhead(Duration::from_secs(24 * 60 * 60));
    let holders = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (bulkhead, holders, max) = (bulkhead.clone(), holders.clone(), max.clone());
            tokio::spawn(async move {
                let permit = bulkhead.acquire().await.expect("waits as long as it takes");
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                holders.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let max = max.load(Ordering::SeqCst);
    assert!((1..=LIMIT as usize).contains(&max), "{max} permits at once");
    assert_at_rest(&bulkhead);
}
