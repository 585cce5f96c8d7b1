//! What the README and issue 6 promise about the compose files, checked on the files
//! themselves (no Docker engine needed): pinned images, healthchecks that ZooKeeper's
//! whitelist allows, start-up ordered by health, ports, Redis AOF on a named volume, every
//! node given every ZooKeeper server, secrets only from `.env`, Grafana provisioning paths
//! that exist, and a Dockerfile that ships every binary the services run.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;
use testkit::compose::{compose_files, read_env_file, repo_root, ComposeFile, Service};

fn vars() -> BTreeMap<String, String> {
    read_env_file(&repo_root().join(".env.example")).expect(".env.example")
}

fn load(name: &str) -> ComposeFile {
    ComposeFile::load(&repo_root().join(name), &vars()).unwrap_or_else(|e| panic!("{e}"))
}

fn all() -> Vec<ComposeFile> {
    compose_files()
        .iter()
        .map(|p| ComposeFile::load(p, &vars()).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn services(file: &ComposeFile) -> Vec<Service> {
    file.services().expect("services")
}

/// `name:X.Y.Z` with the given name and major(.minor) prefix, e.g. ("zookeeper", "3.9.").
fn assert_pinned(image: &str, name: &str, prefix: &str) {
    let (n, tag) = image
        .split_once(':')
        .unwrap_or_else(|| panic!("{image}: no tag"));
    assert_eq!(n, name, "{image}");
    assert!(
        tag.starts_with(prefix),
        "{image}: tag must start with {prefix}"
    );
    let parts: Vec<&str> = tag.split('-').next().unwrap_or("").split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "{image}: pin a full X.Y.Z version, not a moving tag"
    );
}

#[test]
fn images_are_pinned_and_ours_are_built_from_the_dockerfile() {
    for file in all() {
        for s in services(&file) {
            let image = s.image.clone().unwrap_or_default();
            if s.built_here {
                assert_eq!(image, "zk-sensors:local", "{}", s.name);
            } else if s.name.starts_with("zookeeper") {
                assert_pinned(&image, "zookeeper", "3.9.");
            } else if s.name == "redis" {
                assert_pinned(&image, "redis", "7.");
            } else if s.name == "grafana" {
                assert_pinned(&image, "grafana/grafana", "12.4.");
            } else {
                panic!("{}: unexpected service {}", file.path.display(), s.name);
            }
        }
    }
}

#[test]
fn every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() {
    for file in all() {
        let svcs = services(&file);
        let names: BTreeSet<&str> = svcs.iter().map(|s| s.name.as_str()).collect();
        for s in &svcs {
            assert!(
                s.healthcheck.len() >= 2
                    && matches!(s.healthcheck[0].as_str(), "CMD" | "CMD-SHELL"),
                "{}: {} needs healthcheck.test [CMD|CMD-SHELL, ...], has {:?}",
                file.path.display(),
                s.name,
                s.healthcheck
            );
            // No curl in our image: our services probe with their own binaries or the shell.
            if s.built_here && s.healthcheck[0] == "CMD" {
                assert!(
                    matches!(
                        s.healthcheck[1].as_str(),
                        "sensor-api" | "sensor-node" | "sensorctl" | "sensor-dashboard"
                    ),
                    "{}: healthcheck runs {:?}, which is not in our image",
                    s.name,
                    s.healthcheck[1]
                );
            }
            for (dep, condition) in &s.depends_on {
                assert!(
                    names.contains(dep.as_str()),
                    "{}: depends on unknown {dep}",
                    s.name
                );
                assert_eq!(condition, "service_healthy", "{} -> {dep}", s.name);
            }
        }
        let deps = |n: &str| -> BTreeSet<String> {
            svcs.iter()
                .find(|s| s.name == n)
                .map(|s| s.depends_on.keys().cloned().collect())
                .unwrap_or_default()
        };
        let zks: BTreeSet<String> = svcs
            .iter()
            .filter(|s| s.name.starts_with("zookeeper"))
            .map(|s| s.name.clone())
            .collect();
        assert!(deps("api").contains("redis"));
        assert!(deps("grafana").contains("api"));
        for node in svcs
            .iter()
            .filter(|s| s.command.first().map(String::as_str) == Some("sensor-node"))
        {
            let d = deps(&node.name);
            assert!(d.contains("api"), "{} must start after the api", node.name);
            assert!(
                zks.is_subset(&d),
                "{} must wait for every ZooKeeper server",
                node.name
            );
        }
    }
}

#[test]
fn zookeeper_healthcheck_words_are_whitelisted() {
    for file in all() {
        for s in services(&file)
            .iter()
            .filter(|s| s.name.starts_with("zookeeper"))
        {
            let whitelist: BTreeSet<&str> = s
                .environment
                .get("ZOO_4LW_COMMANDS_WHITELIST")
                .map(|w| w.split(',').map(str::trim).collect())
                .unwrap_or_default();
            let probe = s.healthcheck.join(" ");
            let word = ["srvr", "ruok", "mntr", "stat"]
                .into_iter()
                .find(|w| probe.contains(&format!("echo {w}")))
                .unwrap_or_else(|| panic!("{}: healthcheck sends no four-letter word", s.name));
            assert!(
                whitelist.contains(word) || whitelist.contains("*"),
                "{}: healthcheck uses {word}, whitelist is {whitelist:?}",
                s.name
            );
            // `ruok` answers imok without quorum: readiness must look at srvr's Mode.
            assert_eq!(word, "srvr", "{}: probe readiness with srvr", s.name);
        }
    }
}

#[test]
fn zookeeper_purges_old_snapshots_and_logs() {
    for file in all() {
        for s in services(&file)
            .iter()
            .filter(|s| s.name.starts_with("zookeeper"))
        {
            let get = |k: &str| -> u32 {
                s.environment
                    .get(k)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{}: {k} must be set (a number)", s.name))
            };
            assert!(
                get("ZOO_AUTOPURGE_PURGEINTERVAL") >= 1,
                "{}: autopurge on",
                s.name
            );
            assert!(
                get("ZOO_AUTOPURGE_SNAPRETAINCOUNT") >= 3,
                "{}: ZooKeeper keeps at least 3 snapshots",
                s.name
            );
        }
    }
}

#[test]
fn ports_api_8080_and_grafana_3000() {
    for file in all() {
        let svcs = services(&file);
        let ports = |n: &str| -> Vec<String> {
            svcs.iter()
                .find(|s| s.name == n)
                .and_then(|s| s.yaml.get("ports").cloned())
                .and_then(|p| p.as_sequence().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(ports("api"), ["8080:8080"], "{}", file.path.display());
        assert_eq!(ports("grafana"), ["3000:3000"], "{}", file.path.display());
        assert_eq!(ports("dashboard"), ["8081:8081"], "{}", file.path.display());
        let published: Vec<&str> = svcs
            .iter()
            .filter(|s| s.yaml.get("ports").is_some())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            published,
            ["api", "dashboard", "grafana"],
            "only the API, the dashboard and Grafana face the host"
        );
    }
}

#[test]
fn redis_keeps_an_append_only_file_on_a_named_volume() {
    for file in all() {
        let redis = file
            .service("redis")
            .expect("svcs")
            .expect("a redis service");
        let cmd = redis.command.join(" ");
        assert!(cmd.contains("--appendonly yes"), "{cmd}");
        // Acknowledged = durable: the node drops a round from its outbox on the API's answer.
        assert!(cmd.contains("--appendfsync always"), "{cmd}");
        assert!(!cmd.contains("everysec"), "{cmd}");
        // A full Redis refuses writes instead of evicting stored averages.
        assert!(cmd.contains("--maxmemory-policy noeviction"), "{cmd}");
        let volumes = redis
            .yaml
            .get("volumes")
            .and_then(Value::as_sequence)
            .expect("volumes");
        let data = volumes
            .iter()
            .filter_map(Value::as_str)
            .find(|v| v.ends_with(":/data"))
            .expect("a volume on /data");
        let name = data.trim_end_matches(":/data");
        assert!(
            !name.starts_with('.') && !name.starts_with('/'),
            "{data}: use a named volume"
        );
        assert!(
            file.document
                .get("volumes")
                .and_then(|v| v.get(name))
                .is_some(),
            "volume {name} is not declared"
        );
    }
}

#[test]
fn nodes_get_every_zookeeper_server_and_distinct_ids() {
    for file in all() {
        let svcs = services(&file);
        let zk_names: BTreeSet<String> = svcs
            .iter()
            .filter(|s| s.name.starts_with("zookeeper"))
            .map(|s| s.name.clone())
            .collect();
        let expected: BTreeSet<String> = zk_names.iter().map(|n| format!("{n}:2181")).collect();
        let mut ids = BTreeSet::new();
        for s in svcs.iter().filter(|s| s.built_here) {
            if let Some(hosts) = s.environment.get("ZOOKEEPER_HOSTS") {
                let got: BTreeSet<String> = hosts
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::to_string)
                    .collect();
                assert_eq!(
                    got,
                    expected,
                    "{}: {} must list every ZooKeeper server",
                    file.path.display(),
                    s.name
                );
            }
            if s.command.first().map(String::as_str) == Some("sensor-node") {
                assert!(s.environment.contains_key("ZOOKEEPER_HOSTS"), "{}", s.name);
                let id = s.environment.get("NODE_ID").cloned().expect("NODE_ID");
                assert!(ids.insert(id.clone()), "duplicate NODE_ID {id}");
                let api = s.environment.get("API_URL").expect("API_URL");
                assert_eq!(api, "http://api:8080", "{}", s.name);
            }
        }
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
    }
}

#[test]
fn cluster_ensemble_is_consistent() {
    let file = load("docker-compose-cluster.yml");
    let zks: Vec<Service> = services(&file)
        .into_iter()
        .filter(|s| s.name.starts_with("zookeeper"))
        .collect();
    assert_eq!(zks.len(), 3);
    let mut ids = BTreeSet::new();
    for s in &zks {
        let id = s.environment.get("ZOO_MY_ID").expect("ZOO_MY_ID").clone();
        assert_eq!(
            s.name,
            format!("zookeeper{id}"),
            "ZOO_MY_ID matches the name"
        );
        ids.insert(id);
        let servers = s.environment.get("ZOO_SERVERS").expect("ZOO_SERVERS");
        let want: Vec<String> = (1..=3)
            .map(|n| format!("server.{n}=zookeeper{n}:2888:3888;2181"))
            .collect();
        assert_eq!(
            servers.split_whitespace().collect::<Vec<_>>(),
            want,
            "{}",
            s.name
        );
        let volumes = s
            .yaml
            .get("volumes")
            .and_then(Value::as_sequence)
            .expect("volumes");
        assert!(
            volumes
                .iter()
                .filter_map(Value::as_str)
                .any(|v| v == format!("{}-data:/data", s.name)),
            "{}: own named data volume",
            s.name
        );
    }
    assert_eq!(ids.len(), 3);
    let single = load("docker-compose.yml");
    let zk = services(&single)
        .into_iter()
        .filter(|s| s.name.starts_with("zookeeper"))
        .count();
    assert_eq!(zk, 1, "docker-compose.yml runs one ZooKeeper");
}

#[test]
fn secrets_come_from_env_and_env_example_documents_every_variable() {
    let example = vars();
    for file in all() {
        let text = std::fs::read_to_string(&file.path).expect("read");
        // Every ${VAR...} used in the file is documented in .env.example.
        let mut rest = text.as_str();
        while let Some(i) = rest.find("${") {
            rest = &rest[i + 2..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                example.contains_key(&name),
                "{}: ${{{name}}} missing from .env.example",
                file.path.display()
            );
        }
        // Secrets are never literals in the compose file.
        let raw_services = file
            .raw
            .get("services")
            .and_then(Value::as_mapping)
            .expect("services");
        for (name, svc) in raw_services {
            let env = svc.get("environment").and_then(Value::as_mapping);
            for key in ["API_TOKEN", "GF_SECURITY_ADMIN_PASSWORD"] {
                if let Some(v) = env.and_then(|e| e.get(key)).and_then(Value::as_str) {
                    assert!(
                        v.starts_with("${") && v.contains(":?"),
                        "{name:?}: {key} must be ${{VAR:?...}} from .env, is {v:?}"
                    );
                }
            }
        }
    }
    let gitignore = std::fs::read_to_string(repo_root().join(".gitignore")).expect(".gitignore");
    assert!(
        gitignore.lines().any(|l| l.trim() == ".env"),
        ".env must be git-ignored"
    );
    let dockerignore =
        std::fs::read_to_string(repo_root().join(".dockerignore")).expect(".dockerignore");
    assert!(
        dockerignore.lines().any(|l| l.trim() == ".env"),
        ".env must stay out of the build context"
    );
}

#[test]
fn grafana_is_provisioned_from_the_repo() {
    for file in all() {
        let g = file.service("grafana").expect("svcs").expect("grafana");
        let env = &g.environment;
        // Asynchronous preinstall: a failed download must not stop Grafana (the built-in
        // Prometheus datasource keeps working offline, as the README promises).
        assert_eq!(
            env.get("GF_PLUGINS_PREINSTALL").map(String::as_str),
            Some("simpod-json-datasource@0.6.7")
        );
        assert!(
            !env.contains_key("GF_PLUGINS_PREINSTALL_SYNC"),
            "{}: synchronous preinstall makes Grafana exit when offline",
            file.path.display()
        );
        assert_eq!(
            env.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            env.get("GF_AUTH_ANONYMOUS_ORG_ROLE").map(String::as_str),
            Some("Viewer")
        );
        let mounts: BTreeMap<String, String> = g
            .yaml
            .get("volumes")
            .and_then(Value::as_sequence)
            .expect("volumes")
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| v.starts_with("./"))
            .map(|v| {
                let mut parts = v.split(':');
                let src = parts.next().unwrap_or_default().to_string();
                let dst = parts.next().unwrap_or_default().to_string();
                (dst, src)
            })
            .collect();
        for src in mounts.values() {
            assert!(
                repo_root().join(src).is_dir(),
                "bind mount source {src} is missing"
            );
        }
        assert_eq!(
            mounts.get("/etc/grafana/provisioning").map(String::as_str),
            Some("./grafana/provisioning")
        );
        let home = env
            .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
            .expect("home dashboard");
        let (dst, src) = mounts
            .iter()
            .find(|(dst, _)| home.starts_with(dst.as_str()))
            .expect("home dashboard lies in a mounted directory");
        let on_disk = repo_root()
            .join(src)
            .join(home[dst.len()..].trim_start_matches('/'));
        assert!(
            on_disk.is_file(),
            "{} (home dashboard) is missing",
            on_disk.display()
        );
    }
}

#[test]
fn our_image_is_built_once_and_the_others_wait_for_it() {
    for file in all() {
        let svcs = services(&file);
        let building: Vec<&str> = svcs
            .iter()
            .filter(|s| s.yaml.get("build").is_some())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            building,
            ["api"],
            "{}: only the api builds zk-sensors:local (parallel builds of one tag race)",
            file.path.display()
        );
        for s in svcs.iter().filter(|s| s.built_here && s.name != "api") {
            assert_eq!(s.image.as_deref(), Some("zk-sensors:local"), "{}", s.name);
            assert!(
                s.depends_on.contains_key("api"),
                "{}: must start after the api, which builds its image",
                s.name
            );
            assert_eq!(
                s.yaml.get("pull_policy").and_then(Value::as_str),
                Some("never"),
                "{}: the image is local, never pulled",
                s.name
            );
        }
    }
}

/// Both files are usually run from one directory, i.e. one Compose project: they must not
/// share a named volume, or switching files would pair one set-up's Redis history with the
/// other's fresh ZooKeeper. (Distinct volumes rather than a top-level `name:`, which
/// docker-compose 1.x rejects.)
#[test]
fn the_two_files_share_no_volume() {
    let volumes: Vec<BTreeSet<String>> = all()
        .iter()
        .map(|f| {
            let declared: BTreeSet<String> = f
                .document
                .get("volumes")
                .and_then(Value::as_mapping)
                .expect("volumes")
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            for s in services(f) {
                for v in s
                    .yaml
                    .get("volumes")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let src = v.split(':').next().unwrap_or_default();
                    if !src.starts_with('.') && !src.starts_with('/') {
                        assert!(declared.contains(src), "{}: {src} undeclared", s.name);
                    }
                }
            }
            declared
        })
        .collect();
    let shared: Vec<&String> = volumes[0].intersection(&volumes[1]).collect();
    assert!(
        shared.is_empty(),
        "volumes shared by both files: {shared:?}"
    );
}

#[test]
fn dockerfile_ships_every_binary_the_services_run() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let ship_line = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with("for bin in "))
        .expect("the Dockerfile's `for bin in ...` copy loop");
    let shipped: BTreeSet<&str> = ship_line
        .split_whitespace()
        .skip(3)
        .map(|w| w.trim_end_matches(';'))
        .filter(|w| *w != "do")
        .collect();
    for bin in ["sensor-node", "sensorctl", "sensor-api", "sensor-dashboard"] {
        assert!(shipped.contains(bin), "{bin} not copied into the image");
    }
    assert!(
        dockerfile.contains("FROM debian:bookworm-slim"),
        "slim runtime stage"
    );
    assert!(
        dockerfile.contains("\nUSER "),
        "the runtime runs as a non-root user"
    );
    for file in all() {
        for s in services(&file).into_iter().filter(|s| s.built_here) {
            let bin = s.command.first().cloned().unwrap_or_default();
            assert!(
                shipped.contains(bin.as_str()),
                "{}: runs {bin:?}, not in the image",
                s.name
            );
        }
    }
}
