//! ZooKeeper stopped and started again under a running dashboard (and a real sensor-node):
//! the page and the JSON keep the last known state marked stale with its age, then turn
//! current again by themselves.

mod support;

use std::time::Duration;

use support::{fleet, sensor_ids, Dashboard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_restart_shows_stale_then_recovers() {
    let mut zk = testkit::ZkServer::start().expect("own ZooKeeper");
    let connect = zk.connect_string();
    let _nodes = fleet(&connect, None, &["solo"]);
    let dash = Dashboard::start(&connect, &[]).await;
    dash.wait_for(
        Duration::from_secs(60),
        "a current state with the node",
        |v| v["zookeeper"]["stale"] == false && sensor_ids(v) == ["solo"],
    )
    .await;

    zk.stop();
    let v = dash
        .wait_for(Duration::from_secs(60), "stale marker", |v| {
            v["zookeeper"]["stale"] == true
        })
        .await;
    assert!(v["zookeeper"]["stale_since_ms"].as_i64().is_some());
    assert_eq!(sensor_ids(&v), ["solo"], "last known state kept");
    assert_eq!(v["ensemble"][0]["mode"], "down");
    let (status, html) = dash.page("").await;
    assert_eq!(status, 200);
    assert!(html.contains("data-stale=\"true\""), "stale banner");
    assert!(html.contains("showing the last known state"));
    assert!(
        html.contains("data-sensor=\"solo\""),
        "last known sensors still listed"
    );

    zk.start_again().expect("start ZooKeeper again");
    zk.wait_serving(Duration::from_secs(60))
        .expect("serving again");
    let v = dash
        .wait_for(Duration::from_secs(90), "recovery", |v| {
            v["zookeeper"]["stale"] == false && v["ensemble"][0]["mode"] == "standalone"
        })
        .await;
    assert_eq!(v["zookeeper"]["session"], "connected");
    let (_, html) = dash.page("").await;
    assert!(html.contains("data-stale=\"false\""));
    assert!(
        html.contains("cluster state current again"),
        "recovery in the timeline"
    );
}
