//! Start-up settings (flags/env) and live config from ZooKeeper, against a real server.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use sensor_node::config::{watch_live_config, LiveConfig, NodeArgs};
use sensor_node::layout;
use sensor_node::zk::{self, Session, SessionConfig};
use tokio::sync::watch;

async fn connected(chroot: &str) -> Session {
    let hosts = format!("{}{}", testkit::shared_zk().connect_string(), chroot);
    let s = Session::start(SessionConfig::new(hosts, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

/// Log lines captured from `tracing` (current-thread runtime: every task logs here).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.lines_with("WARN")
    }

    async fn wait_warnings(&self, n: usize) {
        let ok = testkit::wait_until_async(Duration::from_secs(10), || async {
            self.warnings().len() >= n
        })
        .await;
        assert!(ok, "expected {n} warnings, got {:?}", self.warnings());
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

async fn set(session: &Session, path: &str, value: &str) {
    let client = session.client().unwrap();
    zk::ensure_path(&client, layout::CONFIG).await.unwrap();
    match client
        .create(path, value.as_bytes(), &zk::persistent())
        .await
    {
        Ok(_) => {}
        Err(zookeeper_client::Error::NodeExists) => {
            client.set_data(path, value.as_bytes(), None).await.unwrap();
        }
        Err(e) => panic!("create {path}: {e}"),
    }
}

async fn wait_for(
    rx: &mut watch::Receiver<LiveConfig>,
    what: &str,
    f: impl Fn(&LiveConfig) -> bool,
) {
    let reached = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| f(c)))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        reached,
        "live config never reached {what}; now {:?}",
        *rx.borrow()
    );
}

#[tokio::test]
async fn sampling_period_change_applies_invalid_is_ignored_once_and_delete_restores_default() {
    let (logs, _guard) = capture();
    let chroot = testkit::unique_chroot("live-period");
    let session = connected(&chroot).await;
    let defaults = LiveConfig {
        sampling_period: Duration::from_secs(7),
        api_url: None,
    };
    let mut rx = watch_live_config(&session, defaults.clone());
    assert_eq!(*rx.borrow(), defaults, "starts at the defaults");

    set(&session, layout::CONFIG_SAMPLING_PERIOD, "2").await;
    wait_for(&mut rx, "2 s", |c| {
        c.sampling_period == Duration::from_secs(2)
    })
    .await;

    // Each invalid value: exactly one warning naming znode and value; 2 s stays in force.
    for (i, bad) in ["abc", "-1", "0", "NaN"].into_iter().enumerate() {
        set(&session, layout::CONFIG_SAMPLING_PERIOD, bad).await;
        logs.wait_warnings(i + 1).await;
        let last = logs.warnings().pop().unwrap();
        assert!(last.contains("/config/sampling_period"), "{last}");
        assert!(last.contains(&format!("value={bad}")), "{last}");
        assert_eq!(rx.borrow().sampling_period, Duration::from_secs(2));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        logs.warnings().len(),
        4,
        "one warning per invalid value: {:?}",
        logs.warnings()
    );

    set(&session, layout::CONFIG_SAMPLING_PERIOD, "0.5").await;
    wait_for(&mut rx, "0.5 s", |c| {
        c.sampling_period == Duration::from_millis(500)
    })
    .await;

    session
        .client()
        .unwrap()
        .delete(layout::CONFIG_SAMPLING_PERIOD, None)
        .await
        .unwrap();
    wait_for(&mut rx, "the 7 s default", |c| {
        c.sampling_period == Duration::from_secs(7)
    })
    .await;
    assert_eq!(logs.warnings().len(), 4);
    session.close();
}

#[tokio::test]
async fn api_url_change_applies_invalid_is_ignored_and_delete_restores_default() {
    let (logs, _guard) = capture();
    let chroot = testkit::unique_chroot("live-url");
    let session = connected(&chroot).await;
    // An invalid value already present at start-up: the default stays, with one warning.
    set(&session, layout::CONFIG_API_URL, "api:8080").await;
    let defaults = LiveConfig {
        sampling_period: Duration::from_secs(5),
        api_url: Some("http://default:1".to_string()),
    };
    let mut rx = watch_live_config(&session, defaults);
    logs.wait_warnings(1).await;
    assert!(logs.warnings()[0].contains("/config/api_url"));
    assert_eq!(rx.borrow().api_url.as_deref(), Some("http://default:1"));

    set(&session, layout::CONFIG_API_URL, "http://api-a:8080/").await;
    wait_for(&mut rx, "api-a", |c| {
        c.api_url.as_deref() == Some("http://api-a:8080")
    })
    .await;

    set(&session, layout::CONFIG_API_URL, "no scheme at all").await;
    logs.wait_warnings(2).await;
    assert_eq!(rx.borrow().api_url.as_deref(), Some("http://api-a:8080"));

    session
        .client()
        .unwrap()
        .delete(layout::CONFIG_API_URL, None)
        .await
        .unwrap();
    wait_for(&mut rx, "the default", |c| {
        c.api_url.as_deref() == Some("http://default:1")
    })
    .await;
    // The sampling period was never touched.
    assert_eq!(rx.borrow().sampling_period, Duration::from_secs(5));
    session.close();
}

/// All `NodeArgs` cases in one test: they read the process environment, which parallel
/// tests would race on.
#[test]
fn node_args_flags_env_and_errors_naming_the_setting() {
    let ok = NodeArgs::try_parse_from([
        "sensor-node",
        "--id",
        "node-3",
        "--zk",
        "zk1:2181,zk2:2181/sensors",
        "--api-url",
        "http://api:8080",
        "--sampling-period",
        "0.25",
        "--session-timeout-ms",
        "4000",
        "--log-format",
        "json",
    ])
    .expect("valid flags");
    let cfg = ok.resolve().expect("resolves");
    assert_eq!(cfg.id, "node-3");
    assert_eq!(cfg.zk, "zk1:2181,zk2:2181/sensors");
    assert_eq!(cfg.sampling_period, Duration::from_millis(250));
    assert_eq!(cfg.session_timeout, Duration::from_millis(4000));
    assert_eq!(
        cfg.live_defaults().api_url.as_deref(),
        Some("http://api:8080")
    );

    // No id: the hostname (when it is a valid znode name).
    let derived = NodeArgs::try_parse_from(["sensor-node"]).unwrap().resolve();
    if let Ok(host) = hostname::get() {
        if let Some(h) = host.to_str() {
            if sensor_node::config::parse_node_id(h).is_ok() {
                assert_eq!(derived.unwrap().id, h);
            }
        }
    }

    let bad: &[(&[&str], &str)] = &[
        (&["--id", "a/b"], "--id"),
        (&["--id", ""], "--id"),
        (&["--zk", "zk1"], "--zk"),
        (&["--api-url", "api:8080"], "--api-url"),
        (&["--sampling-period", "abc"], "--sampling-period"),
        (&["--sampling-period", "-1"], "--sampling-period"),
        (&["--sampling-period", "0"], "--sampling-period"),
        (&["--sampling-period", "7200"], "--sampling-period"),
        (&["--session-timeout-ms", "500"], "--session-timeout-ms"),
        (&["--outbox-limit", "0"], "--outbox-limit"),
        (&["--log-format", "xml"], "--log-format"),
    ];
    for (flags, name) in bad {
        let mut argv = vec!["sensor-node"];
        argv.extend_from_slice(flags);
        let err = NodeArgs::try_parse_from(&argv).expect_err("must be refused");
        assert_eq!(err.exit_code(), 2, "{argv:?}");
        assert!(err.to_string().contains(name), "{argv:?}: {err}");
    }

    // Env vars have the flags' meaning, and are validated the same way.
    std::env::set_var("SAMPLING_PERIOD", "1.5");
    std::env::set_var("NODE_ID", "from-env");
    std::env::set_var("API_TOKEN", "s3cret-token");
    let env = NodeArgs::try_parse_from(["sensor-node"])
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(env.sampling_period, Duration::from_millis(1500));
    assert_eq!(env.id, "from-env");
    assert_eq!(
        env.api_token.as_ref().map(|t| t.expose()),
        Some("s3cret-token")
    );
    assert!(!env.render().contains("s3cret-token"), "token redacted");
    std::env::set_var("SAMPLING_PERIOD", "abc");
    let err = NodeArgs::try_parse_from(["sensor-node"]).expect_err("bad env");
    assert!(err.to_string().contains("sampling_period"), "{err}");
    std::env::remove_var("SAMPLING_PERIOD");
    std::env::remove_var("NODE_ID");
    std::env::remove_var("API_TOKEN");
}

fn sensor_node(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sensor-node"));
    cmd.args(args);
    for var in [
        "NODE_ID",
        "ZOOKEEPER_HOSTS",
        "API_URL",
        "SAMPLING_PERIOD",
        "API_TOKEN",
        "SESSION_TIMEOUT_MS",
        "OUTBOX_LIMIT",
        "CONFLICTS_LIMIT",
        "LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("sensor-node runs")
}

#[test]
fn sensor_node_check_config_prints_redacted_config_and_bad_values_exit_2() {
    let o = sensor_node(
        &["--check-config", "--id", "n7", "--sampling-period", "0.5"],
        &[
            ("API_TOKEN", "s3cret-token"),
            ("API_URL", "http://api:8080/"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("n7"), "{out}");
    assert!(out.contains("0.5s"), "{out}");
    assert!(out.contains("http://api:8080"), "{out}");
    assert!(out.contains("<redacted>"), "{out}");
    assert!(!out.contains("s3cret-token"), "token leaked: {out}");

    for (env, flag, name) in [
        (
            ("SAMPLING_PERIOD", "abc"),
            "--sampling-period",
            "sampling_period",
        ),
        (
            ("SAMPLING_PERIOD", "0"),
            "--sampling-period",
            "sampling_period",
        ),
        (("API_URL", "api:8080"), "--api-url", "api_url"),
        (("NODE_ID", "a/b"), "--id", "id"),
        (("ZOOKEEPER_HOSTS", "zk1"), "--zk", "zk"),
        (
            ("SESSION_TIMEOUT_MS", "10"),
            "--session-timeout-ms",
            "session_timeout_ms",
        ),
    ] {
        let o = sensor_node(&["--check-config"], &[env]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(flag) && err.contains(name), "{env:?}: {err}");
    }

    // OUTBOX_LIMIT is bounded so the outbox's child list fits one ZooKeeper answer.
    let max = sensor_node::config::MAX_OUTBOX_LIMIT.to_string();
    let over = (sensor_node::config::MAX_OUTBOX_LIMIT + 1).to_string();
    let ok = sensor_node(&["--check-config", "--id", "n7"], &[("OUTBOX_LIMIT", &max)]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    for value in [over.as_str(), "100000", "1000000"] {
        let o = sensor_node(
            &["--check-config", "--id", "n7"],
            &[("OUTBOX_LIMIT", value)],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "OUTBOX_LIMIT={value}: {err}");
        assert!(
            err.contains("OUTBOX_LIMIT") && err.contains(&max) && err.contains("jute.maxbuffer"),
            "OUTBOX_LIMIT={value}: {err}"
        );
    }

    for value in ["0", over.as_str()] {
        let o = sensor_node(
            &["--check-config", "--id", "n7"],
            &[("CONFLICTS_LIMIT", value)],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "CONFLICTS_LIMIT={value}: {err}");
        assert!(err.contains("CONFLICTS_LIMIT"), "{err}");
    }

    let help = sensor_node(&["--help"], &[]);
    let text = String::from_utf8_lossy(&help.stdout);
    for documented in [
        "--id",
        "NODE_ID",
        "--zk",
        "ZOOKEEPER_HOSTS",
        "--api-url",
        "API_URL",
        "--sampling-period",
        "SAMPLING_PERIOD",
        "--api-token",
        "API_TOKEN",
        "--session-timeout-ms",
        "SESSION_TIMEOUT_MS",
        "--outbox-limit",
        "OUTBOX_LIMIT",
        "--conflicts-limit",
        "CONFLICTS_LIMIT",
        "--log-format",
        "LOG_FORMAT",
        "--check-config",
    ] {
        assert!(text.contains(documented), "--help lacks {documented}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_config_keeps_working_after_a_zookeeper_crash() {
    let mut server = tokio::task::block_in_place(testkit::ZkServer::start).expect("zookeeper");
    let hosts = server.connect_string();
    let start = |hosts: &str| Session::start(SessionConfig::new(hosts, Duration::from_secs(4)));
    let session = start(&hosts);
    session
        .wait_connected_for(Duration::from_secs(20))
        .await
        .unwrap();
    let mut rx = watch_live_config(&session, LiveConfig::default());
    set(&session, layout::CONFIG_SAMPLING_PERIOD, "2").await;
    wait_for(&mut rx, "2 s", |c| {
        c.sampling_period == Duration::from_secs(2)
    })
    .await;

    tokio::task::block_in_place(|| {
        server.kill();
        server.restart().expect("zookeeper back");
    });
    // Another client (an operator) changes the value once the server is back.
    let operator = start(&hosts);
    operator
        .wait_connected_for(Duration::from_secs(20))
        .await
        .unwrap();
    set(&operator, layout::CONFIG_SAMPLING_PERIOD, "3").await;
    wait_for(&mut rx, "3 s after the crash", |c| {
        c.sampling_period == Duration::from_secs(3)
    })
    .await;
    operator.close();
    session.close();
}
