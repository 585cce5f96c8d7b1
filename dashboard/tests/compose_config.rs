//! Every `sensor-dashboard` service in docker-compose.yml and docker-compose-cluster.yml
//! starts with a configuration the real binary accepts (`--check-config`), sets only env
//! vars `sensor-dashboard --help` documents, and its healthcheck is a valid command line;
//! the README documents every env var; `healthcheck` really probes a running dashboard.

use std::path::Path;
use std::process::Command;

use testkit::compose::{check_service_config, services_running};

const EXE: &str = env!("CARGO_BIN_EXE_sensor-dashboard");

#[test]
fn compose_dashboard_services_pass_check_config() {
    let services = services_running("sensor-dashboard").expect("read compose files");
    assert_eq!(services.len(), 2, "one dashboard in each compose file");
    for (file, service) in &services {
        let out =
            check_service_config(Path::new(EXE), service).unwrap_or_else(|e| panic!("{file}: {e}"));
        let hosts = &service.environment["ZOOKEEPER_HOSTS"];
        assert!(out.contains(hosts.as_str()), "{file}: {out}");
        assert!(out.contains("LISTEN_ADDR=0.0.0.0:8081"), "{file}: {out}");
    }
}

#[test]
fn a_misspelt_or_invalid_setting_is_caught() {
    let (_, service) = services_running("sensor-dashboard")
        .expect("read compose files")
        .into_iter()
        .next()
        .expect("a dashboard service");
    let mut typo = service.clone();
    let v = typo
        .environment
        .remove("ZOOKEEPER_HOSTS")
        .expect("ZOOKEEPER_HOSTS");
    typo.environment.insert("ZOOKEPER_HOSTS".to_string(), v);
    let err = check_service_config(Path::new(EXE), &typo).expect_err("typo accepted");
    assert!(err.contains("ZOOKEPER_HOSTS"), "{err}");
    let mut bad = service.clone();
    bad.environment
        .insert("API_URL".to_string(), "api:8080".to_string());
    let err = check_service_config(Path::new(EXE), &bad).expect_err("bad value accepted");
    assert!(err.contains("api_url"), "{err}");
}

#[test]
fn readme_documents_every_env_var() {
    let readme = std::fs::read_to_string(testkit::compose::repo_root().join("README.md"))
        .expect("README.md");
    let help = Command::new(EXE)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run --help");
    let names = testkit::compose::env_names_in_help(&String::from_utf8_lossy(&help.stdout));
    assert!(names.contains("DASHBOARD_ADMIN_TOKEN"), "{names:?}");
    for name in names {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not document {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_probes_a_running_dashboard() {
    let port = testkit::free_port();
    let run = |port: u16| {
        Command::new(EXE)
            .args(["healthcheck", "--timeout", "2"])
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .output()
            .expect("run healthcheck")
    };
    assert!(
        !run(port).status.success(),
        "nothing listens yet: unhealthy"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(EXE);
    cmd.env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ZOOKEEPER_HOSTS", testkit::shared_zk().connect_string());
    let _proc = testkit::Proc::spawn("dashboard", cmd, &dir.path().join("d.log"))
        .expect("spawn sensor-dashboard");
    let healthy = testkit::wait_until_async(std::time::Duration::from_secs(30), || async {
        tokio::task::spawn_blocking(move || run(port).status.success())
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(healthy, "healthcheck never succeeded");
}
