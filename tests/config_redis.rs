//! Fleet rate limits from a config file: the `[redis]` section, a rate
//! limit with `scope = "fleet"`, their errors named by path, and two
//! instances built from one file sharing one limit in a real Redis.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use portcullis::config::{ConfigFile, RateLimitScope, Routes};
use portcullis::redis::FailPolicy;
use portcullis::registry::Registry;
use portcullis_testing::redis::RedisServer;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

type Route = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// `api` limited for the fleet, `web` for each instance, both at 10 a
/// minute: in a test's second, each admits its burst of 10 and no more.
fn file(url: &str) -> String {
    format!(
        r#"
        [redis]
        url = "{url}"
        timeout = "200ms"
        fail_policy = "closed"
        key_prefix = "test:rl:"
        instances = 2

        [defaults.rate_limit]
        rate = 10
        period = "1m"

        [profiles.shared.rate_limit]
        scope = "fleet"
        [profiles.own.rate_limit]

        [routes.api]
        profile = "shared"
        [routes.web]
        profile = "own"
        "#
    )
}

fn fields(errors: &portcullis::error::ConfigErrors) -> Vec<&str> {
    errors.errors().iter().map(|error| error.field()).collect()
}

/// The stack of `route` around a handler that answers 200.
fn route(routes: &Routes, route: &str) -> Route {
    let handler =
        service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    BoxCloneSyncService::new(routes.route_layer(route).unwrap().layer(handler))
}

async fn status(route: &Route) -> u16 {
    let response = route
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    response.status().as_u16()
}

#[test]
fn the_redis_section_is_read_with_its_defaults() {
    let config = ConfigFile::from_toml(&file("redis://127.0.0.1:6379/")).unwrap();
    let redis = config.redis().unwrap();
    assert_eq!(redis.url(), "redis://127.0.0.1:6379/");
    assert_eq!(redis.timeout(), Duration::from_millis(200));
    assert_eq!(redis.fail_policy(), FailPolicy::FailClosed);
    assert_eq!(redis.key_prefix(), "test:rl:");
    assert_eq!(redis.instances(), 2);
    assert_eq!(
        config.route("api").unwrap().rate_limit_scope,
        RateLimitScope::Fleet
    );
    assert_eq!(
        config.route("web").unwrap().rate_limit_scope,
        RateLimitScope::Local
    );

    let config = ConfigFile::from_toml("[redis]\nurl = \"redis://localhost/\"\n").unwrap();
    let redis = config.redis().unwrap();
    assert_eq!(redis.timeout(), Duration::from_millis(5));
    assert_eq!(redis.fail_policy(), FailPolicy::Local);
    assert_eq!(redis.key_prefix(), "portcullis:rl:");
    assert_eq!(redis.instances(), 1);
    assert!(ConfigFile::from_toml("").unwrap().redis().is_none());
}

#[test]
fn every_error_of_the_redis_section_names_its_path() {
    let errors = ConfigFile::from_toml(
        r#"
        [redis]
        url = "http://example.com/"
        timeout = "soon"
        fail_policy = "opne"
        key_prefix = 7
        instances = 0
        tiemout = "5ms"
        "#,
    )
    .unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "redis.tiemout",
            "redis.url",
            "redis.timeout",
            "redis.fail_policy",
            "redis.key_prefix",
            "redis.instances"
        ],
        "{errors}"
    );
    let text = errors.to_string();
    for expected in [
        "redis.tiemout: unknown field (did you mean `timeout`?) (expected url, timeout, fail_policy, key_prefix, instances)",
        "redis.url: is not a Redis URL",
        "redis.fail_policy: unknown policy \"opne\" (did you mean `open`?) (expected \"open\", \"closed\" or \"local\")",
        "redis.key_prefix: must be a string, got integer",
        "redis.instances: must be a whole number, 1 or more, got 0",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }

    let errors =
        ConfigFile::from_toml("[redis]\ntimeout = \"1m\"\nkey_prefix = \"\"\n").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "redis.url: is required\nredis.timeout: must be in (0s, 10s], got 1m"
    );
    let errors =
        ConfigFile::from_toml("[redis]\nurl = \"redis://h/\"\nkey_prefix = \"\"\n").unwrap_err();
    assert_eq!(errors.to_string(), "redis.key_prefix: must not be empty");
    let errors = ConfigFile::from_toml("[rediss]\nurl = \"redis://h/\"\n").unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("rediss: unknown section (did you mean `redis`?)"),
        "{errors}"
    );
}

#[test]
fn a_fleet_limit_needs_redis_and_no_key() {
    let errors = ConfigFile::from_toml(
        r#"
        [profiles.api.rate_limit]
        rate = 10
        scope = "fleet"
        [profiles.keyed.rate_limit]
        rate = 10
        scope = "fleet"
        key = "client_ip"
        [profiles.odd.rate_limit]
        rate = 10
        scope = "global"
        "#,
    )
    .unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "profiles.keyed.rate_limit.key",
            "profiles.odd.rate_limit.scope",
            "profiles.api.rate_limit.scope",
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert!(
        text.contains("profiles.api.rate_limit.scope: a fleet limit is kept in Redis: add a [redis] section with its url"),
        "{text}"
    );
    assert!(
        text.contains("profiles.odd.rate_limit.scope: unknown variant `global`"),
        "{text}"
    );
    assert!(text.contains("(expected \"local\" or \"fleet\")"), "{text}");

    // The instances share the rate: there cannot be more of them than it.
    let errors = ConfigFile::from_toml(
        r#"
        [redis]
        url = "redis://127.0.0.1/"
        instances = 20
        [profiles.api.rate_limit]
        rate = 10
        scope = "fleet"
        "#,
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "redis.instances: must be in [1, 10], got 20 (at most the rate of profiles.api.rate_limit, shared by the instances)"
    );
}

#[test]
fn a_reload_lists_fleet_changes_as_not_live() {
    let text = file("redis://127.0.0.1:1/");
    let routes = Routes::from_toml(&text, Registry::new()).unwrap();
    let reload = routes
        .reload(&text.replace("timeout = \"200ms\"", "timeout = \"100ms\""))
        .unwrap();
    assert_eq!(reload.not_live, ["redis"]);
    let routes = Routes::from_toml(&text, Registry::new()).unwrap();
    let reload = routes
        .reload(&text.replace("period = \"1m\"", "period = \"30s\""))
        .unwrap();
    assert_eq!(reload.not_live, ["routes.api.rate_limit"]);
}

#[tokio::test]
async fn a_fleet_limit_with_redis_away_follows_its_fail_policy() {
    // Nothing listens on port 1: the connection is made lazily, and every
    // call finds Redis away, so `fail_policy = "closed"` rejects it.
    let routes = Routes::from_toml(&file("redis://127.0.0.1:1/"), Registry::new()).unwrap();
    let api = route(&routes, "api");
    assert_eq!(status(&api).await, 429);
    assert_eq!(status(&route(&routes, "web")).await, 200);
    assert!(
        routes
            .registry()
            .rate_limiters()
            .find("api", None)
            .is_none(),
        "a fleet limit is not a local limiter of the registry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_from_one_file_share_the_fleet_limit() {
    let redis = RedisServer::start();
    let text = file(&redis.url());
    // Two instances of one service: each its own registry and stacks.
    let instances: Vec<[Route; 2]> = (0..2)
        .map(|_| {
            let routes = Routes::from_toml(&text, Registry::new()).unwrap();
            [route(&routes, "api"), route(&routes, "web")]
        })
        .collect();
    let mut admitted = [[0; 2]; 2];
    for _ in 0..15 {
        for (instance, stacks) in instances.iter().enumerate() {
            for (which, stack) in stacks.iter().enumerate() {
                match status(stack).await {
                    200 => admitted[instance][which] += 1,
                    429 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
        }
    }
    let fleet = admitted[0][0] + admitted[1][0];
    let local = admitted[0][1] + admitted[1][1];
    assert_eq!(fleet, 10, "the fleet's burst of 10, shared: {admitted:?}");
    assert!(
        admitted[0][0] > 0 && admitted[1][0] > 0,
        "both instances drew on it: {admitted:?}"
    );
    assert_eq!(local, 20, "each instance's own burst of 10: {admitted:?}");
    assert!(redis.calls_of("evalsha") > 0, "the limit was kept in Redis");
}
