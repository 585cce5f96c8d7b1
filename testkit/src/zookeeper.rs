//! Real ZooKeeper servers (standalone and ensembles) on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, HarnessError, Proc};

/// tickTime of every test server, in milliseconds. Clients may ask for session timeouts in
/// [2, 200] × tickTime here (0.4 s to 40 s): `maxSessionTimeout` is raised so a test can
/// also use production-like timeouts.
pub const TICK_MS: u64 = 200;

const ZK_CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/slf4j-simple.jar";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends a four-letter word (`srvr`, `ruok`, `mntr`, `stat`, ...) to `127.0.0.1:port` and
/// returns the answer, or `None` if the server does not answer within a second.
pub fn four_letter_word(port: u16, word: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(word.as_bytes()).ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The server's `Mode:` from `srvr` (`standalone`, `leader`, `follower`), or `None` when it
/// does not serve (down, paused, or without quorum: then `srvr` says it is not serving).
pub fn server_mode(port: u16) -> Option<String> {
    let answer = four_letter_word(port, "srvr")?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_string())
}

/// One ZooKeeper server process: standalone, or one member of a [`ZkEnsemble`].
///
/// Its data directory lives as long as the handle, so [`ZkServer::restart`] brings it back
/// with its data (sessions included, if they have not expired meanwhile).
#[derive(Debug)]
pub struct ZkServer {
    name: String,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    config: PathBuf,
    client_port: u16,
    main_class: &'static str,
    proc: Option<Proc>,
}

impl ZkServer {
    /// Starts a standalone server on a free port and waits until it serves.
    pub fn start() -> Result<ZkServer, HarnessError> {
        Self::start_with(&[])
    }

    /// [`ZkServer::start`] with extra `zoo.cfg` lines (e.g. `forceSync=no` for a benchmark
    /// that compares with and without an fsync per transaction log write).
    pub fn start_with(extra_config: &[&str]) -> Result<ZkServer, HarnessError> {
        let tmp = tempfile::Builder::new()
            .prefix("zk-standalone-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let client_port = free_port();
        let extra: Vec<String> = extra_config.iter().map(|l| l.to_string()).collect();
        let config = write_config(&dir, client_port, &extra)?;
        let mut server = ZkServer {
            name: format!("zookeeper:{client_port}"),
            dir,
            _tmp: Some(tmp),
            config,
            client_port,
            main_class: "org.apache.zookeeper.server.ZooKeeperServerMain",
            proc: None,
        };
        server.launch()?;
        server.wait_serving(READY_TIMEOUT)?;
        Ok(server)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// `127.0.0.1:<port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// `srvr`'s mode (see [`server_mode`]).
    pub fn mode(&self) -> Option<String> {
        server_mode(self.client_port)
    }

    /// The server's log (stdout/stderr of the JVM).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            "-Dzookeeper.admin.enableServer=false",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            ZK_CLASSPATH,
            self.main_class,
        ])
        .arg(&self.config);
        let proc = Proc::spawn(&self.name, cmd, &self.log_path()).map_err(|source| {
            HarnessError::Spawn {
                what: format!("{} (is Debian's `zookeeper` package installed?)", self.name),
                source,
            }
        })?;
        self.proc = Some(proc);
        Ok(())
    }

    /// Waits until `srvr` reports a serving mode.
    pub fn wait_serving(&self, timeout: Duration) -> Result<(), HarnessError> {
        let start = Instant::now();
        if crate::wait_until(timeout, || self.mode().is_some()) {
            Ok(())
        } else {
            Err(HarnessError::NotReady {
                what: self.name.clone(),
                waited: start.elapsed(),
                log: crate::log_tail(&self.log_path(), 30),
            })
        }
    }

    /// SIGKILL: a crash. The data directory stays; [`ZkServer::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait for exit (a clean stop, as `docker stop` does).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// Starts the process again on the same port and data; does not wait for it to serve
    /// (an ensemble member cannot serve alone). Use [`ZkServer::wait_serving`].
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.proc.is_none() {
            self.launch()?;
        }
        Ok(())
    }

    /// [`ZkServer::start_again`] and wait until it serves.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.start_again()?;
        self.wait_serving(READY_TIMEOUT)
    }

    /// SIGSTOP: the server freezes; its clients see time-outs, not resets.
    pub fn pause(&self) {
        if let Some(p) = &self.proc {
            p.pause();
        }
    }

    /// SIGCONT after [`ZkServer::pause`].
    pub fn resume(&self) {
        if let Some(p) = &self.proc {
            p.resume();
        }
    }

    /// Whether a process is running (it may still not serve).
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

/// Writes `zoo.cfg` under `dir`; `extra` lines (ensemble `server.N=` lines, options) go last.
fn write_config(dir: &Path, client_port: u16, extra: &[String]) -> Result<PathBuf, HarnessError> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let mut cfg = format!(
        "tickTime={TICK_MS}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
         clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n\
         admin.enableServer=false\nmaxSessionTimeout={}\n",
        data.display(),
        TICK_MS * 200
    );
    for line in extra {
        cfg.push_str(line);
        cfg.push('\n');
    }
    let path = dir.join("zoo.cfg");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

/// An N-server ZooKeeper ensemble on 127.0.0.1 (distinct client, quorum and election ports).
#[derive(Debug)]
pub struct ZkEnsemble {
    /// The members, index 0..N (server ids 1..=N).
    pub servers: Vec<ZkServer>,
    _tmp: tempfile::TempDir,
}

impl ZkEnsemble {
    /// Starts `n` servers and waits until every one serves (one leader, the rest followers).
    pub fn start(n: usize) -> Result<ZkEnsemble, HarnessError> {
        let tmp = tempfile::Builder::new().prefix("zk-ensemble-").tempdir()?;
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let peers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, q, e))| format!("server.{}=127.0.0.1:{q}:{e}", i + 1))
            .collect();
        let mut servers = Vec::with_capacity(n);
        for (i, (client_port, _, _)) in ports.iter().enumerate() {
            let dir = tmp.path().join(format!("server{}", i + 1));
            std::fs::create_dir_all(dir.join("data"))?;
            std::fs::write(dir.join("data").join("myid"), format!("{}\n", i + 1))?;
            let config = write_config(&dir, *client_port, &peers)?;
            let mut server = ZkServer {
                name: format!("zookeeper{}:{client_port}", i + 1),
                dir,
                _tmp: None,
                config,
                client_port: *client_port,
                main_class: "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                proc: None,
            };
            server.launch()?;
            servers.push(server);
        }
        let ensemble = ZkEnsemble { servers, _tmp: tmp };
        for s in &ensemble.servers {
            s.wait_serving(READY_TIMEOUT)?;
        }
        Ok(ensemble)
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` — every member.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(ZkServer::connect_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Index (0-based) of the member whose `srvr` says `Mode: leader`.
    pub fn leader_index(&self) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.mode().as_deref() == Some("leader"))
    }

    /// Waits until some member is leader and returns its index.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let mut found = None;
        crate::wait_until(timeout, || {
            found = self.leader_index();
            found.is_some()
        });
        found
    }

    /// Waits until every running member serves (quorum is back).
    pub fn wait_all_running_serving(&self, timeout: Duration) -> bool {
        crate::wait_until(timeout, || {
            self.servers
                .iter()
                .filter(|s| s.is_running())
                .all(|s| s.mode().is_some())
        })
    }
}

/// A standalone server shared by every test of one test binary.
///
/// Never stopped explicitly: it dies with the test process (parent-death signal). Tests
/// must not kill or pause it; a test that injects faults starts its own [`ZkServer`].
pub fn shared_zk() -> &'static ZkServer {
    static SHARED: OnceLock<ZkServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let server = ZkServer::start().expect("start shared ZooKeeper");
        crate::remove_at_exit(server.dir.clone());
        server
    })
}

/// A chroot path unique within this machine and run (e.g. `/t-4711-3`), for tests sharing
/// one server. The caller creates it (our session layer creates a missing chroot).
pub fn unique_chroot(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let clean: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("/t-{clean}-{}-{n}", std::process::id())
}
