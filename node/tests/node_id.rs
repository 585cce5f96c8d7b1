//! One live process per node id, with real `sensor-node` processes on a real ZooKeeper:
//! a second process with a taken id refuses to start (exit 1, naming the id) and leaves the
//! first one's readings alone; a node restarted at once after a SIGKILL waits for its old
//! session to expire and then runs.

mod common;

use std::time::Duration;

use common::NodeOpts;
use sensor_node::layout;
use sensor_node::zk::{Session, SessionConfig};

async fn owner(s: &Session, path: &str) -> Option<i64> {
    match s.client().ok()?.check_stat(path).await {
        Ok(Some(stat)) => Some(stat.ephemeral_owner),
        _ => None,
    }
}

async fn has_owner(s: &Session, path: &str) -> bool {
    owner(s, path).await.is_some()
}

async fn observer(zk: &str) -> Session {
    let s = Session::start(SessionConfig::new(zk, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_with_a_taken_id_refuses_to_start_and_leaves_the_first_alone() {
    let zk = format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot("dup-id")
    );
    let obs = observer(&zk).await;
    let opts = NodeOpts::new(&zk, None);
    let first = common::spawn("dup", &opts);
    let reading = layout::reading("dup");
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), || has_owner(&obs, &reading)).await,
        "first node never published a reading:\n{}",
        first.tail()
    );
    let first_owner = owner(&obs, &reading).await;

    let mut second = common::spawn("dup", &opts);
    let status = second.proc.wait_timeout(Duration::from_secs(40));
    let log = second.tail();
    let status = status.unwrap_or_else(|| panic!("second node with id dup still runs:\n{log}"));
    assert!(!status.success(), "exit status {status:?}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("node id \"dup\" is in use by another live process"),
        "message names the id:\n{log}"
    );
    // The first one was never disturbed: its reading keeps its owner, round after round.
    let mut first = first;
    assert!(first.proc.is_running(), "{}", first.tail());
    for _ in 0..6 {
        assert_eq!(owner(&obs, &reading).await, first_owner);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(first.proc.is_running(), "{}", first.tail());
    assert!(
        first
            .events()
            .iter()
            .all(|e| !e.to_string().contains("publishing the reading failed")),
        "{}",
        first.tail()
    );
    obs.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restarted_after_sigkill_waits_for_its_old_session_and_runs() {
    let zk = format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot("restart-id")
    );
    let obs = observer(&zk).await;
    let opts = NodeOpts::new(&zk, None);
    let mut first = common::spawn("re", &opts);
    let claim = layout::node_claim("re");
    let reading = layout::reading("re");
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), || has_owner(&obs, &reading)).await,
        "first node never published a reading:\n{}",
        first.tail()
    );
    let old = owner(&obs, &claim)
        .await
        .expect("first node claimed its id");
    first.proc.kill();
    // At once: the old session (2 s timeout) still holds the id.
    let mut second = common::spawn("re", &opts);
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), || {
            let obs = obs.clone();
            let (claim, reading) = (claim.clone(), reading.clone());
            async move {
                let c = owner(&obs, &claim).await;
                c.is_some() && c != Some(old) && owner(&obs, &reading).await == c
            }
        })
        .await,
        "restarted node never claimed its id and published:\n{}",
        second.tail()
    );
    assert!(second.proc.is_running(), "{}", second.tail());
    assert!(
        !second
            .events_named("node id held by another session; waiting in case it is our own previous one, expiring")
            .is_empty(),
        "it waited for the old session:\n{}",
        second.tail()
    );
    obs.close();
}

/// While a node's session is gone (a network partition longer than the session timeout),
/// another process takes its id; when the partition heals, the first node finds its id
/// held, waits out the grace, and stops with exit 1 instead of fighting over the readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_whose_id_was_taken_while_its_session_was_gone_stops() {
    let chroot = testkit::unique_chroot("taken-id");
    let server = testkit::shared_zk();
    let proxy = testkit::Partition::start(server.port()).await;
    let direct = format!("{}{chroot}", server.connect_string());
    let obs = observer(&direct).await;
    let claim = layout::node_claim("tk");
    let mut first = common::spawn(
        "tk",
        &NodeOpts::new(&format!("{}{chroot}", proxy.connect_string()), None),
    );
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), || has_owner(&obs, &claim)).await,
        "first node never claimed its id:\n{}",
        first.tail()
    );
    let old = owner(&obs, &claim).await;
    proxy.cut();
    // The server expires the partitioned session (2 s timeout): the claim goes.
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || {
            let obs = obs.clone();
            let claim = claim.clone();
            async move { owner(&obs, &claim).await.is_none() }
        })
        .await,
        "partitioned session never expired"
    );
    let second = common::spawn("tk", &NodeOpts::new(&direct, None));
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), || {
            let obs = obs.clone();
            let claim = claim.clone();
            async move {
                let o = owner(&obs, &claim).await;
                o.is_some() && o != old
            }
        })
        .await,
        "second node never claimed the free id:\n{}",
        second.tail()
    );
    let taken_by = owner(&obs, &claim).await;
    proxy.heal();
    let status = first.proc.wait_timeout(Duration::from_secs(40));
    let log = first.tail();
    let status = status.unwrap_or_else(|| panic!("first node still runs:\n{log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("node id \"tk\" is in use"), "{log}");
    assert_eq!(
        owner(&obs, &claim).await,
        taken_by,
        "the second keeps the id"
    );
    obs.close();
}
