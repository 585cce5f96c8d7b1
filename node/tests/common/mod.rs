//! Shared by the node's end-to-end tests: sensor-node processes with JSON logs, and a small
//! HTTP receiver that enforces the API's delivery contract (idempotent on `round`, rejects
//! lower fencing tokens) and records everything it is sent.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use testkit::Proc;

/// One sensor-node child process with JSON logs in a temp file.
pub struct Node {
    pub id: String,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

/// Settings for spawning nodes.
#[derive(Clone)]
pub struct NodeOpts {
    pub zk: String,
    pub api_url: Option<String>,
    pub period: String,
    pub session_timeout_ms: u64,
    pub token: Option<String>,
    pub extra_env: Vec<(String, String)>,
}

impl NodeOpts {
    pub fn new(zk: &str, api_url: Option<&str>) -> NodeOpts {
        NodeOpts {
            zk: zk.to_string(),
            api_url: api_url.map(str::to_string),
            period: "0.5".into(),
            session_timeout_ms: 2000,
            token: None,
            extra_env: Vec::new(),
        }
    }
}

impl Node {
    pub fn spawn(id: &str, opts: &NodeOpts) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sensor-node"));
        cmd.env_clear()
            .env("NODE_ID", id)
            .env("ZOOKEEPER_HOSTS", &opts.zk)
            .env("SAMPLING_PERIOD", &opts.period)
            .env("SESSION_TIMEOUT_MS", opts.session_timeout_ms.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sensor_node=debug");
        if let Some(url) = &opts.api_url {
            cmd.env("API_URL", url);
        }
        if let Some(t) = &opts.token {
            cmd.env("API_TOKEN", t);
        }
        for (k, v) in &opts.extra_env {
            cmd.env(k, v);
        }
        let log = dir.path().join(format!("{id}.log"));
        let proc = Proc::spawn(id, cmd, &log).expect("spawn sensor-node");
        Node {
            id: id.to_string(),
            proc,
            _dir: dir,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.proc.log_path().to_path_buf()
    }

    /// Every JSON log line: (message, fields).
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Log events whose message is `msg`, as their `fields` objects.
    pub fn events_named(&self, msg: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["fields"]["message"] == msg)
            .map(|e| e["fields"].clone())
            .collect()
    }

    pub fn tail(&self) -> String {
        self.proc.log_tail(40)
    }
}

/// What the receiver was sent.
#[derive(Default, Debug)]
pub struct Received {
    /// Accepted rounds in order of first acceptance.
    pub accepted: Vec<Value>,
    /// round -> accepted record.
    pub by_round: BTreeMap<u64, Value>,
    /// Re-deliveries with identical content (accepted, nothing stored).
    pub duplicates: usize,
    /// Requests refused for a lower fencing token.
    pub stale: usize,
    /// Records refused for a conflicting value.
    pub conflicts: usize,
    /// Highest fencing token accepted.
    pub max_fencing: u64,
    /// Number of POST requests answered.
    pub requests: usize,
}

type Shared = Arc<Mutex<Received>>;

/// An HTTP receiver on 127.0.0.1 that can be taken down and brought back on the same port.
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Shared,
    server: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut r = Receiver {
            addr,
            state: Shared::default(),
            server: None,
            stop: None,
        };
        r.serve(listener);
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/api/v1/averages", post(ingest))
            .with_state(self.state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        }));
    }

    /// Takes the receiver down: connections are refused until [`Receiver::up`].
    pub async fn down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
            let _ = h.await;
        }
    }

    /// Brings it back on the same port.
    pub async fn up(&mut self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        self.serve(listener);
    }

    pub fn snapshot<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.state.lock().expect("lock"))
    }

    /// Highest round accepted so far (0 if none).
    pub fn last_round(&self) -> u64 {
        self.snapshot(|r| r.by_round.keys().next_back().copied().unwrap_or(0))
    }

    /// Waits until at least `round` has been accepted.
    pub async fn wait_round(&self, round: u64, timeout: Duration) -> bool {
        testkit::wait_until_async(timeout, || async { self.last_round() >= round }).await
    }

    /// The leader field of the newest accepted round.
    pub fn last_leader(&self) -> Option<String> {
        self.snapshot(|r| {
            r.by_round
                .values()
                .next_back()
                .and_then(|v| v["leader"].as_str().map(str::to_string))
        })
    }

    /// Asserts rounds 1..=last were each accepted exactly once, in order, and returns last.
    pub fn assert_contiguous(&self) -> u64 {
        self.snapshot(|r| {
            let rounds: Vec<u64> = r
                .accepted
                .iter()
                .map(|v| v["round"].as_u64().expect("round"))
                .collect();
            let expected: Vec<u64> = (1..=rounds.len() as u64).collect();
            assert_eq!(
                rounds, expected,
                "rounds accepted in order without gaps or repeats"
            );
            rounds.len() as u64
        })
    }
}

async fn ingest(State(state): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let items = match body {
        Value::Array(a) => a,
        v => vec![v],
    };
    let mut st = state.lock().expect("lock");
    st.requests += 1;
    // Validate the whole batch first: nothing stored if any record is refused.
    for item in &items {
        let fencing = item["fencing"].as_u64().unwrap_or(0);
        if fencing < st.max_fencing {
            st.stale += 1;
            return (
                StatusCode::CONFLICT,
                Json(
                    json!({"error": "stale leader: fencing token lower than accepted", "field": "fencing"}),
                ),
            );
        }
        let round = item["round"].as_u64().unwrap_or(0);
        if let Some(prev) = st.by_round.get(&round) {
            if prev["value"] != item["value"] {
                st.conflicts += 1;
                return (
                    StatusCode::CONFLICT,
                    Json(
                        json!({"error": format!("round {round} already stored with another value"), "field": "value", "round": round}),
                    ),
                );
            }
        }
    }
    for item in items {
        let fencing = item["fencing"].as_u64().unwrap_or(0);
        st.max_fencing = st.max_fencing.max(fencing);
        let round = item["round"].as_u64().unwrap_or(0);
        match st.by_round.entry(round) {
            std::collections::btree_map::Entry::Occupied(_) => st.duplicates += 1,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(item.clone());
                st.accepted.push(item);
            }
        }
    }
    (StatusCode::OK, Json(json!({"ok": true})))
}
