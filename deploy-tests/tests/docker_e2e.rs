//! `docker compose up` end to end: the real `docker-compose.yml` and
//! `docker-compose-cluster.yml`, our image built from the real `Dockerfile`, real
//! containers on a Docker engine. Ignored by plain `cargo test` (it takes minutes and needs
//! a Docker engine); `scripts/test` runs it when `docker info` answers:
//!
//!   cargo test -p deploy-tests --test docker_e2e -- --ignored --nocapture
//!
//! Without an engine it prints why and passes. The engine needs no registry: the public
//! images the files and the Dockerfile name (zookeeper, redis, rust, debian) are replaced by
//! stand-ins built from Debian's packages under the same names (`deploy-tests/images/`),
//! kept between runs. Grafana has no stand-in and is not started. A test-only override
//! points our services at a per-run image tag; the files themselves are used as written.
//!
//! Checks, single file: every service healthy by the file's own healthchecks; averages
//! arrive (JSON API; the history page in headless Chromium on the published port 8080);
//! `/nuevo` with the `.env` token; `down` then `up` keeps the history (Redis volume).
//! Cluster file: stopping zookeeper2 does not stop the averages; cutting the leader node's
//! container off the network makes another node lead within the session timeout + one
//! period, and after it reconnects the stored rounds are 1..n, each once; a rolling restart
//! of the three ZooKeeper containers loses no round. Figures (build time, image size,
//! `up` → first stored average, memory per container) are printed.
//!
//! Everything it creates is removed at the end (project containers, network, volumes, our
//! image and the build's intermediate images); the stand-in images are kept.

mod docker_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use docker_support::*;
use testkit::compose::{compose_files, repo_root};

/// Slack on top of "session timeout + one period" for the failover bound: detecting the
/// expiry, the new leader's election and the delivery to the API, on a busy 2-core machine.
const FAILOVER_SLACK: Duration = Duration::from_secs(8);

/// Generous bounds: CI is a busy shared 2-core machine.
const HEALTHY_WITHIN: Duration = Duration::from_secs(300);
const ROUND_WITHIN: Duration = Duration::from_secs(120);

#[test]
#[ignore = "needs a Docker engine and minutes; scripts/test runs it when `docker info` answers"]
fn docker_compose_end_to_end() {
    let compose = match engine() {
        Engine::Ready { compose } => compose,
        Engine::Missing(why) => {
            println!("SKIPPED docker_compose_end_to_end: {why}");
            return;
        }
    };
    println!("compose tool: {}", compose.join(" "));
    let total = Instant::now();

    // 1. Stand-ins for every public image the Dockerfile and the compose files name.
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    let mut images = dockerfile_bases(&dockerfile);
    for file in compose_files() {
        let vars = testkit::compose::read_env_file(&repo_root().join(".env.example"))
            .expect(".env.example");
        let parsed = testkit::compose::ComposeFile::load(&file, &vars).expect("compose file");
        let ours = our_service_names(&parsed);
        for s in parsed.services().expect("services") {
            if ours.contains(&s.name) || NO_STANDIN.contains(&s.name.as_str()) {
                continue;
            }
            let image = s.image.unwrap_or_else(|| panic!("{}: no image", s.name));
            if !images.contains(&image) {
                images.push(image);
            }
        }
    }
    let standins = ensure_standins(&images);
    println!(
        "stand-in images ready in {:.0} s (kept between runs): {}",
        standins.as_secs_f64(),
        images.join(", ")
    );
    println!("grafana: not started (no stand-in for grafana/grafana without a registry)");

    assert_port_free(8080);
    let before_images = all_image_ids();
    let mut figures = Figures::default();
    {
        let mut single = Stack::new(compose.clone(), "docker-compose.yml", "s");
        let _image = OurImage {
            tag: single.our_image.clone(),
            before: before_images,
        };
        let build = single.build();
        keep_build_cache();
        figures.build_s = build.as_secs_f64();
        figures.image_mb = single.image_size() as f64 / 1e6;
        println!(
            "our image {}: built from the Dockerfile in {:.0} s, {:.1} MB",
            single.our_image, figures.build_s, figures.image_mb
        );
        single_file_checks(&mut single, &mut figures);
        let image = single.our_image.clone();
        drop(single);

        let mut cluster = Stack::new_with_image(compose, "docker-compose-cluster.yml", "c", &image);
        cluster_checks(&mut cluster, &mut figures);
    }
    figures.total_s = total.elapsed().as_secs_f64();
    figures.print();
}

/// Single file: health, averages (API, page in Chromium, /nuevo), down/up keeps history.
fn single_file_checks(stack: &mut Stack, figures: &mut Figures) {
    let up = Instant::now();
    stack.up();
    // `up` returns once the services the nodes depend on are healthy and every container
    // started; the first average can come before the nodes' own (15 s) healthchecks pass.
    stack.wait_round("first stored average", HEALTHY_WITHIN, |_| true);
    figures.single_first_avg_s = up.elapsed().as_secs_f64();
    stack.wait_healthy(&stack.services.clone(), HEALTHY_WITHIN);
    println!(
        "single: first stored average {:.0} s after `up`, every service healthy after {:.0} s",
        figures.single_first_avg_s,
        up.elapsed().as_secs_f64()
    );

    // The dashboard (a service in both files now; checked only where the file has it).
    if stack.services.iter().any(|s| s == "dashboard") {
        // It shows the leader: the JSON state names one of our nodes, and so does the page.
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader = loop {
            let (code, body) = http("http://127.0.0.1:8081/api/v1/cluster", None);
            let state: serde_json::Value =
                serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            if let Some(id) = state["cluster"]["leader"]["id"].as_str() {
                break id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "dashboard on 127.0.0.1:8081 names no leader within 60 s (HTTP {code}): {body}"
            );
            std::thread::sleep(Duration::from_secs(1));
        };
        assert!(
            ["n1", "n2", "n3"].contains(&leader.as_str()),
            "dashboard leader {leader:?} is not one of the nodes"
        );
        let (code, page) = http("http://127.0.0.1:8081/", None);
        assert_eq!(code, 200, "dashboard page on 127.0.0.1:8081");
        assert!(
            page.contains(&format!("data-leader=\"{leader}\"")),
            "the dashboard page shows leader {leader}"
        );
        println!("single: dashboard on 8081 shows leader {leader}");
    } else {
        println!(
            "single: no `dashboard` service in docker-compose.yml yet, its 8081 check skipped"
        );
    }

    // Legacy endpoint: the token from .env is in force.
    let (code, body) = http(&format!("{}/nuevo?dato=42.5", stack.api), None);
    assert_eq!(code, 401, "/nuevo without the token: {body}");
    let (code, body) = http(
        &format!("{}/nuevo?dato=42.5", stack.api),
        Some(&stack.token),
    );
    assert_eq!(code, 200, "/nuevo with the token: {body}");
    assert!(body.contains("\"stored\""), "{body}");

    // A few rounds, then the history page as a browser renders it.
    let first = stack.rounds()[0].round;
    stack.wait_round("3 stored averages", ROUND_WITHIN, |r| r.round >= first + 2);
    let rounds = stack.rounds();
    let profile = tempfile::tempdir().expect("tempdir");
    let dom = chromium_dom(&format!("{}/?refresh=0", stack.api), profile.path());
    assert!(
        dom.contains("<svg id=\"chart\"") && dom.contains("<polyline class=\"line\" points=\""),
        "chart on the history page:\n{}",
        tail(&dom, 40)
    );
    let rows = dom.matches("<time data-ms=").count();
    assert!(
        rows > rounds.len().min(49),
        "{rows} rows for {} stored averages",
        rounds.len()
    );
    // The newest rounds are on the first page.
    for r in rounds.iter().rev().take(40) {
        assert!(
            dom.contains(&format!("title=\"{}\"", r.leader)),
            "leader {} in the page",
            r.leader
        );
    }
    assert!(dom.contains("42.5"), "the /nuevo point on the page");
    println!(
        "single: history page in Chromium shows {rows} rows and the chart; /nuevo stored with the token, 401 without"
    );
    figures.memory.push(("single".into(), stack.memory()));

    // down + up: the Redis volume keeps the history.
    let before = stack.rounds();
    stack.down_keeping_named_volumes();
    assert!(
        stack.container("api").is_empty(),
        "down removed the containers"
    );
    stack.up();
    stack.wait_healthy(&stack.services.clone(), HEALTHY_WITHIN);
    let top = before.last().map(|r| r.round).unwrap_or(0);
    stack.wait_round("a new round after down/up", ROUND_WITHIN, |r| r.round > top);
    let after = stack.rounds();
    for r in &before {
        assert!(after.contains(r), "round {} lost across down/up", r.round);
    }
    let (_, legacy) = stack.get("/api/v1/averages?limit=10000");
    assert!(legacy.contains("\"legacy\""), "the /nuevo point survived");
    let problems = contiguity_problems(&after);
    assert!(problems.is_empty(), "after down/up: {problems:?}");
    println!(
        "single: down + up kept all {} rounds and the /nuevo point; rounds continue: {}",
        before.len(),
        summary(&after)
    );
}

/// Cluster file: ZooKeeper member loss, leader network cut, rolling ZooKeeper restart.
fn cluster_checks(stack: &mut Stack, figures: &mut Figures) {
    let up = Instant::now();
    stack.up();
    stack.wait_round("first stored average", HEALTHY_WITHIN, |_| true);
    figures.cluster_first_avg_s = up.elapsed().as_secs_f64();
    stack.wait_healthy(&stack.services.clone(), HEALTHY_WITHIN);
    println!(
        "cluster: first stored average {:.0} s after `up`, every service healthy after {:.0} s",
        figures.cluster_first_avg_s,
        up.elapsed().as_secs_f64()
    );

    // zookeeper2 stopped: its name no longer resolves; the averages go on.
    stack.compose(&["stop", "-t", "10", "zookeeper2"]);
    let resolves =
        run(&mut stack.compose_cmd(&["exec", "-T", "node1", "getent", "hosts", "zookeeper2"]));
    assert!(
        !resolves.status.success(),
        "zookeeper2 still resolves after stop: {}",
        String::from_utf8_lossy(&resolves.stdout)
    );
    let last = stack.last_round();
    stack.wait_round("3 rounds with zookeeper2 stopped", ROUND_WITHIN, |r| {
        r.round >= last + 3
    });
    println!(
        "cluster: zookeeper2 stopped (name gone), rounds {last}..{} stored",
        last + 3
    );
    let started = stack.started_at("zookeeper2");
    stack.compose(&["start", "zookeeper2"]);
    wait_restarted(stack, "zookeeper2", &started);

    // The leader node's container cut off the network.
    let leader = current_leader(stack);
    let service = node_service(stack, &leader);
    let container = stack.container(&service);
    let network = stack.network();
    let last = stack.last_round();
    let cut = Instant::now();
    docker(&["network", "disconnect", &network, &container]);
    let took_over = stack.wait_round("a round from another leader", ROUND_WITHIN, |r| {
        r.round > last && r.leader != leader
    });
    let failover = cut.elapsed();
    figures.failover_s = failover.as_secs_f64();
    let bound = Duration::from_secs(SESSION_TIMEOUT_S + SAMPLING_PERIOD_S) + FAILOVER_SLACK;
    println!(
        "cluster: leader {leader} ({service}) disconnected; {} leads, its round {} stored {:.1} s later (bound {:.0} s = session timeout {SESSION_TIMEOUT_S} s + period {SAMPLING_PERIOD_S} s + {} s slack)",
        took_over.leader,
        took_over.round,
        failover.as_secs_f64(),
        bound.as_secs_f64(),
        FAILOVER_SLACK.as_secs()
    );
    assert!(
        failover <= bound,
        "failover took {failover:?}, over {bound:?}"
    );
    docker(&[
        "network", "connect", "--alias", &service, &network, &container,
    ]);
    // Back as an election contender with a new session.
    let deadline = Instant::now() + HEALTHY_WITHIN;
    while !stack
        .status(&service)
        .map(|s| s.to_string().contains(&format!("\"{leader}\"")))
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "{leader} did not rejoin after reconnect\n{}",
            stack.diagnostics()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let last = stack.last_round();
    stack.wait_round("3 rounds after the reconnect", ROUND_WITHIN, |r| {
        r.round >= last + 3
    });
    let problems = contiguity_problems(&stack.rounds());
    assert!(problems.is_empty(), "after the leader cut: {problems:?}");
    println!(
        "cluster: {leader} reconnected and rejoined; stored rounds 1..{}, each once",
        stack.last_round()
    );

    // Rolling restart of the ensemble, one member at a time.
    let last = stack.last_round();
    for zk in ["zookeeper1", "zookeeper2", "zookeeper3"] {
        let started = stack.started_at(zk);
        stack.compose(&["restart", "-t", "10", zk]);
        wait_restarted(stack, zk, &started);
    }
    let after = stack.last_round();
    stack.wait_round("3 rounds after the rolling restart", ROUND_WITHIN, |r| {
        r.round >= after + 3
    });
    let rounds = stack.rounds();
    let problems = contiguity_problems(&rounds);
    assert!(
        problems.is_empty(),
        "after the rolling restart: {problems:?}"
    );
    println!(
        "cluster: rolling restart of zookeeper1..3 lost no round (rounds {last}..{after} during it); {}",
        summary(&rounds)
    );
    figures.memory.push(("cluster".into(), stack.memory()));
}

/// Waits until `service`'s container has restarted (StartedAt moved) and is healthy again.
fn wait_restarted(stack: &Stack, service: &str, before: &str) {
    let deadline = Instant::now() + HEALTHY_WITHIN;
    while stack.started_at(service) == before {
        assert!(Instant::now() < deadline, "{service} did not restart");
        std::thread::sleep(Duration::from_millis(500));
    }
    stack.wait_healthy(&[service.to_string()], HEALTHY_WITHIN);
}

/// The node id holding leadership now, as `sensorctl status` inside a node reports it.
fn current_leader(stack: &Stack) -> String {
    let deadline = Instant::now() + ROUND_WITHIN;
    loop {
        for node in stack.services.iter().filter(|s| s.starts_with("node")) {
            if let Some(leader) = stack
                .status(node)
                .and_then(|s| s["leader"].as_str().map(str::to_string))
            {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader reported by sensorctl status"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The compose service whose NODE_ID is `id`.
fn node_service(stack: &Stack, id: &str) -> String {
    stack
        .parsed
        .services()
        .expect("services")
        .into_iter()
        .find(|s| s.environment.get("NODE_ID").map(String::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no service with NODE_ID={id}"))
        .name
}

/// Tag under which the Dockerfile's `build` stage (toolchain, compiled dependencies, last
/// build) is kept between runs, so the next run recompiles only what changed.
const BUILD_CACHE: &str = "zk-sensors-e2e-cache:build";

/// Whether to keep [`BUILD_CACHE`] (default yes; `E2E_KEEP_BUILD_CACHE=0` removes it).
fn keep_cache_wanted() -> bool {
    std::env::var("E2E_KEEP_BUILD_CACHE")
        .map(|v| v != "0")
        .unwrap_or(true)
}

/// Tags the `build` stage just built (every step is cached, so this only names it) and
/// removes the previous run's one when it differs, with the layers only it used.
fn keep_build_cache() {
    let old = image_exists(BUILD_CACHE)
        .then(|| docker(&["image", "inspect", "-f", "{{.Id}}", BUILD_CACHE]));
    let out = run(std::process::Command::new("docker")
        .args(["build", "-q", "--target", "build", "-t", BUILD_CACHE, "."])
        .current_dir(repo_root())
        .env("DOCKER_BUILDKIT", "0"));
    assert!(
        out.status.success(),
        "tagging the build stage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = docker(&["image", "inspect", "-f", "{{.Id}}", BUILD_CACHE]);
    if let Some(old) = old.filter(|o| *o != new) {
        let _ = run(std::process::Command::new("docker").args(["rmi", &old]));
    }
}

/// Every image id in the engine (with intermediate ones), to remove what the build added.
fn all_image_ids() -> BTreeSet<String> {
    docker(&["image", "ls", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Our image for this run; on drop it and the build's intermediate images (the classic
/// builder keeps every step as an untagged image) are removed. Images that existed before
/// the build, and anything tagged (the stand-ins, [`BUILD_CACHE`]), are left alone.
struct OurImage {
    tag: String,
    before: BTreeSet<String>,
}

impl Drop for OurImage {
    fn drop(&mut self) {
        if !keep_cache_wanted() && image_exists(BUILD_CACHE) {
            let _ = run(std::process::Command::new("docker").args(["rmi", BUILD_CACHE]));
        }
        if image_exists(&self.tag) {
            let out = run(std::process::Command::new("docker").args(["rmi", "-f", &self.tag]));
            if !out.status.success() {
                eprintln!(
                    "cleanup: docker rmi {}: {}",
                    self.tag,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let dangling: BTreeSet<String> = docker(&[
            "image",
            "ls",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            "dangling=true",
        ])
        .lines()
        .map(str::to_string)
        .collect();
        let ours: Vec<&String> = dangling.difference(&self.before).collect();
        // Newest first: a child before its parent.
        for id in ours.iter().rev() {
            let _ = run(std::process::Command::new("docker").args(["rmi", id.as_str()]));
        }
    }
}

/// What the run measured, printed at the end (and quoted in the README).
#[derive(Default)]
struct Figures {
    build_s: f64,
    image_mb: f64,
    single_first_avg_s: f64,
    cluster_first_avg_s: f64,
    failover_s: f64,
    total_s: f64,
    memory: Vec<(String, Vec<(String, String)>)>,
}

impl Figures {
    fn print(&self) {
        println!("=== figures ===");
        println!(
            "image build (Dockerfile, both stages): {:.0} s",
            self.build_s
        );
        println!("image size: {:.1} MB", self.image_mb);
        println!(
            "up -> first stored average: single {:.0} s, cluster {:.0} s",
            self.single_first_avg_s, self.cluster_first_avg_s
        );
        println!(
            "leader network cut -> round from a new leader stored: {:.1} s",
            self.failover_s
        );
        for (file, mem) in &self.memory {
            let list: Vec<String> = mem.iter().map(|(s, m)| format!("{s} {m}")).collect();
            println!("memory ({file}, docker stats): {}", list.join(", "));
        }
        println!("whole test: {:.0} s", self.total_s);
    }
}

/// The harness reads the real files: the Dockerfile's bases (ARG default substituted, stage
/// names skipped) and which services run our image. Runs without an engine.
#[test]
fn harness_reads_the_real_files() {
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    let bases = dockerfile_bases(&dockerfile);
    assert!(
        bases
            .iter()
            .any(|b| b.starts_with("rust:") && !b.contains('$')),
        "{bases:?}"
    );
    assert!(
        bases.contains(&"debian:bookworm-slim".to_string()),
        "{bases:?}"
    );
    assert!(bases.iter().all(|b| standin_kind(b).is_some()), "{bases:?}");
    let vars = testkit::compose::read_env_file(&repo_root().join(".env.example")).expect("env");
    for file in compose_files() {
        let parsed = testkit::compose::ComposeFile::load(&file, &vars).expect("compose file");
        let ours = our_service_names(&parsed);
        for name in ["api", "node1", "node2", "node3"] {
            assert!(
                ours.iter().any(|o| o == name),
                "{}: {ours:?}",
                file.display()
            );
        }
        for s in parsed.services().expect("services") {
            if !ours.contains(&s.name) && !NO_STANDIN.contains(&s.name.as_str()) {
                let image = s.image.expect("image");
                assert!(standin_kind(&image).is_some(), "no stand-in for {image}");
            }
        }
    }
}

#[test]
fn stored_rounds_must_be_one_to_n_each_once() {
    let r = |round| Round {
        round,
        leader: "n1".into(),
        taken_at_ms: 0,
    };
    assert!(contiguity_problems(&[r(1), r(2), r(3)]).is_empty());
    assert_eq!(
        contiguity_problems(&[r(1), r(3)]),
        vec!["rounds missing: [2]".to_string()]
    );
    assert_eq!(
        contiguity_problems(&[r(1), r(2), r(2)]),
        vec!["round 2 stored 2 times".to_string()]
    );
    assert_eq!(
        contiguity_problems(&[]),
        vec!["no rounds stored".to_string()]
    );
}
