//! sensor-node child processes with JSON logs, for end-to-end tests and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::Proc;

/// One sensor-node child process with JSON logs in a temp file.
pub struct Node {
    /// The node id (NODE_ID).
    pub id: String,
    /// The process (kill, pause, terminate it).
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

/// Settings for spawning nodes (passed as the env vars sensor-node documents).
#[derive(Clone)]
pub struct NodeOpts {
    /// ZOOKEEPER_HOSTS.
    pub zk: String,
    /// API_URL, if any (otherwise the nodes discover APIs in ZooKeeper).
    pub api_url: Option<String>,
    /// SAMPLING_PERIOD in seconds.
    pub period: String,
    /// SESSION_TIMEOUT_MS.
    pub session_timeout_ms: u64,
    /// API_TOKEN.
    pub token: Option<String>,
    /// Any further env vars.
    pub extra_env: Vec<(String, String)>,
}

impl NodeOpts {
    /// Defaults for tests: period 0.5 s, session timeout 2 s, no token.
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
    /// Spawns `bin` (the sensor-node binary) as node `id`. Panics if it cannot (a test
    /// harness failure).
    pub fn spawn(bin: &Path, id: &str, opts: &NodeOpts) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("NODE_ID", id)
            .env("ZOOKEEPER_HOSTS", &opts.zk)
            .env("SAMPLING_PERIOD", &opts.period)
            .env("SESSION_TIMEOUT_MS", opts.session_timeout_ms.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sensor_node=debug,sensor_coord=debug");
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

    /// The node's log file (JSON lines).
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

    /// The last 40 log lines, for failure messages.
    pub fn tail(&self) -> String {
        self.proc.log_tail(40)
    }
}
