//! An HTTP receiver that enforces sensor-api's delivery contract (idempotent on `round`,
//! rejects lower fencing tokens, validates a batch before storing any of it) and records
//! everything it is sent. Issue-sanctioned stand-in for the API where a test is about the
//! nodes; the system test uses the real sensor-api.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

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
    /// Values sent to the legacy `GET /nuevo?dato=` (what kazoo-based leaders send).
    pub legacy: Vec<f64>,
}

type Shared = Arc<Mutex<Received>>;

/// An HTTP receiver on 127.0.0.1 that can be taken down and brought back on the same port.
pub struct Receiver {
    /// Where it listens (stable across down/up).
    pub addr: SocketAddr,
    /// What it received.
    pub state: Shared,
    server: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Starts on a free 127.0.0.1 port.
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

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/api/v1/averages", post(ingest))
            .route("/nuevo", get(legacy))
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

    /// Reads the recorded state under its lock.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.state.lock().expect("lock"))
    }

    /// Highest round accepted so far (0 if none).
    pub fn last_round(&self) -> u64 {
        self.snapshot(|r| r.by_round.keys().next_back().copied().unwrap_or(0))
    }

    /// Waits until at least `round` has been accepted.
    pub async fn wait_round(&self, round: u64, timeout: Duration) -> bool {
        crate::wait_until_async(timeout, || async { self.last_round() >= round }).await
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

/// The legacy endpoint: `dato` must be a finite number (400 otherwise, as sensor-api).
async fn legacy(
    State(state): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    match q.get("dato").and_then(|d| d.parse::<f64>().ok()) {
        Some(v) if v.is_finite() => {
            state.lock().expect("lock").legacy.push(v);
            (
                StatusCode::OK,
                Json(json!({"status": "stored", "value": v})),
            )
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "not a finite number", "field": "dato"})),
        ),
    }
}

async fn ingest(State(state): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let items = match body {
        Value::Array(a) => a,
        v => vec![v],
    };
    let mut st = state.lock().expect("lock");
    st.requests += 1;
    // Validate the whole batch first: nothing stored if any record is refused. Answers
    // carry sensor-api's per-item results, which the nodes require.
    let rounds: Vec<u64> = items
        .iter()
        .map(|i| i["round"].as_u64().unwrap_or(0))
        .collect();
    let refuse = |at: usize, status: &str, error: String| {
        let results: Vec<Value> = rounds
            .iter()
            .enumerate()
            .map(|(j, r)| json!({"round": r, "status": if j == at { status } else { "not_applied" }}))
            .collect();
        (
            StatusCode::CONFLICT,
            Json(json!({"error": error, "field": "round", "results": results})),
        )
    };
    for (at, item) in items.iter().enumerate() {
        let fencing = item["fencing"].as_u64().unwrap_or(0);
        if fencing < st.max_fencing {
            st.stale += 1;
            return refuse(
                at,
                "stale_leader",
                "fencing token lower than accepted".into(),
            );
        }
        let round = rounds[at];
        if let Some(prev) = st.by_round.get(&round) {
            if prev["value"] != item["value"] {
                st.conflicts += 1;
                return refuse(
                    at,
                    "conflict",
                    format!("round {round} already stored with another value"),
                );
            }
        }
    }
    let mut results = Vec::new();
    let (mut stored, mut duplicates) = (0, 0);
    for item in items {
        let fencing = item["fencing"].as_u64().unwrap_or(0);
        st.max_fencing = st.max_fencing.max(fencing);
        let round = item["round"].as_u64().unwrap_or(0);
        match st.by_round.entry(round) {
            std::collections::btree_map::Entry::Occupied(_) => {
                st.duplicates += 1;
                duplicates += 1;
                results.push(json!({"round": round, "status": "duplicate"}));
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(item.clone());
                st.accepted.push(item);
                stored += 1;
                results.push(json!({"round": round, "status": "stored"}));
            }
        }
    }
    (
        StatusCode::OK,
        Json(json!({"stored": stored, "duplicates": duplicates, "results": results})),
    )
}
