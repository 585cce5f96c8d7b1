//! `sensorctl`: read and change the live config, show the cluster's state, and manage the
//! rounds the leader set aside under `/rounds/conflicts` (list, purge).
//!
//! The binary (`src/bin/sensorctl.rs`) only parses [`CtlArgs`] and calls [`run`]; everything
//! else lives here so tests can reach it. Values are validated with the same functions the
//! nodes use ([`parse_sampling_period`], [`parse_api_url`]) **before** anything is written,
//! so `sensorctl` cannot write a value the fleet would ignore.
//!
//! Exit codes: 0 ok; 2 bad usage or invalid value (the message names the key); 1 ZooKeeper
//! unreachable within `--timeout`, or a ZooKeeper error.

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use zookeeper_client as zkc;

use crate::config::{
    parse_api_url, parse_sampling_period, parse_zk_hosts, ConfigError, DEFAULT_SAMPLING_PERIOD,
};
use crate::layout;
use crate::outbox::{conflict_entry, CONFLICTS};
use crate::round::RoundState;
use crate::zk::{self, children_opt, get_opt, Election, Session, SessionConfig, ZkError};

/// Command line of `sensorctl`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "sensorctl",
    version,
    about = "Operate a zk-sensors fleet: read/change the live config in ZooKeeper and show the cluster's state."
)]
pub struct CtlArgs {
    /// ZooKeeper connect string: host:port[,host:port...][/chroot].
    #[arg(
        long = "zk",
        env = "ZOOKEEPER_HOSTS",
        value_name = "HOSTS",
        default_value = "127.0.0.1:2181",
        value_parser = parse_zk_hosts,
        global = true
    )]
    pub zk: String,

    /// Give up (exit 1) if ZooKeeper does not answer within this many seconds.
    #[arg(
        long,
        env = "SENSORCTL_TIMEOUT",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = parse_timeout,
        global = true
    )]
    pub timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

fn parse_timeout(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "invalid timeout {raw:?}: expected seconds in (0, 3600]"
        )),
    }
}

/// `sensorctl` subcommands.
#[derive(Clone, Debug, Subcommand)]
pub enum CtlCommand {
    /// Read or change the live config (/config/*), applied by running nodes without restart.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show leader, live nodes and their last reading, round, counter, delivery, set-aside
    /// rounds and config.
    Status {
        /// Print JSON (stable field names) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rounds the API refused for good (it holds another value for them), set aside by the
    /// leader under /rounds/conflicts.
    #[command(subcommand)]
    Conflicts(ConflictsCommand),
}

/// `sensorctl conflicts ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum ConflictsCommand {
    /// List the set-aside rounds, oldest first, with the value the fleet computed.
    List {
        /// Print JSON (an array of the stored results) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete set-aside rounds once inspected: one (--round N) or all (--all).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["round", "all"])))]
    Purge {
        /// Delete this round only.
        #[arg(long, value_name = "N")]
        round: Option<u64>,
        /// Delete every set-aside round.
        #[arg(long)]
        all: bool,
    },
}

/// `sensorctl config ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print all keys (aligned table), or one key's effective value.
    Get {
        /// Only this key.
        key: Option<ConfigKey>,
    },
    /// Validate VALUE and write it (creates /config and the znode if missing).
    Set {
        /// The key to set.
        key: ConfigKey,
        /// The new value: seconds (e.g. 5, 0.5) or a http(s) URL.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Delete the key's znode: nodes fall back to their flag/env default.
    Unset {
        /// The key to remove.
        key: ConfigKey,
    },
}

/// A live config key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum ConfigKey {
    /// `/config/sampling_period`: seconds between rounds.
    #[value(name = "sampling_period")]
    #[serde(rename = "sampling_period")]
    SamplingPeriod,
    /// `/config/api_url`: preferred API base URL.
    #[value(name = "api_url")]
    #[serde(rename = "api_url")]
    ApiUrl,
}

impl ConfigKey {
    /// Every key, in display order.
    pub const ALL: [ConfigKey; 2] = [ConfigKey::SamplingPeriod, ConfigKey::ApiUrl];

    /// The key's name (`sampling_period`, `api_url`).
    pub fn name(self) -> &'static str {
        match self {
            ConfigKey::SamplingPeriod => "sampling_period",
            ConfigKey::ApiUrl => "api_url",
        }
    }

    /// The key's znode.
    pub fn znode(self) -> &'static str {
        match self {
            ConfigKey::SamplingPeriod => layout::CONFIG_SAMPLING_PERIOD,
            ConfigKey::ApiUrl => layout::CONFIG_API_URL,
        }
    }

    /// Validates `raw` for this key; returns the text to store.
    pub fn validate(self, raw: &str) -> Result<String, ConfigError> {
        match self {
            ConfigKey::SamplingPeriod => parse_sampling_period(raw).map(|_| raw.trim().to_string()),
            ConfigKey::ApiUrl => parse_api_url(raw),
        }
    }

    /// The sensor-node flag that gives the value while the znode is absent.
    pub fn flag(self) -> &'static str {
        match self {
            ConfigKey::SamplingPeriod => "sampling-period",
            ConfigKey::ApiUrl => "api-url",
        }
    }

    /// The value nodes use while the znode is absent, unless started with another one.
    pub fn builtin_default(self) -> Option<String> {
        match self {
            ConfigKey::SamplingPeriod => Some(DEFAULT_SAMPLING_PERIOD.as_secs_f64().to_string()),
            ConfigKey::ApiUrl => None,
        }
    }
}

/// Why a `sensorctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// An invalid value; nothing was written. Exit 2.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No ZooKeeper session within the timeout. Exit 1.
    #[error("ZooKeeper at {hosts} unreachable within {timeout:?}")]
    Unreachable {
        /// The connect string.
        hosts: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// ZooKeeper answered with an error, or stopped answering. Exit 1.
    #[error(transparent)]
    Zk(#[from] ZkError),
    /// The named round is not among the set-aside rounds. Exit 1.
    #[error("round {0} is not set aside under /rounds/conflicts")]
    NoSuchConflict(u64),
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Invalid(_) => 2,
            CtlError::Unreachable { .. } | CtlError::Zk(_) | CtlError::NoSuchConflict(_) => 1,
        }
    }
}

/// Where a config entry's effective value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// The znode holds a valid value.
    Zookeeper,
    /// The znode is absent (or empty): nodes use their flag/env default.
    Default,
    /// The znode holds an invalid value, which nodes ignore (they keep their last good one).
    Invalid,
}

/// One live config key as stored in ZooKeeper.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigEntry {
    /// Key name.
    pub key: ConfigKey,
    /// Its znode.
    pub znode: &'static str,
    /// The znode's data, `None` when absent.
    pub stored: Option<String>,
    /// Where the effective value comes from.
    pub source: ValueSource,
    /// The built-in default (nodes may have been started with another).
    pub default: Option<String>,
    /// Why the stored value is invalid, for [`ValueSource::Invalid`].
    pub error: Option<String>,
}

impl ConfigEntry {
    /// The entry for `key` given its znode's data (`None` = absent), judged with the
    /// nodes' own validation.
    pub fn from_stored(key: ConfigKey, stored: Option<String>) -> ConfigEntry {
        let (source, error) = match stored.as_deref().map(str::trim) {
            None | Some("") => (ValueSource::Default, None),
            Some(v) => match key.validate(v) {
                Ok(_) => (ValueSource::Zookeeper, None),
                Err(e) => (ValueSource::Invalid, Some(e.to_string())),
            },
        };
        ConfigEntry {
            key,
            znode: key.znode(),
            stored,
            source,
            default: key.builtin_default(),
            error,
        }
    }

    /// The value in force on nodes started with built-in defaults.
    pub fn effective(&self) -> Option<String> {
        match self.source {
            ValueSource::Zookeeper => self.stored.as_ref().map(|s| s.trim().to_string()),
            ValueSource::Default | ValueSource::Invalid => self.default.clone(),
        }
    }
}

/// One live node and its last reading.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeReading {
    /// Node id (the znode name under `/mediciones`).
    pub id: String,
    /// The reading, `None` if the data is not a number.
    pub reading: Option<f64>,
    /// The data as stored.
    pub raw: String,
    /// When the reading was written (znode mtime), RFC 3339 UTC.
    pub updated_at: Option<String>,
    /// Whether this reading counts for the round in progress, by the leader's own rule
    /// ([`crate::round::RoundState::counts`]: written after the previous round closed).
    /// `false` while `/rounds/last` is unreadable.
    pub fresh: bool,
}

/// Round bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundStatus {
    /// Whether `/barrier` is up (a round is running).
    pub open: bool,
    /// The running round's number (barrier data), if up and numbered.
    pub current: Option<u64>,
    /// `/rounds/last`: last committed round.
    pub last_committed: Option<u64>,
}

/// The set-aside rounds as `status` reports them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConflictsStatus {
    /// How many rounds are set aside (0 when `/rounds/conflicts` is absent).
    pub count: usize,
    /// The newest (highest) set-aside round.
    pub newest: Option<u64>,
}

/// The live config as `status` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigStatus {
    /// `/config/sampling_period`.
    pub sampling_period: ConfigEntry,
    /// `/config/api_url`.
    pub api_url: ConfigEntry,
}

/// What `sensorctl status` shows. Absent znodes are `None`, never errors. The JSON field
/// names are part of the CLI's interface: keep them stable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// First election contender, the leader.
    pub leader: Option<String>,
    /// All contenders' ids, in election order.
    pub contenders: Vec<String>,
    /// Live nodes (children of `/mediciones`), by id.
    pub nodes: Vec<NodeReading>,
    /// Round bookkeeping.
    pub round: RoundStatus,
    /// `/counter`: readings taken cluster-wide.
    pub counter: Option<i64>,
    /// `/rounds/delivered`: last round the API acknowledged.
    pub last_delivered: Option<u64>,
    /// Children of `/rounds/outbox`: committed rounds waiting for delivery.
    pub outbox_depth: Option<usize>,
    /// Rounds set aside under `/rounds/conflicts` (the API holds another value for them).
    pub conflicts: ConflictsStatus,
    /// The live config.
    pub config: ConfigStatus,
}

/// Starts a session and waits for it; [`CtlError::Unreachable`] after `timeout`.
pub async fn connect(hosts: &str, timeout: Duration) -> Result<Session, CtlError> {
    let session = Session::start(SessionConfig::new(hosts, Duration::from_secs(10)));
    match session.wait_connected_for(timeout).await {
        Ok(_) => Ok(session),
        Err(_) => {
            session.close();
            Err(CtlError::Unreachable {
                hosts: hosts.to_string(),
                timeout,
            })
        }
    }
}

async fn get_text(client: &zkc::Client, path: &str) -> Result<Option<String>, ZkError> {
    Ok(get_opt(client, path)
        .await?
        .map(|(d, _)| String::from_utf8_lossy(&d).trim().to_string()))
}

/// Reads every config key.
pub async fn config_get(
    session: &Session,
    timeout: Duration,
) -> Result<Vec<ConfigEntry>, CtlError> {
    let entries = zk::retrying(session, timeout, |client| async move {
        let mut out = Vec::new();
        for key in ConfigKey::ALL {
            out.push(ConfigEntry::from_stored(
                key,
                get_text(&client, key.znode()).await?,
            ));
        }
        Ok(out)
    })
    .await?;
    Ok(entries)
}

/// Validates `value` for `key` and writes it, creating `/config` and the znode if missing.
/// Returns the stored text. Nothing is written if the value is invalid.
pub async fn config_set(
    session: &Session,
    key: ConfigKey,
    value: &str,
    timeout: Duration,
) -> Result<String, CtlError> {
    let stored = key.validate(value)?;
    let data = stored.clone();
    zk::retrying(session, timeout, |client| {
        let data = data.clone();
        async move {
            zk::ensure_path(&client, layout::CONFIG).await?;
            match client
                .create(key.znode(), data.as_bytes(), &zk::persistent())
                .await
            {
                Ok(_) => Ok(()),
                Err(zkc::Error::NodeExists) => client
                    .set_data(key.znode(), data.as_bytes(), None)
                    .await
                    .map(|_| ())
                    .map_err(|e| ZkError::zk("set", key.znode(), e)),
                Err(e) => Err(ZkError::zk("create", key.znode(), e)),
            }
        }
    })
    .await?;
    Ok(stored)
}

/// Deletes the key's znode (absent already is fine). Returns whether it existed.
pub async fn config_unset(
    session: &Session,
    key: ConfigKey,
    timeout: Duration,
) -> Result<bool, CtlError> {
    let existed = zk::retrying(session, timeout, |client| async move {
        match client.delete(key.znode(), None).await {
            Ok(()) => Ok(true),
            Err(zkc::Error::NoNode) => Ok(false),
            Err(e) => Err(ZkError::zk("delete", key.znode(), e)),
        }
    })
    .await?;
    Ok(existed)
}

fn parse_u64(text: Option<String>) -> Option<u64> {
    text.and_then(|t| t.trim().parse().ok())
}

fn rfc3339_from_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Reads the cluster's state. Absent znodes are reported as absent.
pub async fn status(session: &Session, timeout: Duration) -> Result<ClusterStatus, CtlError> {
    let election = Election::new(session.clone(), layout::ELECTION, "sensorctl");
    let contenders = tokio::time::timeout(timeout, election.contenders())
        .await
        .map_err(|_| ZkError::Timeout)??;
    let status = zk::retrying(session, timeout, |client| {
        let contenders = contenders.clone();
        async move {
            // Read before the readings, so a commit in between only makes readings look stale.
            let round_state = match RoundState::read(&client).await {
                Ok(state) => Some(state),
                Err(ZkError::Malformed { .. }) => None,
                Err(e) => return Err(e),
            };
            let mut nodes = Vec::new();
            for id in children_opt(&client, layout::READINGS)
                .await?
                .unwrap_or_default()
            {
                // A node that leaves while we list is simply not shown.
                if let Some((data, stat)) = get_opt(&client, &layout::reading(&id)).await? {
                    let raw = String::from_utf8_lossy(&data).trim().to_string();
                    nodes.push(NodeReading {
                        id,
                        reading: raw.parse::<f64>().ok().filter(|v| v.is_finite()),
                        raw,
                        updated_at: rfc3339_from_ms(stat.mtime),
                        fresh: round_state.is_some_and(|r| r.counts(stat.mzxid)),
                    });
                }
            }
            let barrier = get_text(&client, layout::BARRIER).await?;
            let round = RoundStatus {
                open: barrier.is_some(),
                current: parse_u64(barrier),
                last_committed: parse_u64(get_text(&client, layout::ROUNDS_LAST).await?),
            };
            let counter = match get_opt(&client, layout::COUNTER).await? {
                Some((data, _)) => zk::counter::parse_counter(layout::COUNTER, &data).ok(),
                None => None,
            };
            let sampling_period = ConfigEntry::from_stored(
                ConfigKey::SamplingPeriod,
                get_text(&client, layout::CONFIG_SAMPLING_PERIOD).await?,
            );
            let api_url = ConfigEntry::from_stored(
                ConfigKey::ApiUrl,
                get_text(&client, layout::CONFIG_API_URL).await?,
            );
            Ok(ClusterStatus {
                leader: contenders.first().cloned(),
                contenders,
                nodes,
                round,
                counter,
                last_delivered: parse_u64(get_text(&client, layout::ROUNDS_DELIVERED).await?),
                outbox_depth: children_opt(&client, layout::OUTBOX)
                    .await?
                    .map(|c| c.len()),
                conflicts: {
                    let rounds = conflict_rounds(&client).await?;
                    ConflictsStatus {
                        count: rounds.len(),
                        newest: rounds.last().copied(),
                    }
                },
                config: ConfigStatus {
                    sampling_period,
                    api_url,
                },
            })
        }
    })
    .await?;
    Ok(status)
}

/// Round numbers under `/rounds/conflicts`, ascending (empty when it is absent).
async fn conflict_rounds(client: &zkc::Client) -> Result<Vec<u64>, ZkError> {
    let mut rounds: Vec<u64> = children_opt(client, CONFLICTS)
        .await?
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    rounds.sort_unstable();
    Ok(rounds)
}

/// One set-aside round: its number and the result the fleet computed (the outbox JSON, kept
/// as stored so fields added later still show).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// The round.
    pub round: u64,
    /// The stored result; a string when the data is not JSON.
    pub result: serde_json::Value,
}

/// Every set-aside round, oldest first. Entries that vanish while listing are skipped.
pub async fn conflicts_list(
    session: &Session,
    timeout: Duration,
) -> Result<Vec<Conflict>, CtlError> {
    let list = zk::retrying(session, timeout, |client| async move {
        let mut out = Vec::new();
        for round in conflict_rounds(&client).await? {
            if let Some((data, _)) = get_opt(&client, &conflict_entry(round)).await? {
                let result = serde_json::from_slice(&data).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&data).into_owned())
                });
                out.push(Conflict { round, result });
            }
        }
        Ok(out)
    })
    .await?;
    Ok(list)
}

/// Deletes set-aside round `round`, or all of them (`None`). Returns the rounds deleted;
/// [`CtlError::NoSuchConflict`] if the one named is not there.
pub async fn conflicts_purge(
    session: &Session,
    round: Option<u64>,
    timeout: Duration,
) -> Result<Vec<u64>, CtlError> {
    let deleted = zk::retrying(session, timeout, |client| async move {
        let rounds = match round {
            Some(r) => vec![r],
            None => conflict_rounds(&client).await?,
        };
        let mut deleted = Vec::new();
        for r in rounds {
            let path = conflict_entry(r);
            match client.delete(&path, None).await {
                Ok(()) => deleted.push(r),
                // Gone already (a retry after a lost answer, or another operator).
                Err(zkc::Error::NoNode) => {}
                Err(e) => return Err(ZkError::zk("delete", &path, e)),
            }
        }
        Ok(deleted)
    })
    .await?;
    match round {
        Some(r) if deleted.is_empty() => Err(CtlError::NoSuchConflict(r)),
        _ => Ok(deleted),
    }
}

/// `conflicts list` as text: one line per round.
pub fn render_conflicts(list: &[Conflict]) -> String {
    if list.is_empty() {
        return "no set-aside rounds\n".to_string();
    }
    let mut out = format!(
        "{:>10}  {:>10}  {:>7}  {:<12}  TAKEN AT\n",
        "ROUND", "VALUE", "SAMPLES", "LEADER"
    );
    for c in list {
        let field = |k: &str| -> String {
            match c.result.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => "?".to_string(),
            }
        };
        let _ = writeln!(
            out,
            "{:>10}  {:>10}  {:>7}  {:<12}  {}",
            c.round,
            field("value"),
            field("samples"),
            field("leader"),
            field("taken_at")
        );
    }
    out
}

const ABSENT: &str = "(absent)";

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(T::to_string)
        .unwrap_or_else(|| ABSENT.to_string())
}

fn config_line(e: &ConfigEntry) -> (String, String) {
    let value = match e.source {
        ValueSource::Zookeeper => opt(&e.stored),
        ValueSource::Default => match &e.default {
            Some(d) => format!(
                "znode absent: nodes use their --{0} / env value (built-in default {d})",
                e.key.flag()
            ),
            None => format!(
                "znode absent: nodes use their --{} / env value",
                e.key.flag()
            ),
        },
        ValueSource::Invalid => format!(
            "{} (INVALID, ignored by nodes: {})",
            opt(&e.stored),
            e.error.as_deref().unwrap_or("")
        ),
    };
    (e.key.name().to_string(), value)
}

/// `config get` as an aligned table.
pub fn render_config(entries: &[ConfigEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let (k, v) = config_line(e);
        let _ = writeln!(out, "{k:<16} {v}");
    }
    out
}

/// `status` as aligned text.
pub fn render_status(s: &ClusterStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<16} {v}");
    };
    line("leader", opt(&s.leader));
    line(
        "contenders",
        if s.contenders.is_empty() {
            "(none)".to_string()
        } else {
            s.contenders.join(", ")
        },
    );
    let round = match (s.round.open, s.round.current) {
        (true, Some(n)) => format!("{n} (open)"),
        (true, None) => "open (unnumbered)".to_string(),
        (false, _) => "none open".to_string(),
    };
    line("round", round);
    line("last committed", opt(&s.round.last_committed));
    line("last delivered", opt(&s.last_delivered));
    line(
        "outbox",
        s.outbox_depth
            .map(|n| format!("{n} round(s) waiting for delivery"))
            .unwrap_or_else(|| ABSENT.to_string()),
    );
    line(
        "conflicts",
        match s.conflicts.newest {
            Some(newest) => format!(
                "{} round(s) set aside, newest {newest} (sensorctl conflicts list)",
                s.conflicts.count
            ),
            None => "none".to_string(),
        },
    );
    line("counter", opt(&s.counter));
    for e in [&s.config.sampling_period, &s.config.api_url] {
        let (k, v) = config_line(e);
        line(&format!("config {k}"), v);
    }
    let _ = writeln!(out, "nodes            {} live", s.nodes.len());
    if !s.nodes.is_empty() {
        let width = s.nodes.iter().map(|n| n.id.len()).max().unwrap_or(2).max(2);
        let _ = writeln!(out, "  {:<width$}  {:>8}  UPDATED", "ID", "READING");
        for n in &s.nodes {
            let reading = match n.reading {
                Some(v) => format!("{v:.2}"),
                None => format!("{:?}", n.raw),
            };
            let leader = if s.leader.as_deref() == Some(n.id.as_str()) {
                "  (leader)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:>8}  {}{leader}",
                n.id,
                reading,
                n.updated_at.as_deref().unwrap_or("?")
            );
        }
    }
    out
}

/// Runs one `sensorctl` command and returns what to print on stdout. Invalid values are
/// refused before connecting, so they exit 2 even when ZooKeeper is down.
pub async fn run(args: CtlArgs) -> Result<String, CtlError> {
    if let CtlCommand::Config(ConfigCommand::Set { key, value }) = &args.command {
        key.validate(value)?;
    }
    let session = connect(&args.zk, args.timeout).await?;
    let result = run_connected(&session, &args).await;
    session.close();
    result
}

async fn run_connected(session: &Session, args: &CtlArgs) -> Result<String, CtlError> {
    let timeout = args.timeout;
    match &args.command {
        CtlCommand::Config(ConfigCommand::Get { key: None }) => {
            Ok(render_config(&config_get(session, timeout).await?))
        }
        CtlCommand::Config(ConfigCommand::Get { key: Some(key) }) => {
            let entries = config_get(session, timeout).await?;
            let entry = entries.iter().find(|e| e.key == *key);
            let value = entry.and_then(ConfigEntry::effective);
            if let Some(e) = entry {
                match e.source {
                    ValueSource::Zookeeper => {}
                    ValueSource::Default => eprintln!(
                        "note: {} is absent; nodes use their --{}/env default",
                        e.znode,
                        key.name().replace('_', "-")
                    ),
                    ValueSource::Invalid => eprintln!(
                        "warning: {} holds an invalid value that nodes ignore: {}",
                        e.znode,
                        e.error.as_deref().unwrap_or("")
                    ),
                }
            }
            Ok(value.map(|v| format!("{v}\n")).unwrap_or_default())
        }
        CtlCommand::Config(ConfigCommand::Set { key, value }) => {
            let stored = config_set(session, *key, value, timeout).await?;
            Ok(format!("{} = {stored}\n", key.name()))
        }
        CtlCommand::Config(ConfigCommand::Unset { key }) => {
            let existed = config_unset(session, *key, timeout).await?;
            Ok(if existed {
                format!("{} removed; nodes use their default\n", key.name())
            } else {
                format!("{} was not set\n", key.name())
            })
        }
        CtlCommand::Conflicts(ConflictsCommand::List { json }) => {
            let list = conflicts_list(session, timeout).await?;
            if *json {
                let text = serde_json::to_string_pretty(&list).unwrap_or_default();
                Ok(format!("{text}\n"))
            } else {
                Ok(render_conflicts(&list))
            }
        }
        CtlCommand::Conflicts(ConflictsCommand::Purge { round, .. }) => {
            let deleted = conflicts_purge(session, *round, timeout).await?;
            Ok(format!(
                "{} set-aside round(s) deleted{}\n",
                deleted.len(),
                match deleted.as_slice() {
                    [] => String::new(),
                    [one] => format!(": {one}"),
                    [first, .., last] => format!(": {first}..{last}"),
                }
            ))
        }
        CtlCommand::Status { json } => {
            let s = status(session, timeout).await?;
            if *json {
                // Serialising plain structs with string keys cannot fail.
                let text = serde_json::to_string_pretty(&s).unwrap_or_default();
                Ok(format!("{text}\n"))
            } else {
                Ok(render_status(&s))
            }
        }
    }
}
