//! Process metrics, rendered as Prometheus text at `GET /metrics`.
//!
//! Plain atomics and one small mutex-guarded map of HTTP series (filled by
//! [`crate::layers::request_metrics`]): the set of series is small and fixed (routes are the
//! router's patterns, never raw paths, so label cardinality is bounded).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets (Redis calls and HTTP
/// requests; the top ones cover the default 10 s request timeout).
const LATENCY_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0, 5.0, 10.0,
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
        self.render_series(name, "", out);
    }

    /// The series of one histogram; `labels` (already escaped, `a="x",b="y"`) go before
    /// `le`.
    fn render_series(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

/// Counters of the HTTP layer and of ingest outcomes.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
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

/// The HTTP request series, under one lock (one update per request).
#[derive(Debug, Default)]
struct Requests {
    /// Answers by route pattern, then status code.
    counts: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Latency by route pattern, then status class.
    latency: BTreeMap<String, BTreeMap<&'static str, LatencyHistogram>>,
}

/// `2xx` for 200..=299 and so on; `other` outside 100..=599.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// A Prometheus label value with `\` and `"` escaped (route patterns have no newlines).
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Metrics {
    /// A fresh set with the last-round gauge unknown.
    pub fn new() -> Metrics {
        Metrics {
            last_round: AtomicI64::new(-1),
            ..Metrics::default()
        }
    }

    /// Records one answered request of `route` (the matched pattern, never a raw path:
    /// the caller bounds the label set) with `status`, ready after `latency`.
    pub fn observe_request(&self, route: &str, status: u16, latency: Duration) {
        let class = status_class(status);
        // A poisoned lock only means another thread panicked mid-increment: keep counting.
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The route string is copied only the first time a route is seen.
        if !requests.counts.contains_key(route) {
            requests.counts.insert(route.to_string(), BTreeMap::new());
            requests.latency.insert(route.to_string(), BTreeMap::new());
        }
        if let Some(by_status) = requests.counts.get_mut(route) {
            *by_status.entry(status).or_insert(0) += 1;
        }
        if let Some(by_class) = requests.latency.get_mut(route) {
            by_class.entry(class).or_default().observe(latency);
        }
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
            let requests = self
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (route, by_status) in &requests.counts {
                let route = escape_label(route);
                for (status, n) in by_status {
                    let _ = writeln!(
                        out,
                        "sensor_api_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
            let name = "sensor_api_http_request_duration_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Time until the answer was ready, by route pattern and status class."
            );
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (route, by_class) in &requests.latency {
                let route = escape_label(route);
                for (class, histogram) in by_class {
                    let labels = format!("route=\"{route}\",class=\"{class}\"");
                    histogram.render_series(name, &labels, &mut out);
                }
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
