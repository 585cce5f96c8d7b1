//! The harness itself: servers start, serve, die and come back.

use std::time::Duration;
use testkit::{RedisServer, ZkEnsemble, ZkServer};

#[test]
fn standalone_zookeeper_serves_and_restarts() {
    let mut zk = ZkServer::start().expect("start zookeeper");
    assert_eq!(zk.mode().as_deref(), Some("standalone"));
    zk.kill();
    assert_eq!(zk.mode(), None, "a killed server must not answer");
    zk.restart().expect("restart");
    assert_eq!(zk.mode().as_deref(), Some("standalone"));
}

#[test]
fn ensemble_elects_a_new_leader_after_its_leader_is_killed() {
    let mut ens = ZkEnsemble::start(3).expect("start ensemble");
    let first = ens.wait_leader(Duration::from_secs(10)).expect("a leader");
    ens.servers[first].kill();
    let second = ens
        .wait_leader(Duration::from_secs(15))
        .expect("a new leader");
    assert_ne!(first, second);
}

#[test]
fn redis_keeps_data_across_a_kill() {
    let mut redis = RedisServer::start().expect("start redis");
    assert!(redis.ping());
    redis.kill();
    assert!(!redis.ping());
    redis.restart().expect("restart redis");
    assert!(redis.ping());
}
