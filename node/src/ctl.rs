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

use clap::{Parser, Subcommand};
use serde::Serialize;
use zookeeper_client as zkc;

use sensor_common::duration::parse_seconds;
use sensor_coord::config::{parse_zk_hosts, ConfigError};
use sensor_coord::layout::{self, conflict_entry};
use sensor_coord::status::{self as state, Unreachable};
pub use sensor_coord::status::{
    conflict_rounds, status, ClusterStatus, ConfigEntry, ConfigKey, ConfigStatus, ConflictsStatus,
    NodeReading, RoundStatus, ValueSource,
};
use sensor_coord::zk::{self, get_opt, Session, ZkError};

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
        value_parser = parse_seconds,
        global = true
    )]
    pub timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
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

/// Why a `sensorctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// An invalid value; nothing was written. Exit 2.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No ZooKeeper session within the timeout. Exit 1.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
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
            CtlError::Unreachable(_) | CtlError::Zk(_) | CtlError::NoSuchConflict(_) => 1,
        }
    }
}

/// Starts a session and waits for it; [`CtlError::Unreachable`] after `timeout`.
pub async fn connect(hosts: &str, timeout: Duration) -> Result<Session, CtlError> {
    Ok(state::connect(hosts, timeout).await?)
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
                state::get_text(&client, key.znode()).await?,
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
        zk::delete_opt(&client, key.znode(), None).await
    })
    .await?;
    Ok(existed)
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
            // Absent: gone already (a retry after a lost answer, or another operator).
            if zk::delete_opt(&client, &conflict_entry(r), None).await? {
                deleted.push(r);
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
