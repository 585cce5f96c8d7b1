//! Shared by the end-to-end tests that run the real `sensor-api` binary (on a real Redis)
//! next to real `sensor-node` processes: spawning it and reading what it stored.
//!
//! Needs the `sensor-api` binary, which `cargo test --workspace` builds; with
//! `cargo test -p zk-sensors-node` alone, run `cargo build -p sensor-api` first.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::{Proc, RedisServer};

/// A running sensor-api process.
pub struct Api {
    /// The process.
    pub proc: Proc,
    /// Its base URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Starts sensor-api on a free port against `redis`. With `zk`, it registers under
/// `/services/api` (nodes discover it); without, nodes reach it only through `API_URL`.
pub fn spawn_api(redis: &RedisServer, zk: Option<&str>, id: &str, token: &str) -> Api {
    let bin = testkit::bin_path("sensor-api");
    assert!(
        bin.exists(),
        "{} is missing: run the workspace tests (`cargo test --workspace`) or `cargo build -p sensor-api` first",
        bin.display()
    );
    let port = testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis.url())
        .env("API_TOKEN", token)
        .env("INSTANCE_ID", id)
        .env("REDIS_TIMEOUT", "1s");
    if let Some(zk) = zk {
        cmd.env("ZOOKEEPER_HOSTS", zk).env("ADVERTISE_URL", &url);
    }
    let proc = Proc::spawn(id, cmd, &dir.path().join("api.log")).expect("spawn sensor-api");
    Api {
        proc,
        url,
        _dir: dir,
    }
}

impl Api {
    /// Waits until `/readyz` answers 200 (Redis reachable).
    pub async fn wait_ready(&self, http: &reqwest::Client) {
        let ok = testkit::wait_until_async(Duration::from_secs(30), || async {
            matches!(
                http.get(format!("{}/readyz", self.url)).send().await,
                Ok(r) if r.status() == 200
            )
        })
        .await;
        assert!(ok, "sensor-api not ready:\n{}", self.proc.log_tail(30));
    }

    /// Every stored point, oldest first (the JSON API, paged newest-first and reversed).
    pub async fn items(&self, http: &reqwest::Client) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/api/v1/averages?limit=1000", self.url);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
            out.extend(body["items"].as_array()?.iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        out.reverse();
        Some(out)
    }

    /// The round numbers stored, oldest first.
    pub async fn rounds(&self, http: &reqwest::Client) -> Vec<u64> {
        self.items(http)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v["round"].as_u64())
            .collect()
    }
}
