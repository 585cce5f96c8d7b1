//! Process metrics, rendered as Prometheus text at `GET /metrics`.
//!
//! Plain atomics and one small mutex-guarded map: the set of series is tiny and fixed
//! (routes are the router's patterns, never raw paths, so label cardinality is bounded).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the Redis latency histogram buckets.
const LATENCY_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

/// A fixed-bucket latency histogram (lock-free).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters of the HTTP layer and of ingest outcomes.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Points newly stored (node rounds and legacy readings).
    pub ingested: AtomicU64,
    /// Rounds received again with the same value (nothing stored).
    pub duplicates: AtomicU64,
    /// Rounds received with a different value than the stored one (409).
    pub conflicts: AtomicU64,
    /// Writes rejected because of a fencing token older than the highest accepted (409).
    pub stale_leaders: AtomicU64,
    /// Writes refused because their fencing token exceeds ZooKeeper's zxid (400).
    pub forged_fences: AtomicU64,
    /// Points deleted by retention.
    pub retention_deleted: AtomicU64,
    /// Highest round stored as last seen by this process (-1 = unknown).
    pub last_round: AtomicI64,
}

impl Metrics {
    /// A fresh set with the last-round gauge unknown.
    pub fn new() -> Metrics {
        Metrics {
            last_round: AtomicI64::new(-1),
            ..Metrics::default()
        }
    }

    /// Counts one answered request of `route` (the matched pattern) with `status`.
    pub fn count_request(&self, route: &str, status: u16) {
        // A poisoned lock only means another thread panicked mid-increment: keep counting.
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    /// Raises the last-round gauge to `round` if it is higher.
    pub fn saw_round(&self, round: u64) {
        let r = i64::try_from(round).unwrap_or(i64::MAX);
        self.last_round.fetch_max(r, Ordering::Relaxed);
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self, redis_latency: &LatencyHistogram, redis_up: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP sensor_api_http_requests_total HTTP requests answered, by route pattern and status.\n");
        out.push_str("# TYPE sensor_api_http_requests_total counter\n");
        {
            let map = self
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for ((route, status), n) in map.iter() {
                let route = route.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "sensor_api_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "sensor_api_ingested_total",
                "Points newly stored.",
                &self.ingested,
            ),
            (
                "sensor_api_duplicates_total",
                "Rounds received again with the same value (nothing stored).",
                &self.duplicates,
            ),
            (
                "sensor_api_conflicts_total",
                "Rounds rejected because a different value is stored.",
                &self.conflicts,
            ),
            (
                "sensor_api_stale_leader_rejections_total",
                "Writes rejected for a fencing token lower than the highest accepted.",
                &self.stale_leaders,
            ),
            (
                "sensor_api_forged_fencing_rejections_total",
                "Writes refused for a fencing token above ZooKeeper's current zxid.",
                &self.forged_fences,
            ),
            (
                "sensor_api_retention_deleted_total",
                "Points deleted by retention.",
                &self.retention_deleted,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        let last = self.last_round.load(Ordering::Relaxed);
        if last >= 0 {
            out.push_str("# HELP sensor_api_last_round Highest round stored.\n");
            out.push_str("# TYPE sensor_api_last_round gauge\n");
            let _ = writeln!(out, "sensor_api_last_round {last}");
        }
        out.push_str("# HELP sensor_api_redis_up Whether Redis answered PING at scrape time.\n");
        out.push_str("# TYPE sensor_api_redis_up gauge\n");
        let _ = writeln!(out, "sensor_api_redis_up {}", u8::from(redis_up));
        redis_latency.render(
            "sensor_api_redis_duration_seconds",
            "Latency of Redis calls (commands and scripts).",
            &mut out,
        );
        out
    }
}
