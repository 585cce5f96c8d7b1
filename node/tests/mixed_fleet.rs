//! Mixed fleets: our `sensor-node`s and seed-style kazoo sensors (`shared/peers/kazoo_sensor.py`,
//! kazoo 2.11 `Election` + `Barrier` + `Counter`, readings as bare decimals) on one ZooKeeper.
//! Whoever leads, every round averages every live sensor's reading exactly once.
//!
//! The kazoo sensor is not part of this repository: CI has `shared/` beside the clone; on a
//! machine without it these tests print that they are skipped (and fail under `CI`). Set
//! `KAZOO_SENSOR_PY` to its path to run them anywhere. Needs `kazoo==2.11.0` and `requests`
//! (`scripts/install-deps`).

mod common;
#[path = "../../coord/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::{Node, NodeOpts, Receiver};
use sensor_node::zk::{Session, SessionConfig};
use support::{kazoo_sensor_script, lines, spawn_kazoo_sensor, wait_line};
use testkit::Proc;

const PERIOD: &str = "1";

fn chrooted(tag: &str) -> String {
    format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot(tag)
    )
}

/// Connects a session of ours first: it creates the chroot, which kazoo expects to exist.
async fn session(zk: &str) -> Session {
    let s = Session::start(SessionConfig::new(zk, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

fn dump(nodes: &[&Node], kazoo: &[&Proc]) -> String {
    let mut out = String::new();
    for n in nodes {
        out += &format!("--- {} ---\n{}\n", n.id, n.tail());
    }
    for k in kazoo {
        out += &format!("--- {} ---\n{}\n", k.name(), k.log_tail(20));
    }
    out
}

/// Waits until `/mediciones` lists exactly `ids`.
async fn wait_members(s: &Session, ids: &[&str], secs: u64) -> bool {
    let c = s.client().expect("client");
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    testkit::wait_until_async(Duration::from_secs(secs), || async {
        let mut names = c.list_children("/mediciones").await.unwrap_or_default();
        names.sort();
        names == want
    })
    .await
}

/// `included` of a "round readings averaged" log event: `["k1", "n1"]` → ids.
fn included(e: &serde_json::Value) -> Vec<String> {
    e["included"]
        .as_str()
        .expect("included")
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').to_string())
        .collect()
}

/// Our leader, two kazoo followers and one more node of ours: every round counts all four.
/// Fails on the old freshness rule (written after the barrier appeared), under which a kazoo
/// follower's reading — published right after the previous barrier was removed, before the
/// next one exists — is dropped in most rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_leader_averages_every_kazoo_and_rust_sensor_once_per_round() {
    let test = "our_leader_averages_every_kazoo_and_rust_sensor_once_per_round";
    let Some(script) = kazoo_sensor_script(test) else {
        return;
    };
    support::require_kazoo_and_requests();
    let zk = chrooted("mixed-rust-leads");
    let s = session(&zk).await;
    let receiver = Receiver::start().await;
    let mut opts = NodeOpts::new(&zk, Some(&receiver.url()));
    opts.period = PERIOD.into();
    // n1 first, so it leads; everyone else queues behind it.
    let mut n1 = common::spawn("n1", &opts);
    assert!(
        receiver.wait_round(1, Duration::from_secs(60)).await,
        "n1 delivered no round\n{}",
        n1.tail()
    );
    let n2 = common::spawn("n2", &opts);
    let nuevo = format!("{}/nuevo", receiver.url());
    let k1 = spawn_kazoo_sensor(&script, "k1", &zk, &nuevo, PERIOD);
    let k2 = spawn_kazoo_sensor(&script, "k2", &zk, &nuevo, PERIOD);
    assert!(
        wait_members(&s, &["k1", "k2", "n1", "n2"], 60).await,
        "the four sensors never all published\n{}",
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    // From the second round that opens after all four published.
    let from = receiver.last_round() + 2;
    const ROUNDS: u64 = 15;
    assert!(
        receiver
            .wait_round(from + ROUNDS - 1, Duration::from_secs(120))
            .await,
        "rounds stalled at {}\n{}",
        receiver.last_round(),
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    receiver.assert_contiguous();
    let mut by_round = std::collections::BTreeMap::new();
    for e in n1.events_named("round readings averaged") {
        by_round.insert(e["round"].as_u64().expect("round"), included(&e));
    }
    let mut short = Vec::new();
    receiver.snapshot(|r| {
        for round in from..from + ROUNDS {
            let v = &r.by_round[&round];
            assert_eq!(v["leader"], "n1", "n1 led throughout: {v}");
            let ids = by_round
                .get(&round)
                .unwrap_or_else(|| panic!("n1 logged no readings for round {round}"));
            assert_eq!(v["samples"].as_u64(), Some(ids.len() as u64));
            if ids != &["k1", "k2", "n1", "n2"] {
                short.push((round, ids.clone()));
            }
        }
        assert!(r.legacy.is_empty(), "a kazoo sensor led: {:?}", r.legacy);
    });
    assert!(
        short.is_empty(),
        "rounds that did not average all four sensors (round, included): {short:?}\n{}",
        dump(&[&n1, &n2], &[&k1, &k2])
    );

    // Failover: n1 leaves (SIGTERM); n2, next in the election, resumes the open round and
    // leads on. The new leader learns where the previous round closed from ZooKeeper, so
    // every round still counts each live sensor once: k1, k2, n2.
    assert!(n1.proc.terminate(Duration::from_secs(10)).is_some());
    let at = receiver.last_round();
    assert!(
        receiver.wait_round(at + 8, Duration::from_secs(90)).await,
        "rounds stalled after the failover at {}\n{}",
        receiver.last_round(),
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    receiver.assert_contiguous();
    let mut by_round = std::collections::BTreeMap::new();
    for e in n2.events_named("round readings averaged") {
        by_round.insert(e["round"].as_u64().expect("round"), included(&e));
    }
    let mut short = Vec::new();
    receiver.snapshot(|r| {
        for round in at + 2..=at + 8 {
            let v = &r.by_round[&round];
            assert_eq!(v["leader"], "n2", "n2 took over: {v}");
            let ids = &by_round[&round];
            if ids != &["k1", "k2", "n2"] {
                short.push((round, ids.clone()));
            }
        }
    });
    assert!(
        short.is_empty(),
        "after the failover, rounds that did not average the three live sensors: {short:?}\n{}",
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    for k in [&k1, &k2] {
        assert!(
            !lines(k).iter().any(|l| l.contains(" LEADER ")),
            "{} led\n{}",
            k.name(),
            k.log_tail(20)
        );
    }
}

/// A kazoo sensor leads; our two nodes follow it beside another kazoo sensor. Every kazoo
/// round counts four readings, and each of ours publishes a fresh reading for every kazoo
/// barrier (none dropped as late), so the kazoo leader never averages a stale value of ours.
/// Then the kazoo leader leaves and one of ours takes over: every round counts the three
/// live sensors from the first one on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kazoo_leader_averages_our_followers_fresh_readings_every_round() {
    let test = "a_kazoo_leader_averages_our_followers_fresh_readings_every_round";
    let Some(script) = kazoo_sensor_script(test) else {
        return;
    };
    support::require_kazoo_and_requests();
    let zk = chrooted("mixed-kazoo-leads");
    let s = session(&zk).await;
    let receiver = Receiver::start().await;
    let nuevo = format!("{}/nuevo", receiver.url());
    let mut k1 = spawn_kazoo_sensor(&script, "k1", &zk, &nuevo, PERIOD);
    assert!(
        wait_line(&k1, 0, Duration::from_secs(30), |l| l.contains(" LEADER "))
            .await
            .is_some(),
        "k1 never led\n{}",
        k1.log_tail(20)
    );
    let mut opts = NodeOpts::new(&zk, Some(&receiver.url()));
    opts.period = PERIOD.into();
    let n1 = common::spawn("n1", &opts);
    let n2 = common::spawn("n2", &opts);
    // Ours queue right behind k1 in the election; k2 after them.
    let c = s.client().expect("client");
    assert!(
        testkit::wait_until_async(Duration::from_secs(60), || async {
            c.list_children("/election").await.map(|l| l.len()) == Ok(3)
        })
        .await,
        "our nodes never joined the election\n{}",
        dump(&[&n1, &n2], &[&k1])
    );
    let k2 = spawn_kazoo_sensor(&script, "k2", &zk, &nuevo, PERIOD);
    assert!(
        wait_members(&s, &["k1", "k2", "n1", "n2"], 60).await,
        "the four sensors never all published\n{}",
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    let sent = |p: &Proc| -> Vec<String> {
        lines(p)
            .into_iter()
            .filter(|l| l.contains(" SENT "))
            .collect()
    };
    // Skip the round in progress when all four had published.
    let skip = sent(&k1).len() + 1;
    let taken_before: Vec<usize> = [&n1, &n2]
        .iter()
        .map(|n| n.events_named("reading taken").len())
        .collect();
    const ROUNDS: usize = 12;
    assert!(
        testkit::wait_until_async(Duration::from_secs(90), || async {
            sent(&k1).len() >= skip + ROUNDS
        })
        .await,
        "the kazoo leader sent too few averages\n{}",
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    let rounds: Vec<String> = sent(&k1)[skip..skip + ROUNDS].to_vec();
    for l in &rounds {
        let n: usize = l
            .split_whitespace()
            .find_map(|w| w.strip_prefix("n="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no n= in {l:?}"));
        assert_eq!(n, 4, "the kazoo leader averaged all four: {l}");
        assert!(l.contains("http=200"), "delivered through /nuevo: {l}");
    }
    // Ours served every kazoo barrier of the window: one fresh reading each (the kazoo
    // leader's barrier is up for a whole period, and ours publish as soon as it appears).
    for (n, before) in [&n1, &n2].iter().zip(taken_before) {
        let taken = n.events_named("reading taken").len() - before;
        assert!(
            taken >= ROUNDS,
            "{} published {taken} readings in {ROUNDS} kazoo rounds\n{}",
            n.id,
            n.tail()
        );
        assert!(
            n.events_named("reading too late: its round closed before it was written; dropped")
                .is_empty(),
            "{} dropped a reading under the kazoo leader\n{}",
            n.id,
            n.tail()
        );
        assert!(
            n.events_named("became leader").is_empty(),
            "{} led while the kazoo leader was alive\n{}",
            n.id,
            n.tail()
        );
    }
    let delivered = receiver.snapshot(|r| (r.legacy.len(), r.accepted.len()));
    assert!(delivered.0 >= skip + ROUNDS - 1, "/nuevo got {delivered:?}");
    assert_eq!(delivered.1, 0, "none of ours delivered rounds");

    // The kazoo leader leaves (SIGTERM: it closes its session, its barrier stays up). Ours,
    // next in the election, resume that barrier as round 1 and leads on: every round
    // counts the three live sensors, the remaining kazoo follower included.
    k1.terminate(Duration::from_secs(10));
    assert!(
        receiver.wait_round(8, Duration::from_secs(90)).await,
        "our node did not take over from the kazoo leader (last round {})\n{}",
        receiver.last_round(),
        dump(&[&n1, &n2], &[&k1, &k2])
    );
    receiver.assert_contiguous();
    let mut short = Vec::new();
    // n1 and n2 joined the election together: either may be first in line.
    let leader = match receiver.last_leader().as_deref() {
        Some("n1") => &n1,
        Some("n2") => &n2,
        other => panic!("round 8 led by {other:?}"),
    };
    let averaged = leader.events_named("round readings averaged");
    receiver.snapshot(|r| {
        for round in 1..=8u64 {
            assert_eq!(
                r.by_round[&round]["leader"].as_str(),
                Some(leader.id.as_str())
            );
            let ids = averaged
                .iter()
                .find(|e| e["round"].as_u64() == Some(round))
                .map(included)
                .unwrap_or_else(|| panic!("{} logged no readings for round {round}", leader.id));
            if ids != ["k2", "n1", "n2"] {
                short.push((round, ids));
            }
        }
    });
    assert!(
        short.is_empty(),
        "rounds after the kazoo leader left that did not average the three live sensors: \
         {short:?}\n{}",
        dump(&[&n1, &n2], &[&k1, &k2])
    );
}
