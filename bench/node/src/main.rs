//! `bench-rounds`: measures the fleet on this machine and prints the figures.
//!
//! * steady state ([`fleet`]), for each fleet given (default: 3 and 20 processes; `v1000` is
//!   one `--virtual 1000` process): rounds per minute at period 1 s, readings per round
//!   against live sensors, overhead beyond the period (read, commit, delivery), ZooKeeper
//!   transactions and `/counter` growth per round (must be the readings: the kazoo seed
//!   measured 3.02–3.09 at N = 3), CPU and memory per sensor;
//! * failover: time from a leader's SIGKILL / SIGTERM to the next round delivered by the new
//!   leader, with a 10 s session timeout (what the kazoo seed used; it measured 10.5–12.4 s
//!   after SIGKILL);
//! * a markdown report and SVG chart of all of it (`--report FILE.md`).
//!
//! Not a test: it asserts nothing and is run on demand (`bench/node/run.sh`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod fleet;
mod report;

use fleet::Mode;
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

fn opts(zk: &str, receiver: &Receiver, period: &str, timeout_ms: u64) -> NodeOpts {
    let mut o = NodeOpts::new(zk, Some(&receiver.url()));
    o.period = period.into();
    o.session_timeout_ms = timeout_ms;
    o
}

async fn failover(
    zk_server: &ZkServer,
    bin: &std::path::Path,
    kill: bool,
    runs: usize,
) -> anyhow::Result<String> {
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
    let line = format!(
        "failover after leader {how} (session timeout 10 s, period 1 s): [{}] s to the next round delivered by the new leader",
        fmt.join(", ")
    );
    println!("{line}");
    Ok(line)
}

/// Command line: `[--quick] [--bin PATH] [--build LABEL] [--fleets p3,p20,v100,...]
/// [--secs S] [--no-failover] [--zk-fsync on|off] [--report FILE.md]` (the SVG goes beside
/// the report).
struct Args {
    quick: bool,
    bin: Option<PathBuf>,
    build: String,
    fleets: Vec<(Mode, usize)>,
    secs: Option<u64>,
    failover: bool,
    report: Option<PathBuf>,
    /// ZooKeeper fsyncs its transaction log (the product's setting); `--zk-fsync off` adds
    /// `forceSync=no` to compare.
    zk_fsync: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        quick: false,
        bin: None,
        build: "this build".into(),
        fleets: vec![(Mode::Processes, 3), (Mode::Processes, 20)],
        secs: None,
        failover: true,
        report: None,
        zk_fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--quick" => args.quick = true,
            "--no-failover" => args.failover = false,
            "--bin" => args.bin = Some(PathBuf::from(value()?)),
            "--build" => args.build = value()?,
            "--secs" => args.secs = Some(value()?.parse()?),
            "--report" => args.report = Some(PathBuf::from(value()?)),
            "--zk-fsync" => {
                args.zk_fsync = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => anyhow::bail!("--zk-fsync {other:?}: expected on or off"),
                }
            }
            "--fleets" => {
                args.fleets = value()?
                    .split(',')
                    .map(|f| {
                        let (mode, n) = match f.split_at_checked(1) {
                            Some(("p", n)) => (Mode::Processes, n),
                            Some(("v", n)) => (Mode::Virtual, n),
                            _ => anyhow::bail!("fleet {f:?}: expected p<N> or v<N>"),
                        };
                        Ok((mode, n.parse()?))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => node_bin()?,
    };
    let (zk, zk_note) = if args.zk_fsync {
        (
            ZkServer::start()?,
            "transaction log fsynced (forceSync=yes, the default), data directory on disk",
        )
    } else {
        (
            ZkServer::start_with(&["forceSync=no"])?,
            "**forceSync=no**: no fsync per transaction (comparison only, not a product setting)",
        )
    };
    println!(
        "ZooKeeper 3.8 standalone on {} (tickTime {} ms, {zk_note}); {}",
        zk.connect_string(),
        testkit::TICK_MS,
        report::machine()
    );
    let secs = args.secs.unwrap_or(if args.quick { 20 } else { 60 });
    let mut rows = Vec::new();
    for (mode, n) in &args.fleets {
        let row = fleet::measure(&zk, &bin, &args.build, *mode, *n, secs).await?;
        println!("{row:?}");
        rows.push(row);
    }
    let mut lines = Vec::new();
    if args.failover {
        let runs = if args.quick { 1 } else { 3 };
        lines.push(failover(&zk, &bin, true, runs).await?);
        lines.push(failover(&zk, &bin, false, runs).await?);
    }
    let md = report::markdown(&rows, &lines, zk_note);
    println!("{md}");
    if let Some(path) = &args.report {
        std::fs::write(path, &md)?;
        std::fs::write(path.with_extension("svg"), report::svg(&rows))?;
        println!("wrote {} and its .svg", path.display());
    }
    Ok(())
}
