//! Which reading counts for which round, with real late writes: a sensor-node whose link to
//! ZooKeeper is slow (a testkit `SlowLink` delivering everything the server sends 1.2 s
//! late, with rounds of 0.5 s) sees each barrier after its round already closed, so every
//! reading it takes lands late. A reading must count only for the round it was taken for.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Node, NodeOpts, Receiver};
use testkit::SlowLink;

fn dump(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}\n", n.id, n.tail()))
        .collect()
}

/// `included` of a "round readings averaged" log event: `["n1", "n2"]` → ids.
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

/// Fails on the old code, where the slow node's reading for barrier B1, landing after B2
/// opened (mzxid > B2's czxid), was averaged into B2's round (or a later one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_that_lands_after_its_round_closed_counts_for_no_later_round() {
    let server = testkit::shared_zk();
    let chroot = testkit::unique_chroot("late-reading");
    let zk = format!("{}{chroot}", server.connect_string());
    let receiver = Receiver::start().await;
    let opts = NodeOpts::new(&zk, Some(&receiver.url())); // period 0.5 s
    let n1 = common::spawn("n1", &opts);
    assert!(
        receiver.wait_round(1, Duration::from_secs(60)).await,
        "n1 delivered no round\n{}",
        n1.tail()
    );
    let n2 = common::spawn("n2", &opts);
    // n3 talks to ZooKeeper through a proxy; a long session so a slow link does not expire it.
    let link = SlowLink::start(server.port()).await;
    let mut slow = NodeOpts::new(
        &format!("{}{chroot}", link.connect_string()),
        Some(&receiver.url()),
    );
    slow.session_timeout_ms = 20_000;
    let n3 = common::spawn("n3", &slow);
    let nodes = [&n1, &n2, &n3];
    // Wait until a round counted all three, n3 included (its link still fast).
    let all_three = testkit::wait_until_async(Duration::from_secs(60), || async {
        n1.events_named("round readings averaged")
            .iter()
            .any(|e| included(e).len() == 3)
    })
    .await;
    assert!(all_three, "no round counted n3\n{}", dump(&nodes));

    link.delay(Duration::from_millis(1200));
    let slowed_at = receiver.last_round();
    // Rounds opened from here on see n3's reading only after they closed.
    let from = slowed_at + 2;
    // 30 s of rounds: several of n3's slow read-write cycles (each about 8 s on the old code).
    const WINDOW: u64 = 60;
    assert!(
        receiver
            .wait_round(from + WINDOW, Duration::from_secs(120))
            .await,
        "rounds stalled at {}\n{}",
        receiver.last_round(),
        dump(&nodes)
    );
    receiver.assert_contiguous();

    // Which barrier each round had and whom it counted (leader's log); which barriers n3
    // took a reading for (its own log).
    let mut rounds: BTreeMap<u64, (i64, Vec<String>)> = BTreeMap::new();
    for e in n1.events_named("round readings averaged") {
        rounds.insert(
            e["round"].as_u64().expect("round"),
            (e["barrier"].as_i64().expect("barrier"), included(&e)),
        );
    }
    let n3_barriers: HashSet<i64> = n3
        .events_named("reading taken")
        .iter()
        .map(|e| e["barrier"].as_i64().expect("barrier"))
        .collect();
    let misattributed: Vec<(u64, i64)> = rounds
        .range(from..=from + WINDOW)
        .filter(|(_, (barrier, ids))| {
            ids.iter().any(|i| i == "n3") && !n3_barriers.contains(barrier)
        })
        .map(|(round, (barrier, _))| (*round, *barrier))
        .collect();
    assert!(
        misattributed.is_empty(),
        "rounds (round, barrier) that averaged an n3 reading taken for another barrier: \
         {misattributed:?}\nn3 took readings for {n3_barriers:?}\n{}",
        dump(&nodes)
    );
    // The injection really happened: n3 kept taking readings, and dropped them as late.
    let late = n3.events_named("reading too late: its round closed before it was written; dropped");
    assert!(
        late.len() >= 3,
        "n3 dropped {} late readings (expected several)\n{}",
        late.len(),
        n3.tail()
    );
    // The others were unaffected: every round of the window counted n1 and n2.
    for (round, (_, ids)) in rounds.range(from..=from + WINDOW) {
        assert!(
            ids.iter().any(|i| i == "n1") && ids.iter().any(|i| i == "n2"),
            "round {round} counted {ids:?}"
        );
    }
    link.delay(Duration::ZERO);
}
