//! End-to-end: sensor-node processes on a real ZooKeeper deliver every round exactly once,
//! in order, with no gaps — also across the faults users meet in production.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Node, NodeOpts, Receiver};
use sensor_node::zk::{self, Session, SessionConfig};
use serde_json::Value;

fn chrooted(tag: &str) -> String {
    format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot(tag)
    )
}

fn fleet(n: usize, opts: &NodeOpts) -> Vec<Node> {
    (1..=n)
        .map(|i| common::spawn(&format!("n{i}"), opts))
        .collect()
}

async fn session(zk: &str) -> Session {
    let s = Session::start(SessionConfig::new(zk, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

fn leader_index(nodes: &[Node], receiver: &Receiver) -> usize {
    let leader = receiver.last_leader().expect("a round was delivered");
    nodes
        .iter()
        .position(|n| n.id == leader)
        .expect("leader is one of ours")
}

fn dump(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}\n", n.id, n.tail()))
        .collect()
}

async fn expect_round(receiver: &Receiver, round: u64, secs: u64, nodes: &[Node]) {
    assert!(
        receiver.wait_round(round, Duration::from_secs(secs)).await,
        "round {round} not delivered within {secs}s (last {}).\n{}",
        receiver.last_round(),
        dump(nodes)
    );
}

/// Fencing tokens never go down in round order: a deposed leader never got a round in.
fn assert_fencing_monotonic(receiver: &Receiver) {
    receiver.snapshot(|r| {
        let mut max = 0;
        for v in &r.accepted {
            let f = v["fencing"].as_u64().expect("fencing");
            assert!(
                f >= max,
                "round {} accepted with an older fencing token",
                v["round"]
            );
            max = f;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_are_contiguous_and_averages_are_the_mean_of_that_rounds_readings() {
    let zk = chrooted("steady");
    let receiver = Receiver::start().await;
    let mut nodes = fleet(3, &NodeOpts::new(&zk, Some(&receiver.url())));
    expect_round(&receiver, 6, 60, &nodes).await;
    for n in nodes.iter_mut() {
        let status = n.proc.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "clean exit 0 on SIGTERM\n{}",
            n.tail()
        );
    }
    let delivered = receiver.assert_contiguous();
    assert!(delivered >= 6);

    // Readings by (barrier, node) from every node's log; what each round averaged from the
    // leaders' logs.
    let mut readings: HashMap<(i64, String), f64> = HashMap::new();
    let mut taken = 0;
    let mut averaged: HashMap<u64, (i64, Vec<String>)> = HashMap::new();
    for n in &nodes {
        for e in n.events_named("reading taken") {
            taken += 1;
            let key = (e["barrier"].as_i64().expect("barrier"), n.id.clone());
            assert!(
                readings
                    .insert(key, e["value"].as_f64().expect("value"))
                    .is_none(),
                "{} took two readings in one round",
                n.id
            );
        }
        for e in n.events_named("round readings averaged") {
            let included: Vec<String> = e["included"]
                .as_str()
                .expect("included")
                .trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_matches('"').to_string())
                .collect();
            averaged.insert(
                e["round"].as_u64().expect("round"),
                (e["barrier"].as_i64().expect("barrier"), included),
            );
        }
    }
    receiver.snapshot(|r| {
        for v in &r.accepted {
            let round = v["round"].as_u64().unwrap();
            let (barrier, included) = averaged.get(&round).expect("leader logged the round");
            let values: Vec<f64> = included
                .iter()
                .map(|id| readings[&(*barrier, id.clone())])
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            assert_eq!(v["samples"].as_u64().unwrap() as usize, values.len());
            assert!(
                (v["value"].as_f64().unwrap() - mean).abs() < 1e-9,
                "round {round}: {v} vs mean {mean}"
            );
            assert!((15.0..35.0).contains(&mean));
        }
        assert_eq!(r.duplicates, 0);
        assert_eq!(r.conflicts, 0);
    });
    // /counter counts every reading taken, exactly.
    let s = session(&zk).await;
    let counter = zk::Counter::new(s.clone(), "/counter").get().await.unwrap();
    assert_eq!(counter, taken, "counter equals readings taken");
    // SIGTERM removed every ephemeral at once.
    let c = s.client().unwrap();
    assert!(c.list_children("/mediciones").await.unwrap().is_empty());
    assert!(c.list_children("/election").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_then_sigterm_failover_keeps_rounds_exactly_once() {
    let zk = chrooted("failover");
    let receiver = Receiver::start().await;
    let mut opts = NodeOpts::new(&zk, Some(&receiver.url()));
    opts.session_timeout_ms = 4000;
    let mut nodes = fleet(3, &opts);
    expect_round(&receiver, 3, 60, &nodes).await;

    let first = leader_index(&nodes, &receiver);
    nodes[first].proc.kill();
    let at = receiver.last_round();
    expect_round(&receiver, at + 3, 60, &nodes).await;
    let second = leader_index(&nodes, &receiver);
    assert_ne!(first, second, "a new leader took over after SIGKILL");

    // SIGTERM: the leader resigns and closes its session, so the next leader starts at
    // once instead of after the 4 s session timeout.
    let at = receiver.last_round();
    let t0 = Instant::now();
    let status = nodes[second].proc.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "exit 0 on SIGTERM");
    expect_round(&receiver, at + 2, 60, &nodes).await;
    let third = leader_index(&nodes, &receiver);
    assert!(third != first && third != second);
    let failover = t0.elapsed();
    println!("SIGTERM failover: next two rounds delivered after {failover:?} (period 0.5 s, session timeout 4 s)");
    assert!(
        failover < Duration::from_millis(4000) + Duration::from_millis(1500),
        "faster than a session timeout plus two periods: {failover:?}"
    );

    receiver.assert_contiguous();
    assert_fencing_monotonic(&receiver);
    receiver.snapshot(|r| assert_eq!(r.conflicts, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_leader_is_deposed_and_never_delivers_after_resuming() {
    let zk = chrooted("sigstop");
    let receiver = Receiver::start().await;
    let mut nodes = fleet(3, &NodeOpts::new(&zk, Some(&receiver.url())));
    expect_round(&receiver, 3, 60, &nodes).await;
    let old = leader_index(&nodes, &receiver);
    nodes[old].proc.pause();
    // Past the 2 s session timeout: the others elect a new leader meanwhile.
    let at = receiver.last_round();
    expect_round(&receiver, at + 3, 60, &nodes).await;
    nodes[old].proc.resume();
    let at = receiver.last_round();
    expect_round(&receiver, at + 4, 60, &nodes).await;
    assert!(
        nodes[old].proc.is_running(),
        "the resumed node keeps running\n{}",
        nodes[old].tail()
    );

    receiver.assert_contiguous();
    assert_fencing_monotonic(&receiver);
    receiver.snapshot(|r| assert_eq!(r.conflicts, 0, "no round was delivered with two values"));
    // The old leader noticed it lost leadership.
    let lost: Vec<Value> = nodes[old]
        .events()
        .into_iter()
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("leadership lost"))
        })
        .collect();
    assert!(
        !lost.is_empty(),
        "old leader logged losing leadership\n{}",
        nodes[old].tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_crash_does_not_stop_rounds_and_its_stale_reading_is_excluded() {
    let zk = chrooted("follower");
    let receiver = Receiver::start().await;
    let mut nodes = fleet(3, &NodeOpts::new(&zk, Some(&receiver.url())));
    expect_round(&receiver, 3, 60, &nodes).await;
    let leader = leader_index(&nodes, &receiver);
    let follower = (leader + 1) % 3;
    nodes[follower].proc.pause(); // frozen: its ephemeral reading stays until its session expires
    let at = receiver.last_round();
    expect_round(&receiver, at + 3, 60, &nodes).await;
    // While frozen its stale value is in /mediciones but must not be averaged.
    receiver.snapshot(|r| {
        for v in r
            .accepted
            .iter()
            .filter(|v| v["round"].as_u64().unwrap() > at + 1)
        {
            assert_eq!(
                v["samples"], 2,
                "frozen follower's stale reading excluded: {v}"
            );
        }
    });
    nodes[follower].proc.kill();
    let at = receiver.last_round();
    expect_round(&receiver, at + 2, 60, &nodes).await;
    receiver.assert_contiguous();
    // The leader logged the departure.
    let leader_node = &nodes[leader_index(&nodes, &receiver)];
    let changes = leader_node.events_named("membership changed");
    assert!(
        changes.iter().any(|e| e["left"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("n{}", follower + 1)))),
        "leader logged the leave\n{}",
        leader_node.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_down_for_several_rounds_then_back_loses_nothing_and_keeps_order() {
    let zk = chrooted("apidown");
    let mut receiver = Receiver::start().await;
    let nodes = fleet(3, &NodeOpts::new(&zk, Some(&receiver.url())));
    expect_round(&receiver, 2, 60, &nodes).await;
    receiver.down().await;
    let s = session(&zk).await;
    // Rounds keep running at the sampling pace while the API is down: they queue.
    let queued = testkit::wait_until_async(Duration::from_secs(30), || async {
        let c = s.client().unwrap();
        c.list_children("/rounds/outbox")
            .await
            .map(|v| v.len())
            .unwrap_or(0)
            >= 5
    })
    .await;
    assert!(
        queued,
        "rounds queue in the outbox while the API is down\n{}",
        dump(&nodes)
    );
    let requests_before = receiver.snapshot(|r| r.requests);
    let committed = sensor_node::outbox::read_u64(&s.client().unwrap(), "/rounds/last")
        .await
        .unwrap()
        .value;
    receiver.up().await;
    expect_round(&receiver, committed, 60, &nodes).await;
    receiver.assert_contiguous();
    let requests_after = receiver.snapshot(|r| r.requests);
    assert!(
        ((requests_after - requests_before) as u64) < committed - 2,
        "the backlog went in batches ({} requests for {} rounds)",
        requests_after - requests_before,
        committed - 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_ensemble_leader_crash_does_not_stop_or_duplicate_rounds() {
    let mut ensemble = testkit::ZkEnsemble::start(3).expect("ensemble");
    let zk = ensemble.connect_string();
    let receiver = Receiver::start().await;
    let mut opts = NodeOpts::new(&zk, Some(&receiver.url()));
    opts.session_timeout_ms = 4000;
    let nodes = fleet(3, &opts);
    expect_round(&receiver, 3, 60, &nodes).await;
    let zk_leader = ensemble
        .wait_leader(Duration::from_secs(10))
        .expect("zk leader");
    ensemble.servers[zk_leader].kill();
    let at = receiver.last_round();
    expect_round(&receiver, at + 4, 60, &nodes).await;
    ensemble.servers[zk_leader].restart().expect("restart");
    // And a follower server crash too.
    let other = (ensemble.leader_index().unwrap_or(0) + 1) % 3;
    ensemble.servers[other].kill();
    let at = receiver.last_round();
    expect_round(&receiver, at + 3, 60, &nodes).await;
    receiver.assert_contiguous();
    assert_fencing_monotonic(&receiver);
    receiver.snapshot(|r| assert_eq!(r.conflicts, 0));
}

fn taken_at_ms(v: &Value) -> i64 {
    let t = v["taken_at"].as_str().expect("taken_at");
    let dt = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    (dt.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_period_changes_live_and_bad_values_are_ignored_with_a_warning() {
    let zk = chrooted("liveconfig");
    let receiver = Receiver::start().await;
    let nodes = fleet(2, &NodeOpts::new(&zk, Some(&receiver.url())));
    expect_round(&receiver, 2, 60, &nodes).await;
    let s = session(&zk).await;
    let c = s.client().unwrap();
    zk::ensure_path(&c, "/config").await.unwrap();
    c.create("/config/sampling_period", b"1.5", &zk::persistent())
        .await
        .unwrap();
    // Rounds that start after the change are 1.5 s apart (the leader waits at least that).
    let changed_at = receiver.last_round() + 1;
    expect_round(&receiver, changed_at + 3, 60, &nodes).await;
    let gaps = |from: u64| {
        receiver.snapshot(|r| {
            let times: Vec<i64> = r
                .accepted
                .iter()
                .filter(|v| v["round"].as_u64().unwrap() >= from)
                .map(taken_at_ms)
                .collect();
            times.windows(2).map(|w| w[1] - w[0]).collect::<Vec<i64>>()
        })
    };
    let g = gaps(changed_at + 1);
    assert!(
        !g.is_empty() && g.iter().all(|&d| d >= 1450),
        "rounds 1.5 s apart after the change: {g:?}"
    );
    // A bad value is ignored with a warning; the last good value stays in force.
    c.set_data("/config/sampling_period", b"abc", None)
        .await
        .unwrap();
    let bad_at = receiver.last_round() + 1;
    expect_round(&receiver, bad_at + 2, 60, &nodes).await;
    let g = gaps(bad_at);
    assert!(
        g.iter().all(|&d| d >= 1450),
        "still 1.5 s after the bad value: {g:?}"
    );
    for n in &nodes {
        let warned = n
            .events()
            .iter()
            .filter(|e| e["level"] == "WARN" && e.to_string().contains("abc"))
            .count();
        assert_eq!(
            warned,
            1,
            "{} warned once about the bad value\n{}",
            n.id,
            n.tail()
        );
    }
    receiver.assert_contiguous();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_pauses_rounds_instead_of_dropping_them() {
    let zk = chrooted("outboxfull");
    let mut receiver = Receiver::start().await;
    let mut opts = NodeOpts::new(&zk, Some(&receiver.url()));
    opts.period = "0.2".into();
    opts.extra_env.push(("OUTBOX_LIMIT".into(), "3".into()));
    let nodes = fleet(2, &opts);
    expect_round(&receiver, 1, 60, &nodes).await;
    receiver.down().await;
    let s = session(&zk).await;
    let full = testkit::wait_until_async(Duration::from_secs(30), || async {
        nodes.iter().any(|n| {
            !n.events_named("outbox full: pausing rounds until the API takes the backlog")
                .is_empty()
        })
    })
    .await;
    assert!(full, "leader reported the full outbox\n{}", dump(&nodes));
    // Rounds stay paused at the bound: nothing beyond it is committed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = s.client().unwrap();
    let pending = c.list_children("/rounds/outbox").await.unwrap().len();
    assert_eq!(pending, 3, "outbox holds exactly its bound");
    let committed = sensor_node::outbox::read_u64(&c, "/rounds/last")
        .await
        .unwrap()
        .value;
    receiver.up().await;
    expect_round(&receiver, committed + 3, 60, &nodes).await;
    receiver.assert_contiguous();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_longer_than_the_session_timeout_pauses_rounds_then_they_resume_without_gap() {
    let mut ensemble = testkit::ZkEnsemble::start(3).expect("ensemble");
    let zk = ensemble.connect_string();
    let receiver = Receiver::start().await;
    let mut nodes = fleet(3, &NodeOpts::new(&zk, Some(&receiver.url())));
    expect_round(&receiver, 3, 60, &nodes).await;
    // Two of three servers down: no quorum, so nothing can be committed.
    ensemble.servers[0].kill();
    ensemble.servers[1].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = receiver.last_round();
    tokio::time::sleep(Duration::from_secs(4)).await; // twice the 2 s session timeout
    assert!(
        receiver.last_round() <= during + 1,
        "at most the round already committed before the outage is delivered during it"
    );
    ensemble.servers[0].restart().expect("restart");
    ensemble.servers[1].restart().expect("restart");
    let at = receiver.last_round();
    expect_round(&receiver, at + 4, 90, &nodes).await;
    for n in nodes.iter_mut() {
        assert!(
            n.proc.is_running(),
            "{} kept running through the outage\n{}",
            n.id,
            n.tail()
        );
    }
    receiver.assert_contiguous();
    assert_fencing_monotonic(&receiver);
    receiver.snapshot(|r| assert_eq!(r.conflicts, 0));
}
