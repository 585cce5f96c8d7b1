//! Helpers shared by the recipe tests (`failures.rs`, `kazoo_interop.rs`, ...) and the node
//! crate's `mixed_fleet.rs`: child processes (our `contender`
//! example, the kazoo peer), their line protocol, and the leadership-interval checks.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sensor_coord::zk::{Election, Session, SessionConfig};
use testkit::Proc;

/// Unix time in microseconds: the clock every participant (Rust, child, Python) stamps with.
pub fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros()
}

/// A fresh log file for a child process under cargo's per-target temp dir.
pub fn log_path(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(format!("{tag}-{}-{n}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// `target/<profile>/examples/contender`, built by `cargo test` (not by `--test <name>` alone).
pub fn contender_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join("contender");
    assert!(
        path.exists(),
        "{} missing: run `cargo test -p zk-sensors-coord` (which builds examples) or \
         `cargo build -p zk-sensors-coord --example contender` first",
        path.display()
    );
    path
}

/// Starts a `contender` child process on `connect` (2 s sessions unless `env` says otherwise).
pub fn spawn_contender(connect: &str, id: &str, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(contender_path());
    cmd.arg(connect)
        .env("CONTENDER_ID", id)
        .env("ZK_SESSION_TIMEOUT_MS", "2000");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(id, cmd, &log_path(id)).expect("spawn contender")
}

/// Starts the kazoo peer (`tests/support/kazoo_peer.py`) with `args`.
pub fn spawn_kazoo(tag: &str, args: &[&str]) -> Proc {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/kazoo_peer.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(script).args(args);
    Proc::spawn(tag, cmd, &log_path(tag)).expect("spawn python3 kazoo peer")
}

/// Fails the test with a clear message if kazoo is not importable.
pub fn require_kazoo() {
    let out = Command::new("python3")
        .args(["-c", "import kazoo; print(kazoo.version.__version__)"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "kazoo is not installed: `python3 -m pip install kazoo==2.11.0` ({})",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every line the process wrote so far.
pub fn lines(p: &Proc) -> Vec<String> {
    std::fs::read_to_string(p.log_path())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the process wrote a line satisfying `pred` and returns it (after skipping
/// the first `skip` lines), or `None` after `timeout`.
pub async fn wait_line(
    p: &Proc,
    skip: usize,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut found = None;
    testkit::wait_until_async(timeout, || {
        found = lines(p).into_iter().skip(skip).find(|l| pred(l));
        std::future::ready(found.is_some())
    })
    .await;
    found
}

/// Field `i` (0 = keyword) of a protocol line, parsed.
pub fn field<T: std::str::FromStr>(line: &str, i: usize) -> T {
    line.split_whitespace()
        .nth(i)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("line {line:?} has no field {i} of the expected type"))
}

/// One leadership term as the leader itself saw it: from `start` (it learnt it leads) to
/// `last` (the last moment it checked and still believed it leads, i.e. could act).
#[derive(Clone, Debug)]
pub struct Term {
    /// Who.
    pub who: String,
    /// Fencing token (0 where the participant has none, e.g. kazoo).
    pub fencing: u64,
    /// Unix µs when the term began.
    pub start: u128,
    /// Unix µs of the last check that still said "leader".
    pub last: u128,
    /// Whether the leader has seen the term end.
    pub ended: bool,
}

/// Terms of a `contender` process, from its `LEADER` / `ACT` / `LOST` lines.
pub fn contender_terms(p: &Proc) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for l in lines(p) {
        let kw = l.split_whitespace().next().unwrap_or("");
        match kw {
            "LEADER" => {
                let ts = field(&l, 2);
                terms.push(Term {
                    who: p.name().to_string(),
                    fencing: field(&l, 1),
                    start: ts,
                    last: ts,
                    ended: false,
                })
            }
            "ACT" => {
                let t = terms.last_mut().expect("ACT before LEADER");
                assert_eq!(t.fencing, field::<u64>(&l, 1), "ACT of another term");
                assert!(!t.ended, "ACT after LOST in {}", p.name());
                t.last = field(&l, 2);
            }
            "LOST" => {
                let t = terms.last_mut().expect("LOST before LEADER");
                t.ended = true;
            }
            _ => {}
        }
    }
    terms
}

/// Asserts that no two terms overlap (each term's last act precedes the next term's start)
/// and that fencing tokens strictly increase from term to term (where both have one).
pub fn assert_no_overlap(terms: &[Term]) {
    let mut sorted = terms.to_vec();
    sorted.sort_by_key(|t| t.start);
    for pair in sorted.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.last < b.start,
            "two leaders at once: {a:?} still acted at {} after {b:?} started at {}\nall terms: {sorted:#?}",
            a.last,
            b.start
        );
        if a.fencing != 0 && b.fencing != 0 {
            assert!(
                a.fencing < b.fencing,
                "fencing token did not increase: {a:?} then {b:?}"
            );
        }
    }
}

/// An in-process contender: campaigns, records its terms (checking `is_held()` every
/// 20 ms while leading), campaigns again after a loss.
#[derive(Clone)]
pub struct InProcContender {
    /// Terms so far; the last one may be running.
    pub terms: Arc<Mutex<Vec<Term>>>,
}

impl InProcContender {
    /// Starts campaigning on `path` with `session`.
    pub fn start(
        session: Session,
        path: &str,
        who: &str,
    ) -> (InProcContender, tokio::task::JoinHandle<()>) {
        let me = InProcContender {
            terms: Arc::new(Mutex::new(Vec::new())),
        };
        let election = Election::new(session, path, who);
        let terms = me.terms.clone();
        let who = who.to_string();
        let task = tokio::spawn(async move {
            loop {
                let l = match election.campaign().await {
                    Ok(l) => l,
                    Err(sensor_coord::zk::ZkError::Closed) => return,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let now = now_us();
                terms.lock().unwrap().push(Term {
                    who: who.clone(),
                    fencing: l.fencing_token(),
                    start: now,
                    last: now,
                    ended: false,
                });
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let now = now_us();
                    let held = l.is_held();
                    let mut t = terms.lock().unwrap();
                    let term = t.last_mut().expect("term");
                    if held {
                        term.last = now;
                    } else {
                        term.ended = true;
                        break;
                    }
                }
            }
        });
        (me, task)
    }

    /// Whether it currently leads (its last term has not ended).
    pub fn leading(&self) -> bool {
        self.terms.lock().unwrap().last().is_some_and(|t| !t.ended)
    }

    /// A copy of its terms.
    pub fn terms(&self) -> Vec<Term> {
        self.terms.lock().unwrap().clone()
    }
}

/// Starts a session and waits until it is connected.
pub async fn connected(connect: &str, timeout: Duration) -> Session {
    let s = Session::start(SessionConfig::new(connect, timeout));
    s.wait_connected_for(Duration::from_secs(30))
        .await
        .expect("session connects");
    s
}

#[allow(unused_imports)]
pub use testkit::Partition;

/// The seed-style kazoo sensor (`shared/peers/kazoo_sensor.py`) run beside our nodes in the
/// mixed-fleet tests. It is not part of this repository: CI checks out `shared/` beside the
/// clone; `KAZOO_SENSOR_PY` points elsewhere. Absent: `None` after printing that the calling
/// test is skipped, except under CI (env `CI` set), where it fails the test.
pub fn kazoo_sensor_script(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("KAZOO_SENSOR_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/kazoo_sensor.py")
        });
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: the kazoo peer sensor {} is missing (CI must provide shared/ beside the clone)",
        path.display()
    );
    let msg = format!(
        "SKIPPED {test}: kazoo peer sensor not found at {} (set KAZOO_SENSOR_PY to run it)",
        path.display()
    );
    println!("{msg}");
    eprintln!("{msg}");
    None
}

/// Fails the test with a clear message if kazoo or requests (the peer sensor's HTTP client)
/// is not importable.
pub fn require_kazoo_and_requests() {
    require_kazoo();
    let out = Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "requests is not installed: `python3 -m pip install requests` (scripts/install-deps does it)"
    );
}

/// Starts one kazoo peer sensor `id` on `zk` (connect string, may carry a chroot that
/// exists), sending its averages to `api` (`.../nuevo`), with `period` seconds.
pub fn spawn_kazoo_sensor(
    script: &std::path::Path,
    id: &str,
    zk: &str,
    api: &str,
    period: &str,
) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(script)
        .args(["--id", id, "--zk", zk, "--api", api, "--period", period]);
    Proc::spawn(id, cmd, &log_path(id)).expect("spawn python3 kazoo sensor")
}
