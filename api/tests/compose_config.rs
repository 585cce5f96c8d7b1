//! Every `sensor-api` service in docker-compose.yml and docker-compose-cluster.yml starts
//! with a configuration the real binary accepts (`--check-config`), sets only env vars that
//! `sensor-api --help` documents, and its healthcheck (`sensor-api healthcheck`) is a valid
//! command line: a typo in a compose file fails CI, not a user.

use std::path::Path;

use testkit::compose::{check_service_config, services_running};

const EXE: &str = env!("CARGO_BIN_EXE_sensor-api");

#[test]
fn compose_api_services_pass_check_config() {
    let services = services_running("sensor-api").expect("read compose files");
    assert_eq!(services.len(), 2, "one api in each compose file");
    for (file, service) in &services {
        let out =
            check_service_config(Path::new(EXE), service).unwrap_or_else(|e| panic!("{file}: {e}"));
        let hosts = &service.environment["ZOOKEEPER_HOSTS"];
        assert!(
            out.contains(hosts.as_str()),
            "{file}: effective config does not show ZOOKEEPER_HOSTS={hosts}:\n{out}"
        );
        assert!(
            !out.contains(&service.environment["API_TOKEN"]),
            "{file}: --check-config printed the token"
        );
    }
}

#[test]
fn a_misspelt_or_invalid_setting_is_caught() {
    let (_, service) = services_running("sensor-api")
        .expect("read compose files")
        .into_iter()
        .next()
        .expect("an api service");

    let mut typo = service.clone();
    let url = typo.environment.remove("REDIS_URL").expect("REDIS_URL");
    typo.environment.insert("REDIS_ULR".to_string(), url);
    let err = check_service_config(Path::new(EXE), &typo).expect_err("typo accepted");
    assert!(err.contains("REDIS_ULR"), "{err}");

    let mut bad = service.clone();
    bad.environment
        .insert("REDIS_URL".to_string(), "http://redis:6379".to_string());
    let err = check_service_config(Path::new(EXE), &bad).expect_err("bad value accepted");
    assert!(err.contains("REDIS_URL"), "{err}");
}

/// The README's table lists every env var `sensor-api --help` documents, so the docs cannot
/// silently fall behind a new flag.
#[test]
fn readme_documents_every_env_var() {
    let readme = std::fs::read_to_string(testkit::compose::repo_root().join("README.md"))
        .expect("README.md");
    let help = std::process::Command::new(EXE)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run --help");
    let names = testkit::compose::env_names_in_help(&String::from_utf8_lossy(&help.stdout));
    assert!(!names.is_empty(), "no [env: ...] in --help");
    for name in names {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not document {name}"
        );
    }
}
