//! Configuration: start-up settings (flags and env vars) and live config from ZooKeeper.
//!
//! Two layers, with one set of validation functions shared by both (and by `sensorctl`, which
//! validates before it writes):
//!
//! * [`NodeArgs`] — what `sensor-node` is started with. Every flag has an env var of the same
//!   meaning (`--sampling-period` / `SAMPLING_PERIOD`, ...). A bad value stops the process at
//!   start-up with a message naming the setting (clap exits with status 2).
//! * [`LiveConfig`] — the settings an operator may change while the fleet runs, watched in
//!   `/config/sampling_period` and `/config/api_url` by [`watch_live_config`]. A missing znode
//!   means "use the start-up default"; an invalid value is ignored with one warning and the
//!   last good value stays in force, so a typo can never stop the fleet.

use std::fmt;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;

use crate::layout;
use crate::zk::{DataWatch, NodeData, Session, SessionConfig};

pub use sensor_coord::config::{
    parse_api_url, parse_node_id, parse_sampling_period, parse_zk_hosts, ConfigError,
    DEFAULT_SAMPLING_PERIOD, MAX_SAMPLING_PERIOD, MIN_SAMPLING_PERIOD,
};

fn parse_session_timeout_ms(raw: &str) -> Result<u64, ConfigError> {
    let ms: u64 = raw.trim().parse().map_err(|_| {
        ConfigError::invalid("session_timeout_ms", raw, "not an integer of milliseconds")
    })?;
    if !(1_000..=120_000).contains(&ms) {
        return Err(ConfigError::invalid(
            "session_timeout_ms",
            raw,
            "must be between 1000 and 120000",
        ));
    }
    Ok(ms)
}

/// ZooKeeper's default `jute.maxbuffer`: the largest packet a server or a Java/kazoo client
/// accepts (0xfffff bytes). A `getChildren` answer larger than this cannot be read.
pub const JUTE_MAXBUFFER: usize = 0xfffff;
/// Bytes one outbox child name takes in a `getChildren` answer: a 4-byte length and the
/// 20-digit round number ([`layout::outbox_entry`]).
pub const OUTBOX_CHILD_WIRE_BYTES: usize = 4 + 20;
/// Most rounds the outbox may hold: its child list must fit one ZooKeeper answer, with 1 KiB
/// left for the reply header, the vector length and a stat (43 648).
pub const MAX_OUTBOX_LIMIT: usize = (JUTE_MAXBUFFER - 1024) / OUTBOX_CHILD_WIRE_BYTES;

fn parse_outbox_limit(raw: &str) -> Result<usize, ConfigError> {
    let n: usize = raw
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid("outbox_limit", raw, "not a positive integer"))?;
    if n == 0 {
        return Err(ConfigError::invalid(
            "outbox_limit",
            raw,
            "OUTBOX_LIMIT (--outbox-limit) must be at least 1",
        ));
    }
    if n > MAX_OUTBOX_LIMIT {
        return Err(ConfigError::invalid(
            "outbox_limit",
            raw,
            format!(
                "OUTBOX_LIMIT (--outbox-limit) must be at most {MAX_OUTBOX_LIMIT}: the outbox's \
                 child list ({OUTBOX_CHILD_WIRE_BYTES} bytes per round) must fit ZooKeeper's \
                 {JUTE_MAXBUFFER}-byte answer limit (jute.maxbuffer)"
            ),
        ));
    }
    Ok(n)
}

fn parse_conflicts_limit(raw: &str) -> Result<usize, ConfigError> {
    let n: usize = raw
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid("conflicts_limit", raw, "not a positive integer"))?;
    if n == 0 || n > MAX_OUTBOX_LIMIT {
        return Err(ConfigError::invalid(
            "conflicts_limit",
            raw,
            format!("CONFLICTS_LIMIT (--conflicts-limit) must be between 1 and {MAX_OUTBOX_LIMIT}: its child list must fit one ZooKeeper answer (jute.maxbuffer)"),
        ));
    }
    Ok(n)
}

/// Most sensors one `--virtual` process may run: each holds a session (a socket) and a few
/// tasks; beyond this a typo (an extra zero) would exhaust file descriptors.
pub const MAX_VIRTUAL_SENSORS: u32 = 5000;

fn parse_virtual_sensors(raw: &str) -> Result<u32, ConfigError> {
    let n: u32 = raw
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid("virtual", raw, "not a positive integer"))?;
    if !(1..=MAX_VIRTUAL_SENSORS).contains(&n) {
        return Err(ConfigError::invalid(
            "virtual",
            raw,
            format!("must be between 1 and {MAX_VIRTUAL_SENSORS}"),
        ));
    }
    Ok(n)
}

fn parse_api_token(raw: &str) -> Result<Secret, ConfigError> {
    let token = raw.trim();
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        // Never echo the token itself, even in an error.
        return Err(ConfigError::invalid(
            "api_token",
            "<redacted>",
            "must be non-empty, without spaces or control characters",
        ));
    }
    Ok(Secret::new(token))
}

pub use sensor_common::log::{init_tracing, LogFormat};
use sensor_common::Secret;

/// `sensor-node`'s start-up settings. Each flag has an env var of the same meaning; flags
/// win over env vars. Values are validated while parsing, so a bad one exits with status 2
/// and a message naming the flag (the one exception, a hostname unusable as id, is reported
/// by [`NodeArgs::resolve`]).
#[derive(Clone, Parser)]
#[command(
    name = "sensor-node",
    version,
    about = "One sensor of a ZooKeeper-coordinated fleet: takes a reading each round; the elected leader averages the round and delivers it to sensor-api exactly once.",
    after_help = "Live config: /config/sampling_period and /config/api_url in ZooKeeper override --sampling-period and --api-url while present (change them with `sensorctl config set`)."
)]
pub struct NodeArgs {
    /// Node id, used as the znode name /mediciones/<id> and the election identifier.
    /// Only A-Z a-z 0-9 . _ - [default: the hostname]
    #[arg(long, env = "NODE_ID", value_name = "ID", value_parser = parse_node_id)]
    pub id: Option<String>,

    /// ZooKeeper connect string: host:port[,host:port...][/chroot].
    #[arg(
        long = "zk",
        env = "ZOOKEEPER_HOSTS",
        value_name = "HOSTS",
        default_value = "127.0.0.1:2181",
        value_parser = parse_zk_hosts
    )]
    pub zk: String,

    /// Base URL of sensor-api (http or https), used until /config/api_url is set; API
    /// instances registered under /services/api are tried after it. [default: none]
    #[arg(long, env = "API_URL", value_name = "URL", value_parser = parse_api_url)]
    pub api_url: Option<String>,

    /// Seconds between rounds (decimal, > 0, <= 3600), used while /config/sampling_period
    /// is absent.
    #[arg(
        long,
        env = "SAMPLING_PERIOD",
        value_name = "SECONDS",
        default_value = "5",
        allow_negative_numbers = true,
        value_parser = parse_sampling_period
    )]
    pub sampling_period: Duration,

    /// Bearer token sent to sensor-api on every delivery. [default: none]
    #[arg(
        long,
        env = "API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        value_parser = parse_api_token
    )]
    pub api_token: Option<Secret>,

    /// ZooKeeper session timeout in milliseconds (1000..=120000); the server may clamp it.
    /// A leader that is cut off longer than this loses leadership.
    #[arg(
        long,
        env = "SESSION_TIMEOUT_MS",
        value_name = "MS",
        allow_negative_numbers = true,
        default_value = "10000",
        value_parser = parse_session_timeout_ms
    )]
    pub session_timeout_ms: u64,

    /// Most committed-but-undelivered rounds kept in ZooKeeper while the API is down; at
    /// the bound the leader stops opening rounds (back-pressure, never silent loss).
    /// 1..=43648: the outbox's child list must fit one ZooKeeper answer (jute.maxbuffer).
    #[arg(
        long,
        env = "OUTBOX_LIMIT",
        value_name = "ROUNDS",
        allow_negative_numbers = true,
        default_value = "1000",
        value_parser = parse_outbox_limit
    )]
    pub outbox_limit: usize,

    /// Most rounds kept under /rounds/conflicts (refused by the API for good, set aside for
    /// an operator); beyond it the oldest are dropped with an error log naming each round.
    /// 1..=43648 (the child list must fit one ZooKeeper answer).
    #[arg(
        long,
        env = "CONFLICTS_LIMIT",
        value_name = "ROUNDS",
        allow_negative_numbers = true,
        default_value = "1000",
        value_parser = parse_conflicts_limit
    )]
    pub conflicts_limit: usize,

    /// Virtual fleet: run N independent sensors in this process, ids <ID>-1 ..= <ID>-N,
    /// each with its own ZooKeeper session, reading, election contender and delivery (a
    /// load generator: the ZooKeeper side is real, the machine needs one process). 1..=5000.
    /// [default: off, one sensor with id <ID>]
    #[arg(
        long = "virtual",
        env = "VIRTUAL_SENSORS",
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = parse_virtual_sensors
    )]
    pub virtual_sensors: Option<u32>,

    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Validate the settings, print the effective configuration (token redacted) and exit 0.
    #[arg(long)]
    pub check_config: bool,
}

impl fmt::Debug for NodeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeArgs")
            .field("id", &self.id)
            .field("zk", &self.zk)
            .field("api_url", &self.api_url)
            .field("sampling_period", &self.sampling_period)
            .field("api_token", &self.api_token)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("outbox_limit", &self.outbox_limit)
            .field("conflicts_limit", &self.conflicts_limit)
            .field("virtual_sensors", &self.virtual_sensors)
            .field("log_format", &self.log_format)
            .field("check_config", &self.check_config)
            .finish()
    }
}

/// Where the node id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdSource {
    /// `--id` or `NODE_ID`.
    Explicit,
    /// Derived from the hostname (stable across restarts of the same host/container).
    Hostname,
}

/// The resolved start-up configuration: [`NodeArgs`] with the id filled in and the units
/// converted. `Debug` and [`NodeConfig::render`] never show the token.
#[derive(Clone)]
pub struct NodeConfig {
    /// The node id (a valid znode name).
    pub id: String,
    /// Whether the id was given or derived from the hostname.
    pub id_source: IdSource,
    /// ZooKeeper connect string.
    pub zk: String,
    /// Default API base URL (live `/config/api_url` overrides it).
    pub api_url: Option<String>,
    /// Default sampling period (live `/config/sampling_period` overrides it).
    pub sampling_period: Duration,
    /// Bearer token for the API.
    pub api_token: Option<Secret>,
    /// Requested ZooKeeper session timeout.
    pub session_timeout: Duration,
    /// Bound of the outbox (rounds).
    pub outbox_limit: usize,
    /// Bound of /rounds/conflicts (rounds); the oldest are dropped beyond it.
    pub conflicts_limit: usize,

    /// `Some(n)`: run a virtual fleet of `n` sensors `<id>-1 ..= <id>-n` in this process.
    pub virtual_sensors: Option<u32>,
    /// Log format.
    pub log_format: LogFormat,
}

impl NodeArgs {
    /// Fills in the defaults that need the environment (the id from the hostname) and
    /// converts units. Logs the derived id at info level, so call it after
    /// [`init_tracing`]. Fails with [`ConfigError::NoNodeId`] if no id was given and the
    /// hostname is unusable (treat like a bad flag: exit 2).
    pub fn resolve(&self) -> Result<NodeConfig, ConfigError> {
        let (id, id_source) = match &self.id {
            Some(id) => (id.clone(), IdSource::Explicit),
            None => {
                let host = hostname::get()
                    .map_err(|e| ConfigError::NoNodeId(format!("cannot read the hostname: {e}")))?;
                let host = host.to_str().ok_or_else(|| {
                    ConfigError::NoNodeId("the hostname is not valid UTF-8".to_string())
                })?;
                let id = parse_node_id(host).map_err(|e| {
                    ConfigError::NoNodeId(format!("the hostname is not a valid id: {e}"))
                })?;
                tracing::info!(id = %id, "no --id/NODE_ID given; using the hostname as node id");
                (id, IdSource::Hostname)
            }
        };
        if let Some(n) = self.virtual_sensors {
            // The longest derived id must still be a valid znode name.
            parse_node_id(&format!("{id}-{n}"))?;
        }
        Ok(NodeConfig {
            id,
            id_source,
            zk: self.zk.clone(),
            api_url: self.api_url.clone(),
            sampling_period: self.sampling_period,
            api_token: self.api_token.clone(),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            outbox_limit: self.outbox_limit,
            conflicts_limit: self.conflicts_limit,
            virtual_sensors: self.virtual_sensors,
            log_format: self.log_format,
        })
    }
}

impl NodeConfig {
    /// The live config to use while the `/config` znodes are absent.
    pub fn live_defaults(&self) -> LiveConfig {
        LiveConfig {
            sampling_period: self.sampling_period,
            api_url: self.api_url.clone(),
        }
    }

    /// The ZooKeeper session settings.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig::new(self.zk.clone(), self.session_timeout)
    }

    /// The effective configuration as aligned `key = value` lines (what `--check-config`
    /// prints). The token is shown as `<redacted>` (or `<none>`), never in clear.
    pub fn render(&self) -> String {
        let id_note = match self.id_source {
            IdSource::Explicit => "",
            IdSource::Hostname => "  (from hostname)",
        };
        let lines = [
            ("id", format!("{}{id_note}", self.id)),
            ("zk", self.zk.clone()),
            (
                "api_url",
                self.api_url.clone().unwrap_or_else(|| "<none>".to_string()),
            ),
            (
                "sampling_period",
                format!("{}s", self.sampling_period.as_secs_f64()),
            ),
            (
                "api_token",
                if self.api_token.is_some() {
                    "<redacted>"
                } else {
                    "<none>"
                }
                .to_string(),
            ),
            (
                "session_timeout_ms",
                self.session_timeout.as_millis().to_string(),
            ),
            ("outbox_limit", self.outbox_limit.to_string()),
            ("conflicts_limit", self.conflicts_limit.to_string()),
            (
                "virtual_sensors",
                self.virtual_sensors
                    .map_or_else(|| "<off>".to_string(), |n| n.to_string()),
            ),
            ("log_format", self.log_format.to_string()),
        ];
        let mut out = String::new();
        for (k, v) in lines {
            out.push_str(&format!("{k:<20} = {v}\n"));
        }
        out
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("id_source", &self.id_source)
            .field("zk", &self.zk)
            .field("api_url", &self.api_url)
            .field("sampling_period", &self.sampling_period)
            .field("api_token", &self.api_token)
            .field("session_timeout", &self.session_timeout)
            .field("outbox_limit", &self.outbox_limit)
            .field("conflicts_limit", &self.conflicts_limit)
            .field("virtual_sensors", &self.virtual_sensors)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// The settings that may change while the fleet runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// Time between rounds (what the leader waits before closing a round).
    pub sampling_period: Duration,
    /// Preferred API base URL (tried before discovered instances), if any.
    pub api_url: Option<String>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            sampling_period: DEFAULT_SAMPLING_PERIOD,
            api_url: None,
        }
    }
}

/// Watches `/config/sampling_period` and `/config/api_url` and publishes the effective
/// [`LiveConfig`]; the receiver starts at `defaults` and changes when a znode does.
///
/// Per key: a missing (or empty) znode means the default; a valid value applies at once
/// (logged at info); an invalid one is ignored with one `warn` naming the znode and value,
/// and the last good value stays in force. Survives reconnects and session expiry (the
/// underlying [`DataWatch`]es re-arm); the task ends when every receiver is dropped or the
/// session is closed. Must be called inside a tokio runtime.
pub fn watch_live_config(session: &Session, defaults: LiveConfig) -> watch::Receiver<LiveConfig> {
    let (tx, rx) = watch::channel(defaults.clone());
    let period = DataWatch::start(session, layout::CONFIG_SAMPLING_PERIOD);
    let url = DataWatch::start(session, layout::CONFIG_API_URL);
    tokio::spawn(run_live_config(tx, defaults, period, url));
    rx
}

/// What one znode says about one setting.
enum Reading<T> {
    /// Use the default (znode missing, empty, or not read yet).
    Default,
    /// A valid value.
    Value(T),
    /// An invalid value: keep the last good one.
    Invalid,
}

fn read_key<T>(
    znode: &'static str,
    data: &NodeData,
    parse: impl Fn(&str) -> Result<T, ConfigError>,
) -> Reading<T> {
    match data {
        NodeData::Unknown | NodeData::Missing => Reading::Default,
        NodeData::Present { data, .. } => match std::str::from_utf8(data) {
            Err(_) => {
                tracing::warn!(znode, value = %String::from_utf8_lossy(data), "invalid live config value (not UTF-8) ignored; keeping the last good value");
                Reading::Invalid
            }
            Ok(text) if text.trim().is_empty() => Reading::Default,
            Ok(text) => match parse(text) {
                Ok(v) => Reading::Value(v),
                Err(e) => {
                    tracing::warn!(znode, value = %text, error = %e, "invalid live config value ignored; keeping the last good value");
                    Reading::Invalid
                }
            },
        },
    }
}

async fn run_live_config(
    tx: watch::Sender<LiveConfig>,
    defaults: LiveConfig,
    mut period: watch::Receiver<NodeData>,
    mut url: watch::Receiver<NodeData>,
) {
    let mut period_changed = true;
    let mut url_changed = true;
    loop {
        if period_changed {
            let next = match read_key(
                layout::CONFIG_SAMPLING_PERIOD,
                &period.borrow_and_update(),
                parse_sampling_period,
            ) {
                Reading::Default => Some(defaults.sampling_period),
                Reading::Value(v) => Some(v),
                Reading::Invalid => None,
            };
            if let Some(next) = next {
                tx.send_if_modified(|cfg| {
                    if cfg.sampling_period == next {
                        return false;
                    }
                    tracing::info!(
                        znode = layout::CONFIG_SAMPLING_PERIOD,
                        old_s = cfg.sampling_period.as_secs_f64(),
                        new_s = next.as_secs_f64(),
                        "sampling period changed"
                    );
                    cfg.sampling_period = next;
                    true
                });
            }
        }
        if url_changed {
            let next = match read_key(
                layout::CONFIG_API_URL,
                &url.borrow_and_update(),
                parse_api_url,
            ) {
                Reading::Default => Some(defaults.api_url.clone()),
                Reading::Value(v) => Some(Some(v)),
                Reading::Invalid => None,
            };
            if let Some(next) = next {
                tx.send_if_modified(|cfg| {
                    if cfg.api_url == next {
                        return false;
                    }
                    tracing::info!(znode = layout::CONFIG_API_URL, old = ?cfg.api_url, new = ?next, "API URL changed");
                    cfg.api_url = next;
                    true
                });
            }
        }
        (period_changed, url_changed) = tokio::select! {
            r = period.changed() => {
                if r.is_err() { return; }
                (true, false)
            }
            r = url.changed() => {
                if r.is_err() { return; }
                (false, true)
            }
            _ = tx.closed() => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_redaction() {
        let args = NodeArgs::try_parse_from(["sensor-node", "--id", "n1", "--api-token", "s3cret"])
            .unwrap();
        let cfg = args.resolve().unwrap();
        assert_eq!(cfg.sampling_period, Duration::from_secs(5));
        assert_eq!(cfg.session_timeout, Duration::from_millis(10_000));
        assert_eq!(cfg.outbox_limit, 1000);
        assert!(!cfg.render().contains("s3cret"));
        assert!(!format!("{cfg:?}{args:?}").contains("s3cret"));
    }
}
