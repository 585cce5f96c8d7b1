//! Configuration: every setting is a CLI flag and an environment variable of the same
//! meaning (the flag wins), as in `sensor-api`. [`Config::validate`] checks what clap cannot
//! and names the bad setting.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sensor_common::LogFormat;
use sensor_coord::config::{parse_api_url, parse_zk_hosts};

/// Command line of the `sensor-dashboard` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sensor-dashboard",
    version,
    about = "Live web dashboard of a zk-sensors cluster: ZooKeeper ensemble, leader, sensors, rounds, recent averages, events and the live config"
)]
pub struct Cli {
    /// Optional subcommand; without one the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Validate the configuration, print the effective values (token redacted) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// The server settings.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe a running dashboard's /healthz; exit 0 when it answers 200, 1 otherwise (for
    /// container health checks without curl).
    Healthcheck {
        /// URL to probe [default: http://127.0.0.1:PORT/healthz, PORT from --listen].
        #[arg(long, env = "HEALTHCHECK_URL")]
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value = "3", value_parser = parse_seconds)]
        timeout: Duration,
    },
}

/// Server settings.
#[derive(Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub listen: SocketAddr,
    /// ZooKeeper connect string: host:port[,host:port...][/chroot]. Each host is also probed
    /// with the srvr four-letter word for the ensemble picture.
    #[arg(
        long = "zookeeper-hosts",
        env = "ZOOKEEPER_HOSTS",
        value_name = "HOSTS",
        default_value = "127.0.0.1:2181",
        value_parser = parse_zk_hosts
    )]
    pub zookeeper_hosts: String,
    /// Base URL of sensor-api, for the recent-averages chart. Unset: the live
    /// /config/api_url, else the first instance registered under /services/api.
    #[arg(long, env = "API_URL", value_name = "URL", value_parser = parse_api_url)]
    pub api_url: Option<String>,
    /// Base URL of sensor-api as the operator's browser reaches it (history-page link)
    /// [default: the API URL in use].
    #[arg(long, env = "API_PUBLIC_URL", value_name = "URL", value_parser = parse_api_url)]
    pub api_public_url: Option<String>,
    /// Token required to change the live config from the page. Unset or empty: the page
    /// is read-only (and says so).
    #[arg(
        long,
        env = "DASHBOARD_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Grafana URL, shown as a link (optional).
    #[arg(long, env = "GRAFANA_URL", value_name = "URL", value_parser = parse_api_url)]
    pub grafana_url: Option<String>,
    /// How often the cluster state is re-read from ZooKeeper, in seconds.
    #[arg(long, env = "REFRESH_INTERVAL", value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    pub refresh_interval: Duration,
    /// A ZooKeeper read (or four-letter word) taking longer counts as ZooKeeper unreachable,
    /// in seconds.
    #[arg(long, env = "ZK_TIMEOUT", value_name = "SECONDS", default_value = "3", value_parser = parse_seconds)]
    pub zk_timeout: Duration,
    /// Requests taking longer are answered 408, in seconds (the event stream is exempt
    /// once its headers are sent).
    #[arg(long, env = "REQUEST_TIMEOUT", value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub request_timeout: Duration,
    /// Log format (filter with RUST_LOG).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Parses a positive number of seconds (`1`, `0.5`) up to one hour.
pub use sensor_common::duration::parse_seconds;

/// A setting that parsed but makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    /// The flag (and env var) at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl Config {
    /// The admin token, `None` when unset or empty (compose files pass an empty value
    /// for "not configured").
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|t| !t.is_empty())
    }

    /// Checks what clap cannot. Never touches the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = self.admin_token() {
            if token.trim().is_empty() || token.chars().any(char::is_control) {
                return Err(ConfigError {
                    setting: "--admin-token / DASHBOARD_ADMIN_TOKEN",
                    problem:
                        "is set but empty or has control characters (unset it for a read-only page)"
                            .to_string(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("zookeeper_hosts", &self.zookeeper_hosts)
            .field("api_url", &self.api_url)
            .field("api_public_url", &self.api_public_url)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("grafana_url", &self.grafana_url)
            .field("refresh_interval", &self.refresh_interval)
            .field("zk_timeout", &self.zk_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// The effective configuration, one `NAME=value` line per setting; the token is redacted.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_string());
        writeln!(f, "LISTEN_ADDR={}", self.listen)?;
        writeln!(f, "ZOOKEEPER_HOSTS={}", self.zookeeper_hosts)?;
        writeln!(
            f,
            "API_URL={}",
            opt(&self.api_url, "unset (live config, then discovery)")
        )?;
        writeln!(
            f,
            "API_PUBLIC_URL={}",
            opt(&self.api_public_url, "unset (the API URL in use)")
        )?;
        writeln!(
            f,
            "DASHBOARD_ADMIN_TOKEN={}",
            if self.admin_token().is_some() {
                "<set, redacted>"
            } else {
                "unset (read-only)"
            }
        )?;
        writeln!(f, "GRAFANA_URL={}", opt(&self.grafana_url, "unset"))?;
        writeln!(
            f,
            "REFRESH_INTERVAL={}s",
            self.refresh_interval.as_secs_f64()
        )?;
        writeln!(f, "ZK_TIMEOUT={}s", self.zk_timeout.as_secs_f64())?;
        writeln!(f, "REQUEST_TIMEOUT={}s", self.request_timeout.as_secs_f64())?;
        write!(f, "LOG_FORMAT={:?}", self.log_format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_redaction() {
        let cli = Cli::try_parse_from(["sensor-dashboard", "--admin-token", "s3cret"]).unwrap();
        assert_eq!(cli.config.listen.port(), 8081);
        assert!(cli.config.validate().is_ok());
        let shown = format!("{}{:?}", cli.config, cli.config);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(Cli::try_parse_from(["sensor-dashboard", "--zookeeper-hosts", "zk"]).is_err());
        assert!(Cli::try_parse_from(["sensor-dashboard", "--api-url", "ftp://x"]).is_err());
        assert!(Cli::try_parse_from(["sensor-dashboard", "--refresh-interval", "0"]).is_err());
        let blank = Cli::try_parse_from(["sensor-dashboard", "--admin-token", " "]).unwrap();
        assert!(blank.config.validate().is_err());
        let empty = Cli::try_parse_from(["sensor-dashboard", "--admin-token", ""]).unwrap();
        assert!(empty.config.validate().is_ok());
        assert_eq!(empty.config.admin_token(), None, "empty = read-only");
    }
}
