//! Child processes that die with the test: spawn, signal, reap.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why a process could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `exec` failed (binary not found, not executable, ...).
    #[error("spawn {program}: {source}")]
    Exec {
        /// The program we tried to run.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The spawner thread is gone (only after a panic inside it).
    #[error("spawner thread is gone")]
    SpawnerGone,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// One thread forks every child, so `PR_SET_PDEATHSIG` (which fires when the *forking
/// thread* exits) only fires when the whole test process goes away.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn testkit-spawner thread");
        Mutex::new(tx)
    })
}

/// A child process owned by a test. Dropping it SIGKILLs and reaps it.
///
/// stdout and stderr go to a log file (see [`Proc::log_path`]) so a failing test can print
/// what the process said.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with its output appended to `log`, in its own process group, with
    /// SIGKILL as its parent-death signal.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, SpawnError> {
        let program = format!("{:?}", cmd.get_program());
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| SpawnError::Exec {
                program: program.clone(),
                source,
            })?;
        let err = out.try_clone().map_err(|source| SpawnError::Exec {
            program: program.clone(),
            source,
        })?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: the closure only calls async-signal-safe libc functions.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .map_err(|_| SpawnError::SpawnerGone)?
            .send((cmd, tx))
            .map_err(|_| SpawnError::SpawnerGone)?;
        let child = rx
            .recv()
            .map_err(|_| SpawnError::SpawnerGone)?
            .map_err(|source| SpawnError::Exec { program, source })?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its stdout/stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::log_tail(&self.log, lines)
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on a pid we own and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// SIGKILL and reap: the crash nobody can catch.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (SIGKILL after that).
    /// Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_timeout(grace).or_else(|| {
            self.kill();
            self.child.try_wait().ok().flatten()
        })
    }

    /// SIGSTOP: the process freezes (no heartbeats, no I/O) until [`Proc::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (not exited; a paused one counts as running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGCONT first: a stopped process still dies of SIGKILL, but be explicit.
        self.signal(libc::SIGCONT);
        self.kill();
    }
}
