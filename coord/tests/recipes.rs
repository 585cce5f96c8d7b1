//! Normal behaviour of each recipe against a real (shared, chrooted) ZooKeeper.

use std::time::Duration;

use sensor_coord::zk::{
    self, Barrier, ChildrenWatch, ConnState, Counter, DataWatch, Election, NodeData, Session,
    SessionConfig,
};

fn session(chroot: &str) -> Session {
    let hosts = format!("{}{}", testkit::shared_zk().connect_string(), chroot);
    Session::start(SessionConfig::new(hosts, Duration::from_secs(2)))
}

async fn connected(chroot: &str) -> Session {
    let s = session(chroot);
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

#[tokio::test]
async fn session_connects_through_unresolvable_host_and_creates_chroot() {
    let chroot = testkit::unique_chroot("dns");
    let hosts = format!(
        "zookeeper-gone.invalid:2181,{}{}",
        testkit::shared_zk().connect_string(),
        chroot
    );
    let s = Session::start(SessionConfig::new(hosts, Duration::from_secs(2)));
    let client = s
        .wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connects despite an unresolvable host");
    client
        .create("/x", b"1", &zk::persistent())
        .await
        .expect("create inside chroot");
    assert_eq!(s.current_status().state, ConnState::Connected);
    assert_eq!(s.current_status().generation, 1);
    // The chroot really is a chroot: the node is at <chroot>/x from the root's view.
    let root = connected("").await;
    let (data, _) = root
        .client()
        .unwrap()
        .get_data(&format!("{chroot}/x"))
        .await
        .expect("visible under the chroot");
    assert_eq!(data, b"1");
}

#[tokio::test]
async fn twenty_concurrent_increments_from_separate_sessions_end_at_twenty() {
    let chroot = testkit::unique_chroot("counter");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let chroot = chroot.clone();
        tasks.push(tokio::spawn(async move {
            let s = connected(&chroot).await;
            let v = Counter::new(s.clone(), "/counter")
                .increment()
                .await
                .expect("increment");
            s.close();
            v
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("task"));
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<i64>>(),
        "each increment saw a distinct value"
    );
    let s = connected(&chroot).await;
    assert_eq!(Counter::new(s.clone(), "/counter").get().await.unwrap(), 20);
    let (data, _) = s.client().unwrap().get_data("/counter").await.unwrap();
    assert_eq!(data, b"20", "kazoo's ASCII encoding");
}

#[tokio::test]
async fn election_has_exactly_one_leader_and_hands_over_on_close() {
    let chroot = testkit::unique_chroot("election");
    let mut sessions = Vec::new();
    let mut campaigns = Vec::new();
    for i in 0..3 {
        let s = connected(&chroot).await;
        let e = Election::new(s.clone(), "/election", format!("node-{i}"));
        sessions.push(s);
        campaigns.push(tokio::spawn(async move { e.campaign().await }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first contender leads; the others wait.
    let first = campaigns.remove(0).await.unwrap().expect("leader");
    assert!(first.is_held());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        campaigns.iter().all(|c| !c.is_finished()),
        "only one leader"
    );
    let e = Election::new(sessions[0].clone(), "/election", "x");
    assert_eq!(
        e.contenders().await.unwrap(),
        vec!["node-0", "node-1", "node-2"]
    );
    // Close the leader's session: the next contender leads, with a higher fencing token.
    let token = first.fencing_token();
    sessions[0].close();
    tokio::time::timeout(Duration::from_secs(1), first.lost())
        .await
        .expect("old leader learns it lost");
    assert!(!first.is_held());
    let second = tokio::time::timeout(Duration::from_secs(10), campaigns.remove(0))
        .await
        .expect("next leader in time")
        .unwrap()
        .expect("leader");
    assert!(second.fencing_token() > token);
    second.verify().await.expect("verified in ZooKeeper");
    assert!(!campaigns[0].is_finished());
    // Resigning hands over at once too.
    let token2 = second.fencing_token();
    second.resign().await;
    let third = tokio::time::timeout(Duration::from_secs(10), campaigns.remove(0))
        .await
        .expect("third leader in time")
        .unwrap()
        .expect("leader");
    assert!(third.fencing_token() > token2);
}

#[tokio::test]
async fn leadership_is_revoked_when_its_znode_is_deleted() {
    let chroot = testkit::unique_chroot("revoke");
    let s = connected(&chroot).await;
    let l = Election::new(s.clone(), "/election", "me")
        .campaign()
        .await
        .unwrap();
    s.client()
        .unwrap()
        .delete(l.guard_path(), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), l.lost())
        .await
        .expect("revoked after its znode vanished");
    assert!(l.verify().await.is_err());
}

#[tokio::test]
async fn barrier_wait_removed_and_wait_next() {
    let chroot = testkit::unique_chroot("barrier");
    let leader = connected(&chroot).await;
    let follower = connected(&chroot).await;
    let b_leader = Barrier::new(leader.clone(), "/barrier");
    let b_follower = Barrier::new(follower.clone(), "/barrier");
    // Down: wait_removed returns at once.
    b_follower
        .wait_removed(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let id1 = b_leader.create().await.unwrap();
    assert_eq!(
        b_leader.create().await.unwrap(),
        id1,
        "create is idempotent"
    );
    let seen = b_follower
        .wait_next(None, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(seen, id1);
    let waiter = {
        let b = b_follower.clone();
        tokio::spawn(async move { b.wait_removed(Some(Duration::from_secs(10))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "barrier still up");
    assert!(b_leader.remove().await.unwrap());
    waiter.await.unwrap().expect("released");
    assert!(
        !b_leader.remove().await.unwrap(),
        "second remove reports absence"
    );
    // The same round is not seen again: wait_next(id1) blocks until a new barrier.
    let next = {
        let b = b_follower.clone();
        tokio::spawn(async move { b.wait_next(Some(id1), Some(Duration::from_secs(10))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!next.is_finished(), "no new barrier yet");
    let id2 = b_leader.create().await.unwrap();
    assert!(id2 > id1);
    assert_eq!(next.await.unwrap().unwrap(), id2);
}

#[tokio::test]
async fn data_and_children_watches_follow_changes_and_deletion() {
    let chroot = testkit::unique_chroot("watch");
    let s = connected(&chroot).await;
    let client = s.client().unwrap();
    let mut data = DataWatch::start(&s, "/config/sampling_period");
    let mut kids = ChildrenWatch::start(&s, "/mediciones");
    within(data.wait_for(|d| *d == NodeData::Missing))
        .await
        .unwrap();
    within(kids.wait_for(|c| c.known && !c.exists))
        .await
        .unwrap();
    zk::ensure_path(&client, "/config").await.unwrap();
    client
        .create("/config/sampling_period", b"5", &zk::persistent())
        .await
        .unwrap();
    within(data.wait_for(|d| d.text().as_deref() == Some("5")))
        .await
        .unwrap();
    client
        .set_data("/config/sampling_period", b"abc", None)
        .await
        .unwrap();
    within(data.wait_for(|d| d.text().as_deref() == Some("abc")))
        .await
        .unwrap();
    client
        .delete("/config/sampling_period", None)
        .await
        .unwrap();
    within(data.wait_for(|d| *d == NodeData::Missing))
        .await
        .unwrap();

    zk::ensure_path(&client, "/mediciones").await.unwrap();
    client
        .create("/mediciones/a", b"20.5", &zk::ephemeral())
        .await
        .unwrap();
    client
        .create("/mediciones/b", b"21.5", &zk::ephemeral())
        .await
        .unwrap();
    within(kids.wait_for(|c| c.names == ["a", "b"]))
        .await
        .unwrap();
    client.delete("/mediciones/a", None).await.unwrap();
    within(kids.wait_for(|c| c.names == ["b"])).await.unwrap();
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("watch caught up in time")
}
