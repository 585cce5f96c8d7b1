//! Shared by the dashboard's tests: a dashboard served in-process on a free port, the
//! `sensor-node` fleet (real processes, via `testkit`), and small HTTP/SSE helpers.
#![allow(dead_code)]

pub mod cdp;

use std::path::PathBuf;
use std::time::Duration;

use sensor_dashboard::config::{Cli, Config};
use serde_json::Value;
use testkit::{Node, NodeOpts};

/// A dashboard running inside the test process.
pub struct Dashboard {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    session: sensor_coord::zk::Session,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.session.close();
        self.server.abort();
    }
}

/// The dashboard's settings for `zk`, with extra flags (e.g. `--admin-token`).
pub fn config(zk: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "sensor-dashboard",
        "--zookeeper-hosts",
        zk,
        "--refresh-interval",
        "0.5",
        "--zk-timeout",
        "2",
    ];
    args.extend_from_slice(extra);
    let cli = <Cli as clap::Parser>::try_parse_from(args).expect("dashboard flags");
    cli.config.validate().expect("valid dashboard config");
    cli.config
}

impl Dashboard {
    /// Starts a dashboard on `zk` with extra flags.
    pub async fn start(zk: &str, extra: &[&str]) -> Dashboard {
        let config = config(zk, extra);
        let (session, app) = sensor_dashboard::start(&config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        });
        Dashboard {
            url,
            session,
            server,
        }
    }

    /// `GET /api/v1/cluster`.
    pub async fn cluster(&self) -> Value {
        http()
            .get(format!("{}/api/v1/cluster", self.url))
            .send()
            .await
            .expect("GET /api/v1/cluster")
            .json()
            .await
            .expect("JSON")
    }

    /// `GET /` (with a query string, e.g. `?q=x`): status and body.
    pub async fn page(&self, query: &str) -> (u16, String) {
        let r = http()
            .get(format!("{}/{query}", self.url))
            .send()
            .await
            .expect("GET /");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// `POST /config` with form fields: status, `Location` header, body.
    pub async fn post_config(&self, fields: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = http()
            .post(format!("{}/config", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST /config");
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, location, r.text().await.expect("body"))
    }

    /// Polls the JSON state until `check` holds or `timeout` passes; returns the last state.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let v = self.cluster().await;
            if check(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last state:\n{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An HTTP client that does not follow redirects (tests look at them).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// askama's HTML escaping, to look for an escaped message in a page.
pub fn escape(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The `sensor-node` binary (built by `cargo test --workspace`, or `cargo build -p
/// zk-sensors-node`).
pub fn node_bin() -> PathBuf {
    let bin = testkit::bin_path("sensor-node");
    assert!(
        bin.exists(),
        "{} is missing: run the workspace tests (`cargo test --workspace`) or `cargo build -p zk-sensors-node` first",
        bin.display()
    );
    bin
}

/// Starts `ids` as sensor-node processes on `zk` (period 0.5 s, 2 s sessions).
pub fn fleet(zk: &str, api_url: Option<&str>, ids: &[&str]) -> Vec<Node> {
    let opts = NodeOpts::new(zk, api_url);
    ids.iter()
        .map(|id| Node::spawn(&node_bin(), id, &opts))
        .collect()
}

/// Sensor ids in a JSON state.
pub fn sensor_ids(v: &Value) -> Vec<String> {
    v["cluster"]["sensors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The leader id in a JSON state.
pub fn leader_of(v: &Value) -> Option<String> {
    v["cluster"]["leader"]["id"].as_str().map(str::to_string)
}

/// A Server-Sent Events reader over a streaming response.
pub struct SseReader {
    response: reqwest::Response,
    buf: String,
}

/// One SSE message.
#[derive(Debug, Clone)]
pub struct SseMessage {
    /// `event:` field.
    pub event: String,
    /// `data:` field, parsed.
    pub data: Value,
}

impl SseReader {
    /// Opens `GET {url}/events`.
    pub async fn open(url: &str) -> SseReader {
        let response = reqwest::Client::new()
            .get(format!("{url}/events"))
            .send()
            .await
            .expect("GET /events");
        assert_eq!(response.status(), 200);
        assert!(response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream")));
        SseReader {
            response,
            buf: String::new(),
        }
    }

    /// The next message, or `None` at the end of the stream or after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseMessage { event, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
