//! The full local stack the faults hit: a 3-server ZooKeeper ensemble, Redis, one
//! sensor-api, five sensor-nodes (each reaching ZooKeeper through its own [`Partition`]
//! proxies, so one can be cut off) and, when a real `sensor-dashboard` is built, the dashboard.
//!
//! Every process we start is tracked with whether *we* took it down, so the checker can tell
//! a fault we injected from a crash: see [`Stack::unexpected_exits`]. Logs of every process
//! live in one run directory and survive restarts (each restart appends).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context};
use testkit::{Partition, Proc, RedisServer, ZkEnsemble};

/// Node ids are `n1`..`n5`.
pub const NODES: usize = 5;
/// API token shared by the API and the nodes (writes need it).
const TOKEN: &str = "chaos-token-0123456789";

/// Timing of the stack, chosen for fast faults.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Sensors' ZooKeeper session timeout.
    pub session: Duration,
    /// Sampling period (one round per period).
    pub period: Duration,
}

/// Where the built binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// sensor-node.
    pub node: PathBuf,
    /// sensor-api.
    pub api: PathBuf,
    /// sensor-dashboard, when a real one (accepting `--listen`) is built.
    pub dashboard: Option<PathBuf>,
}

impl Binaries {
    /// Finds the binaries in `dir` (a cargo `target/<profile>` directory). sensor-node and
    /// sensor-api are required; the dashboard is optional (absent, or the placeholder that
    /// takes no flags, means "skip it").
    pub fn locate(dir: &Path) -> anyhow::Result<Binaries> {
        let node = dir.join("sensor-node");
        let api = dir.join("sensor-api");
        for b in [&node, &api] {
            if !b.exists() {
                bail!(
                    "{} is missing: build it first (`cargo build -p zk-sensors-node -p sensor-api`)",
                    b.display()
                );
            }
        }
        let dash = dir.join("sensor-dashboard");
        let dashboard = dash
            .exists()
            .then(|| Command::new(&dash).arg("--help").output().ok())
            .flatten()
            .filter(|out| String::from_utf8_lossy(&out.stdout).contains("--listen"))
            .map(|_| dash);
        Ok(Binaries {
            node,
            api,
            dashboard,
        })
    }
}

/// A child process of the stack and whether its absence is our doing.
pub struct Tracked {
    /// Name for messages (`n3`, `api`, `dashboard`).
    pub name: String,
    /// The running process, `None` while we keep it down.
    pub proc: Option<Proc>,
    /// Its log file (appended across restarts).
    pub log: PathBuf,
}

impl Tracked {
    /// Whether the process is up (running or paused).
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }
}

/// The running stack.
pub struct Stack {
    /// The ensemble (members may be down while a fault holds).
    pub zk: ZkEnsemble,
    /// Redis.
    pub redis: RedisServer,
    /// sensor-api.
    pub api: Tracked,
    /// `http://127.0.0.1:<port>` of the API (stable across restarts).
    pub api_url: String,
    api_port: u16,
    /// sensor-nodes `n1`..`n5`.
    pub nodes: Vec<Tracked>,
    /// Per node: one proxy per ZooKeeper server.
    pub proxies: Vec<Vec<Partition>>,
    /// The dashboard, when built.
    pub dashboard: Option<Tracked>,
    /// `http://127.0.0.1:<port>` of the dashboard, when built.
    pub dashboard_url: Option<String>,
    /// The run directory (logs).
    pub dir: PathBuf,
    bins: Binaries,
    timing: Timing,
    rt: tokio::runtime::Handle,
    /// Exits we did not cause, seen so far: (process, how it ended, log tail).
    pub crashes: Vec<(String, String, String)>,
    dead_pids: Vec<u32>,
}

impl Stack {
    /// Starts everything and waits until the API answers. `rt` runs the proxies.
    pub fn start(
        bins: Binaries,
        timing: Timing,
        dir: &Path,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<Stack> {
        let zk = ZkEnsemble::start(3).context("start the ZooKeeper ensemble")?;
        let redis = RedisServer::start().context("start Redis")?;
        let api_port = testkit::free_port();
        let mut proxies = Vec::new();
        for _ in 0..NODES {
            let mut mine = Vec::new();
            for s in &zk.servers {
                mine.push(rt.block_on(Partition::start(s.port())));
            }
            proxies.push(mine);
        }
        let nodes = (1..=NODES)
            .map(|i| Tracked {
                name: format!("n{i}"),
                proc: None,
                log: dir.join(format!("n{i}.log")),
            })
            .collect();
        let dashboard = bins.dashboard.as_ref().map(|_| Tracked {
            name: "dashboard".into(),
            proc: None,
            log: dir.join("dashboard.log"),
        });
        let mut stack = Stack {
            zk,
            redis,
            api: Tracked {
                name: "api".into(),
                proc: None,
                log: dir.join("api.log"),
            },
            api_url: format!("http://127.0.0.1:{api_port}"),
            api_port,
            nodes,
            proxies,
            dashboard,
            dashboard_url: None,
            dir: dir.to_path_buf(),
            bins,
            timing,
            rt,
            crashes: Vec::new(),
            dead_pids: Vec::new(),
        };
        stack.start_api()?;
        for i in 0..NODES {
            stack.start_node(i)?;
        }
        stack.start_dashboard()?;
        Ok(stack)
    }

    /// The stack's timing.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The ensemble's connect string, direct (not through proxies).
    pub fn zk_hosts(&self) -> String {
        self.zk.connect_string()
    }

    /// Starts the API (same port each time) and waits until it is ready (Redis up) or
    /// at least listening.
    pub fn start_api(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bins.api);
        cmd.env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.api_port))
            .env("REDIS_URL", self.redis.url())
            .env("API_TOKEN", TOKEN)
            .env("ZOOKEEPER_HOSTS", self.zk_hosts())
            .env("ADVERTISE_URL", &self.api_url)
            .env("INSTANCE_ID", "chaos-api")
            .env("REDIS_TIMEOUT", "1s")
            .env("SHUTDOWN_GRACE", "3s")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        let proc = Proc::spawn("api", cmd, &self.api.log).context("spawn sensor-api")?;
        self.api.proc = Some(proc);
        let url = format!("{}/readyz", self.api_url);
        let ready = testkit::wait_until(Duration::from_secs(30), || {
            self.rt.block_on(async {
                reqwest::get(&url)
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            })
        });
        if !ready {
            bail!(
                "sensor-api not ready after 30 s; log tail:\n{}",
                testkit::log_tail(&self.api.log, 20)
            );
        }
        Ok(())
    }

    /// Starts node `i` (0-based) connected through its proxies, with per-round debug logs.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let hosts = self.proxies[i]
            .iter()
            .map(Partition::connect_string)
            .collect::<Vec<_>>()
            .join(",");
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(&self.bins.node);
        cmd.env_clear()
            .env("NODE_ID", &node.name)
            .env("ZOOKEEPER_HOSTS", hosts)
            .env("API_URL", &self.api_url)
            .env("API_TOKEN", TOKEN)
            .env(
                "SAMPLING_PERIOD",
                format!("{}", self.timing.period.as_secs_f64()),
            )
            .env(
                "SESSION_TIMEOUT_MS",
                self.timing.session.as_millis().to_string(),
            )
            .env("LOG_FORMAT", "json")
            // Debug on the round module: the leader's list of counted sensors and each
            // sensor's reading, which the checker recomputes averages from.
            .env("RUST_LOG", "info,sensor_node=debug,sensor_coord=debug");
        let proc = Proc::spawn(&node.name, cmd, &node.log).context("spawn sensor-node")?;
        node.proc = Some(proc);
        Ok(())
    }

    fn start_dashboard(&mut self) -> anyhow::Result<()> {
        let (Some(bin), Some(dash)) = (&self.bins.dashboard, self.dashboard.as_mut()) else {
            return Ok(());
        };
        let port = testkit::free_port();
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ZOOKEEPER_HOSTS", self.zk.connect_string())
            .env("API_URL", &self.api_url)
            .env("RUST_LOG", "info");
        dash.proc = Some(Proc::spawn("dashboard", cmd, &dash.log).context("spawn dashboard")?);
        self.dashboard_url = Some(format!("http://127.0.0.1:{port}"));
        Ok(())
    }

    /// Every tracked child process, for the exit check.
    fn tracked(&mut self) -> impl Iterator<Item = &mut Tracked> {
        std::iter::once(&mut self.api)
            .chain(self.nodes.iter_mut())
            .chain(self.dashboard.iter_mut())
    }

    /// Looks for processes that are gone although we did not take them down, records each
    /// once (its handle is then dropped so it is not reported again) and returns how many
    /// new ones there are. ZooKeeper and Redis are checked too (by PING / `srvr` only when
    /// they should serve: see [`Stack::zk_down_unexpectedly`]).
    pub fn unexpected_exits(&mut self) -> usize {
        let mut found = Vec::new();
        for t in self.tracked() {
            if t.proc.is_some() && !t.is_running() {
                let status = t
                    .proc
                    .as_mut()
                    .and_then(|p| p.wait_timeout(Duration::ZERO))
                    .map(describe)
                    .unwrap_or_else(|| "exited".into());
                t.proc = None;
                found.push((t.name.clone(), status, testkit::log_tail(&t.log, 15)));
            }
        }
        let servers = self
            .zk
            .servers
            .iter()
            .map(|s| (format!("zookeeper{}", s.port()), s.pid(), s.log_path()))
            .chain(std::iter::once((
                "redis".to_string(),
                self.redis.pid(),
                PathBuf::new(),
            )));
        for (name, pid, log) in servers.collect::<Vec<_>>() {
            if let Some(pid) = pid.filter(|p| !pid_alive(*p) && !self.dead_pids.contains(p)) {
                self.dead_pids.push(pid);
                found.push((name, "exited".into(), testkit::log_tail(&log, 15)));
            }
        }
        let n = found.len();
        self.crashes.extend(found);
        n
    }

    /// SIGTERM to a tracked process; returns how it exited (a clean shutdown exits 0).
    pub fn terminate(t: &mut Tracked, grace: Duration) -> Option<ExitStatus> {
        t.proc.take().and_then(|mut p| p.terminate(grace))
    }

    /// SIGKILL to a tracked process.
    pub fn kill(t: &mut Tracked) {
        if let Some(mut p) = t.proc.take() {
            p.kill();
        }
    }

    /// Cuts (or heals) every ZooKeeper connection of node `i`.
    pub fn partition(&self, i: usize, cut: bool) {
        for p in &self.proxies[i] {
            if cut {
                p.cut();
            } else {
                p.heal();
            }
        }
    }

    /// Stops everything we started (SIGTERM to the nodes so their logs end cleanly).
    pub fn shutdown(&mut self) {
        for t in self.tracked() {
            if let Some(p) = t.proc.as_mut() {
                p.resume();
            }
            Stack::terminate(t, Duration::from_secs(5));
        }
    }
}

/// Whether `pid` is a live (not zombie) process. Servers are reaped only when the
/// harness stops them, so a crashed one shows as a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// "exit 0", "exit 3", "signal 9".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}
