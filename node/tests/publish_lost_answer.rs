//! A sensor's reading whose answer is lost although the write landed (chaos seed 5, round
//! 322: a ZooKeeper server went down while the publish was in flight).
//!
//! The leader counts such a reading (it is in `/mediciones/<id>`, written inside the round);
//! the sensor must count it in `/counter` too. On the old code `publish_reading` returned the
//! connection error, the sensor logged no reading, and when the round closed before its
//! retry, the reading was never counted: `/counter` ended one short. Now the sensor finds out
//! after reconnecting (its own ephemeral znode, written after the barrier went up) and
//! reports the reading as written.
//!
//! Real parts: ZooKeeper, and a testkit `SlowLink` between the sensor's session and the
//! server that holds the server's answers back and then drops them with the connection.

use std::time::Duration;

use sensor_node::layout;
use sensor_node::round::{publish_reading, Published};
use sensor_node::zk::barrier::Raised;
use sensor_node::zk::{self, Session, SessionConfig};
use testkit::SlowLink;

async fn connect(hosts: &str) -> Session {
    let s = Session::start(SessionConfig::new(hosts, Duration::from_secs(10)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("zk");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_whose_answer_was_lost_but_landed_is_reported_written() {
    let server = testkit::shared_zk();
    let chroot = testkit::unique_chroot("lost-answer");
    let admin = connect(&format!("{}{chroot}", server.connect_string())).await;
    let c = admin.client().expect("client");
    zk::ensure_path(&c, layout::ROUNDS).await.expect("rounds");
    c.create(layout::ROUNDS_LAST, b"0", &zk::persistent())
        .await
        .expect("rounds/last");
    c.create(layout::BARRIER, b"1", &zk::persistent())
        .await
        .expect("barrier");
    let barrier = c
        .check_stat(layout::BARRIER)
        .await
        .expect("stat")
        .expect("barrier up");
    let raised = Raised {
        id: barrier.czxid,
        version: barrier.version,
    };

    let link = SlowLink::start(server.port()).await;
    let sensor = connect(&format!("{}{chroot}", link.connect_string())).await;
    // Every answer now arrives a second late: the write reaches the server at once, its
    // answer waits in the link, where the cut below drops it.
    link.delay(Duration::from_millis(1000));
    let publishing = {
        let sensor = sensor.clone();
        tokio::spawn(async move { publish_reading(&sensor, "s1", 21.5, raised).await })
    };
    let path = layout::reading("s1");
    let landed = testkit::wait_until_async(Duration::from_secs(20), || async {
        matches!(c.check_stat(&path).await, Ok(Some(s)) if s.mzxid > barrier.czxid)
    })
    .await;
    assert!(landed, "the reading never reached ZooKeeper");
    link.cut();
    link.delay(Duration::ZERO);
    let written = c.check_stat(&path).await.expect("stat").expect("reading");

    let outcome = tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .expect("publish_reading returned")
        .expect("task");
    assert_eq!(
        outcome.ok(),
        Some(Published::Written {
            mzxid: written.mzxid
        }),
        "the write landed (mzxid {}) but the sensor was not told so",
        written.mzxid
    );
    sensor.close();
    admin.close();
}
