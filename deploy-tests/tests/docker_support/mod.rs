//! Harness of the Docker end-to-end tests: one compose project per run, brought up from the
//! real compose file plus a test-only override, talked to over 127.0.0.1 only, and removed
//! (containers, network, volumes, our image) when the [`Stack`] is dropped.
//!
//! Public images cannot be pulled on our machines (no registry), so [`ensure_standins`]
//! builds local stand-ins under the exact names the compose file and the Dockerfile use,
//! from Debian's packages (`deploy-tests/images/standin.sh`). They are kept between runs.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use testkit::compose::{repo_root, ComposeFile};

/// Services that have no local stand-in (their image needs a registry): left out.
pub const NO_STANDIN: &[&str] = &["grafana"];

/// Seconds between rounds in the test's `.env` (the compose default is 5): faster rounds,
/// same code path.
pub const SAMPLING_PERIOD_S: u64 = 2;

/// The nodes' ZooKeeper session timeout: `SESSION_TIMEOUT_MS` is not set by the compose
/// files, so it is sensor-node's default.
pub const SESSION_TIMEOUT_S: u64 = 10;

/// Why the Docker tests cannot run here, or how to run Compose.
pub enum Engine {
    /// A daemon answers; `compose` is the argv prefix (`docker compose` or `docker-compose`).
    Ready { compose: Vec<String> },
    /// Skip, with the reason printed.
    Missing(String),
}

/// Probes the Docker daemon (`docker info`) and the Compose tool (`docker compose`, else
/// `docker-compose`).
pub fn engine() -> Engine {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match info {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Engine::Missing(format!(
                "no Docker engine answers (`docker info`: {})",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Engine::Missing(format!("no docker CLI ({e})")),
    }
    let works = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if works(&["docker", "compose"]) {
        Engine::Ready {
            compose: vec!["docker".into(), "compose".into()],
        }
    } else if works(&["docker-compose"]) {
        Engine::Ready {
            compose: vec!["docker-compose".into()],
        }
    } else {
        Engine::Missing("a Docker engine answers but neither `docker compose` nor `docker-compose` is installed".into())
    }
}

/// Runs a command, returning its output; panics only if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; panics with its stderr otherwise.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker <args>`, must succeed; trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    run_ok(Command::new("docker").args(args)).trim().to_string()
}

/// Whether an image of that name exists in the engine.
pub fn image_exists(name: &str) -> bool {
    run(Command::new("docker").args(["image", "inspect", name]))
        .status
        .success()
}

/// The base images the Dockerfile's `FROM` lines name, with `ARG` defaults substituted
/// (stage names skipped): e.g. `rust:1.95-slim-bookworm`, `debian:bookworm-slim`.
pub fn dockerfile_bases(dockerfile: &str) -> Vec<String> {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("ARG") if stages.is_empty() && bases.is_empty() => {
                if let Some((k, v)) = words.next().and_then(|a| a.split_once('=')) {
                    args.insert(k.to_string(), v.to_string());
                }
            }
            Some("FROM") => {
                let mut image = words
                    .find(|w| !w.starts_with("--"))
                    .unwrap_or_default()
                    .to_string();
                for (k, v) in &args {
                    image = image
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                if let (Some(kw), Some(stage)) = (words.next(), words.next()) {
                    if kw.eq_ignore_ascii_case("AS") {
                        stages.push(stage.to_string());
                    }
                }
                if !bases.contains(&image) && !stages.contains(&image) {
                    bases.push(image);
                }
            }
            _ => {}
        }
    }
    bases
}

/// The services that run our image: those built from the Dockerfile (`build:`) and those
/// that only name the image such a service builds (e.g. nodes reusing the api's build).
pub fn our_service_names(file: &ComposeFile) -> Vec<String> {
    let services = file.services().expect("services");
    let built: Vec<String> = services
        .iter()
        .filter(|s| s.built_here)
        .filter_map(|s| s.image.clone())
        .collect();
    services
        .into_iter()
        .filter(|s| s.built_here || s.image.as_ref().is_some_and(|i| built.contains(i)))
        .map(|s| s.name)
        .collect()
}

/// Which stand-in builder makes `image` (by repository name), if any.
pub fn standin_kind(image: &str) -> Option<&'static str> {
    let repo = image.split(':').next().unwrap_or(image);
    match repo {
        "debian" => Some("debian"),
        "zookeeper" => Some("zookeeper"),
        "redis" => Some("redis"),
        "rust" => Some("rust"),
        _ => None,
    }
}

/// Makes sure every image in `images` exists, building a Debian-based stand-in for a
/// missing one (kept tagged afterwards, rebuilt only when missing). Returns how long it took.
pub fn ensure_standins(images: &[String]) -> Duration {
    let started = Instant::now();
    let script = repo_root().join("deploy-tests/images/standin.sh");
    let missing: Vec<(&str, &String)> = images
        .iter()
        .filter(|i| !image_exists(i))
        .map(|i| {
            let kind = standin_kind(i).unwrap_or_else(|| {
                panic!("{i} is missing and there is no stand-in builder for it (no registry to pull from)")
            });
            (kind, i)
        })
        .collect();
    let build = |kind: &str, image: &str| {
        Command::new(&script)
            .args([kind, image])
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()))
    };
    // The Dockerfile's runtime base first (the others are made from it), then the others
    // at once: mostly downloads and unpacking, not CPU.
    for (kind, image) in missing.iter().filter(|(k, _)| *k == "debian") {
        let status = build(kind, image).wait().expect("wait for standin.sh");
        assert!(status.success(), "building the stand-in {image} failed");
    }
    let children: Vec<_> = missing
        .iter()
        .filter(|(k, _)| *k != "debian")
        .map(|(kind, image)| (image, build(kind, image)))
        .collect();
    for (image, mut child) in children {
        let status = child.wait().expect("wait for standin.sh");
        assert!(status.success(), "building the stand-in {image} failed");
    }
    started.elapsed()
}

/// Fails, naming the port, if something already listens on host port `port` (the compose
/// files publish fixed ports; Docker would otherwise fail half-way through `up`).
pub fn assert_port_free(port: u16) {
    for addr in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        if let Err(e) = TcpListener::bind(&addr) {
            panic!("host port {port} is taken ({addr}: {e}); the compose file publishes it. Stop whatever listens there and re-run");
        }
    }
}

/// A unique, lower-case compose project name for this run.
pub fn project_name(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("zke2e{tag}{}x{nanos:x}", std::process::id())
}

/// A compose project brought up from one of our compose files; torn down on drop.
pub struct Stack {
    /// `-p` name: unique per run, so a user's own stack is never touched.
    pub project: String,
    /// The compose file under test (unchanged).
    pub file: PathBuf,
    /// Its parsed form (services, healthchecks).
    pub parsed: ComposeFile,
    /// Our image's tag for this run (the override points our services at it).
    pub our_image: String,
    /// The bearer token in the test's `.env`.
    pub token: String,
    /// The services this test starts (the file's services minus [`NO_STANDIN`]).
    pub services: Vec<String>,
    /// Base URL of the API's published port, on 127.0.0.1.
    pub api: String,
    compose: Vec<String>,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Prepares a project for `file` whose services built from our Dockerfile get a new
    /// per-run image tag. Nothing runs yet.
    pub fn new(compose: Vec<String>, file_name: &str, tag: &str) -> Stack {
        let project = project_name(tag);
        let image = format!("zk-sensors-e2e-{project}:local");
        Stack::with_project(compose, file_name, project, &image)
    }

    /// Like [`Stack::new`], with our services pointed at an image built earlier.
    pub fn new_with_image(compose: Vec<String>, file_name: &str, tag: &str, image: &str) -> Stack {
        Stack::with_project(compose, file_name, project_name(tag), image)
    }

    /// Writes the test's `.env` and override into a temp dir.
    fn with_project(compose: Vec<String>, file_name: &str, project: String, image: &str) -> Stack {
        let file = repo_root().join(file_name);
        let dir = tempfile::tempdir().expect("tempdir");
        let token = format!("e2e-{project}-{:032x}", rand_u128());
        let env = format!(
            "# Written by the Docker end-to-end test for one run.\n\
             API_TOKEN={token}\n\
             # Required by the file even though grafana is not started.\n\
             GRAFANA_ADMIN_PASSWORD=e2e-unused-{project}\n\
             SAMPLING_PERIOD={SAMPLING_PERIOD_S}\n\
             LOG_FORMAT=text\n"
        );
        let env_path = dir.path().join("e2e.env");
        std::fs::write(&env_path, &env).expect("write env file");
        let vars = testkit::compose::read_env_file(&env_path).expect("read env file");
        let parsed = ComposeFile::load(&file, &vars).unwrap_or_else(|e| panic!("{e}"));
        let services: Vec<String> = parsed
            .services()
            .expect("services")
            .into_iter()
            .map(|s| s.name)
            .filter(|n| !NO_STANDIN.contains(&n.as_str()))
            .collect();
        let our_image = image.to_string();
        // Test-only override: our services use this run's image tag, so a user's
        // zk-sensors:local is never replaced or removed.
        let mut over = String::from("# Test-only override (Docker end-to-end test).\nservices:\n");
        for name in our_service_names(&parsed) {
            over.push_str(&format!("  {name}:\n    image: {our_image}\n"));
        }
        std::fs::write(dir.path().join("override.yml"), over).expect("write override");
        Stack {
            project,
            file,
            parsed,
            our_image,
            token,
            services,
            api: "http://127.0.0.1:8080".into(),
            compose,
            dir,
        }
    }

    /// `<compose> -p P -f file -f override --env-file E <args>` with the variables the
    /// `.env` sets removed from the environment (exported ones would win over the file).
    pub fn compose_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("--env-file")
            .arg(self.dir.path().join("e2e.env"))
            .arg("-p")
            .arg(&self.project)
            .arg("--project-directory")
            .arg(repo_root())
            .arg("-f")
            .arg(&self.file)
            .arg("-f")
            .arg(self.dir.path().join("override.yml"))
            .args(args)
            .current_dir(repo_root());
        for var in [
            "API_TOKEN",
            "GRAFANA_ADMIN_PASSWORD",
            "SAMPLING_PERIOD",
            "LOG_FORMAT",
            "COMPOSE_FILE",
            "COMPOSE_PROJECT_NAME",
        ] {
            cmd.env_remove(var);
        }
        // The Dockerfile's `# syntax=` line would make BuildKit fetch its frontend from a
        // registry; the classic builder reads the same Dockerfile without one.
        cmd.env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0");
        cmd
    }

    /// Runs compose with `args`; must succeed. Returns stdout.
    pub fn compose(&self, args: &[&str]) -> String {
        run_ok(&mut self.compose_cmd(args))
    }

    /// Builds our image from the real Dockerfile through the file's `build:` of `api`.
    /// Returns the build time.
    pub fn build(&self) -> Duration {
        let started = Instant::now();
        let out = run(&mut self.compose_cmd(&["build", "api"]));
        let log = self.dir.path().join("build.log");
        let mut text = out.stdout.clone();
        text.extend_from_slice(&out.stderr);
        std::fs::write(&log, &text).ok();
        assert!(
            out.status.success(),
            "building our image failed:\n{}",
            tail(&String::from_utf8_lossy(&text), 60)
        );
        started.elapsed()
    }

    /// Size of our image in bytes.
    pub fn image_size(&self) -> u64 {
        docker(&["image", "inspect", "-f", "{{.Size}}", &self.our_image])
            .parse()
            .expect("image size")
    }

    /// `up -d --no-build` of the test's services.
    pub fn up(&self) {
        let mut args = vec!["up", "-d", "--no-build"];
        args.extend(self.services.iter().map(String::as_str));
        self.compose(&args);
    }

    /// `down` that keeps the file's named volumes (the point of the check) but removes the
    /// anonymous ones the images declare (e.g. ZooKeeper's `/logs`), which nothing reuses.
    pub fn down_keeping_named_volumes(&self) {
        let anonymous: Vec<String> = self
            .services
            .iter()
            .map(|s| self.container(s))
            .filter(|id| !id.is_empty())
            .flat_map(|id| {
                docker(&[
                    "inspect",
                    "-f",
                    "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
                    &id,
                ])
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
            })
            .filter(|v| {
                docker(&[
                    "volume",
                    "inspect",
                    "-f",
                    "{{index .Labels \"com.docker.compose.project\"}}",
                    v,
                ])
                .is_empty()
            })
            .collect();
        self.compose(&["down", "-t", "10"]);
        for v in anonymous {
            let _ = run(Command::new("docker").args(["volume", "rm", &v]));
        }
    }

    /// The container id of `service` (empty when it has none).
    pub fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service]).trim().to_string()
    }

    /// `State.Health.Status` of the service's container ("starting", "healthy", ...).
    pub fn health(&self, service: &str) -> String {
        let id = self.container(service);
        if id.is_empty() {
            return "no container".into();
        }
        let out = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}no healthcheck{{end}}",
            &id,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// When the service's container last started (changes on every restart).
    pub fn started_at(&self, service: &str) -> String {
        docker(&[
            "inspect",
            "-f",
            "{{.State.StartedAt}}",
            &self.container(service),
        ])
    }

    /// Waits until every service in `services` is healthy by its own healthcheck; panics
    /// with each one's state and last health output otherwise.
    pub fn wait_healthy(&self, services: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<(String, String)> = services
                .iter()
                .map(|s| (s.clone(), self.health(s)))
                .collect();
            if states.iter().all(|(_, h)| h == "healthy") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "not healthy within {timeout:?}: {states:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Health states and log tails of every container, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for s in &self.services {
            let id = self.container(s);
            if id.is_empty() {
                continue;
            }
            let health = run(Command::new("docker").args([
                "inspect",
                "-f",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}} {{range .State.Health.Log}}{{.Output}}{{end}}{{end}}",
                &id,
            ]));
            let logs = run(Command::new("docker").args(["logs", "--tail", "15", &id]));
            out.push_str(&format!(
                "--- {s}: {}\n{}{}\n",
                String::from_utf8_lossy(&health.stdout).trim(),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            ));
        }
        out
    }

    /// The project's network (compose's default network), as Docker names it.
    pub fn network(&self) -> String {
        let id = self.container(&self.services[0]);
        let nets = docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &id,
        ]);
        nets.split_whitespace()
            .next()
            .expect("container on a network")
            .to_string()
    }

    /// `docker stats --no-stream` memory of each container: (service, usage as printed).
    pub fn memory(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .map(|s| {
                let id = self.container(s);
                let mem = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &id]);
                let used = mem.split('/').next().unwrap_or(&mem).trim().to_string();
                (s.clone(), used)
            })
            .collect()
    }

    /// `sensorctl status --json` run inside `node`'s container.
    pub fn status(&self, node: &str) -> Option<Value> {
        let out = run(&mut self.compose_cmd(&[
            "exec",
            "-T",
            node,
            "sensorctl",
            "--timeout",
            "5",
            "status",
            "--json",
        ]));
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// GET `path` on the API's published port; (HTTP status, body). Status 0 = no answer.
    pub fn get(&self, path: &str) -> (u16, String) {
        http(&format!("{}{path}", self.api), None)
    }

    /// Every stored average (newest first in the API; returned oldest first) that came
    /// from a leader, i.e. not the legacy `/nuevo` points: (round, leader, taken_at_ms).
    pub fn rounds(&self) -> Vec<Round> {
        let (code, body) = self.get("/api/v1/averages?limit=10000");
        if code != 200 {
            return Vec::new();
        }
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let mut rounds: Vec<Round> = json["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i["leader"] != "legacy")
                    .filter_map(|i| {
                        Some(Round {
                            round: i["round"].as_u64()?,
                            leader: i["leader"].as_str()?.to_string(),
                            taken_at_ms: i["taken_at_ms"].as_i64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        rounds.reverse();
        rounds
    }

    /// Polls until a stored round satisfies `pred`; returns it, or panics after `timeout`.
    pub fn wait_round(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Round) -> bool,
    ) -> Round {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.rounds().into_iter().find(|r| pred(r)) {
                return r;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {timeout:?}; stored: {:?}\n{}",
                    summary(&self.rounds()),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The highest stored round (0 when none).
    pub fn last_round(&self) -> u64 {
        self.rounds().last().map(|r| r.round).unwrap_or(0)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Containers, the network and the named volumes of this project only.
        let down = run(&mut self.compose_cmd(&["down", "-v", "--remove-orphans", "-t", "5"]));
        if !down.status.success() {
            eprintln!(
                "cleanup: compose down failed: {}",
                String::from_utf8_lossy(&down.stderr)
            );
        }
    }
}

/// One stored average as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// Round number (1, 2, ...).
    pub round: u64,
    /// The node that averaged it.
    pub leader: String,
    /// When it was taken.
    pub taken_at_ms: i64,
}

/// Short description of stored rounds for failure messages: count, range, leaders.
pub fn summary(rounds: &[Round]) -> String {
    let nums: Vec<u64> = rounds.iter().map(|r| r.round).collect();
    format!(
        "{} rounds {:?}..{:?}, leaders {:?}",
        nums.len(),
        nums.first(),
        nums.last(),
        rounds
            .iter()
            .map(|r| r.leader.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    )
}

/// Checks that stored rounds are exactly 1..=max, each once; returns the problems found.
pub fn contiguity_problems(rounds: &[Round]) -> Vec<String> {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in rounds {
        *seen.entry(r.round).or_default() += 1;
    }
    let mut problems: Vec<String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(r, n)| format!("round {r} stored {n} times"))
        .collect();
    if let Some(max) = seen.keys().next_back() {
        let missing: Vec<u64> = (1..=*max).filter(|r| !seen.contains_key(r)).collect();
        if !missing.is_empty() {
            problems.push(format!("rounds missing: {missing:?}"));
        }
    } else {
        problems.push("no rounds stored".into());
    }
    problems
}

/// HTTP GET through curl (`Authorization: Bearer` when `token` is given). Status 0 when
/// nothing answered.
pub fn http(url: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "10", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = run(cmd.arg(url).stdin(Stdio::null()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.rsplit_once('\n') {
        Some((body, code)) => (code.trim().parse().unwrap_or(0), body.to_string()),
        None => (0, text),
    }
}

/// Headless Chromium's DOM of `url` after scripts ran.
pub fn chromium_dom(url: &str, profile: &Path) -> String {
    let out = run(testkit::chromium::headless(profile).args(["--dump-dom", url]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn rand_u128() -> u128 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Not a secret worth more: the stack lives for one test run, bound to this machine.
    t.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) ^ u128::from(std::process::id())
}
