//! Shared by the sensor-api integration tests: the app served on 127.0.0.1:0 against a
//! real Redis, each test under its own key prefix.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sensor_api::store::{Store, StoreConfig};
use sensor_api::{app, AppState};
use serde_json::{json, Value};

/// A running app.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A key prefix no other test of this run uses.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on `redis_url` under a fresh prefix, with short timeouts for outage tests.
pub fn store(redis_url: &str, tag: &str) -> Store {
    Store::open(
        redis_url,
        &StoreConfig {
            key_prefix: unique_prefix(tag),
            response_timeout: Duration::from_millis(800),
            connect_timeout: Duration::from_millis(500),
        },
    )
    .expect("open store")
}

impl TestApp {
    /// Serves the app on the shared Redis.
    pub async fn start(tag: &str, token: Option<&str>) -> TestApp {
        let redis = testkit::shared_redis();
        TestApp::start_on(&redis.url(), tag, token).await
    }

    /// Serves the app on the given Redis.
    pub async fn start_on(redis_url: &str, tag: &str, token: Option<&str>) -> TestApp {
        let state =
            AppState::new(store(redis_url, tag)).with_token(token.map(sensor_common::Secret::new));
        TestApp::serve(state).await
    }

    /// Serves the given state.
    pub async fn serve(state: AppState) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = app(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        TestApp {
            base: format!("http://{addr}"),
            state,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// POSTs raw bytes to /api/v1/averages with an optional bearer token.
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/api/v1/averages"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, body: &Value, token: Option<&str>) -> (u16, Value) {
        self.post_raw(body.to_string(), token).await
    }
}

/// A valid average JSON.
pub fn avg(round: u64, value: f64, fencing: u64) -> Value {
    json!({
        "round": round,
        "value": value,
        "samples": 3,
        "leader": "node-1",
        "fencing": fencing,
        "taken_at": format!("2026-01-01T00:{:02}:{:02}Z", (round / 60) % 60, round % 60),
    })
}

/// Same with an explicit time in ms since the epoch.
pub fn avg_at(round: u64, value: f64, fencing: u64, ms: i64) -> Value {
    let t =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("time");
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    json!({"round": round, "value": value, "samples": 2, "leader": "node-1", "fencing": fencing, "taken_at": text})
}
