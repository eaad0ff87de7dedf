//! The client examples, run to completion: each serves its upstreams on
//! loopback and checks what its client saw (the same check that makes the
//! example exit with an error).
#![cfg(not(loom))]
#![cfg(all(
    feature = "registry",
    feature = "http",
    feature = "grpc",
    feature = "retry",
    feature = "timeout",
    feature = "reqwest"
))]

#[allow(dead_code)]
#[path = "../examples/reqwest_client.rs"]
mod reqwest_client;

#[allow(dead_code)]
#[path = "../examples/hyper_client.rs"]
mod hyper_client;

#[allow(dead_code)]
#[path = "../examples/tonic.rs"]
mod tonic_example;

#[tokio::test]
async fn reqwest_client_opens_only_the_failing_hosts_breaker() {
    let summary = reqwest_client::run().await.unwrap();
    reqwest_client::check(&summary).unwrap();
    assert_eq!(summary.received.1, 4, "the failing host was spared");
    assert_eq!(summary.breakers.len(), 2, "one breaker per host");
}

#[tokio::test]
async fn hyper_client_replays_the_post_body() {
    let summary = hyper_client::run().await.unwrap();
    hyper_client::check(&summary).unwrap();
    assert_eq!(summary.attempts.len(), 3);
}

#[tokio::test]
async fn tonic_stacks_answer_with_statuses() {
    let summary = tonic_example::run().await.unwrap();
    tonic_example::check(&summary).unwrap();
    assert_eq!(summary.breaker_reached, 3);
}

#[allow(dead_code)]
#[path = "../examples/fleet.rs"]
mod fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_gateways_share_one_limit() {
    let redis = portcullis_testing::redis::RedisServer::start();
    let summary = fleet::run(&redis, 3).await.unwrap();
    fleet::check(&summary).unwrap();
    let admitted =
        |counts: &fleet::Answers| counts.admitted.load(std::sync::atomic::Ordering::Relaxed);
    let [a, b] = &summary.gateways;
    assert!(
        admitted(&a.local) + admitted(&b.local) > admitted(&a.fleet) + admitted(&b.fleet) * 3 / 2,
        "two local limits admit about twice the fleet's: {summary:?}"
    );
}
