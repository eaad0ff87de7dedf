//! The keyed breakers of a name share one configuration: an update reaches
//! every key (and keys made after it), each key keeps its own state, and a
//! key reconfigured through its handle alone keeps that configuration
//! until the next update.
#![cfg(not(loom))]

use portcullis_breaker::{BreakerConfig, State};
use portcullis_core::Outcome;
use portcullis_registry::{Overrides, Registry};

fn config(minimum_calls: u32) -> BreakerConfig {
    BreakerConfig::builder()
        .count_window(10)
        .minimum_calls(minimum_calls)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_update_reaches_every_key_and_keys_keep_their_own_state() {
    let registry = Registry::builder()
        .breaker_default(config(4))
        .build()
        .unwrap();
    let breakers = registry.breakers();
    let keys: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|key| breakers.get_keyed("upstream", key).unwrap())
        .collect();
    for _ in 0..4 {
        keys[0].try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(keys[0].state(), State::Open);
    assert_eq!(keys[1].state(), State::Closed);

    let changed = breakers
        .update_config("upstream", Overrides::new().set("minimum_calls", 2))
        .unwrap();
    assert_eq!(changed, 3);
    for key in &keys {
        assert_eq!(key.config().minimum_calls(), 2);
    }
    assert_eq!(keys[0].state(), State::Open, "an update keeps the state");
    let later = breakers.get_keyed("upstream", "d").unwrap();
    assert_eq!(later.config().minimum_calls(), 2);
    assert_eq!(later.state(), State::Closed);

    // One key given a configuration of its own through its handle.
    keys[1].reconfigure(config(3)).unwrap();
    assert_eq!(keys[1].config().minimum_calls(), 3);
    assert_eq!(keys[2].config().minimum_calls(), 2);
    assert_eq!(
        breakers
            .get_keyed("upstream", "e")
            .unwrap()
            .config()
            .minimum_calls(),
        2
    );
    breakers
        .update_config("upstream", Overrides::new().set("minimum_calls", 5))
        .unwrap();
    for key in keys.iter().chain([&later]) {
        assert_eq!(key.config().minimum_calls(), 5);
    }
}
