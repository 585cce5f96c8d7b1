//! A real Redis server on loopback, with AOF so a restart keeps the data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, HarnessError, Proc};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// One `redis-server` process with its own port and data directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    proc: Option<Proc>,
}

impl RedisServer {
    /// Starts Redis (`--appendonly yes`, no RDB snapshots) and waits for PING.
    pub fn start() -> Result<RedisServer, HarnessError> {
        let tmp = tempfile::Builder::new().prefix("redis-").tempdir()?;
        let mut server = RedisServer {
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
            proc: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Whether `PING` answers `+PONG` right now.
    pub fn ping(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Starts the process if it is not running (same port, same data) and waits for PING.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        if self.proc.is_none() {
            let mut cmd = Command::new("redis-server");
            cmd.args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir);
            let name = format!("redis:{}", self.port);
            let proc = Proc::spawn(&name, cmd, &self.log_path()).map_err(|source| {
                HarnessError::Spawn {
                    what: format!("{name} (is Debian's `redis-server` package installed?)"),
                    source,
                }
            })?;
            self.proc = Some(proc);
        }
        let start = Instant::now();
        if crate::wait_until(READY_TIMEOUT, || self.ping()) {
            Ok(())
        } else {
            Err(HarnessError::NotReady {
                what: format!("redis:{}", self.port),
                waited: start.elapsed(),
                log: crate::log_tail(&self.log_path(), 30),
            })
        }
    }

    /// SIGKILL: Redis is gone; clients get connection refused.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait (Redis flushes its AOF on a clean stop).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// SIGSTOP: connections hang instead of failing.
    pub fn pause(&self) {
        if let Some(p) = &self.proc {
            p.pause();
        }
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        if let Some(p) = &self.proc {
            p.resume();
        }
    }
}

/// A Redis shared by every test of one test binary; tests keep apart with key prefixes or
/// by using distinct logical databases. Never kill it: start your own [`RedisServer`].
pub fn shared_redis() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let server = RedisServer::start().expect("start shared Redis");
        crate::remove_at_exit(server.dir.clone());
        server
    })
}
