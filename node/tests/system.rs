//! The whole system, every part real: ZooKeeper, Redis, two sensor-api processes that
//! register under /services/api, and sensor-node processes that discover them (no API_URL).
//!
//! Needs the `sensor-api` binary, which `cargo test --workspace` builds (the README's test
//! command); with `cargo test -p zk-sensors-node` alone, build it first:
//! `cargo build -p sensor-api`.

mod common;
mod real_api;

use std::time::Duration;

use common::{Node, NodeOpts};
use real_api::spawn_api;
use sensor_node::zk::{Session, SessionConfig};
use serde_json::Value;
use testkit::RedisServer;

async fn stored_rounds(http: &reqwest::Client, api: &str) -> Option<Vec<u64>> {
    let body: Value = http
        .get(format!("{api}/api/v1/averages?limit=1000"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut rounds: Vec<u64> = body["items"]
        .as_array()?
        .iter()
        .filter_map(|v| v["round"].as_u64())
        .collect();
    rounds.reverse();
    Some(rounds)
}

async fn last_stored(http: &reqwest::Client, api: &str) -> u64 {
    stored_rounds(http, api)
        .await
        .and_then(|r| r.last().copied())
        .unwrap_or(0)
}

async fn wait_stored(http: &reqwest::Client, api: &str, round: u64, secs: u64, nodes: &[Node]) {
    let ok = testkit::wait_until_async(Duration::from_secs(secs), || async {
        last_stored(http, api).await >= round
    })
    .await;
    let tails: String = nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}\n", n.id, n.tail()))
        .collect();
    assert!(
        ok,
        "round {round} not stored within {secs}s (last {})\n{tails}",
        last_stored(http, api).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_discover_apis_and_survive_redis_and_api_crashes_without_losing_a_round() {
    let zk = format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot("system")
    );
    let mut redis = RedisServer::start().expect("redis");
    let token = "system-test-token";
    let mut api_a = spawn_api(&redis, Some(&zk), "api-a", token);
    let api_b = spawn_api(&redis, Some(&zk), "api-b", token);
    let mut opts = NodeOpts::new(&zk, None);
    opts.token = Some(token.to_string());
    let nodes: Vec<Node> = (1..=3)
        .map(|i| common::spawn(&format!("n{i}"), &opts))
        .collect();
    let http = reqwest::Client::new();

    wait_stored(&http, &api_b.url, 3, 60, &nodes).await;

    // Redis crash: both APIs answer 503, rounds queue in ZooKeeper, nothing is lost.
    redis.kill();
    let ready = http
        .get(format!("{}/readyz", api_a.url))
        .send()
        .await
        .expect("api up");
    assert_eq!(ready.status(), 503, "readyz reports Redis down");
    let zk_session = Session::start(SessionConfig::new(zk.as_str(), Duration::from_secs(4)));
    let client = zk_session
        .wait_connected_for(Duration::from_secs(20))
        .await
        .expect("zk");
    let queued = testkit::wait_until_async(Duration::from_secs(30), || async {
        client
            .list_children("/rounds/outbox")
            .await
            .map(|v| v.len())
            .unwrap_or(0)
            >= 3
    })
    .await;
    assert!(queued, "rounds queue while Redis is down");
    redis.restart().expect("redis back");

    // API crash: the nodes fail over to the other registered instance.
    api_a.proc.kill();
    let committed = sensor_node::outbox::read_u64(&client, "/rounds/last")
        .await
        .unwrap()
        .value;
    wait_stored(&http, &api_b.url, committed + 3, 60, &nodes).await;

    let rounds = stored_rounds(&http, &api_b.url).await.expect("list");
    let expected: Vec<u64> = (1..=rounds.len() as u64).collect();
    assert_eq!(rounds, expected, "every round stored exactly once, no gaps");
    // Redis kept the rounds of before the crash (AOF), and the API's metrics saw no conflict.
    let metrics = http
        .get(format!("{}/metrics", api_b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let conflicts: f64 = metrics
        .lines()
        .filter(|l| l.contains("conflict") && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(conflicts, 0.0, "no conflicting values\n{metrics}");
}
