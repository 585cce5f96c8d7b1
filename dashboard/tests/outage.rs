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
        // The session notices first; the server's own probe (srvr) may report "down" one
        // probe later.
        .wait_for(Duration::from_secs(60), "stale marker, server down", |v| {
            v["zookeeper"]["stale"] == true && v["ensemble"][0]["mode"] == "down"
        })
        .await;
    assert!(v["zookeeper"]["stale_since_ms"].as_i64().is_some());
    assert_eq!(sensor_ids(&v), ["solo"], "last known state kept");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_in_an_ensemble_is_shown_and_heals() {
    let mut zk = testkit::ZkEnsemble::start(3).expect("3-server ensemble");
    let connect = zk.connect_string();
    let dash = Dashboard::start(&connect, &[]).await;
    let modes = |v: &serde_json::Value| -> Vec<String> {
        v["ensemble"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["mode"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let v = dash
        .wait_for(Duration::from_secs(60), "one leader, two followers", |v| {
            let mut m = modes(v);
            m.sort();
            v["zookeeper"]["stale"] == false && m == ["follower", "follower", "leader"]
        })
        .await;
    assert!(v["ensemble"][0]["latency_avg_ms"].is_number());

    // Two of three servers gone: no quorum, the third stops serving.
    zk.servers[0].kill();
    zk.servers[1].kill();
    // The survivor needs a few ticks to notice it lost its quorum: wait for that too.
    dash.wait_for(Duration::from_secs(60), "quorum loss shown", |v| {
        v["zookeeper"]["stale"] == true
            && modes(v)[..2] == ["down", "down"]
            && !matches!(modes(v)[2].as_str(), "leader" | "follower")
    })
    .await;
    let (_, html) = dash.page("").await;
    assert!(html.contains("data-stale=\"true\""), "stale banner");
    assert!(
        html.contains("0 of 3 server(s) serving"),
        "no server serving"
    );

    zk.servers[0].start_again().expect("restart");
    zk.servers[1].start_again().expect("restart");
    assert!(
        zk.wait_all_running_serving(Duration::from_secs(90)),
        "quorum back"
    );
    dash.wait_for(Duration::from_secs(90), "recovery", |v| {
        let mut m = modes(v);
        m.sort();
        v["zookeeper"]["stale"] == false && m == ["follower", "follower", "leader"]
    })
    .await;
    let (_, html) = dash.page("").await;
    assert!(
        html.contains("follower → down") || html.contains("leader → down"),
        "server mode changes in the timeline"
    );
}
