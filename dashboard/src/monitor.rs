//! The background task that keeps the [`Snapshot`] current, and the timeline with it.
//!
//! Every `refresh_interval` it probes the ZooKeeper servers (`srvr`) and, while the session
//! is connected, reads the cluster ([`read_cluster`]); a second task fetches the recent
//! averages from sensor-api every [`AVERAGES_EVERY`]. The result is published in a
//! `watch` channel of `Arc<Snapshot>` only when something differs, so the event stream
//! wakes up only on changes.
//!
//! | what happens | what the snapshot says | how it recovers |
//! |---|---|---|
//! | session suspended / expired / connecting | `stale`, since when, the state | the session reconnects or builds a new one by itself; the next good read clears `stale` |
//! | a read fails or times out (`ZK_TIMEOUT`) | `stale` with the error; `cluster` = last good read | next tick reads again |
//! | quorum lost | servers `not serving`, session suspended → `stale` | as above once a quorum serves |
//! | sensor-api unreachable | `averages.error`, last points kept | next fetch |

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sensor_coord::config::parse_api_url;
use sensor_coord::status::ValueSource;
use sensor_coord::zk::{ConnState, Session};
use tokio::sync::{watch, Notify};

use crate::ensemble;
use crate::snapshot::{
    now_ms, read_cluster, AveragePoint, Averages, Cluster, Snapshot, ZkHealth, MAX_TEXT,
};
use crate::timeline::{self, Kind, Timeline};

/// How often recent averages are fetched from sensor-api.
pub const AVERAGES_EVERY: Duration = Duration::from_secs(5);
/// How many averages the chart shows.
pub const AVERAGES_SHOWN: usize = 60;
/// Events kept in memory.
pub const TIMELINE_CAPACITY: usize = 500;
/// Largest averages answer read from the API.
const MAX_AVERAGES_BODY: usize = 1024 * 1024;

/// What the monitor needs to know.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// ZooKeeper connect string (also the servers to probe).
    pub zk_hosts: String,
    /// Time between reads.
    pub refresh: Duration,
    /// Bound on one read / one probe.
    pub zk_timeout: Duration,
    /// Configured API base URL (else live config, else discovery).
    pub api_url: Option<String>,
}

/// The live state shared by the web handlers.
#[derive(Clone)]
pub struct Monitor {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    timeline: Arc<Mutex<Timeline>>,
    refresh: Arc<Notify>,
}

impl Monitor {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes on every published change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// Asks for a read now instead of at the next tick (after a config write).
    pub fn refresh_now(&self) {
        self.refresh.notify_one();
    }

    /// Runs `f` with the timeline locked.
    pub fn with_timeline<T>(&self, f: impl FnOnce(&Timeline) -> T) -> T {
        f(&self.timeline.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn session_name(state: ConnState) -> &'static str {
    match state {
        ConnState::Connecting => "connecting",
        ConnState::Connected => "connected",
        ConnState::Suspended => "suspended",
        ConnState::Expired => "expired",
        ConnState::Closed => "closed",
    }
}

/// Starts the monitor tasks on `session`; they end when the session is closed.
pub fn start(session: Session, config: MonitorConfig) -> Monitor {
    let initial = Snapshot {
        zookeeper: ZkHealth {
            session: session_name(session.current_status().state).to_string(),
            stale: true,
            stale_since_ms: Some(now_ms()),
            error: Some("not read yet".to_string()),
        },
        ensemble: Vec::new(),
        cluster: None,
        averages: Averages::default(),
    };
    let (tx, rx) = watch::channel(Arc::new(initial));
    let timeline = Arc::new(Mutex::new(Timeline::new(TIMELINE_CAPACITY)));
    let (avg_tx, avg_rx) = watch::channel(Averages::default());
    let refresh = Arc::new(Notify::new());
    tokio::spawn(run(
        session.clone(),
        config.clone(),
        tx,
        timeline.clone(),
        avg_rx,
        refresh.clone(),
    ));
    tokio::spawn(run_averages(session, config, rx.clone(), avg_tx));
    Monitor {
        snapshot: rx,
        timeline,
        refresh,
    }
}

struct Loop {
    config: MonitorConfig,
    tx: watch::Sender<Arc<Snapshot>>,
    timeline: Arc<Mutex<Timeline>>,
    current: Snapshot,
}

impl Loop {
    fn event(&self, kind: Kind, text: String) {
        self.timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(now_ms(), kind, text, None);
    }

    fn publish(&self) {
        let next = &self.current;
        self.tx.send_if_modified(|cur| {
            if **cur == *next {
                false
            } else {
                *cur = Arc::new(next.clone());
                true
            }
        });
    }

    fn mark_stale(&mut self, why: String) {
        let zk = &mut self.current.zookeeper;
        if !zk.stale {
            zk.stale = true;
            zk.stale_since_ms = Some(now_ms());
            tracing::warn!(reason = %why, "cluster state is stale");
            let text = format!("showing the last known state: {why}");
            zk.error = Some(why);
            self.event(Kind::Connection, text);
        } else {
            zk.error = Some(why);
        }
    }

    fn session_changed(&mut self, state: ConnState) {
        let name = session_name(state);
        if self.current.zookeeper.session == name {
            return;
        }
        self.event(Kind::Connection, format!("ZooKeeper session {name}"));
        self.current.zookeeper.session = name.to_string();
        if state != ConnState::Connected {
            self.mark_stale(format!("ZooKeeper session {name}"));
        }
    }

    fn read_ok(&mut self, mut cluster: Cluster) {
        let now = now_ms();
        let prev = self.current.cluster.as_ref();
        // Leader "since": carried over while the same leader leads; the observed moment
        // of a change otherwise.
        if let (Some(p), Some(l)) = (prev, cluster.leader.as_mut()) {
            match &p.leader {
                Some(pl) if pl.id == l.id && pl.fencing == l.fencing => {
                    l.since_ms = pl.since_ms;
                    l.since_observed = pl.since_observed;
                }
                _ => {
                    l.since_ms = now;
                    l.since_observed = true;
                }
            }
        }
        {
            let mut tl = self.timeline.lock().unwrap_or_else(PoisonError::into_inner);
            timeline::diff(prev, &cluster, now, &mut tl);
        }
        if let Some(l) = &cluster.leader {
            if prev
                .and_then(|p| p.leader.as_ref())
                .map(|p| (&p.id, p.fencing))
                != Some((&l.id, l.fencing))
            {
                tracing::info!(leader = %l.id, fencing = l.fencing, "leader seen");
            }
        }
        let zk = &mut self.current.zookeeper;
        if zk.stale {
            let since = zk.stale_since_ms.unwrap_or(now);
            zk.stale = false;
            zk.stale_since_ms = None;
            zk.error = None;
            tracing::info!(stale_ms = now - since, "cluster state current again");
            self.event(
                Kind::Connection,
                format!(
                    "cluster state current again (was stale for {:.1} s)",
                    (now - since) as f64 / 1000.0
                ),
            );
        }
        self.current.cluster = Some(cluster);
    }
}

async fn run(
    session: Session,
    config: MonitorConfig,
    tx: watch::Sender<Arc<Snapshot>>,
    timeline: Arc<Mutex<Timeline>>,
    mut averages: watch::Receiver<Averages>,
    refresh: Arc<Notify>,
) {
    let mut status = session.status();
    let current = (**tx.borrow()).clone();
    let mut lp = Loop {
        config,
        tx,
        timeline,
        current,
    };
    let mut tick = tokio::time::interval(lp.config.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closed = session.closed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = refresh.notified() => {}
            r = status.changed() => {
                if r.is_err() { return; }
                let state = status.borrow_and_update().state;
                lp.session_changed(state);
                lp.publish();
                continue;
            }
            r = averages.changed() => {
                if r.is_err() { return; }
                lp.current.averages = averages.borrow_and_update().clone();
                lp.publish();
                continue;
            }
            _ = &mut closed => return,
        }
        let state = session.current_status().state;
        lp.session_changed(state);
        if state != ConnState::Connected {
            lp.mark_stale(format!(
                "ZooKeeper session {} (servers: {})",
                session_name(state),
                lp.config.zk_hosts
            ));
        }
        let probe = ensemble::probe_all(&lp.config.zk_hosts, lp.config.zk_timeout);
        let read = async {
            if state == ConnState::Connected {
                Some(read_cluster(&session, lp.config.zk_timeout).await)
            } else {
                None
            }
        };
        let (servers, read) = tokio::join!(probe, read);
        {
            let mut tl = lp.timeline.lock().unwrap_or_else(PoisonError::into_inner);
            timeline::diff_servers(&lp.current.ensemble, &servers, now_ms(), &mut tl);
        }
        lp.current.ensemble = servers;
        match read {
            Some(Ok(cluster)) => lp.read_ok(cluster),
            Some(Err(e)) => lp.mark_stale(format!("ZooKeeper read failed: {e}")),
            None => {}
        }
        lp.publish();
    }
}

/// The API URL to read averages from: the configured one, else the live config's, else
/// the first registered instance.
fn api_url_of(config: &MonitorConfig, snapshot: &Snapshot) -> Option<String> {
    if let Some(u) = &config.api_url {
        return Some(u.clone());
    }
    let cluster = snapshot.cluster.as_ref()?;
    let live = &cluster.config.api_url.entry;
    if live.source == ValueSource::Zookeeper {
        if let Some(u) = &live.stored {
            return Some(u.clone());
        }
    }
    cluster
        .api_instances
        .iter()
        .find_map(|i| parse_api_url(&i.url).ok())
}

async fn run_averages(
    session: Session,
    config: MonitorConfig,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    tx: watch::Sender<Averages>,
) {
    let client = match reqwest::Client::builder()
        .timeout(config.zk_timeout.max(Duration::from_secs(2)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build an HTTP client; no averages chart");
            return;
        }
    };
    let closed = session.closed();
    tokio::pin!(closed);
    loop {
        let url = api_url_of(&config, &snapshot.borrow().clone());
        let next = match url {
            None => Averages {
                source: None,
                points: Vec::new(),
                error: Some("no API URL known (set API_URL)".to_string()),
            },
            Some(base) => match fetch_averages(&client, &base).await {
                Ok(points) => Averages {
                    source: Some(base),
                    points,
                    error: None,
                },
                Err(e) => Averages {
                    source: Some(base),
                    points: tx.borrow().points.clone(),
                    error: Some(crate::snapshot::clip(&e, MAX_TEXT)),
                },
            },
        };
        tx.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
        tokio::select! {
            _ = tokio::time::sleep(AVERAGES_EVERY) => {}
            _ = tx.closed() => return,
            _ = &mut closed => return,
        }
    }
}

async fn fetch_averages(client: &reqwest::Client, base: &str) -> Result<Vec<AveragePoint>, String> {
    let url = format!("{base}/api/v1/averages?limit={AVERAGES_SHOWN}");
    let mut response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url} answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_AVERAGES_BODY {
            return Err(format!(
                "GET {url}: answer larger than {MAX_AVERAGES_BODY} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let items = value["items"]
        .as_array()
        .ok_or_else(|| format!("GET {url}: no items array"))?;
    let mut points: Vec<AveragePoint> = items
        .iter()
        .filter_map(|i| {
            Some(AveragePoint {
                round: i["round"].as_u64()?,
                value: i["value"].as_f64().filter(|v| v.is_finite())?,
                taken_at_ms: i["taken_at_ms"].as_i64()?,
            })
        })
        .take(AVERAGES_SHOWN)
        .collect();
    points.reverse();
    Ok(points)
}
