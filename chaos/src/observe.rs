//! Looking at the running system from outside: ZooKeeper through `sensorctl`'s status
//! reader, the API over HTTP, and a background watch of delivery progress.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sensor_coord::status::{self as ctl, ClusterStatus};
use sensor_coord::zk::{self, Session};
use serde::Deserialize;

/// One stored average as `GET /api/v1/averages` returns it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Stored {
    /// Round number.
    pub round: u64,
    /// The average.
    pub value: f64,
    /// Number of readings averaged.
    pub samples: u32,
    /// Leader that computed it.
    pub leader: String,
    /// Its fencing token.
    pub fencing: u64,
    /// When the leader closed the round (ms since the epoch).
    pub taken_at_ms: i64,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Stored>,
    next_cursor: Option<String>,
}

/// HTTP and ZooKeeper views of the stack. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    http: reqwest::Client,
    api_url: String,
    zk_hosts: String,
}

impl Observer {
    /// An observer of the API at `api_url` and the ensemble at `zk_hosts` (direct).
    pub fn new(api_url: &str, zk_hosts: &str) -> anyhow::Result<Observer> {
        Ok(Observer {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            api_url: api_url.to_string(),
            zk_hosts: zk_hosts.to_string(),
        })
    }

    /// Whether `/readyz` answers 200 (the API is up and reaches Redis).
    pub async fn api_ready(&self) -> bool {
        let url = format!("{}/readyz", self.api_url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// The newest stored round, `None` if none or the API does not answer.
    pub async fn last_stored(&self) -> Option<u64> {
        let url = format!("{}/api/v1/averages?limit=1", self.api_url);
        let page: Page = self.http.get(url).send().await.ok()?.json().await.ok()?;
        page.items.first().map(|a| a.round)
    }

    /// The whole stored history, every page (newest first as the API pages it).
    pub async fn history(&self) -> anyhow::Result<Vec<Stored>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/api/v1/averages?limit=1000", self.api_url);
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(&percent_encode(c));
            }
            let page: Page = self
                .http
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// ZooKeeper's view (`sensorctl status`), `None` when it cannot be read within
    /// `timeout` (no quorum, ...). A fresh session each time: the observer must not be
    /// disturbed by the faults it watches.
    pub async fn zk_status(&self, timeout: Duration) -> Option<ClusterStatus> {
        let session: Session = ctl::connect(&self.zk_hosts, timeout).await.ok()?;
        let status = ctl::status(&session, timeout).await.ok();
        session.close();
        status
    }

    /// Number of children of `path` (0 if absent), `None` if unreadable.
    pub async fn children(&self, path: &str, timeout: Duration) -> Option<usize> {
        let session: Session = ctl::connect(&self.zk_hosts, timeout).await.ok()?;
        let client = session.client().ok()?;
        let n = match tokio::time::timeout(timeout, zk::children_opt(&client, path)).await {
            Ok(Ok(c)) => Some(c.map_or(0, |c| c.len())),
            _ => None,
        };
        drop(client);
        session.close();
        n
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Delivery progress seen by polling the API's newest round every 200 ms.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The newest round seen stored.
    pub last: Option<u64>,
    /// When it advanced last.
    pub advanced_at: Option<Instant>,
    /// Longest time without a new stored round, and the round that ended it.
    pub longest_gap: (Duration, u64),
}

/// Starts the poller on `rt`; it runs until the runtime shuts down.
pub fn watch_progress(rt: &tokio::runtime::Handle, obs: Observer) -> Arc<Mutex<Progress>> {
    let shared = Arc::new(Mutex::new(Progress::default()));
    let state = shared.clone();
    rt.spawn(async move {
        loop {
            if let Some(round) = obs.last_stored().await {
                let now = Instant::now();
                if let Ok(mut p) = state.lock() {
                    if p.last.is_none_or(|l| round > l) {
                        if let Some(prev) = p.advanced_at {
                            let gap = now - prev;
                            if gap > p.longest_gap.0 {
                                p.longest_gap = (gap, round);
                            }
                        }
                        p.last = Some(round);
                        p.advanced_at = Some(now);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    shared
}
