//! A fleet moved to a fresh ZooKeeper ensemble while Redis keeps the history starts a new
//! series: nothing set aside, nobody deposed, every new round stored.
//!
//! Every part real: standalone ZooKeeper servers (separate "ensembles" with their own data
//! directories, as when a user switches compose files that share the Redis volume but not
//! ZooKeeper's), one Redis, the `sensor-api` binary and `sensor-node` processes.
//! * Restarted fleet: phase B's ensemble is fresh, so its zxids (fencing tokens) are lower
//!   than A's; phase C's is fresh too, but driven past every token A and B issued first.
//!   On the code before cluster identities, B's rounds 1..5 came back as conflicts and were
//!   set aside (the conflict check precedes the fence check), and no new round was stored.
//! * Running fleet: the servers behind the nodes' connect string are replaced by a fresh
//!   ensemble while the nodes keep running; after their sessions expire they read the new
//!   ensemble's id and start its series.
//!
//! Needs the `sensor-api` binary (see `real_api`).

mod common;
mod real_api;

use std::time::Duration;

use common::{Node, NodeOpts};
use sensor_node::zk::{self, Session, SessionConfig};
use serde_json::Value;
use testkit::{RedisServer, ZkServer};

const ROUNDS_PER_SERIES: usize = 5;

fn tails(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}\n", n.id, n.tail()))
        .collect()
}

async fn connect(zk: &str) -> Session {
    let s = Session::start(SessionConfig::new(zk, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("zk");
    s
}

/// Runs three nodes against `zk` until `ROUNDS_PER_SERIES` of their rounds (items beyond
/// the `before` already stored) are in the API, then stops them (SIGTERM). Asserts nothing
/// was set aside in that ensemble and no node was told it is a stale leader. Returns the
/// ensemble's `/cluster` id.
async fn run_phase(
    name: &str,
    zk: &str,
    api: &real_api::Api,
    http: &reqwest::Client,
    token: &str,
    before: usize,
) -> String {
    let mut opts = NodeOpts::new(zk, Some(&api.url));
    opts.token = Some(token.to_string());
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| common::spawn(&format!("{name}-n{i}"), &opts))
        .collect();
    let stored = testkit::wait_until_async(Duration::from_secs(90), || async {
        api.items(http).await.unwrap_or_default().len() >= before + ROUNDS_PER_SERIES
    })
    .await;
    let session = connect(zk).await;
    let client = session.client().expect("client");
    let conflicts = client
        .list_children("/rounds/conflicts")
        .await
        .unwrap_or_default();
    let outbox = client
        .list_children("/rounds/outbox")
        .await
        .unwrap_or_default();
    let cluster = client
        .get_data("/cluster")
        .await
        .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
        .unwrap_or_default();
    session.close();
    let logs = tails(&nodes);
    let stale: usize = nodes
        .iter()
        .map(|n| {
            n.events_named(
                "API rejected our fencing token: a newer leader exists; stopping delivery",
            )
            .len()
        })
        .sum();
    for n in &mut nodes {
        n.proc.terminate(Duration::from_secs(5));
    }
    assert!(
        stored,
        "phase {name}: {ROUNDS_PER_SERIES} new rounds not stored (outbox {outbox:?}, conflicts {conflicts:?})\n{logs}"
    );
    assert!(
        conflicts.is_empty(),
        "phase {name}: rounds set aside: {conflicts:?}\n{logs}"
    );
    assert_eq!(
        stale, 0,
        "phase {name}: a leader was told it is stale\n{logs}"
    );
    cluster
}

/// Drives a fresh server's zxid counter past `beyond` with throw-away writes.
async fn inflate_zxid(zk: &str, beyond: u64) {
    let session = connect(zk).await;
    let client = session.client().expect("client");
    zk::ensure_path(&client, "/zxid-filler")
        .await
        .expect("mkdir");
    loop {
        let (_, stat) = client.get_data("/zxid-filler").await.expect("read filler");
        if (stat.mzxid as u64 & 0xffff_ffff) > beyond {
            break;
        }
        for _ in 0..100 {
            client
                .set_data("/zxid-filler", b"x", None)
                .await
                .expect("filler write");
        }
    }
    session.close();
}

fn fencing(v: &Value) -> u64 {
    v["fencing"].as_u64().expect("fencing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_ensemble_starts_a_new_series_next_to_the_old_history() {
    let redis = RedisServer::start().expect("redis");
    let token = "cluster-test-token";
    let api = real_api::spawn_api(&redis, None, "api-clusters", token);
    let http = reqwest::Client::new();
    api.wait_ready(&http).await;

    // Phase A: a fresh ensemble, used for a while before the fleet came (tokens ~1000).
    let zk_a = ZkServer::start().expect("zk A");
    inflate_zxid(&zk_a.connect_string(), 1000).await;
    let id_a = run_phase("a", &zk_a.connect_string(), &api, &http, token, 0).await;
    drop(zk_a);
    let after_a = api.items(&http).await.expect("list");
    let max_a = after_a.iter().map(fencing).max().unwrap_or(0);

    // Phase B: another fresh ensemble, whose tokens are lower than A's.
    let zk_b = ZkServer::start().expect("zk B");
    let id_b = run_phase(
        "b",
        &zk_b.connect_string(),
        &api,
        &http,
        token,
        after_a.len(),
    )
    .await;
    drop(zk_b);
    let after_b = api.items(&http).await.expect("list");
    let b_items: Vec<&Value> = after_b
        .iter()
        .filter(|v| v["cluster"] == id_b.as_str())
        .collect();
    assert!(
        b_items.iter().map(|v| fencing(v)).min().unwrap_or(u64::MAX) < max_a,
        "B's tokens are lower than A's (the case under test)"
    );

    // Phase C: a fresh ensemble whose tokens are higher than all before (rounds 1, 2, ...
    // again, with new values: the old code set every one of them aside as a conflict).
    let zk_c = ZkServer::start().expect("zk C");
    let max_ab = after_b.iter().map(fencing).max().unwrap_or(0) & 0xffff_ffff;
    inflate_zxid(&zk_c.connect_string(), max_ab + 100).await;
    let id_c = run_phase(
        "c",
        &zk_c.connect_string(),
        &api,
        &http,
        token,
        after_b.len(),
    )
    .await;

    // Three distinct identities, one per ensemble.
    for id in [&id_a, &id_b, &id_c] {
        assert_eq!(id.len(), 36, "a UUID: {id:?}");
    }
    assert!(id_a != id_b && id_b != id_c && id_a != id_c);

    // The history: every series complete and contiguous from round 1, the series one
    // after the other in time order, nothing overwritten.
    let items = api.items(&http).await.expect("list");
    let times: Vec<i64> = items
        .iter()
        .map(|v| v["taken_at_ms"].as_i64().expect("ms"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time order: {times:?}"
    );
    let order: Vec<&str> = items
        .iter()
        .map(|v| v["cluster"].as_str().unwrap_or("default"))
        .collect();
    let mut series_order = order.clone();
    series_order.dedup();
    assert_eq!(
        series_order,
        vec![id_a.as_str(), id_b.as_str(), id_c.as_str()],
        "the series follow each other in time"
    );
    for id in [&id_a, &id_b, &id_c] {
        let rounds: Vec<u64> = items
            .iter()
            .filter(|v| v["cluster"] == id.as_str())
            .map(|v| v["round"].as_u64().expect("round"))
            .collect();
        let expected: Vec<u64> = (1..=rounds.len() as u64).collect();
        assert_eq!(rounds, expected, "series {id}: contiguous from 1");
        assert!(rounds.len() >= ROUNDS_PER_SERIES, "series {id}: {rounds:?}");
    }
    // A's first round is still A's: B and C did not overwrite it.
    let a1 = &after_a[0];
    let still: Value = http
        .get(format!("{}/api/v1/averages/1?cluster={id_a}", api.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(&still, a1);
    // The API saw no conflict and no stale leader.
    let metrics = http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "sensor_api_conflicts_total",
        "sensor_api_stale_leader_rejections_total",
    ] {
        let value: f64 = metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(value, 0.0, "{name}\n{metrics}");
    }
    // The history page shows the newest series.
    let page = http
        .get(format!("{}/", api.url))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("c-n1") || page.contains("c-n2") || page.contains("c-n3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_id_is_created_once_and_an_upgraded_ensemble_keeps_the_default_series() {
    use sensor_node::{cluster, layout, ClusterId};
    let shared = testkit::shared_zk().connect_string();

    // A fresh ensemble: many leaders racing to create it agree on one random id.
    let fresh = format!("{shared}{}", testkit::unique_chroot("cluster-fresh"));
    let sessions: Vec<Session> = futures_join(4, &fresh).await;
    let ids = futures::future::join_all(sessions.iter().map(|s| async {
        let client = s.client().expect("client");
        cluster::ensure(&client).await.expect("ensure")
    }))
    .await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(!ids[0].is_default() && ids[0].as_str().len() == 36);
    let client = sessions[0].client().expect("client");
    assert_eq!(
        cluster::read(&client).await.expect("read"),
        Some(ids[0].clone())
    );
    for s in &sessions {
        s.close();
    }

    // An ensemble that committed rounds before cluster ids existed keeps the default
    // series, where its earlier rounds are stored.
    let upgraded = format!("{shared}{}", testkit::unique_chroot("cluster-upgraded"));
    let s = connect(&upgraded).await;
    let client = s.client().expect("client");
    zk::ensure_path(&client, layout::ROUNDS)
        .await
        .expect("mkdir");
    client
        .create(layout::ROUNDS_LAST, b"7", &zk::persistent())
        .await
        .expect("last");
    assert_eq!(
        cluster::ensure(&client).await.expect("ensure"),
        ClusterId::default()
    );

    // A corrupt id is an error, not a silent new series.
    client
        .set_data(layout::CLUSTER, b"not a valid id!", None)
        .await
        .expect("corrupt");
    assert!(cluster::ensure(&client).await.is_err());
    s.close();
}

async fn futures_join(n: usize, zk: &str) -> Vec<Session> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect(zk).await);
    }
    out
}

/// A TCP proxy on 127.0.0.1 whose target can be switched: every connection is cut at the
/// switch, new ones go to the new target (ZooKeeper servers replaced behind one address).
struct SwitchProxy {
    addr: String,
    target: std::sync::Arc<tokio::sync::watch::Sender<u16>>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchProxy {
    async fn start(target: u16) -> SwitchProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let (tx, _) = tokio::sync::watch::channel(target);
        let tx = std::sync::Arc::new(tx);
        let shared = tx.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let mut switched = shared.subscribe();
                let port = *switched.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = switched.changed() => {}
                    }
                });
            }
        });
        SwitchProxy {
            addr,
            target: tx,
            task,
        }
    }

    fn switch(&self, port: u16) {
        self.target.send_replace(port);
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_nodes_follow_an_ensemble_replaced_behind_the_same_address() {
    let redis = RedisServer::start().expect("redis");
    let token = "cluster-swap-token";
    let api = real_api::spawn_api(&redis, None, "api-swap", token);
    let http = reqwest::Client::new();
    api.wait_ready(&http).await;
    let zk_a = ZkServer::start().expect("zk A");
    let proxy = SwitchProxy::start(zk_a.port()).await;
    let mut opts = NodeOpts::new(&proxy.addr, Some(&api.url));
    opts.token = Some(token.to_string());
    let nodes: Vec<Node> = (1..=3)
        .map(|i| common::spawn(&format!("s-n{i}"), &opts))
        .collect();
    let first = testkit::wait_until_async(Duration::from_secs(60), || async {
        api.items(&http).await.unwrap_or_default().len() >= ROUNDS_PER_SERIES
    })
    .await;
    assert!(first, "first series\n{}", tails(&nodes));
    let before = api.items(&http).await.expect("list").len();

    // The servers are replaced by a fresh ensemble (lower zxids) behind the same address;
    // the nodes keep running.
    let zk_b = ZkServer::start().expect("zk B");
    proxy.switch(zk_b.port());
    drop(zk_a);
    let second = testkit::wait_until_async(Duration::from_secs(90), || async {
        api.items(&http).await.unwrap_or_default().len() >= before + ROUNDS_PER_SERIES
    })
    .await;
    let session = connect(&zk_b.connect_string()).await;
    let client = session.client().expect("client");
    let conflicts = client
        .list_children("/rounds/conflicts")
        .await
        .unwrap_or_default();
    let id_b = client
        .get_data("/cluster")
        .await
        .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
        .unwrap_or_default();
    session.close();
    assert!(
        second,
        "the fleet delivers on the new ensemble\n{}",
        tails(&nodes)
    );
    assert!(
        conflicts.is_empty(),
        "set aside: {conflicts:?}\n{}",
        leader_terms(&nodes)
    );
    let items = api.items(&http).await.expect("list");
    let rounds_b: Vec<u64> = items
        .iter()
        .filter(|v| v["cluster"] == id_b.as_str())
        .map(|v| v["round"].as_u64().expect("round"))
        .collect();
    let expected: Vec<u64> = (1..=rounds_b.len() as u64).collect();
    assert_eq!(
        rounds_b, expected,
        "the new ensemble's own series, from round 1"
    );
}

/// Every "became leader" log line of the fleet (node, fencing token, cluster), for failures.
fn leader_terms(nodes: &[Node]) -> String {
    nodes
        .iter()
        .flat_map(|n| {
            n.events_named("became leader")
                .into_iter()
                .map(move |e| format!("{} {} {}\n", n.id, e["fencing"], e["cluster"]))
        })
        .collect()
}
