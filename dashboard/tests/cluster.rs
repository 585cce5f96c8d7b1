//! The dashboard against a real ZooKeeper and real `sensor-node` processes: the JSON state
//! matches what ZooKeeper says, follows a leader SIGKILL, and the event stream delivers the
//! leader change; hostile znode content never breaks the page.
//!
//! Needs the `sensor-node` binary (`cargo test --workspace` builds it; alone:
//! `cargo build -p zk-sensors-node`).

mod support;

use std::time::Duration;

use sensor_coord::status as ctl;
use sensor_coord::zk::{Session, SessionConfig};
use serde_json::Value;
use support::{fleet, leader_of, sensor_ids, Dashboard, SseReader};

async fn session(connect: &str) -> Session {
    let s = Session::start(SessionConfig::new(connect, Duration::from_secs(10)));
    s.wait_connected_for(Duration::from_secs(30))
        .await
        .expect("test session");
    s
}

fn last_committed(v: &Value) -> u64 {
    v["cluster"]["round"]["last_committed"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_events_follow_a_leader_sigkill() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-leader")
    );
    let ids = ["n1", "n2", "n3"];
    let mut nodes = fleet(&connect, None, &ids);
    let dash = Dashboard::start(&connect, &[]).await;
    let reader = session(&connect).await;

    // 1. The JSON state matches reality: every live node, the leader sensorctl sees,
    //    rounds advancing and agreeing with /rounds/last.
    let v = dash
        .wait_for(
            Duration::from_secs(60),
            "3 sensors, a leader and rounds",
            |v| sensor_ids(v).len() == 3 && leader_of(v).is_some() && last_committed(v) >= 2,
        )
        .await;
    assert_eq!(sensor_ids(&v), ids.map(String::from).to_vec());
    let truth = ctl::status(&reader, Duration::from_secs(10))
        .await
        .expect("sensorctl status");
    assert_eq!(leader_of(&v), truth.leader, "leader as sensorctl sees it");
    let contenders: Vec<String> = v["cluster"]["contenders"]
        .as_array()
        .expect("contenders")
        .iter()
        .map(|c| c.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(contenders, truth.contenders);
    let fencing = v["cluster"]["leader"]["fencing"].as_u64().expect("fencing");
    assert!(fencing > 0);
    let truth_last = truth.round.last_committed.unwrap_or(0);
    assert!(
        last_committed(&v) <= truth_last && truth_last - last_committed(&v) <= 40,
        "dashboard round {} vs /rounds/last {truth_last}",
        last_committed(&v)
    );
    assert_eq!(v["cluster"]["round"]["live"], 3);
    assert_eq!(v["zookeeper"]["stale"], false);
    assert_eq!(v["ensemble"][0]["mode"], "standalone");
    assert!(v["ensemble"][0]["znode_count"].as_u64().unwrap_or(0) > 5);
    // The page without JavaScript shows the same.
    let (status, html) = dash.page("").await;
    assert_eq!(status, 200);
    let old = leader_of(&v).expect("leader");
    assert!(
        html.contains(&format!("data-leader=\"{old}\"")),
        "leader on the page"
    );
    for id in ids {
        assert!(
            html.contains(&format!("data-sensor=\"{id}\"")),
            "{id} on the page"
        );
    }

    // 2. SIGKILL the leader: the stream announces the new leader, the JSON follows.
    let mut sse = SseReader::open(&dash.url).await;
    let first = sse
        .next(Duration::from_secs(10))
        .await
        .expect("first event");
    assert_eq!(first.event, "section", "sections come first: {first:?}");
    let idx = ids.iter().position(|i| *i == old).expect("leader is ours");
    nodes[idx].proc.kill();
    let mut announced = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let Some(m) = sse.next(Duration::from_secs(5)).await else {
            continue;
        };
        if m.event == "timeline" && m.data["kind"] == "leader" {
            if let Some(l) = m.data["leader"].as_str().filter(|l| *l != old) {
                announced = Some(l.to_string());
                break;
            }
        }
    }
    let announced = announced.expect("the event stream announced a new leader within 60 s");
    let v = dash
        .wait_for(Duration::from_secs(60), "new leader and 2 sensors", |v| {
            leader_of(v).is_some_and(|l| l != old) && sensor_ids(v).len() == 2
        })
        .await;
    assert_eq!(leader_of(&v).as_deref(), Some(announced.as_str()));
    assert!(v["cluster"]["leader"]["fencing"].as_u64().unwrap_or(0) > fencing);
    assert_eq!(v["cluster"]["leader"]["since_observed"], true);
    assert!(!sensor_ids(&v).contains(&old));
    let truth = ctl::status(&reader, Duration::from_secs(10))
        .await
        .expect("sensorctl status");
    assert_eq!(leader_of(&v), truth.leader);
    reader.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_znode_content_is_escaped_and_clipped() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-hostile")
    );
    let s = session(&connect).await;
    let client = s.client().expect("client");
    let opts = sensor_coord::zk::persistent();
    for p in ["/mediciones", "/election", "/services/api", "/config"] {
        sensor_coord::zk::ensure_path(&client, p)
            .await
            .expect("mkdir");
    }
    let script = "<script>alert(1)</script>";
    let huge: Vec<u8> = std::iter::repeat_n(0xffu8, 600_000).collect();
    client
        .create("/mediciones/<img src=x onerror=alert(1)>", &huge, &opts)
        .await
        .expect("hostile reading");
    client
        .create("/mediciones/ok", b"21.5", &opts)
        .await
        .expect("reading");
    client
        .create(
            "/election/0123456789abcdef0123456789abcdef__lock__0000000001",
            script.as_bytes(),
            &opts,
        )
        .await
        .expect("contender");
    client
        .create("/services/api/\"><b>x", script.as_bytes(), &opts)
        .await
        .expect("api instance");
    client
        .create("/config/api_url", b"\"><script>alert(2)</script>", &opts)
        .await
        .expect("config");
    let dash = Dashboard::start(&connect, &["--admin-token", "t0ken"]).await;
    let v = dash
        .wait_for(Duration::from_secs(30), "the hostile state", |v| {
            sensor_ids(v).len() == 2
        })
        .await;
    let (status, html) = dash.page("").await;
    assert_eq!(status, 200);
    for bad in ["<script>alert", "<img src=x", "<b>x", "\"><script>"] {
        assert!(!html.contains(bad), "unescaped {bad:?} in the page");
    }
    assert!(html.contains(&support::escape(script)), "escaped leader id");
    assert!(
        html.contains(&support::escape("<img src=x")),
        "escaped sensor id"
    );
    assert!(
        html.len() < 200_000,
        "huge value clipped: page is {} bytes",
        html.len()
    );
    let raw = v["cluster"]["sensors"][0]["raw"].as_str().expect("raw");
    assert!(
        raw.chars().count() <= 65,
        "clipped raw: {} chars",
        raw.chars().count()
    );
    assert_eq!(v["cluster"]["config"]["api_url"]["source"], "invalid");
    // The search form's echo is escaped too, and a non-number page parameter is harmless.
    let (status, html) = dash.page("?q=%22%3E%3Cscript%3E&page=abc").await;
    assert_eq!(status, 200);
    assert!(!html.contains("\"><script>"));
    // The JSON API and the event stream survive it as well.
    let mut sse = SseReader::open(&dash.url).await;
    let mut saw_sensors = false;
    while let Some(m) = sse.next(Duration::from_secs(5)).await {
        if m.event == "sensors" {
            saw_sensors = m.data["total"] == 2;
            break;
        }
    }
    assert!(saw_sensors, "sensors event with both sensors");
    s.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_and_limits() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-hdr")
    );
    let dash = Dashboard::start(&connect, &[]).await;
    let r = support::http()
        .get(format!("{}/", dash.url))
        .send()
        .await
        .expect("GET /");
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    let body = r.text().await.expect("body");
    assert!(!body.contains("<script>"), "no inline script");
    assert!(body.contains("<script src=\"/static/dashboard.js\" defer></script>"));
    let big = "v".repeat(64 * 1024);
    let (status, _, _) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", &big),
            ("version", "absent"),
        ])
        .await;
    assert_eq!(status, 413, "body limit");
    let js = support::http()
        .get(format!("{}/static/dashboard.js", dash.url))
        .send()
        .await
        .expect("js");
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/javascript"));
}
