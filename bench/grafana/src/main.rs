//! Times the Grafana-facing queries over a large history.
//!
//! 1. Starts a Redis (testkit, loopback, temporary directory) and stores `BENCH_POINTS`
//!    (default 1 000 000) averages through the store's real ingest path (the same Lua
//!    script as production, so rollups are built exactly as in production), one per
//!    second ending now, with a 30-minute outage every day and a leader change every
//!    10 000 rounds.
//! 2. Serves the app on 127.0.0.1:0 and times, over `BENCH_REPEAT` (default 50) runs each:
//!    a full-range `/grafana/query` with maxDataPoints 1000 (one target, then the home
//!    dashboard's three "average" targets), the store's `buckets` call alone, and a
//!    full-range `/prom/api/v1/query_range` at ~1000 steps.
//!
//! Prints min / median / p99 / max per case. Not a test: nothing is asserted about time.

use std::time::{Duration, Instant};

use anyhow::Context;
use sensor_api::store::{Average, NewPoint, RoundResult, Store, StoreConfig};
use sensor_api::{app, AppState};
use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn iso(ms: i64) -> anyhow::Result<String> {
    Ok(
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)?
            .format(&time::format_description::well_known::Rfc3339)?,
    )
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<58} n={:<3} min {:>8.2} ms  median {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        samples[0].as_secs_f64() * 1e3,
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

async fn load(store: &Store, points: usize, end_ms: i64) -> anyhow::Result<(i64, i64)> {
    let start_ms = end_ms - points as i64 * 1000;
    let mut batch = Vec::with_capacity(2000);
    let mut stored = 0usize;
    let mut i: i64 = 0;
    let began = Instant::now();
    while stored < points {
        let t = start_ms + i * 1000;
        i += 1;
        // A 30-minute outage every day: gaps the charts must show.
        if (t / 1000) % 86_400 < 1_800 {
            continue;
        }
        let round = stored as u64 + 1;
        let leader = format!("node-{}", (round / 10_000) % 3 + 1);
        batch.push(NewPoint::Round(Average {
            result: RoundResult {
                round,
                value: 20.0 + ((round % 600) as f64 / 60.0).sin() * 3.0,
                samples: 3 + (round % 3) as u32,
                leader,
                fencing: round / 10_000 + 1,
                taken_at: iso(t)?,
                cluster: Default::default(),
            },
            taken_at_ms: t,
        }));
        stored += 1;
        if batch.len() == 2000 || stored == points {
            let results = store.ingest(&batch).await?;
            anyhow::ensure!(
                results.iter().all(|r| !r.status.is_rejection()),
                "ingest rejected a point"
            );
            batch.clear();
            if stored.is_multiple_of(100_000) {
                eprintln!(
                    "  loaded {stored} averages ({:.1} s)",
                    began.elapsed().as_secs_f64()
                );
            }
        }
    }
    println!(
        "loaded {points} averages via Store::ingest in {:.1} s ({:.0}/s)",
        began.elapsed().as_secs_f64(),
        points as f64 / began.elapsed().as_secs_f64()
    );
    let bounds = store.time_bounds().await?.context("no data stored")?;
    Ok(bounds)
}

async fn time_posts(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    repeat: usize,
) -> anyhow::Result<(Vec<Duration>, Value)> {
    let mut samples = Vec::with_capacity(repeat);
    let mut last = Value::Null;
    for _ in 0..repeat {
        let began = Instant::now();
        let response = client.post(url).json(body).send().await?;
        let status = response.status();
        last = response.json().await?;
        samples.push(began.elapsed());
        anyhow::ensure!(status.is_success(), "{url}: {status} {last}");
    }
    Ok((samples, last))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let points = env_usize("BENCH_POINTS", 1_000_000);
    let repeat = env_usize("BENCH_REPEAT", 50).max(1);
    let redis = testkit::RedisServer::start()?;
    let store = Store::open(
        &redis.url(),
        &StoreConfig {
            key_prefix: "bench".into(),
            // Bulk ingest scripts can take seconds on a busy machine.
            response_timeout: Duration::from_secs(30),
            ..StoreConfig::default()
        },
    )?;
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let (first, last) = load(&store, points, now).await?;
    println!(
        "history: {:.1} days, {} .. {}",
        (last - first) as f64 / 86_400_000.0,
        iso(first)?,
        iso(last)?
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app(AppState::new(store.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = format!("http://{addr}");

    let query = |targets: Value| -> anyhow::Result<Value> {
        Ok(json!({
            "app": "dashboard", "requestId": "bench", "timezone": "browser",
            "range": {"from": iso(first)?, "to": iso(last)?, "raw": {"from": "now-30d", "to": "now"}},
            "interval": "20m", "intervalMs": 1000, "maxDataPoints": 1000,
            "targets": targets, "scopedVars": {}, "filters": []
        }))
    };
    let t = |r: &str, agg: &str| json!({"refId": r, "target": "average", "payload": {"aggregation": agg}});

    let url = format!("{base}/grafana/query");
    // Warm up connections and Redis script caches.
    time_posts(&client, &url, &query(json!([t("A", "avg")]))?, 3).await?;

    let (s, answer) = time_posts(&client, &url, &query(json!([t("A", "avg")]))?, repeat).await?;
    let pts = answer[0]["datapoints"].as_array().map_or(0, Vec::len);
    let width = answer[0]["datapoints"]
        .as_array()
        .and_then(|p| Some(p.get(1)?[1].as_i64()? - p.first()?[1].as_i64()?))
        .unwrap_or(0);
    summary(
        &format!(
            "/grafana/query full range, 1 target ({pts} pts, {} s buckets)",
            width / 1000
        ),
        s,
    );
    let (s, _) = time_posts(
        &client,
        &url,
        &query(json!([t("A", "avg"), t("B", "min"), t("C", "max")]))?,
        repeat,
    )
    .await?;
    summary("/grafana/query full range, 3 targets (avg/min/max)", s);

    // The annotation query of the home dashboard, over the last 6 hours, then the full
    // range (leader changes are recorded at ingest: one sorted-set range read each).
    let six_hours = json!({
        "range": {"from": iso(last - 6 * 3_600_000)?, "to": iso(last)?},
        "maxDataPoints": 1000, "intervalMs": 1000,
        "targets": [{"refId": "Anno", "target": "leader_changes", "payload": {}}]
    });
    let (s, answer) = time_posts(&client, &url, &six_hours, repeat.min(20)).await?;
    let rows = answer[0]["rows"].as_array().map_or(0, Vec::len);
    summary(
        &format!("/grafana/query leader_changes, last 6 h ({rows} changes)"),
        s,
    );
    let (s, answer) = time_posts(
        &client,
        &url,
        &query(json!([{"refId": "Anno", "target": "leader_changes"}]))?,
        repeat.min(20),
    )
    .await?;
    let rows = answer[0]["rows"].as_array().map_or(0, Vec::len);
    summary(
        &format!("/grafana/query leader_changes, full range ({rows} changes)"),
        s,
    );

    let mut s = Vec::with_capacity(repeat);
    let width = width.max(1);
    for _ in 0..repeat {
        let began = Instant::now();
        let floor = first.div_euclid(width) * width;
        store.buckets(floor, last, width).await?;
        s.push(began.elapsed());
    }
    summary("Store::buckets alone, one call (same grid, no HTTP)", s);

    // Grafana rounds its Prometheus step to a "nice" interval (~range / 1000 -> 15m here),
    // a multiple of a coarse rollup; an odd multiple of 10 s is the worst case (the store
    // reads 10 s rollups).
    let grafana_like = [
        60, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    ]
    .into_iter()
    .find(|s| (last - first) / 1000 / s <= 1100)
    .unwrap_or(86400);
    let odd = (((last - first) / 1000 / 1000) / 10 + 1) * 10;
    for (label, step) in [
        ("Grafana-like", grafana_like),
        ("odd multiple of 10 s", odd),
    ] {
        let prom_url = format!(
            "{base}/prom/api/v1/query_range?query=sensor_average&start={}&end={}&step={step}",
            first / 1000,
            last / 1000
        );
        let mut s = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let began = Instant::now();
            let r = client.get(&prom_url).send().await?;
            let status = r.status();
            let body: Value = r.json().await?;
            anyhow::ensure!(status.is_success(), "{prom_url}: {status} {body}");
            s.push(began.elapsed());
        }
        summary(
            &format!("/prom query_range full range, step {step}s ({label})"),
            s,
        );
    }
    Ok(())
}
