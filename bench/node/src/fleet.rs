//! Steady-state measurement of one fleet (separate processes or one `--virtual N` process) at
//! period 1 s: rounds/min, readings per round against live sensors, the round's overhead
//! beyond the period, ZooKeeper transactions per round, CPU and memory per sensor.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sensor_coord::layout;
use sensor_coord::zk::{Counter, Session, SessionConfig};
use testkit::{Node, NodeOpts, Receiver, ZkServer};

/// How the fleet is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// N `sensor-node` processes.
    Processes,
    /// One `sensor-node --virtual N` process.
    Virtual,
}

impl Mode {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Processes => "processes",
            Mode::Virtual => "virtual",
        }
    }
}

/// The figures of one measurement.
#[derive(Clone, Debug)]
pub struct Row {
    /// Which build was measured (e.g. `after`).
    pub build: String,
    /// Processes or virtual.
    pub mode: Mode,
    /// Fleet size.
    pub n: usize,
    /// Rounds delivered per minute over the window.
    pub rounds_per_min: f64,
    /// Mean over the window's rounds of samples / live sensors, and the worst round.
    pub mean_fill: f64,
    /// Worst round's samples / live sensors.
    pub min_fill: f64,
    /// Leader's read of `/mediciones` at the close: p50, p99 (ms).
    pub read_ms: (f64, f64),
    /// Close deadline -> commit acknowledged: p50, p99 (ms).
    pub commit_ms: (f64, f64),
    /// The commit transaction alone (sent -> acknowledged): p50, p99 (ms).
    pub commit_txn_ms: (f64, f64),
    /// The delivery POST (sent -> the API's answer): p50, p99 (ms).
    pub post_ms: (f64, f64),
    /// Recording the delivery in ZooKeeper (after the POST): p50, p99 (ms).
    pub ack_ms: (f64, f64),
    /// Times the leader restarted its cadence because a round ran late (rounds/min < 60).
    pub cadence_restarts: usize,
    /// Close deadline -> delivered to the API: p50, p99 (ms).
    pub delivered_ms: (f64, f64),
    /// ZooKeeper transactions (zxids, failed writes included) per round.
    pub zk_txns_per_round: f64,
    /// `/counter` growth per round.
    pub counter_per_round: f64,
    /// CPU of the sensor process(es) per sensor, % of one core.
    pub cpu_per_sensor_pct: f64,
    /// CPU of the ZooKeeper server, % of one core.
    pub zk_cpu_pct: f64,
    /// Resident memory per sensor, MiB.
    pub rss_per_sensor_mib: f64,
    /// 1-minute load average at the end of the window.
    pub load: f64,
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1-minute load average.
pub fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn zxid(port: u16) -> Option<i64> {
    let answer = testkit::four_letter_word(port, "srvr")?;
    let hex = answer
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))?
        .trim()
        .to_string();
    i64::from_str_radix(&hex, 16).ok()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Runs `n` sensors of `bin` in `mode` on `zk_server`, lets them settle, measures `secs`.
pub async fn measure(
    zk_server: &ZkServer,
    bin: &Path,
    build: &str,
    mode: Mode,
    n: usize,
    secs: u64,
) -> anyhow::Result<Row> {
    let zk = format!(
        "{}{}",
        zk_server.connect_string(),
        testkit::unique_chroot(&format!("{}{n}", mode.label()))
    );
    let receiver = Receiver::start().await;
    let mut o = NodeOpts::new(&zk, Some(&receiver.url()));
    o.period = "1".into();
    o.session_timeout_ms = 10_000;
    // Info level: per-reading debug lines would cost the fleet more than the protocol does.
    o.extra_env.push(("RUST_LOG".into(), "info".into()));
    let nodes: Vec<Node> = match mode {
        Mode::Processes => (1..=n)
            .map(|i| Node::spawn(bin, &format!("n{i}"), &o))
            .collect(),
        Mode::Virtual => {
            o.extra_env.push(("VIRTUAL_SENSORS".into(), n.to_string()));
            vec![Node::spawn(bin, "v", &o)]
        }
    };
    let session = Session::start(SessionConfig::new(zk.as_str(), Duration::from_secs(10)));
    session.wait_connected_for(Duration::from_secs(30)).await?;
    let client = session.client()?;
    let all_live = testkit::wait_until_async(Duration::from_secs(180), || async {
        client
            .list_children(layout::READINGS)
            .await
            .is_ok_and(|c| c.len() >= n)
    })
    .await;
    anyhow::ensure!(all_live, "{n} sensors never all live ({})", mode.label());
    let settled = receiver.last_round() + 3;
    anyhow::ensure!(
        receiver.wait_round(settled, Duration::from_secs(120)).await,
        "no rounds with {n} sensors"
    );

    // Arrival time of each round at the API (polled every 2 ms).
    let arrivals: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let poller = {
        let state = receiver.state.clone();
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            loop {
                let now = unix_ms();
                let rounds: Vec<u64> = match state.lock() {
                    Ok(r) => r.by_round.keys().copied().collect(),
                    Err(_) => return,
                };
                if let Ok(mut a) = arrivals.lock() {
                    for r in rounds {
                        a.entry(r).or_insert(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;

    let counter = Counter::new(session.clone(), layout::COUNTER);
    let pids: Vec<u32> = nodes.iter().map(|n| n.proc.pid()).collect();
    let zk_pid = zk_server.pid();
    let cpu = |pids: &[u32]| pids.iter().map(|p| proc_cpu_ticks(*p)).sum::<u64>();
    let (r0, c0, z0) = (
        receiver.last_round(),
        counter.get().await?,
        zxid(zk_server.port()).unwrap_or(0),
    );
    let (cpu0, zcpu0) = (cpu(&pids), zk_pid.map_or(0, proc_cpu_ticks));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (r1, c1, z1) = (
        receiver.last_round(),
        counter.get().await?,
        zxid(zk_server.port()).unwrap_or(0),
    );
    let (cpu1, zcpu1) = (cpu(&pids), zk_pid.map_or(0, proc_cpu_ticks));
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    poller.abort();
    let live = client.list_children(layout::READINGS).await?.len().max(1);
    let rss: u64 = pids.iter().filter_map(|p| rss_kib(*p)).sum();
    let load = load_avg();

    // Per-round figures over a window without rounds are per "one round" (a lower bound).
    let rounds = (r1 - r0).max(1) as f64;
    let window: Vec<(u64, u64)> = receiver.snapshot(|r| {
        r.by_round
            .iter()
            .filter(|(k, _)| **k > r0 && **k <= r1)
            .map(|(k, v)| (*k, v["samples"].as_u64().unwrap_or(0)))
            .collect()
    });
    let fills: Vec<f64> = window
        .iter()
        .map(|(_, s)| *s as f64 / live as f64)
        .collect();
    let (mean_fill, min_fill) = if fills.is_empty() {
        (f64::NAN, f64::NAN) // no round in the window
    } else {
        (
            fills.iter().sum::<f64>() / fills.len() as f64,
            fills.iter().copied().fold(f64::INFINITY, f64::min),
        )
    };

    // The leader's "round committed" lines for the window's rounds.
    let (mut read, mut commit, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
    let (mut commit_txn, mut post, mut ack) = (Vec::new(), Vec::new(), Vec::new());
    let mut cadence_restarts = 0;
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    for node in &nodes {
        for e in node.events_named("round committed") {
            let Some(round) = e["round"].as_u64() else {
                continue;
            };
            if round <= r0 || round > r1 {
                continue;
            }
            if let Some(v) = e["read_ms"].as_f64() {
                read.push(v);
            }
            if let Some(v) = e["commit_overhead_ms"].as_f64() {
                commit.push(v);
            }
            if let Some(v) = e["commit_ms"].as_f64() {
                commit_txn.push(v);
            }
            if let (Some(closed), Some(arrived)) =
                (e["closed_unix_ms"].as_u64(), arrivals.get(&round))
            {
                delivered.push(arrived.saturating_sub(closed) as f64);
            }
        }
    }
    // Delivery lines ("rounds delivered": post_ms, ack_ms) and cadence restarts, for the
    // window (by the last round of each batch / by the time the window covered).
    for node in &nodes {
        for e in node.events_named("rounds delivered") {
            let Some(last) = e["last"].as_u64() else {
                continue;
            };
            if last <= r0 || last > r1 {
                continue;
            }
            if let Some(v) = e["post_ms"].as_f64() {
                post.push(v);
            }
            if let Some(v) = e["ack_ms"].as_f64() {
                ack.push(v);
            }
        }
        cadence_restarts += node
            .events_named("cadence restarted: the previous round ran late")
            .len();
    }
    session.close();
    drop(nodes);
    Ok(Row {
        build: build.to_string(),
        mode,
        n,
        rounds_per_min: (r1 - r0) as f64 * 60.0 / elapsed,
        mean_fill,
        min_fill,
        read_ms: percentiles(read),
        commit_ms: percentiles(commit),
        commit_txn_ms: percentiles(commit_txn),
        post_ms: percentiles(post),
        ack_ms: percentiles(ack),
        cadence_restarts,
        delivered_ms: percentiles(delivered),
        zk_txns_per_round: (z1 - z0) as f64 / rounds,
        counter_per_round: (c1 - c0) as f64 / rounds,
        cpu_per_sensor_pct: (cpu1 - cpu0) as f64 / elapsed / n as f64, // ticks are 1/100 s
        zk_cpu_pct: (zcpu1 - zcpu0) as f64 / elapsed,
        rss_per_sensor_mib: rss as f64 / 1024.0 / n as f64,
        load,
    })
}
