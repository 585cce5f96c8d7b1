//! Every `sensor-node` service in docker-compose.yml and docker-compose-cluster.yml starts
//! with a configuration the real binary accepts (`--check-config`), and sets only env vars
//! that `sensor-node --help` documents: a typo in a compose file fails CI, not a user.

use std::path::Path;

use testkit::compose::{check_service_config, services_running};

const EXE: &str = env!("CARGO_BIN_EXE_sensor-node");

#[test]
fn compose_node_services_pass_check_config() {
    let services = services_running("sensor-node").expect("read compose files");
    assert_eq!(services.len(), 6, "three nodes in each compose file");
    for (file, service) in &services {
        let out =
            check_service_config(Path::new(EXE), service).unwrap_or_else(|e| panic!("{file}: {e}"));
        let id = &service.environment["NODE_ID"];
        assert!(
            out.lines()
                .any(|l| l.starts_with("id") && l.contains(id.as_str())),
            "{file}: {}: effective config does not show id {id}:\n{out}",
            service.name
        );
    }
}

#[test]
fn a_misspelt_or_invalid_setting_is_caught() {
    let (_, service) = services_running("sensor-node")
        .expect("read compose files")
        .into_iter()
        .next()
        .expect("a node service");

    let mut typo = service.clone();
    let hosts = typo
        .environment
        .remove("ZOOKEEPER_HOSTS")
        .expect("ZOOKEEPER_HOSTS");
    typo.environment.insert("ZOOKEPER_HOSTS".to_string(), hosts);
    let err = check_service_config(Path::new(EXE), &typo).expect_err("typo accepted");
    assert!(err.contains("ZOOKEPER_HOSTS"), "{err}");

    let mut bad = service.clone();
    bad.environment
        .insert("SAMPLING_PERIOD".to_string(), "abc".to_string());
    let err = check_service_config(Path::new(EXE), &bad).expect_err("bad value accepted");
    assert!(err.contains("sampling"), "{err}");
}

/// The nodes' compose healthcheck (a `sensorctl status` pipeline run by `sh`) really tells a
/// registered node from an absent one, against a real ZooKeeper.
#[test]
fn node_healthcheck_sees_a_live_node() {
    healthcheck_scenario("", "healthcheck");
}

/// What broke an earlier implementation in the cluster compose file: a stopped container's
/// host name no longer resolves. A node (and sensorctl) given a connect string with such a
/// name among live servers must still connect, register and report healthy.
#[test]
fn an_unresolvable_zookeeper_name_in_the_connect_string_is_skipped() {
    healthcheck_scenario("zookeeper2.invalid:2181,", "unresolvable");
}

/// Runs the compose file's node healthcheck before and after starting a node whose
/// ZOOKEEPER_HOSTS is `<prefix><shared test server>/<unique chroot>`.
fn healthcheck_scenario(hosts_prefix: &str, tag: &str) {
    use std::process::Command;
    use std::time::Duration;

    let (_, service) = services_running("sensor-node")
        .expect("read compose files")
        .into_iter()
        .next()
        .expect("a node service");
    assert_eq!(
        service.healthcheck.first().map(String::as_str),
        Some("CMD-SHELL")
    );
    let probe = service.healthcheck[1].clone();
    assert!(probe.contains("sensorctl"), "{probe}");
    // Compose turns `$$` into `$` before the shell sees the command.
    let probe = probe.replace("$$", "$");

    let zk = testkit::shared_zk();
    let hosts = format!(
        "{hosts_prefix}{}{}",
        zk.connect_string(),
        testkit::unique_chroot(tag)
    );
    let bin_dir = Path::new(EXE).parent().expect("bin dir").to_path_buf();
    let mut env = service.environment.clone();
    env.insert("ZOOKEEPER_HOSTS".to_string(), hosts);
    env.remove("API_URL");
    env.insert(
        "PATH".to_string(),
        format!("{}:/usr/bin:/bin", bin_dir.display()),
    );
    let healthy = || {
        Command::new("sh")
            .arg("-c")
            .arg(&probe)
            .env_clear()
            .envs(&env)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(!healthy(), "healthy before the node runs");

    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut cmd = Command::new(EXE);
    cmd.env_clear().envs(&env);
    let mut node = testkit::Proc::spawn("sensor-node", cmd, log.path()).expect("spawn node");
    let became_healthy = testkit::wait_until(Duration::from_secs(30), healthy);
    assert!(
        became_healthy,
        "never healthy; node log:\n{}",
        node.log_tail(30)
    );
    assert!(node.is_running(), "node exited:\n{}", node.log_tail(30));

    node.kill();
}

/// The README's tables list every env var `sensor-node --help` and `sensorctl --help`
/// document, so the docs cannot silently fall behind a new flag.
#[test]
fn readme_documents_every_env_var() {
    let readme = std::fs::read_to_string(testkit::compose::repo_root().join("README.md"))
        .expect("README.md");
    for exe in [EXE, env!("CARGO_BIN_EXE_sensorctl")] {
        let help = std::process::Command::new(exe)
            .arg("--help")
            .env_clear()
            .output()
            .expect("run --help");
        let names = testkit::compose::env_names_in_help(&String::from_utf8_lossy(&help.stdout));
        assert!(!names.is_empty(), "{exe}: no [env: ...] in --help");
        for name in names {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not document {name} ({exe})"
            );
        }
    }
}
