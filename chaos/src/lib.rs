//! Chaos suite: a seeded, bounded schedule of faults over a full local stack (3-server
//! ZooKeeper ensemble, Redis, sensor-api, five sensor-nodes, the dashboard when built), then a
//! checker of the delivery invariants over the API's history, ZooKeeper and the nodes' logs.
//!
//! Everything runs on 127.0.0.1 from [`testkit`]. [`run`] is the whole suite; the `chaos`
//! binary and the CI test both call it. A failed invariant is a bug in the system.

#![warn(missing_docs)]

pub mod check;
pub mod faults;
pub mod observe;
pub mod stack;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use check::{Evidence, Logs, Unverifiable, Verdict, ZkEnd};
use faults::{Fault, Injected, Schedule};
use observe::Observer;
use stack::{Binaries, Stack, Timing};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seed of the schedule.
    pub seed: u64,
    /// How long faults are injected (set-up and the final drain come on top).
    pub duration: Duration,
    /// Directory holding the built sensor-node / sensor-api (/ sensor-dashboard).
    pub bin_dir: PathBuf,
    /// Where logs go (a fresh temporary directory when `None`; kept on failure).
    pub log_dir: Option<PathBuf>,
    /// Stack timing.
    pub timing: Timing,
}

impl Options {
    /// Defaults: session timeout 3 s, period 0.5 s.
    pub fn new(seed: u64, duration: Duration, bin_dir: PathBuf) -> Options {
        Options {
            seed,
            duration,
            bin_dir,
            log_dir: None,
            timing: Timing {
                session: Duration::from_secs(3),
                period: Duration::from_millis(500),
            },
        }
    }
}

/// The outcome of a run.
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Faults in the order injected.
    pub faults: Vec<Injected>,
    /// Kinds of the covering deck not injected (the run was too short).
    pub uncovered: Vec<String>,
    /// Invariants.
    pub verdicts: Vec<Verdict>,
    /// Rounds whose evidence was lost (SIGKILL, lost answer).
    pub unverifiable: Unverifiable,
    /// Rounds stored.
    pub rounds: usize,
    /// Longest time the API's newest round did not advance, and the round that ended it.
    pub longest_gap: (Duration, u64),
    /// Deliveries the API refused for a stale fencing token (from the nodes' logs).
    pub stale_refused: usize,
    /// Readings dropped because their round had closed.
    pub late_readings: usize,
    /// Whether the dashboard ran.
    pub dashboard: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The log directory.
    pub log_dir: PathBuf,
    /// Whether the log directory was a temporary one, removed because the run passed.
    pub logs_removed: bool,
}

impl Report {
    /// Whether every invariant holds.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok)
    }

    /// The printable report: seed, fault log, verdicts, figures.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "chaos seed {}", self.seed);
        let _ = writeln!(out, "fault log:");
        for f in &self.faults {
            let _ = writeln!(
                out,
                "  {:>7.1}s  {}  -> {}",
                f.at,
                f.what,
                match f.recovered_in {
                    Some(s) => format!("new round stored {s:.1} s after heal"),
                    None => "NO new round stored".into(),
                }
            );
        }
        if !self.uncovered.is_empty() {
            let _ = writeln!(
                out,
                "not exercised (run too short): {}",
                self.uncovered.join(", ")
            );
        }
        if !self.dashboard {
            let _ = writeln!(out, "dashboard: not built, skipped");
        }
        let _ = writeln!(out, "invariants:");
        for v in &self.verdicts {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if v.ok { "PASS" } else { "FAIL" },
                v.name,
                v.detail
            );
        }
        let recov: Vec<f64> = self.faults.iter().filter_map(|f| f.recovered_in).collect();
        let _ = writeln!(
            out,
            "figures: {} rounds stored, {} faults, longest delivery gap {:.1} s (ended by round {}), \
             slowest recovery {:.1} s, {} rounds with a leader's or sensor's line lost (SIGKILL, lost answer), \
             {} deliveries refused for a stale fencing token, {} late readings dropped, wall time {:.0} s",
            self.rounds,
            self.faults.len(),
            self.longest_gap.0.as_secs_f64(),
            self.longest_gap.1,
            recov.iter().copied().fold(0.0, f64::max),
            self.unverifiable.commit_lines.len() + self.unverifiable.readings.len(),
            self.stale_refused,
            self.late_readings,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "logs: {}{}",
            self.log_dir.display(),
            if self.logs_removed {
                " (temporary, removed: the run passed; keep them with --log-dir)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "verdict: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out
    }
}

/// Bound on waiting for the system to make progress after a fault healed.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// Bound on the final drain (outbox empty, last round stored).
const DRAIN_BOUND: Duration = Duration::from_secs(90);

/// Runs the suite. `Err` only for harness failures (a binary missing, a server that will
/// not start); invariant violations are in the [`Report`].
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let bins = Binaries::locate(&opts.bin_dir)?;
    let dashboard = bins.dashboard.is_some();
    let (log_dir, tmp) = match &opts.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("chaos-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut stack = Stack::start(bins, opts.timing, &log_dir, rt.handle().clone())
        .context("start the stack")?;
    let obs = Observer::new(&stack.api_url, &stack.zk_hosts())?;
    let progress = observe::watch_progress(rt.handle(), obs.clone());

    // Warm-up: the fleet elects a leader and delivers a few rounds.
    if !testkit::wait_until(RECOVERY_BOUND, || {
        rt.block_on(obs.last_stored()).is_some_and(|r| r >= 3)
    }) {
        anyhow::bail!(
            "the stack delivered no rounds within {RECOVERY_BOUND:?}; node log tail:\n{}",
            testkit::log_tail(&stack.nodes[0].log, 30)
        );
    }

    let mut schedule = Schedule::new(opts.seed, opts.timing);
    let mut injected: Vec<Injected> = Vec::new();
    let mut stalled: Vec<String> = Vec::new();
    let faults_start = Instant::now();
    while faults_start.elapsed() < opts.duration {
        let fault = schedule.next_fault();
        let leader = rt
            .block_on(obs.zk_status(Duration::from_secs(10)))
            .and_then(|s| s.leader);
        let at = started.elapsed().as_secs_f64();
        let at_ms = faults::now_ms();
        let (what, node) = faults::inject(&mut stack, &fault, leader.as_deref())
            .with_context(|| format!("inject {fault:?}"))?;
        let node_killed = matches!(fault, Fault::NodeKill { .. });
        stack.unexpected_exits();
        // Healed: wait for a round stored after the heal.
        let before = rt.block_on(obs.last_stored()).unwrap_or(0);
        let healed = Instant::now();
        let recovered = testkit::wait_until(RECOVERY_BOUND, || {
            rt.block_on(obs.last_stored()).is_some_and(|r| r > before)
        });
        let recovered_in = recovered.then(|| healed.elapsed().as_secs_f64());
        if !recovered {
            stalled.push(what.clone());
        }
        eprintln!(
            "chaos: {at:>6.1}s {what} -> {}",
            recovered_in
                .map(|s| format!("recovered in {s:.1} s"))
                .unwrap_or_else(|| "NO PROGRESS".into())
        );
        injected.push(Injected {
            at,
            at_ms,
            what,
            node,
            node_killed,
            recovered_in,
        });
        stack.unexpected_exits();
        std::thread::sleep(schedule.gap());
    }

    // Drain: every committed round delivered, then read everything.
    let mut zk_end = ZkEnd {
        last_committed: None,
        outbox: None,
        conflicts: None,
    };
    testkit::wait_until(DRAIN_BOUND, || {
        let status = rt.block_on(obs.zk_status(Duration::from_secs(10)));
        let stored = rt.block_on(obs.last_stored());
        zk_end.last_committed = status.as_ref().and_then(|s| s.round.last_committed);
        zk_end.outbox = status.as_ref().and_then(|s| s.outbox_depth.or(Some(0)));
        zk_end.outbox.is_some_and(|n| n == 0) && stored.is_some() && stored == zk_end.last_committed
    });
    zk_end.conflicts =
        rt.block_on(obs.children(sensor_coord::layout::CONFLICTS, Duration::from_secs(10)));
    stack.unexpected_exits();
    // The dashboard, when it ran, must still serve its cluster state after all that.
    let dashboard_verdict = stack.dashboard_url.clone().map(|url| {
        let url = format!("{url}/api/v1/cluster");
        let serves = testkit::wait_until(Duration::from_secs(15), || {
            rt.block_on(async {
                matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success())
            })
        });
        Verdict {
            name: "dashboard serves after the faults",
            ok: serves,
            detail: format!(
                "GET {url}: {}",
                if serves { "2xx" } else { "no 2xx within 15 s" }
            ),
        }
    });
    let history = rt
        .block_on(obs.history())
        .context("read the API's history")?;
    let longest_gap = progress.lock().map(|p| p.longest_gap).unwrap_or_default();
    stack.shutdown();
    let mut logs = Logs::default();
    for n in &stack.nodes {
        logs.add_file(&n.name, &n.log)
            .with_context(|| format!("read {}", n.log.display()))?;
    }
    let (mut verdicts, unverifiable) = check::check(&Evidence {
        history: &history,
        logs: &logs,
        zk: &zk_end,
        faults: &injected,
        crashes: &stack.crashes,
        stalled: &stalled,
    });
    verdicts.extend(dashboard_verdict);
    let report = Report {
        seed: opts.seed,
        faults: injected,
        uncovered: schedule.uncovered(),
        verdicts,
        unverifiable,
        rounds: history.len(),
        longest_gap,
        stale_refused: logs.stale_refused,
        late_readings: logs.late_readings,
        dashboard,
        elapsed: started.elapsed(),
        log_dir: log_dir.clone(),
        logs_removed: false,
    };
    let mut report = report;
    if let Some(t) = tmp {
        if report.passed() {
            drop(t);
            report.logs_removed = true;
        } else {
            // Keep the evidence of a failure.
            let _ = t.keep();
        }
    }
    drop(stack);
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(report)
}
