//! Configuration: every setting is a CLI flag and an environment variable of the same
//! meaning (the flag wins). [`Config::validate`] checks what clap cannot, and names the bad
//! setting in its error so `--check-config` can tell an operator exactly what to fix.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sensor_common::Secret;

/// Command line of the `sensor-api` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sensor-api",
    version,
    about = "Stores the sensor cluster's round averages in Redis; serves the history page, JSON API, health and metrics"
)]
pub struct Cli {
    /// Optional subcommand; without one the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Parse and validate the configuration, print the effective values, and exit
    /// (0 when valid; non-zero with a message naming the bad setting otherwise).
    #[arg(long)]
    pub check_config: bool,
    /// The server settings.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe a running instance's /readyz; exit 0 when ready, 1 otherwise (for container
    /// health checks without curl).
    Healthcheck {
        /// URL to probe [default: http://127.0.0.1:PORT/readyz, PORT from --listen].
        #[arg(long, env = "HEALTHCHECK_URL")]
        url: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Inspect or reset the fencing tokens in Redis (uses --redis/REDIS_URL and
    /// --key-prefix/KEY_PREFIX; the server need not run). See `sensor_api::fence`.
    Fence {
        /// What to do.
        #[command(subcommand)]
        action: FenceAction,
    },
}

/// `sensor-api fence ...`.
#[derive(Debug, Subcommand)]
pub enum FenceAction {
    /// Print `<cluster> <highest accepted fencing token>` per cluster (0 = none).
    Show {
        /// Only this cluster (`default` = deliveries without a cluster id).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Set a cluster's fence to --to (default 0: cleared, any token accepted until the
    /// next delivery raises it again); prints the previous and the new value.
    Reset {
        /// The cluster whose fence to reset (`default` for deliveries without an id).
        #[arg(long)]
        cluster: String,
        /// The new fence (e.g. the current leader's token from `sensorctl status`).
        #[arg(long, default_value_t = 0)]
        to: u64,
    },
}

/// Log line format (shared by every binary: logs go to stderr).
pub use sensor_common::LogFormat;

/// Server settings.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Redis URL (redis://host:port/db).
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,
    /// Bearer token required for writes (POST /api/v1/averages, GET /nuevo), at least 16
    /// characters. Unset = writes are open.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// ZooKeeper connect string (host:port,...[/chroot]); when set, this instance registers
    /// its advertised URL as an ephemeral znode under /services/api, and refuses fencing
    /// tokens above the ensemble's current zxid (forged: no leader can hold them). Unset:
    /// every holder of the write token is trusted with any fencing token.
    #[arg(long, env = "ZOOKEEPER_HOSTS")]
    pub zookeeper_hosts: Option<String>,
    /// URL under which nodes reach this instance [default: http://HOSTNAME:PORT].
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Name of this instance's znode under /services/api [default: HOSTNAME-PORT].
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Prefix of every Redis key (lets deployments share one Redis).
    #[arg(long, env = "KEY_PREFIX", default_value = "zk-sensors")]
    pub key_prefix: String,
    /// Delete averages older than this (e.g. 30d, 12h). Unset = keep forever.
    #[arg(long, env = "RETENTION_MAX_AGE", value_parser = parse_duration)]
    pub retention_max_age: Option<Duration>,
    /// Keep at most this many averages (the oldest go first). Unset = no limit.
    #[arg(long, env = "RETENTION_MAX_COUNT")]
    pub retention_max_count: Option<u64>,
    /// How often retention runs.
    #[arg(long, env = "RETENTION_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub retention_interval: Duration,
    /// Requests taking longer are answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// One Redis command taking longer counts as Redis being unavailable.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// A connection that has not sent a complete request header this long after it began
    /// waiting for one (also an idle keep-alive connection) is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most expensive reads (/grafana, /prom, the history page, JSON lists and stats) run
    /// at once; more wait (within the request timeout), so health checks and ingest stay
    /// fast under load. Redis runs one script at a time, so more rarely adds throughput
    /// and mostly queues ingest behind reads inside Redis.
    #[arg(long, env = "MAX_CONCURRENT_READS", default_value_t = 2)]
    pub max_concurrent_reads: usize,
    /// Refuse averages whose taken_at is further ahead of this server's clock.
    #[arg(long, env = "TAKEN_AT_MAX_AHEAD", default_value = "5m", value_parser = parse_duration)]
    pub taken_at_max_ahead: Duration,
    /// Refuse averages whose taken_at is older than this [default: RETENTION_MAX_AGE; unset
    /// too = any age after 1970].
    #[arg(long, env = "TAKEN_AT_MAX_AGE", value_parser = parse_duration)]
    pub taken_at_max_age: Option<Duration>,
}

/// Shortest accepted `API_TOKEN` (16 characters, e.g. `openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_LEN: usize = 16;

/// A setting that parsed but makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    /// The flag (and env var) at fault, e.g. `--redis / REDIS_URL`.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// Parses `250ms`, `10s`, `5m`, `2h`, `30d`, `1m30s`, or a bare number of seconds.
pub use sensor_common::duration::parse_duration;

impl Config {
    /// Checks the settings clap cannot check alone. Never touches the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let redis_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|p| self.redis_url.starts_with(p));
        if !redis_ok {
            return Err(invalid(
                "--redis / REDIS_URL",
                format!(
                    "{:?} must start with redis:// (or rediss://, unix://)",
                    self.redis_url
                ),
            ));
        }
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            return Err(invalid("--redis / REDIS_URL", e.to_string()));
        }
        if let Some(token) = self.api_token.as_ref().map(Secret::expose) {
            if token.trim().is_empty() {
                return Err(invalid(
                    "--api-token / API_TOKEN",
                    "is set but empty (unset it to leave writes open)",
                ));
            }
            if token.chars().count() < MIN_TOKEN_LEN {
                return Err(invalid(
                    "--api-token / API_TOKEN",
                    format!(
                        "is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 16`)",
                        token.chars().count()
                    ),
                ));
            }
        }
        if let Some(hosts) = &self.zookeeper_hosts {
            let connect = hosts.split('/').next().unwrap_or("");
            let bad = connect.is_empty()
                || connect.split(',').any(|h| {
                    h.rsplit_once(':')
                        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                });
            if bad {
                return Err(invalid(
                    "--zookeeper-hosts / ZOOKEEPER_HOSTS",
                    format!("{hosts:?} must look like host:port[,host:port...][/chroot]"),
                ));
            }
        }
        if let Some(url) = &self.advertise_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(invalid(
                    "--advertise-url / ADVERTISE_URL",
                    format!("{url:?} must be an http:// or https:// URL"),
                ));
            }
        }
        if let Some(id) = &self.instance_id {
            if id.is_empty() || id.contains('/') {
                return Err(invalid(
                    "--instance-id / INSTANCE_ID",
                    "must be non-empty and contain no '/'",
                ));
            }
        }
        if self.key_prefix.is_empty() {
            return Err(invalid("--key-prefix / KEY_PREFIX", "must not be empty"));
        }
        if self.retention_max_age.is_some_and(|d| d.is_zero()) {
            return Err(invalid(
                "--retention-max-age / RETENTION_MAX_AGE",
                "must be positive",
            ));
        }
        if self.retention_max_count == Some(0) {
            return Err(invalid(
                "--retention-max-count / RETENTION_MAX_COUNT",
                "must be at least 1",
            ));
        }
        for (setting, d) in [
            (
                "--retention-interval / RETENTION_INTERVAL",
                self.retention_interval,
            ),
            ("--request-timeout / REQUEST_TIMEOUT", self.request_timeout),
            ("--redis-timeout / REDIS_TIMEOUT", self.redis_timeout),
            (
                "--header-read-timeout / HEADER_READ_TIMEOUT",
                self.header_read_timeout,
            ),
        ] {
            if d.is_zero() {
                return Err(invalid(setting, "must be positive"));
            }
        }
        if self.taken_at_max_age.is_some_and(|d| d.is_zero()) {
            return Err(invalid(
                "--taken-at-max-age / TAKEN_AT_MAX_AGE",
                "must be positive",
            ));
        }
        for (setting, n) in [
            ("--max-connections / MAX_CONNECTIONS", self.max_connections),
            (
                "--max-concurrent-reads / MAX_CONCURRENT_READS",
                self.max_concurrent_reads,
            ),
        ] {
            if n == 0 {
                return Err(invalid(setting, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The `taken_at` window ingest accepts.
    pub fn plausibility(&self) -> crate::routes::ingest::Plausibility {
        crate::routes::ingest::Plausibility {
            max_ahead: self.taken_at_max_ahead,
            max_age: self.taken_at_max_age.or(self.retention_max_age),
        }
    }

    /// The Redis URL with any password replaced, for logs.
    pub fn redis_url_redacted(&self) -> String {
        redact_url(&self.redis_url)
    }

    /// This machine's host name (shown on the history page, default instance id).
    pub fn hostname() -> String {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".to_string())
    }

    /// The URL registered in ZooKeeper.
    pub fn effective_advertise_url(&self) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", Config::hostname(), self.listen.port()))
    }

    /// The znode name under /services/api.
    pub fn effective_instance_id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", Config::hostname(), self.listen.port()))
    }
}

fn show_duration(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{}ms", d.as_millis()),
        None => "unset".to_string(),
    }
}

/// The effective configuration, one `NAME=value` line per setting; the token is redacted.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "LISTEN_ADDR={}", self.listen)?;
        writeln!(f, "REDIS_URL={}", redact_url(&self.redis_url))?;
        writeln!(
            f,
            "API_TOKEN={}",
            if self.api_token.is_some() {
                "<set, redacted>"
            } else {
                "unset (writes are open)"
            }
        )?;
        writeln!(
            f,
            "ZOOKEEPER_HOSTS={}",
            self.zookeeper_hosts
                .as_deref()
                .unwrap_or("unset (no registration)")
        )?;
        writeln!(f, "ADVERTISE_URL={}", self.effective_advertise_url())?;
        writeln!(f, "INSTANCE_ID={}", self.effective_instance_id())?;
        writeln!(f, "KEY_PREFIX={}", self.key_prefix)?;
        writeln!(
            f,
            "RETENTION_MAX_AGE={}",
            show_duration(self.retention_max_age)
        )?;
        writeln!(
            f,
            "RETENTION_MAX_COUNT={}",
            self.retention_max_count
                .map_or("unset".to_string(), |c| c.to_string())
        )?;
        writeln!(
            f,
            "RETENTION_INTERVAL={}",
            show_duration(Some(self.retention_interval))
        )?;
        writeln!(
            f,
            "REQUEST_TIMEOUT={}",
            show_duration(Some(self.request_timeout))
        )?;
        writeln!(
            f,
            "REDIS_TIMEOUT={}",
            show_duration(Some(self.redis_timeout))
        )?;
        writeln!(
            f,
            "SHUTDOWN_GRACE={}",
            show_duration(Some(self.shutdown_grace))
        )?;
        writeln!(f, "LOG_FORMAT={:?}", self.log_format)?;
        writeln!(
            f,
            "HEADER_READ_TIMEOUT={}",
            show_duration(Some(self.header_read_timeout))
        )?;
        writeln!(f, "MAX_CONNECTIONS={}", self.max_connections)?;
        writeln!(f, "MAX_CONCURRENT_READS={}", self.max_concurrent_reads)?;
        writeln!(
            f,
            "TAKEN_AT_MAX_AHEAD={}",
            show_duration(Some(self.taken_at_max_ahead))
        )?;
        write!(
            f,
            "TAKEN_AT_MAX_AGE={}",
            show_duration(self.plausibility().max_age)
        )
    }
}

/// Hides a password in `redis://user:password@host` URLs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn url_password_is_redacted() {
        assert_eq!(
            redact_url("redis://:secret@redis:6379/0"),
            "redis://<redacted>@redis:6379/0"
        );
        assert_eq!(redact_url("redis://redis:6379/"), "redis://redis:6379/");
    }
}
