//! Store benchmark (not a test): fills a Redis with N averages (one per second, through the
//! real ingest script with its rollups) and times the queries that must stay fast on huge
//! histories: `buckets` over the full range (~1000 buckets), `stats`, the newest, a middle
//! and the oldest history page, and `count_newer` (the page position).
//!
//! Usage: `cargo run --release -p sensor-api --example bench_store -- <redis-url> [points]`
//! (run by `bench/api/store.sh`, which starts a throw-away Redis).

use std::time::Instant;

use sensor_api::store::{Average, NewPoint, RoundResult, Store, StoreConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_string());
    let points: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let store = Store::open(
        &url,
        &StoreConfig {
            key_prefix: "bench-store".to_string(),
            response_timeout: std::time::Duration::from_secs(30),
            ..StoreConfig::default()
        },
    )?;
    let base_ms: i64 = 1_700_000_000_000;
    let have = store.count().await?;
    if have < points {
        let started = Instant::now();
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut round = have + 1;
        use futures::StreamExt;
        while round <= points {
            let batch: Vec<NewPoint> = (round..(round + 400).min(points + 1))
                .map(|r| {
                    NewPoint::Round(Average {
                        result: RoundResult {
                            round: r,
                            value: 20.0 + ((r as f64) / 500.0).sin() * 5.0,
                            samples: 3,
                            leader: format!("node-{}", r / 100_000),
                            fencing: 1 + r / 100_000,
                            taken_at: String::new(),
                            cluster: Default::default(),
                        },
                        taken_at_ms: base_ms + r as i64 * 1000,
                    })
                })
                .collect();
            round += batch.len() as u64;
            let s = store.clone();
            inflight.push(async move { s.ingest(&batch).await });
            if inflight.len() >= 8 {
                if let Some(r) = inflight.next().await {
                    r?;
                }
            }
        }
        while let Some(r) = inflight.next().await {
            r?;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "filled {} points in {secs:.1} s ({:.0} points/s through the ingest script, batches of 400)",
            points - have,
            (points - have) as f64 / secs
        );
    }
    let (first, last) = store.time_bounds().await?.unwrap_or((0, 0));
    println!(
        "stored: {} points over {:.1} days",
        store.count().await?,
        (last - first) as f64 / 86_400_000.0
    );

    let span = last - first;
    for width in [span / 1000, 900_000, 600_000, 3_600_000, 86_400_000] {
        let width = width.max(1);
        let t = Instant::now();
        let buckets = store.buckets(first, last, width).await?;
        println!(
            "buckets(full range, width {width} ms) -> {} buckets in {:.1} ms",
            buckets.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let b = store
        .buckets(first + 12_345, last - 54_321, 1_800_000)
        .await?;
    println!(
        "buckets(unaligned range, 30 min) -> {} buckets in {:.1} ms",
        b.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let s = store.stats(i64::MIN / 2, i64::MAX / 2).await?;
    println!(
        "stats(all) count={} mean={:.3} in {:.1} ms",
        s.count,
        s.mean.unwrap_or(0.0),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let s = store.stats(first + 777_777, last - 999_999).await?;
    println!(
        "stats(unaligned) count={} in {:.1} ms",
        s.count,
        t.elapsed().as_secs_f64() * 1e3
    );

    let t = Instant::now();
    let page = store
        .page_desc(i64::MIN / 2, i64::MAX / 2, None, 50)
        .await?;
    println!(
        "newest page (50) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut mid = page[0].average.clone();
    mid.result.round = points / 2;
    let cursor = sensor_api::store::Cursor {
        ms: base_ms + mid.result.round as i64 * 1000,
        member: format!("r:{:020}", mid.result.round),
    };
    let t = Instant::now();
    let _ = store
        .page_desc(i64::MIN / 2, i64::MAX / 2, Some(&cursor), 50)
        .await?;
    let pos = store.count_newer(&cursor).await?;
    println!(
        "middle page (50) + its position ({pos}) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let _ = store.page_asc(i64::MIN / 2, i64::MAX / 2, None, 50).await?;
    println!(
        "oldest page (50) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // The history page over HTTP, as a browser gets it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = sensor_api::app(sensor_api::AppState::new(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let mid_cursor = cursor.encode();
    for path in [
        "/".to_string(),
        format!("/?cursor={mid_cursor}&limit=500"),
        "/?oldest=1".to_string(),
        "/api/v1/stats".to_string(),
        format!("/api/v1/averages?limit=1000&cursor={mid_cursor}"),
    ] {
        let t = Instant::now();
        let r = client.get(format!("http://{addr}{path}")).send().await?;
        let status = r.status();
        let bytes = r.bytes().await?.len();
        println!(
            "GET {path} -> {status}, {bytes} bytes in {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let r = store.range_asc(first, first + 3_600_000, 10_000).await?;
    println!(
        "range_asc(1 h) -> {} points in {:.1} ms",
        r.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
