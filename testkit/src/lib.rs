//! Dev-only test harness: real servers on loopback, and the means to hurt them.
//!
//! Every test in this workspace talks to a real ZooKeeper (Debian's `zookeeper` package,
//! run with Java 17) and a real Redis (`redis-server`), started here on free 127.0.0.1
//! ports with temporary data directories. Nothing is mocked.
//!
//! * [`ZkServer`] — a standalone ZooKeeper; [`ZkEnsemble`] — a 3-node (or N-node) ensemble.
//! * [`RedisServer`] — a Redis with AOF on, restartable on the same data directory.
//! * [`Proc`] — any child process (a `sensor-node`, a Python kazoo peer, ...).
//! * [`compose`] — our compose files, read and interpolated as `docker compose` does.
//! * [`SlowLink`] — a proxy that delivers a server's answers late (real late writes).
//!
//! Each of them can be killed (SIGKILL), stopped (SIGTERM), paused (SIGSTOP), resumed
//! (SIGCONT) and restarted. Cleanup: every child is SIGKILLed when its handle is dropped
//! (also while a test panics), and every child is spawned with `PR_SET_PDEATHSIG`, so even an
//! aborted test binary leaves no server behind. Children are forked from one long-lived
//! spawner thread, because the death signal follows the *thread* that forked.
//!
//! Servers run with `tickTime` = [`TICK_MS`] so session expiry takes seconds: the session
//! timeout a client may ask for is clamped by the server to [2, 20] × tickTime.
//!
//! Tests in one binary share a server through [`shared_zk`] / [`shared_redis`] and keep
//! apart with a chroot ([`unique_chroot`]) or a key prefix; a test that injects faults
//! starts its own. A shared server is a static, never dropped: its data directory is
//! removed when the test process exits ([`remove_at_exit`]).

#![warn(missing_docs)]

pub mod chromium;
pub mod compose;
pub mod fleet;
mod partition;
mod process;
pub mod receiver;
mod redis;
mod slow_link;
mod zookeeper;

pub use fleet::{Node, NodeOpts};
pub use partition::Partition;
pub use process::{Proc, SpawnError};
pub use receiver::Receiver;
pub use redis::{shared_redis, RedisServer};
pub use slow_link::SlowLink;
pub use zookeeper::{
    four_letter_word, server_mode, shared_zk, unique_chroot, ZkEnsemble, ZkServer, TICK_MS,
};

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Errors from the harness. Tests usually `expect()` them: a harness failure is a broken
/// test machine, not a product bug, and the message says what to install or check.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A process could not be spawned (binary missing, e.g. `zookeeper` not installed).
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What we tried to start.
        what: String,
        /// The underlying error.
        #[source]
        source: SpawnError,
    },
    /// The server started but did not become ready in time; the log tail is included.
    #[error("{what} not ready after {waited:?}; log tail:\n{log}")]
    NotReady {
        /// What we waited for.
        what: String,
        /// How long we waited.
        waited: Duration,
        /// The last lines of its log.
        log: String,
    },
    /// Filesystem trouble preparing a data directory.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Directories [`remove_at_exit`] deletes when the process exits.
static REMOVE_AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Deletes `dir` (and everything in it) when the test process exits normally, which is also
/// how a test binary with failing tests ends. For what is never dropped, such as the
/// servers of [`shared_zk`] and [`shared_redis`]: without it every test process leaves a
/// data directory in the temp dir. A process killed by a signal still leaves it.
pub fn remove_at_exit(dir: PathBuf) {
    static REGISTER: Once = Once::new();
    extern "C" fn remove_all() {
        // Best effort at exit: the server may still be writing until its parent-death
        // signal arrives, and a lock poisoned by a panic still holds the list.
        let dirs = match REMOVE_AT_EXIT.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    match REMOVE_AT_EXIT.lock() {
        Ok(mut d) => d.push(dir),
        Err(poisoned) => poisoned.into_inner().push(dir),
    }
    REGISTER.call_once(|| {
        // SAFETY: registers a plain function without arguments, as atexit(3) expects.
        unsafe {
            libc::atexit(remove_all);
        }
    });
}

/// Returns a currently free TCP port on 127.0.0.1.
///
/// The port is free when returned; another process may take it before we bind it again.
/// The harness retries a failed server start on a new port, so this race only costs time.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async twin of [`wait_until`], for tests running inside tokio.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Path of a binary built by cargo in this workspace's target directory
/// (e.g. `bin_path("sensor-node")`), for tests that spawn our own processes.
///
/// Integration tests of the crate that owns the binary should prefer
/// `env!("CARGO_BIN_EXE_<name>")`; this serves tests in other crates.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    dir.join(name)
}

/// Reads the last `lines` lines of a log file (best effort, for failure messages).
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}
