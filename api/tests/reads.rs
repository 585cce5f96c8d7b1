//! Reads against a real Redis: pagination, filters, CSV, single rounds, stats, the rollup
//! aggregation (`Store::buckets`) checked against a naive computation, and retention.

mod support;

use sensor_api::retention::{enforce_once, RetentionPolicy};
use sensor_api::store::{Average, Bucket, NewPoint, RoundResult, Store};
use serde_json::json;
use std::time::Duration;
use support::{avg_at, TestApp};

const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn average(round: u64, value: f64, ms: i64, leader: &str) -> Average {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    Average {
        result: RoundResult {
            round,
            value,
            samples: (round % 5 + 1) as u32,
            leader: leader.to_string(),
            fencing: 1,
            taken_at: t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            cluster: Default::default(),
        },
        taken_at_ms: ms,
    }
}

/// Deterministic pseudo-random numbers (no test flakiness from seeds).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

async fn ingest_all(store: &Store, points: &[Average]) {
    for chunk in points.chunks(400) {
        let batch: Vec<NewPoint> = chunk.iter().cloned().map(NewPoint::Round).collect();
        let results = store.ingest(&batch).await.expect("ingest");
        assert!(results.iter().all(|r| !r.status.is_rejection()));
    }
}

fn naive(points: &[Average], from: i64, to: i64, width: i64) -> Vec<Bucket> {
    let mut sorted: Vec<&Average> = points
        .iter()
        .filter(|a| a.taken_at_ms >= from && a.taken_at_ms <= to)
        .collect();
    sorted.sort_by_key(|a| a.taken_at_ms);
    let mut out: Vec<Bucket> = Vec::new();
    for a in sorted {
        let start = a.taken_at_ms.div_euclid(width) * width;
        match out.last_mut() {
            Some(b) if b.start_ms == start => {
                b.count += 1;
                b.sum += a.result.value;
                b.min = b.min.min(a.result.value);
                b.max = b.max.max(a.result.value);
                b.last = a.result.value;
                b.samples_sum += u64::from(a.result.samples);
            }
            _ => out.push(Bucket {
                start_ms: start,
                count: 1,
                sum: a.result.value,
                min: a.result.value,
                max: a.result.value,
                last: a.result.value,
                samples_sum: u64::from(a.result.samples),
            }),
        }
    }
    out
}

fn assert_buckets_eq(got: &[Bucket], want: &[Bucket], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: bucket count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.start_ms, w.start_ms, "{what}");
        assert_eq!(g.count, w.count, "{what} at {}", w.start_ms);
        assert!((g.sum - w.sum).abs() < 1e-6, "{what} sum at {}", w.start_ms);
        assert_eq!(g.min, w.min, "{what} min at {}", w.start_ms);
        assert_eq!(g.max, w.max, "{what} max at {}", w.start_ms);
        assert_eq!(g.last, w.last, "{what} last at {}", w.start_ms);
        assert_eq!(
            g.samples_sum, w.samples_sum,
            "{what} samples at {}",
            w.start_ms
        );
    }
}

/// 3000 points over 3 days: enough that `buckets` uses rollups, with edges computed
/// exactly; every answer must equal the naive aggregation of the raw points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_from_rollups_equal_naive_aggregation() {
    let store = support::store(&testkit::shared_redis().url(), "buckets");
    let mut rng = Lcg(7);
    let span = 3 * 86_400_000i64;
    let mut used = std::collections::HashSet::new();
    let mut points = Vec::new();
    for round in 1..=3000u64 {
        let mut ms = BASE_MS + (rng.next() as i64 % span);
        while !used.insert(ms) {
            ms += 1; // unique times keep "last" well defined
        }
        let value = (rng.next() % 10_000) as f64 / 100.0 - 30.0;
        points.push(average(round, value, ms, "node-a"));
    }
    ingest_all(&store, &points).await;
    let all = (BASE_MS - 1000, BASE_MS + span + 1000);
    let odd_from = BASE_MS + 3_723_456;
    let odd_to = BASE_MS + span - 5_432_101;
    for (from, to) in [
        all,
        (odd_from, odd_to),
        (BASE_MS + 86_399_999, BASE_MS + 86_400_000 * 2 + 17),
    ] {
        for width in [
            60_000,
            300_000,
            600_000,
            900_000,
            3_600_000,
            7_200_000,
            86_400_000,
            172_800_000,
        ] {
            let got = store.buckets(from, to, width).await.expect("buckets");
            let want = naive(&points, from, to, width);
            assert_buckets_eq(&got, &want, &format!("range {from}..{to} width {width}"));
        }
    }
    // A width no rollup divides: approximate placement, but nothing lost or invented.
    let got = store.buckets(all.0, all.1, 15_000).await.expect("buckets");
    assert_eq!(got.iter().map(|b| b.count).sum::<u64>(), 3000);
    // Small ranges come from raw points, exactly, for any width.
    let (f, t) = (BASE_MS + 10_000_000, BASE_MS + 20_000_000);
    for width in [1_000, 7_000, 15_000] {
        let got = store.buckets(f, t, width).await.expect("buckets");
        assert_buckets_eq(
            &got,
            &naive(&points, f, t, width),
            &format!("raw width {width}"),
        );
    }
    assert!(store.buckets(f, t, 0).await.is_err());
    assert!(store.buckets(t, f, 1000).await.unwrap().is_empty());

    // range_asc: ascending, bounded, inclusive.
    let first = store.range_asc(odd_from, odd_to, 50).await.unwrap();
    assert_eq!(first.len(), 50);
    assert!(first
        .windows(2)
        .all(|w| w[0].taken_at_ms <= w[1].taken_at_ms));
    assert!(first[0].taken_at_ms >= odd_from);

    // Stats from rollups equal the naive figures, on unaligned ranges too.
    for (from, to) in [all, (odd_from, odd_to)] {
        let s = store.stats(from, to).await.unwrap();
        let inside: Vec<&Average> = points
            .iter()
            .filter(|a| a.taken_at_ms >= from && a.taken_at_ms <= to)
            .collect();
        assert_eq!(s.count, inside.len() as u64);
        let min = inside
            .iter()
            .map(|a| a.result.value)
            .fold(f64::MAX, f64::min);
        let max = inside
            .iter()
            .map(|a| a.result.value)
            .fold(f64::MIN, f64::max);
        let mean = inside.iter().map(|a| a.result.value).sum::<f64>() / inside.len() as f64;
        assert_eq!(s.min, Some(min));
        assert_eq!(s.max, Some(max));
        assert!((s.mean.unwrap() - mean).abs() < 1e-9);
        assert_eq!(s.first_ms, inside.iter().map(|a| a.taken_at_ms).min());
        assert_eq!(s.last_ms, inside.iter().map(|a| a.taken_at_ms).max());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_with_cursor() {
    let app = TestApp::start("pages", None).await;
    // 250 points; every fifth shares its millisecond with the previous one (ties).
    let mut batch = Vec::new();
    for round in 1..=250u64 {
        let ms = BASE_MS + (round as i64 - (round % 5 == 0) as i64) * 1000;
        batch.push(avg_at(round, round as f64, 1, ms));
    }
    for chunk in batch.chunks(100) {
        assert_eq!(app.post(&json!(chunk), None).await.0, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/averages?limit=40&cursor={c}"),
            None => "/api/v1/averages?limit=40".to_string(),
        };
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 40);
        seen.extend(items.iter().map(|i| i["round"].as_u64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250, "every point exactly once");
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first (ties by round)");

    // from/to filter (ms and RFC 3339), inclusive.
    let (_, page) = app
        .get_json(&format!(
            "/api/v1/averages?from={}&to=2026-01-01T00:00:20Z",
            BASE_MS + 10_000
        ))
        .await;
    let rounds: Vec<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["round"].as_u64().unwrap())
        .collect();
    assert_eq!(
        rounds,
        vec![20, 19, 18, 17, 16, 15, 14, 13, 12, 11],
        "{page}"
    );

    for (path, field) in [
        ("/api/v1/averages?limit=0", "limit"),
        ("/api/v1/averages?limit=10001", "limit"),
        ("/api/v1/averages?limit=ten", "limit"),
        ("/api/v1/averages?cursor=bogus", "cursor"),
        ("/api/v1/averages?from=yesterday", "from"),
        ("/api/v1/averages?from=2000&to=1000", "from"),
        ("/api/v1/averages?format=xml", "format"),
        ("/api/v1/stats?to=soon", "to"),
        ("/api/v1/averages/abc", "round"),
        ("/api/v1/averages/-1", "round"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}");
    }
    let (status, body) = app.get_json("/api/v1/averages/999").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("999"));

    let (status, stats) = app.get_json("/api/v1/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["count"], 250);
    assert_eq!(stats["min"], 1.0);
    assert_eq!(stats["max"], 250.0);
    assert_eq!(stats["mean"], 125.5);
    assert_eq!(stats["first"], "2026-01-01T00:00:01Z");
    let (_, stats) = app
        .get_json("/api/v1/stats?from=2030-01-01T00:00:00Z")
        .await;
    assert_eq!(
        stats,
        json!({"count": 0, "first": null, "last": null, "first_ms": null, "last_ms": null, "min": null, "max": null, "mean": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_download_quotes_text() {
    let app = TestApp::start("csv", None).await;
    let mut a = avg_at(1, 2.5, 1, BASE_MS);
    a["leader"] = json!("=cmd|\"evil\",x");
    assert_eq!(app.post(&a, None).await.0, 201);
    assert_eq!(
        app.post(&avg_at(2, -1.0, 1, BASE_MS + 1), None).await.0,
        201
    );
    let r = app.get("/api/v1/averages?format=csv").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "round,value,samples,leader,fencing,taken_at,taken_at_ms,cluster"
    );
    assert_eq!(
        lines[1],
        format!(
            "2,-1,2,\"node-1\",1,\"2026-01-01T00:00:00.001Z\",{},default",
            BASE_MS + 1
        )
    );
    assert_eq!(
        lines[2],
        format!("1,2.5,2,\"'=cmd|\"\"evil\"\",x\",1,\"2026-01-01T00:00:00Z\",{BASE_MS},default")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_and_age() {
    let store = support::store(&testkit::shared_redis().url(), "retention");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut points = Vec::new();
    for round in 1..=30u64 {
        // rounds 1..=10 are three days old, the rest recent.
        let ms = if round <= 10 {
            now - 3 * 86_400_000 + round as i64
        } else {
            now - 60_000 + round as i64
        };
        points.push(average(round, round as f64, ms, "n"));
    }
    ingest_all(&store, &points).await;
    let by_age = RetentionPolicy {
        max_age: Some(Duration::from_secs(86_400)),
        max_count: None,
        interval: Duration::from_secs(60),
    };
    assert_eq!(enforce_once(&store, &by_age).await.unwrap(), 10);
    assert_eq!(store.count().await.unwrap(), 20);
    assert!(store.get(&Default::default(), 10).await.unwrap().is_none());
    assert!(store.get(&Default::default(), 11).await.unwrap().is_some());
    let stats = store.stats(i64::MIN / 2, i64::MAX / 2).await.unwrap();
    assert_eq!(stats.count, 20);
    assert_eq!(stats.min, Some(11.0));

    let by_count = RetentionPolicy {
        max_age: None,
        max_count: Some(5),
        interval: Duration::from_secs(60),
    };
    assert_eq!(enforce_once(&store, &by_count).await.unwrap(), 15);
    let left: Vec<u64> = store
        .range_asc(i64::MIN / 2, i64::MAX / 2, 100)
        .await
        .unwrap()
        .iter()
        .map(|a| a.result.round)
        .collect();
    assert_eq!(left, vec![26, 27, 28, 29, 30]);
    assert_eq!(
        enforce_once(&store, &by_count).await.unwrap(),
        0,
        "idempotent"
    );
    // Ingest still works after trimming, and the old rounds can come back only as new data.
    ingest_all(&store, &[average(31, 31.0, now, "n")]).await;
    assert_eq!(store.count().await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let app = TestApp::start("metrics", None).await;
    assert_eq!(app.get("/nuevo?dato=1").await.status(), 200);
    assert_eq!(app.get("/nope").await.status(), 404);
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for needle in [
        "sensor_api_http_requests_total{route=\"/nuevo\",status=\"200\"} 1",
        "sensor_api_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "sensor_api_http_requests_total{route=\"/healthz\",status=\"200\"} 1",
        "sensor_api_ingested_total 1",
        "sensor_api_redis_up 1",
        "sensor_api_redis_duration_seconds_bucket{le=\"+Inf\"}",
        "# TYPE sensor_api_redis_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

/// The request metrics label by route pattern: a path parameter never becomes a label
/// value, and hostile URLs all land in one `unmatched` series, so clients cannot grow the
/// number of series. Latency is recorded per pattern and status class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_use_route_patterns_not_raw_paths() {
    let app = TestApp::start("metrics-routes", None).await;
    assert_eq!(
        app.post(&support::avg(1, 1.0, 1), None).await.0,
        201,
        "one stored round"
    );
    assert_eq!(app.get("/api/v1/averages/1").await.status(), 200);
    assert_eq!(app.get("/api/v1/averages/987654321").await.status(), 404);
    assert_eq!(app.get("/api/v1/averages/hostile-abc").await.status(), 400);
    for i in 0..50 {
        assert_eq!(app.get(&format!("/hostile-{i}")).await.status(), 404);
    }
    let (_, text) = app.get_text("/metrics").await;
    for needle in [
        "sensor_api_http_requests_total{route=\"/api/v1/averages/{round}\",status=\"200\"} 1",
        "sensor_api_http_requests_total{route=\"/api/v1/averages/{round}\",status=\"404\"} 1",
        "sensor_api_http_requests_total{route=\"/api/v1/averages/{round}\",status=\"400\"} 1",
        "sensor_api_http_requests_total{route=\"unmatched\",status=\"404\"} 50",
        "sensor_api_http_requests_total{route=\"/api/v1/averages\",status=\"201\"} 1",
        "# TYPE sensor_api_http_request_duration_seconds histogram",
        "sensor_api_http_request_duration_seconds_count{route=\"/api/v1/averages/{round}\",class=\"2xx\"} 1",
        "sensor_api_http_request_duration_seconds_count{route=\"/api/v1/averages/{round}\",class=\"4xx\"} 2",
        "sensor_api_http_request_duration_seconds_bucket{route=\"/api/v1/averages/{round}\",class=\"4xx\",le=\"+Inf\"} 2",
        "sensor_api_http_request_duration_seconds_count{route=\"unmatched\",class=\"4xx\"} 50",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    for raw in ["987654321", "hostile"] {
        assert!(
            !text.contains(raw),
            "raw path {raw:?} became a label:\n{text}"
        );
    }
    let series = text
        .lines()
        .filter(|l| l.starts_with("sensor_api_http_requests_total{"))
        .count();
    assert!(series <= 6, "{series} request series:\n{text}");
}
