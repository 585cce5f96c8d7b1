//! `bench-rounds`: measures the fleet on this machine and prints the figures.
//!
//! * steady state: rounds per minute and mean gap at period 1 s (N = 3 and N = 20), and
//!   `/counter` growth per round (must be exactly N: the kazoo seed measured 3.02–3.09);
//! * failover: time from a leader's SIGKILL / SIGTERM to the next round delivered by the new
//!   leader, with a 10 s session timeout (what the kazoo seed used; it measured 10.5–12.4 s
//!   after SIGKILL);
//! * RSS of a node process.
//!
//! Not a test: it asserts nothing and is run on demand (`bench/node/run.sh`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sensor_node::zk::{Counter, Session, SessionConfig};
use testkit::{Node, NodeOpts, Receiver, ZkServer};

fn node_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no parent dir"))?;
    let bin = dir.join("sensor-node");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: run bench/node/run.sh",
        bin.display()
    );
    Ok(bin)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn opts(zk: &str, receiver: &Receiver, period: &str, timeout_ms: u64) -> NodeOpts {
    let mut o = NodeOpts::new(zk, Some(&receiver.url()));
    o.period = period.into();
    o.session_timeout_ms = timeout_ms;
    o
}

async fn steady(
    zk_server: &ZkServer,
    bin: &std::path::Path,
    n: usize,
    secs: u64,
) -> anyhow::Result<()> {
    let zk = format!(
        "{}{}",
        zk_server.connect_string(),
        testkit::unique_chroot(&format!("steady{n}"))
    );
    let receiver = Receiver::start().await;
    let o = opts(&zk, &receiver, "1", 10_000);
    let nodes: Vec<Node> = (1..=n)
        .map(|i| Node::spawn(bin, &format!("n{i}"), &o))
        .collect();
    anyhow::ensure!(
        receiver.wait_round(2, Duration::from_secs(60)).await,
        "no rounds"
    );
    let session = Session::start(SessionConfig::new(zk.as_str(), Duration::from_secs(10)));
    session.wait_connected_for(Duration::from_secs(10)).await?;
    let counter = Counter::new(session.clone(), "/counter");
    let (r0, c0) = (receiver.last_round(), counter.get().await?);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (r1, c1) = (receiver.last_round(), counter.get().await?);
    let elapsed = t0.elapsed().as_secs_f64();
    let rounds = (r1 - r0) as f64;
    // Exactness: every delivered round averaged N readings, and /counter is N per
    // committed round plus the readings of the round open right now (0..=N).
    let samples_ok = receiver.snapshot(|r| r.accepted.iter().filter(|v| v["samples"] == n).count());
    let delivered = receiver.snapshot(|r| r.accepted.len());
    // Read /rounds/last, /counter, /rounds/last again: retry until no commit fell between.
    let client = session.client()?;
    let (committed, total) = loop {
        let before = sensor_node::outbox::read_u64(&client, "/rounds/last")
            .await?
            .value;
        let total = counter.get().await?;
        let after = sensor_node::outbox::read_u64(&client, "/rounds/last")
            .await?
            .value;
        if before == after {
            break (before, total);
        }
    };
    let open_round_readings = total - (n as i64) * committed as i64;
    let rss: Vec<u64> = nodes.iter().filter_map(|n| rss_kib(n.proc.pid())).collect();
    println!(
        "steady N={n:<2} period=1s: {:.2} rounds/min, mean gap {:.3} s; {samples_ok}/{delivered} rounds averaged exactly {n} readings; /counter = {n} x {committed} committed + {open_round_readings} of the open round (window delta {} over {} rounds); node RSS {}-{} KiB",
        rounds * 60.0 / elapsed,
        elapsed / rounds,
        c1 - c0,
        r1 - r0,
        rss.iter().min().copied().unwrap_or(0),
        rss.iter().max().copied().unwrap_or(0),
    );
    receiver.assert_contiguous();
    session.close();
    Ok(())
}

async fn failover(
    zk_server: &ZkServer,
    bin: &std::path::Path,
    kill: bool,
    runs: usize,
) -> anyhow::Result<()> {
    let zk = format!(
        "{}{}",
        zk_server.connect_string(),
        testkit::unique_chroot("failover")
    );
    let receiver = Receiver::start().await;
    let o = opts(&zk, &receiver, "1", 10_000);
    let mut nodes: Vec<Node> = (1..=runs + 2)
        .map(|i| Node::spawn(bin, &format!("n{i}"), &o))
        .collect();
    anyhow::ensure!(
        receiver.wait_round(2, Duration::from_secs(60)).await,
        "no rounds"
    );
    let mut times = Vec::new();
    for _ in 0..runs {
        let leader = receiver
            .last_leader()
            .ok_or_else(|| anyhow::anyhow!("no leader"))?;
        let idx = nodes
            .iter()
            .position(|n| n.id == leader)
            .ok_or_else(|| anyhow::anyhow!("leader not ours"))?;
        let before = receiver.last_round();
        let t0 = Instant::now();
        if kill {
            nodes[idx].proc.kill();
        } else {
            nodes[idx].proc.terminate(Duration::from_secs(10));
        }
        let ok = testkit::wait_until_async(Duration::from_secs(60), || async {
            receiver.last_round() > before
                && receiver.last_leader().as_deref() != Some(leader.as_str())
        })
        .await;
        anyhow::ensure!(ok, "no new leader delivered");
        times.push(t0.elapsed().as_secs_f64());
        nodes.remove(idx);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    receiver.assert_contiguous();
    let how = if kill { "SIGKILL" } else { "SIGTERM" };
    let fmt: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
    println!(
        "failover after leader {how} (session timeout 10 s, period 1 s): [{}] s to the next round delivered by the new leader",
        fmt.join(", ")
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let bin = node_bin()?;
    let zk = ZkServer::start()?;
    println!(
        "ZooKeeper 3.8 standalone on {} (tickTime {} ms)",
        zk.connect_string(),
        testkit::TICK_MS
    );
    let secs = if quick { 20 } else { 60 };
    steady(&zk, &bin, 3, secs).await?;
    steady(&zk, &bin, 20, secs / 2).await?;
    failover(&zk, &bin, true, if quick { 1 } else { 3 }).await?;
    failover(&zk, &bin, false, if quick { 1 } else { 3 }).await?;
    Ok(())
}
