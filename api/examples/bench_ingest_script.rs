//! Ingest script benchmark (not a test): the Redis time of the real ingest script per call
//! and per round, by group size, with no HTTP, wrk or API CPU in the figure.
//!
//! For each group size G (1, 8, 64 by default) it stores `rounds` new rounds as groups of G
//! one-round batches, alternating two clusters (the `default` one and `bench-2`, each in
//! time order, as `bench/api/post.lua` sends them), and reads the script's time from
//! `INFO commandstats` (`usec_per_call` of `EVALSHA`, reset before each size). On a
//! current-thread runtime every batch of a `join_all` is queued before the store's writer
//! task runs, so each group is exactly one script call; the run checks that it was.
//!
//! This separates changes of a few per cent in the script, which a live `bench/api/run.sh`
//! cannot on a shared 2-core machine. It is wall time inside Redis: run it on an otherwise
//! idle machine, alternate the builds being compared, and compare within one run.
//!
//! Usage: `cargo run --release -p sensor-api --example bench_ingest_script -- <redis-url>
//! [rounds per size=4000] [group sizes=1,8,64]` (run by `bench/api/script.sh`, which starts
//! a throw-away Redis with AOF `always` as in production).

use anyhow::{bail, Context};
use sensor_api::store::{
    Average, ClusterId, IngestStatus, NewPoint, RoundResult, Store, StoreConfig,
};

/// `calls` and `usec` of `EVALSHA` in `INFO commandstats` (zero when it has not run).
async fn evalsha_stats(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<(u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_evalsha:")) else {
        return Ok((0, 0));
    };
    let field = |name: &str| -> anyhow::Result<u64> {
        let value = line
            .split(&[':', ','][..])
            .find_map(|kv| kv.strip_prefix(name))
            .with_context(|| format!("{name} in {line}"))?;
        Ok(value.parse()?)
    };
    Ok((field("calls=")?, field("usec=")?))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_string());
    let rounds: u64 = args.next().map_or(Ok(4000), |s| s.parse())?;
    let sizes: Vec<u64> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 8, 64],
    };
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let clusters = [ClusterId::default(), ClusterId::parse("bench-2")?];
    let base_ms: i64 = 1_767_225_600_000;
    println!("group size   script calls   usec per call   usec per round");
    for (run, &size) in sizes.iter().enumerate() {
        if size == 0 {
            bail!("a group size must be at least 1");
        }
        let store = Store::open(
            &url,
            &StoreConfig {
                key_prefix: format!("bench-script-{}-{run}", std::process::id()),
                ..StoreConfig::default()
            },
        )?;
        // One round per cluster and time order; a first call sets the store up (script
        // load, index state) outside the figures.
        let mut next = [1u64, 1u64];
        let point = |n: u64, cluster: &ClusterId| {
            NewPoint::Round(Average {
                result: RoundResult {
                    round: n,
                    value: 20.0 + (n % 100) as f64 / 10.0,
                    samples: 3,
                    leader: "bench".to_string(),
                    fencing: 1,
                    taken_at: String::new(),
                    cluster: cluster.clone(),
                },
                taken_at_ms: base_ms + n as i64,
            })
        };
        store.ingest(&[point(next[0], &clusters[0])]).await?;
        next[0] += 1;
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(&mut conn)
            .await?;
        let groups = rounds.div_ceil(size);
        for _ in 0..groups {
            let batches: Vec<Vec<NewPoint>> = (0..size)
                .map(|i| {
                    let c = (i % 2) as usize;
                    let p = point(next[c], &clusters[c]);
                    next[c] += 1;
                    vec![p]
                })
                .collect();
            let answers = futures::future::join_all(batches.iter().map(|b| store.ingest(b))).await;
            for answer in answers {
                if answer?.iter().any(|r| r.status != IngestStatus::Stored) {
                    bail!("a new round was not stored");
                }
            }
        }
        let (calls, usec) = evalsha_stats(&mut conn).await?;
        if calls != groups {
            bail!("{groups} groups made {calls} script calls: the grouping did not happen");
        }
        let per_call = usec as f64 / calls as f64;
        println!(
            "{size:>10}   {calls:>12}   {per_call:>13.1}   {:>14.2}",
            per_call / size as f64
        );
    }
    Ok(())
}
