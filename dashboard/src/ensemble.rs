//! The ZooKeeper servers, as their `srvr` four-letter word describes them.
//!
//! Each `host:port` of the connect string is probed on its own, over a fresh TCP
//! connection (one line out, the answer until the server closes), so the picture shows
//! every server even while our session is suspended or quorum is lost. The servers must
//! whitelist `srvr` (`4lw.commands.whitelist`; the compose files do).
//!
//! | what happens | [`ServerInfo::mode`] |
//! |---|---|
//! | answer with `Mode: leader/follower/standalone/observer` | that mode |
//! | answer "not currently serving requests" (no quorum) | `not serving` |
//! | refused, unresolvable, or no answer within the timeout | `down` |
//! | `srvr` not whitelisted, or an answer we cannot read | `unknown` |

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest `srvr` answer read (a real one is ~300 bytes).
const MAX_ANSWER: u64 = 16 * 1024;

/// One ZooKeeper server as last probed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerInfo {
    /// `host:port` from the connect string.
    pub address: String,
    /// `leader`, `follower`, `standalone`, `observer`, `not serving`, `down` or `unknown`.
    pub mode: String,
    /// Average request latency in ms (`Latency min/avg/max`).
    pub latency_avg_ms: Option<f64>,
    /// Highest request latency in ms since the server's stats were reset.
    pub latency_max_ms: Option<f64>,
    /// Requests queued in the server.
    pub outstanding: Option<u64>,
    /// Znodes in the server's data tree.
    pub znode_count: Option<u64>,
    /// Open client connections.
    pub connections: Option<u64>,
    /// Why the mode is `down`/`unknown` (connection error, timeout).
    pub error: Option<String>,
}

impl ServerInfo {
    /// Whether the server answers requests (a quorum member or standalone).
    pub fn serving(&self) -> bool {
        matches!(
            self.mode.as_str(),
            "leader" | "follower" | "standalone" | "observer"
        )
    }
}

/// The `host:port` entries of a connect string (the chroot suffix dropped).
pub fn servers_of(connect_string: &str) -> Vec<String> {
    let (hosts, _) = sensor_coord::zk::session::split_chroot(connect_string);
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

/// Probes every server of `connect_string` concurrently; each probe gives up after `timeout`.
pub async fn probe_all(connect_string: &str, timeout: Duration) -> Vec<ServerInfo> {
    let probes = servers_of(connect_string)
        .into_iter()
        .map(|address| async move { probe(&address, timeout).await });
    futures::future::join_all(probes).await
}

/// Probes one server with `srvr`.
pub async fn probe(address: &str, timeout: Duration) -> ServerInfo {
    let answer = tokio::time::timeout(timeout, srvr(address)).await;
    match answer {
        Ok(Ok(text)) => parse_srvr(address, &text),
        Ok(Err(e)) => down(address, e.to_string()),
        Err(_) => down(address, format!("no answer within {timeout:?}")),
    }
}

async fn srvr(address: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(b"srvr").await?;
    let mut buf = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn down(address: &str, error: String) -> ServerInfo {
    ServerInfo {
        address: address.to_string(),
        mode: "down".to_string(),
        latency_avg_ms: None,
        latency_max_ms: None,
        outstanding: None,
        znode_count: None,
        connections: None,
        error: Some(error),
    }
}

/// Reads a `srvr` answer.
pub fn parse_srvr(address: &str, text: &str) -> ServerInfo {
    let mut info = ServerInfo {
        address: address.to_string(),
        mode: "unknown".to_string(),
        latency_avg_ms: None,
        latency_max_ms: None,
        outstanding: None,
        znode_count: None,
        connections: None,
        error: None,
    };
    if text.contains("not currently serving") {
        info.mode = "not serving".to_string();
        return info;
    }
    if text.contains("not in the whitelist") {
        info.error = Some("srvr is not whitelisted (4lw.commands.whitelist)".to_string());
        return info;
    }
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Mode" => {
                if let Some(mode) = ["leader", "follower", "standalone", "observer"]
                    .into_iter()
                    .find(|m| *m == value)
                {
                    info.mode = mode.to_string();
                }
            }
            "Latency min/avg/max" => {
                let parts: Vec<f64> = value.split('/').filter_map(|p| p.parse().ok()).collect();
                if parts.len() == 3 {
                    info.latency_avg_ms = Some(parts[1]);
                    info.latency_max_ms = Some(parts[2]);
                }
            }
            "Outstanding" => info.outstanding = value.parse().ok(),
            "Node count" => info.znode_count = value.parse().ok(),
            "Connections" => info.connections = value.parse().ok(),
            _ => {}
        }
    }
    if info.mode == "unknown" {
        info.error = Some("no Mode in the srvr answer".to_string());
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srvr_answers() {
        let text = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.25/12\nReceived: 5\nSent: 4\nConnections: 2\nOutstanding: 1\nZxid: 0x5\nMode: follower\nNode count: 42\n";
        let s = parse_srvr("zk1:2181", text);
        assert_eq!(s.mode, "follower");
        assert_eq!(s.latency_avg_ms, Some(0.25));
        assert_eq!(s.outstanding, Some(1));
        assert_eq!(s.znode_count, Some(42));
        assert!(s.serving());
        let n = parse_srvr(
            "a:1",
            "This ZooKeeper instance is not currently serving requests\n",
        );
        assert_eq!(n.mode, "not serving");
        assert!(!n.serving());
        let h = parse_srvr("a:1", "Mode: <script>\n");
        assert_eq!(h.mode, "unknown");
        assert_eq!(
            servers_of("a:1,b:2/chroot/x"),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
    }
}
