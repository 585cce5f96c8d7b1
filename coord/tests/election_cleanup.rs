//! Our own old contender znodes never block the election: a resign whose delete is lost on
//! the network is retried until ZooKeeper confirms it, and a campaign removes leftovers of
//! its own session first. Real ZooKeeper; the lost delete is a real one (a silent proxy drops
//! the request while the session survives).

mod support;

use std::time::Duration;

use sensor_coord::zk::{self, ConnState, Election, Session};
use support::{connected, InProcContender, Partition};

fn chrooted(connect: &str, chroot: &str) -> String {
    format!("{connect}{chroot}")
}

async fn contenders(s: &Session) -> Vec<String> {
    let mut names = s
        .client()
        .expect("client")
        .list_children("/election")
        .await
        .expect("list /election");
    names.sort();
    names
}

/// The leader resigns while its network silently drops packets: the delete never reaches
/// ZooKeeper, the client times out, reconnects, and its session survives. The next
/// contender must still lead (old code: it waited forever behind the ghost znode), and the
/// process that resigned must lead again once that leader goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_whose_delete_is_lost_is_retried_and_the_election_moves_on() {
    let chroot = testkit::unique_chroot("lost-delete");
    let server = testkit::shared_zk();
    let proxy = Partition::start(server.port()).await;
    // Long session: it must outlive the silent spell (the client notices after ~1/3 of it).
    let timeout = Duration::from_secs(9);
    let s1 = connected(&chrooted(&proxy.connect_string(), &chroot), timeout).await;
    let s2 = connected(&chrooted(&server.connect_string(), &chroot), timeout).await;
    let session_id = s1.current_status().session_id;

    let e1 = Election::new(s1.clone(), "/election", "p1");
    let l1 = tokio::time::timeout(Duration::from_secs(20), e1.campaign())
        .await
        .expect("p1 leads in time")
        .expect("p1 leads");
    let (c2, _t2) = InProcContender::start(s2.clone(), "/election", "p2");
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || {
            let s2 = s2.clone();
            async move { contenders(&s2).await.len() == 2 }
        })
        .await,
        "p2 queued behind p1"
    );
    assert!(!c2.leading());

    // Resign into a silent network: the delete is written and lost.
    proxy.silence();
    let resign = tokio::spawn(l1.resign());
    let mut status = s1.status();
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.state == ConnState::Suspended),
    )
    .await
    .expect("client notices the silent link")
    .expect("status channel");
    proxy.heal();
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.state == ConnState::Connected),
    )
    .await
    .expect("reconnects")
    .expect("status channel");
    let st = s1.current_status();
    assert_eq!(st.generation, 1, "the session survived the silent spell");
    assert_eq!(st.session_id, session_id);

    // The next contender leads: p1's znode is gone although its session lives on.
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || std::future::ready(c2.leading()))
            .await,
        "p2 never led: /election = {:?}",
        contenders(&s2).await
    );
    tokio::time::timeout(Duration::from_secs(20), resign)
        .await
        .expect("resign returned once the delete was confirmed")
        .expect("resign task");
    assert_eq!(contenders(&s2).await.len(), 1, "only p2's znode is left");

    // p1 campaigns again, queues behind p2, and leads once p2 goes away.
    let again = tokio::spawn(async move { e1.campaign().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!again.is_finished(), "p1 must wait for p2");
    s2.close();
    let l1 = tokio::time::timeout(Duration::from_secs(20), again)
        .await
        .expect("p1 leads again after p2 left")
        .expect("task")
        .expect("campaign");
    l1.verify().await.expect("p1 leads in ZooKeeper");
    s1.close();
}

/// A contender znode this session left behind (its delete lost some other way) is removed
/// when the session campaigns again, instead of queueing the new contender behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_removes_leftover_contenders_of_its_own_session() {
    let chroot = testkit::unique_chroot("leftover");
    let connect = chrooted(&testkit::shared_zk().connect_string(), &chroot);
    let s1 = connected(&connect, Duration::from_secs(4)).await;
    let s2 = connected(&connect, Duration::from_secs(4)).await;
    let c1 = s1.client().unwrap();
    zk::ensure_path(&c1, "/election").await.unwrap();
    let opts = zookeeper_client::CreateMode::EphemeralSequential
        .with_acls(zookeeper_client::Acls::anyone_all());
    // A ghost of ours first in the queue, and another session's contender behind it.
    c1.create(
        "/election/0123456789abcdef0123456789abcdef__lock__",
        b"p1",
        &opts,
    )
    .await
    .expect("ghost");
    let (c2, _t2) = InProcContender::start(s2.clone(), "/election", "p2");
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || {
            let s1 = s1.clone();
            async move { contenders(&s1).await.len() == 2 }
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c2.leading(), "the ghost is first in the queue");

    let e1 = Election::new(s1.clone(), "/election", "p1");
    let campaign = tokio::spawn(async move { e1.campaign().await });
    // The ghost goes: p2 (now first) leads, and p1's new contender waits behind it.
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || std::future::ready(c2.leading()))
            .await,
        "p2 never led: /election = {:?}",
        contenders(&s1).await
    );
    let names = contenders(&s1).await;
    assert_eq!(names.len(), 2, "p2 and p1's new contender: {names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("0123456789abcdef")),
        "ghost still there: {names:?}"
    );
    assert!(!campaign.is_finished());
    s2.close();
    let l1 = tokio::time::timeout(Duration::from_secs(20), campaign)
        .await
        .expect("p1 leads after p2 left")
        .expect("task")
        .expect("campaign");
    l1.verify().await.expect("p1 leads in ZooKeeper");
    s1.close();
}
