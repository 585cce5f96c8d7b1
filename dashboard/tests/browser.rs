//! The page in a real browser (Debian's headless Chromium, driven over the DevTools pipe):
//! it shows the current leader and every live sensor, follows a leader SIGKILL live (no
//! reload), works at phone width and with JavaScript off, and screenshots are kept as test
//! artifacts (`target/test-artifacts/dashboard*.png`). Everything real: ZooKeeper, Redis,
//! sensor-api, sensor-node processes.
//!
//! Skipped, with a message, only when /usr/bin/chromium is absent. Needs the `sensor-node`
//! and `sensor-api` binaries (`cargo test --workspace` builds them).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::cdp::Browser;
use support::{leader_of, sensor_ids, Dashboard};
use testkit::chromium::CHROMIUM;
use testkit::{Node, NodeOpts, Proc, RedisServer};

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

fn spawn_api(redis: &RedisServer, zk: &str, dir: &std::path::Path) -> (Proc, String) {
    let bin = testkit::bin_path("sensor-api");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p sensor-api` first",
        bin.display()
    );
    let port = testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis.url())
        .env("API_TOKEN", "dashboard-api-token-0123")
        .env("ZOOKEEPER_HOSTS", zk)
        .env("ADVERTISE_URL", &url)
        .env("INSTANCE_ID", "api-1");
    let proc = Proc::spawn("api", cmd, &dir.join("api.log")).expect("spawn sensor-api");
    (proc, url)
}

const DOM_LEADER: &str =
    "(document.getElementById('leader-id') || {dataset: {}}).dataset.leader || ''";
const DOM_SENSORS: &str =
    "Array.from(document.querySelectorAll('tr[data-sensor]')).map(r => r.dataset.sensor).join(',')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_headless_chromium_follows_a_leader_change() {
    if !std::path::Path::new(CHROMIUM).exists() {
        println!(
            "SKIPPED page_in_headless_chromium_follows_a_leader_change: {CHROMIUM} not installed"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-browser")
    );
    let redis = RedisServer::start().expect("redis");
    let (_api, api_url) = spawn_api(&redis, &connect, dir.path());
    let mut opts = NodeOpts::new(&connect, Some(&api_url));
    opts.token = Some("dashboard-api-token-0123".to_string());
    let ids = ["sensor-a", "sensor-b", "sensor-c", "sensor-d"];
    let mut nodes: Vec<Node> = ids
        .iter()
        .map(|id| Node::spawn(&support::node_bin(), id, &opts))
        .collect();
    let dash = Dashboard::start(
        &connect,
        &[
            "--api-url",
            &api_url,
            "--grafana-url",
            "http://127.0.0.1:3000",
            "--admin-token",
            "admin",
        ],
    )
    .await;
    dash.wait_for(
        Duration::from_secs(60),
        "4 sensors, leader, averages",
        |v| {
            sensor_ids(v).len() == 4
                && leader_of(v).is_some()
                && v["averages"]["points"]
                    .as_array()
                    .is_some_and(|p| p.len() >= 3)
                && !v["cluster"]["api_instances"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
        },
    )
    .await;
    let url = format!("{}/", dash.url);

    let browser_dir = dir.path().to_path_buf();
    let url2 = url.clone();
    let mut browser = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(&browser_dir, 1280, 1000);
        b.open(&url2, 1280, 1000, true);
        assert!(
            b.wait_eval(
                Duration::from_secs(30),
                "document.getElementById('live-state').dataset.state === 'live'"
            )
            .is_some(),
            "the script connected to /events (CSP allows it)"
        );
        b
    })
    .await
    .expect("browser");
    // The page and the JSON state must name the same leader. On a loaded machine the
    // leadership can move between two reads (a suspended session steps down), so the two
    // are compared until they agree, not once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (old, dom_sensors) = loop {
        let (b, dom_leader, dom_sensors) = tokio::task::spawn_blocking(move || {
            let leader = browser.eval(DOM_LEADER);
            let sensors = browser.eval(DOM_SENSORS);
            (browser, leader, sensors)
        })
        .await
        .expect("browser");
        browser = b;
        let json_leader = leader_of(&dash.cluster().await);
        if let Some(l) = json_leader.as_ref().filter(|l| json!(l) == dom_leader) {
            break (l.clone(), dom_sensors);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leader in the DOM ({dom_leader}) never matched the JSON state's ({json_leader:?}) within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        dom_sensors,
        json!(ids.join(",")),
        "every live sensor in the DOM"
    );

    // SIGKILL the leader: the open page follows without a reload.
    let idx = ids.iter().position(|i| *i == old).expect("ours");
    nodes[idx].proc.kill();
    let old2 = old.clone();
    let (mut browser, dom_leader) = tokio::task::spawn_blocking(move || {
        let mut b = browser;
        let expr = format!("(() => {{ const l = {DOM_LEADER}; return l && l !== '{old2}' && l !== 'none' ? l : ''; }})()");
        let l = b.wait_eval(Duration::from_secs(60), &expr);
        (b, l)
    })
    .await
    .expect("browser");
    let new = dom_leader.expect("the page showed a new leader within 60 s, live");
    let v = dash
        .wait_for(Duration::from_secs(30), "JSON agrees", |v| {
            leader_of(v).as_ref().map(|l| json!(l)) == Some(new.clone())
        })
        .await;
    let remaining: Vec<String> = sensor_ids(&v);
    let old3 = old.clone();
    let (png, phone_png, nojs) = tokio::task::spawn_blocking(move || {
        let expr = format!("!({DOM_SENSORS}).split(',').includes('{old3}')");
        assert!(
            browser.wait_eval(Duration::from_secs(60), &expr).is_some(),
            "the killed node left the list"
        );
        // Let the chart and ages settle, then the screenshots.
        std::thread::sleep(Duration::from_secs(2));
        let png = browser.screenshot();
        let mut phone = Browser::launch(&dir.path().join("phone"), 390, 844);
        phone.open(&url, 390, 844, true);
        phone.wait_eval(
            Duration::from_secs(30),
            "document.getElementById('live-state').dataset.state === 'live'",
        );
        let overflow = phone.eval("document.documentElement.scrollWidth <= window.innerWidth + 1");
        assert_eq!(
            overflow,
            json!(true),
            "no horizontal scrolling at phone width"
        );
        let phone_png = phone.screenshot();
        let mut nojs = Browser::launch(&dir.path().join("nojs"), 1280, 1000);
        nojs.open(&url, 1280, 1000, false);
        let nojs_state = (
            nojs.eval(DOM_LEADER),
            nojs.eval(DOM_SENSORS),
            nojs.eval("document.getElementById('live-state').dataset.state"),
        );
        (png, phone_png, nojs_state)
    })
    .await
    .expect("browser");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let out = artifacts();
    std::fs::write(out.join("dashboard.png"), &png).expect("save screenshot");
    std::fs::write(out.join("dashboard-phone.png"), &phone_png).expect("save screenshot");
    // JavaScript off: the served page alone shows the current leader and sensors.
    assert_eq!(nojs.0, new, "leader without JavaScript");
    assert_eq!(
        nojs.1,
        json!(remaining.join(",")),
        "sensors without JavaScript"
    );
    assert_eq!(nojs.2, json!("static"), "says it is a static page");
}
