//! A leader told to stop (SIGTERM) while its round's commit is on the wire still reports the
//! commit ZooKeeper applied. Found by the chaos suite (seed 3): the campaign loop dropped
//! the round in progress to resign, the commit landed anyway, and the round was delivered
//! by the next leader with no line in its leader's log saying it was committed.

use std::time::Duration;

use sensor_node::ctl;
use testkit::{Node, NodeOpts, SlowLink, ZkServer};

/// `/rounds/last` as a number (0 when absent or unreadable).
async fn last_round(session: &sensor_node::zk::Session) -> u64 {
    let Ok(client) = session.client() else {
        return 0;
    };
    match client.get_data("/rounds/last").await {
        Ok((data, _)) => String::from_utf8_lossy(&data).trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_commit_still_logs_the_committed_round() {
    let zk = ZkServer::start().expect("start ZooKeeper");
    // The node reaches ZooKeeper through a link that can deliver answers late: its commit
    // is applied at once, the answer (and so the leader's knowledge of it) comes later.
    let link = SlowLink::start(zk.port()).await;
    let mut opts = NodeOpts::new(&link.connect_string(), None);
    opts.session_timeout_ms = 10_000;
    let mut node = Node::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_sensor-node")),
        "n1",
        &opts,
    );
    let leading = testkit::wait_until_async(Duration::from_secs(60), || {
        std::future::ready(node.events_named("round committed").len() >= 2)
    })
    .await;
    assert!(leading, "the node never led rounds; log:\n{}", node.tail());

    let observer = ctl::connect(&zk.connect_string(), Duration::from_secs(10))
        .await
        .expect("observer session");
    link.delay(Duration::from_millis(1500));
    let before = last_round(&observer).await;
    // The next commit: applied in ZooKeeper, its answer still held back by the link.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut committed = before;
    while committed <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        committed = last_round(&observer).await;
    }
    let seen = committed > before;
    assert!(
        seen,
        "no commit after round {before}; log:\n{}",
        node.tail()
    );
    node.proc.signal(libc::SIGTERM);
    let status = node
        .proc
        .wait_timeout(Duration::from_secs(20))
        .expect("the node exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        node.tail()
    );

    let logged: Vec<u64> = node
        .events_named("round committed")
        .iter()
        .filter_map(|e| e["round"].as_u64())
        .collect();
    assert!(
        logged.contains(&committed),
        "round {committed} was committed in ZooKeeper but its leader never logged it \
         (logged: {logged:?}); log:\n{}",
        node.tail()
    );
    observer.close();
}
