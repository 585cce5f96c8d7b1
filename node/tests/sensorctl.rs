//! The real `sensorctl` binary against a real ZooKeeper (one chroot per test).

use std::process::Output;
use std::time::Duration;

use sensor_node::layout;
use sensor_node::zk::{self, Session, SessionConfig};
use serde_json::Value;

fn hosts(chroot: &str) -> String {
    format!("{}{}", testkit::shared_zk().connect_string(), chroot)
}

async fn connected(chroot: &str) -> Session {
    let s = Session::start(SessionConfig::new(hosts(chroot), Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

async fn sensorctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sensorctl"));
    cmd.args(args).env_remove("ZOOKEEPER_HOSTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("sensorctl finished")
        .expect("sensorctl ran")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn read(session: &Session, path: &str) -> Option<String> {
    match session.client().unwrap().get_data(path).await {
        Ok((d, _)) => Some(String::from_utf8(d).unwrap()),
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => panic!("get {path}: {e}"),
    }
}

async fn put(session: &Session, path: &str, data: &str) {
    let client = session.client().unwrap();
    if let Some((parent, _)) = path.rsplit_once('/') {
        if !parent.is_empty() {
            zk::ensure_path(&client, parent).await.unwrap();
        }
    }
    client
        .create(path, data.as_bytes(), &zk::persistent())
        .await
        .unwrap();
}

#[tokio::test]
async fn config_set_get_round_trip_creates_missing_znodes() {
    let chroot = testkit::unique_chroot("ctl-config");
    let zk = hosts(&chroot);
    let session = connected(&chroot).await;
    assert_eq!(read(&session, layout::CONFIG).await, None);

    let o = sensorctl(
        &["--zk", &zk, "config", "set", "sampling_period", "2.5"],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&session, layout::CONFIG_SAMPLING_PERIOD)
            .await
            .as_deref(),
        Some("2.5")
    );

    // The env var works like --zk.
    let o = sensorctl(
        &["config", "set", "api_url", "http://api-1:8080/"],
        &[("ZOOKEEPER_HOSTS", &zk)],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(&session, layout::CONFIG_API_URL).await.as_deref(),
        Some("http://api-1:8080"),
        "stored normalised"
    );

    let o = sensorctl(&["--zk", &zk, "config", "get", "sampling_period"], &[]).await;
    assert!(o.status.success());
    assert_eq!(stdout(&o), "2.5\n");
    let o = sensorctl(&["--zk", &zk, "config", "get"], &[]).await;
    assert!(o.status.success());
    let table = stdout(&o);
    assert!(table.contains("sampling_period  2.5"), "{table}");
    assert!(
        table.contains("api_url          http://api-1:8080"),
        "{table}"
    );

    // Setting again overwrites; unset removes and get falls back to the default.
    let o = sensorctl(
        &["--zk", &zk, "config", "set", "sampling_period", "10"],
        &[],
    )
    .await;
    assert!(o.status.success());
    assert_eq!(
        read(&session, layout::CONFIG_SAMPLING_PERIOD)
            .await
            .as_deref(),
        Some("10")
    );
    let o = sensorctl(&["--zk", &zk, "config", "unset", "sampling_period"], &[]).await;
    assert!(o.status.success());
    assert_eq!(read(&session, layout::CONFIG_SAMPLING_PERIOD).await, None);
    let o = sensorctl(&["--zk", &zk, "config", "get", "sampling_period"], &[]).await;
    assert_eq!(stdout(&o), "5\n");
    assert!(stderr(&o).contains("absent"), "{}", stderr(&o));
    session.close();
}

#[tokio::test]
async fn invalid_values_are_refused_with_exit_2_and_nothing_written() {
    let chroot = testkit::unique_chroot("ctl-invalid");
    let zk = hosts(&chroot);
    let session = connected(&chroot).await;
    put(&session, layout::CONFIG_SAMPLING_PERIOD, "3").await;

    for (key, bad) in [
        ("sampling_period", "abc"),
        ("sampling_period", "-1"),
        ("sampling_period", "0"),
        ("sampling_period", "NaN"),
        ("api_url", "api:8080"),
        ("api_url", "localhost"),
    ] {
        let o = sensorctl(&["--zk", &zk, "config", "set", key, bad], &[]).await;
        assert_eq!(o.status.code(), Some(2), "{key}={bad}");
        assert!(stderr(&o).contains(key), "{key}={bad}: {}", stderr(&o));
    }
    assert_eq!(
        read(&session, layout::CONFIG_SAMPLING_PERIOD)
            .await
            .as_deref(),
        Some("3"),
        "unchanged"
    );
    assert_eq!(
        read(&session, layout::CONFIG_API_URL).await,
        None,
        "not created"
    );

    // Unknown key and missing value: usage errors, exit 2, naming the key.
    let o = sensorctl(&["--zk", &zk, "config", "set", "colour", "red"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("colour"), "{}", stderr(&o));
    let o = sensorctl(&["--zk", &zk, "config", "set", "sampling_period"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    // A bad connect string is a usage error too.
    let o = sensorctl(&["--zk", "zk1", "status"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--zk"), "{}", stderr(&o));
    session.close();
}

#[tokio::test]
async fn unreachable_zookeeper_exits_1_within_the_timeout() {
    let nobody = format!("127.0.0.1:{}", testkit::free_port());
    let started = std::time::Instant::now();
    let o = sensorctl(&["--zk", &nobody, "--timeout", "1", "status"], &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
    // Loose bound: it gives up instead of hanging (not a performance assertion).
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn status_shows_a_prepared_cluster_as_text_and_json() {
    let chroot = testkit::unique_chroot("ctl-status");
    let zk = hosts(&chroot);
    let session = connected(&chroot).await;

    // Empty cluster: everything absent, still exit 0.
    let o = sensorctl(&["--zk", &zk, "status", "--json"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["leader"], Value::Null);
    assert_eq!(v["nodes"], serde_json::json!([]));
    assert_eq!(v["counter"], Value::Null);
    assert_eq!(v["outbox_depth"], Value::Null);
    assert_eq!(v["round"]["open"], false);
    assert_eq!(v["config"]["sampling_period"]["source"], "default");

    // Election in kazoo's naming: node-b holds the lower sequence, so it leads.
    put(&session, "/election/aaaa__lock__0000000002", "node-a").await;
    put(&session, "/election/bbbb__lock__0000000001", "node-b").await;
    put(&session, &layout::reading("node-a"), "21.5").await;
    put(&session, &layout::reading("node-b"), "30.25").await;
    put(&session, layout::BARRIER, "12").await;
    put(&session, layout::ROUNDS_LAST, "11").await;
    put(&session, layout::ROUNDS_DELIVERED, "9").await;
    put(&session, &layout::outbox_entry(10), "{}").await;
    put(&session, &layout::outbox_entry(11), "{}").await;
    put(&session, layout::COUNTER, "40").await;
    put(&session, layout::CONFIG_SAMPLING_PERIOD, "abc").await;
    put(&session, layout::CONFIG_API_URL, "http://api:8080").await;

    let o = sensorctl(&["--zk", &zk, "status", "--json"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["leader"], "node-b");
    assert_eq!(v["contenders"], serde_json::json!(["node-b", "node-a"]));
    assert_eq!(v["nodes"][0]["id"], "node-a");
    assert_eq!(v["nodes"][0]["reading"], 21.5);
    assert_eq!(v["nodes"][1]["id"], "node-b");
    assert_eq!(v["nodes"][1]["reading"], 30.25);
    assert!(v["nodes"][1]["updated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["round"]["open"], true);
    assert_eq!(v["round"]["current"], 12);
    assert_eq!(v["round"]["last_committed"], 11);
    assert_eq!(v["last_delivered"], 9);
    assert_eq!(v["outbox_depth"], 2);
    assert_eq!(v["counter"], 40);
    assert_eq!(v["config"]["sampling_period"]["source"], "invalid");
    assert_eq!(v["config"]["sampling_period"]["stored"], "abc");
    assert_eq!(v["config"]["api_url"]["source"], "zookeeper");
    assert_eq!(v["config"]["api_url"]["stored"], "http://api:8080");

    let o = sensorctl(&["--zk", &zk, "status"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for expected in [
        "leader           node-b",
        "contenders       node-b, node-a",
        "round            12 (open)",
        "last committed   11",
        "last delivered   9",
        "outbox           2 round(s) waiting for delivery",
        "counter          40",
        "INVALID",
        "config api_url   http://api:8080",
        "nodes            2 live",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let node_b = text
        .lines()
        .find(|l| l.trim_start().starts_with("node-b"))
        .unwrap();
    assert!(
        node_b.contains("30.25") && node_b.contains("(leader)"),
        "{node_b}"
    );
    session.close();
}

#[tokio::test]
async fn help_documents_every_flag_and_env_var() {
    let o = sensorctl(&["--help"], &[]).await;
    assert!(o.status.success());
    let text = stdout(&o);
    for documented in [
        "--zk",
        "ZOOKEEPER_HOSTS",
        "--timeout",
        "SENSORCTL_TIMEOUT",
        "config",
        "status",
    ] {
        assert!(
            text.contains(documented),
            "--help lacks {documented}:\n{text}"
        );
    }
    let o = sensorctl(&["config", "set", "--help"], &[]).await;
    let text = stdout(&o);
    assert!(
        text.contains("sampling_period") && text.contains("api_url"),
        "{text}"
    );
    let o = sensorctl(&["status", "--help"], &[]).await;
    assert!(stdout(&o).contains("--json"));
}

/// A result as the leader commits it (built from JSON so fields added later with defaults
/// keep this test compiling).
fn result(round: u64, value: f64) -> sensor_node::RoundResult {
    serde_json::from_value(serde_json::json!({
        "round": round, "value": value, "samples": 3, "leader": "n1",
        "fencing": 7, "taken_at": "2026-11-26T12:00:00Z"
    }))
    .expect("a RoundResult")
}

/// The leader sets rounds aside through the real outbox code, bounded at 3 (the oldest
/// dropped); `sensorctl status` shows them, `conflicts list` lists them, `conflicts purge`
/// removes one or all.
#[tokio::test]
async fn set_aside_rounds_are_bounded_shown_listed_and_purged() {
    use sensor_node::outbox::{conflict_entry, Outbox, CONFLICTS};
    use sensor_node::zk::Election;

    let chroot = testkit::unique_chroot("ctl-conflicts");
    let zk = hosts(&chroot);
    let session = connected(&chroot).await;
    let leader = Election::new(session.clone(), layout::ELECTION, "n1")
        .campaign()
        .await
        .expect("leads");
    let outbox = Outbox::new(session.clone(), 100).with_conflicts_limit(3);
    for round in 1..=5 {
        let r = result(round, 20.0 + round as f64);
        put(
            &session,
            &layout::outbox_entry(round),
            &serde_json::to_string(&r).unwrap(),
        )
        .await;
        outbox.set_aside(&leader, &r).await.expect("set aside");
        assert_eq!(read(&session, &layout::outbox_entry(round)).await, None);
    }
    // Bounded: the two oldest went, 3..=5 stay with their values.
    let mut kept = session
        .client()
        .unwrap()
        .list_children(CONFLICTS)
        .await
        .unwrap();
    kept.sort();
    assert_eq!(
        kept,
        [3, 4, 5].map(|r| conflict_entry(r)[CONFLICTS.len() + 1..].to_string())
    );

    let o = sensorctl(&["--zk", &zk, "status", "--json"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["conflicts"], serde_json::json!({"count": 3, "newest": 5}));
    let o = sensorctl(&["--zk", &zk, "status"], &[]).await;
    assert!(
        stdout(&o).contains("conflicts        3 round(s) set aside, newest 5"),
        "{}",
        stdout(&o)
    );

    let o = sensorctl(&["--zk", &zk, "conflicts", "list", "--json"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rounds: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, [3, 4, 5]);
    assert_eq!(v[0]["result"]["value"], 23.0);
    let o = sensorctl(&["--zk", &zk, "conflicts", "list"], &[]).await;
    let text = stdout(&o);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with('4'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("24") && line.contains("n1"), "{line}");

    // Purge: one needs a target; an absent round exits 1; then one, then all.
    let o = sensorctl(&["--zk", &zk, "conflicts", "purge"], &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = sensorctl(&["--zk", &zk, "conflicts", "purge", "--round", "1"], &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("round 1 is not set aside"),
        "{}",
        stderr(&o)
    );
    let o = sensorctl(&["--zk", &zk, "conflicts", "purge", "--round", "4"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&session, &conflict_entry(4)).await, None);
    assert!(read(&session, &conflict_entry(3)).await.is_some());
    let o = sensorctl(&["--zk", &zk, "conflicts", "purge", "--all"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2 set-aside round(s) deleted"),
        "{}",
        stdout(&o)
    );
    let o = sensorctl(&["--zk", &zk, "status", "--json"], &[]).await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["conflicts"],
        serde_json::json!({"count": 0, "newest": null})
    );
    leader.resign().await;
    session.close();
}
