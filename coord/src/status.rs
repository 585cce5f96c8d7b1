//! The cluster-state reader: what `sensorctl status` prints, what the dashboard shows and
//! what the chaos suite observes, read the same way for all three.
//!
//! [`status`] reads every znode it reports **concurrently**: the client pipelines the
//! requests over the session's one connection, so a read costs a few round trips whatever
//! the fleet's size, instead of one round trip per sensor. Absent znodes are reported as
//! absent, never as errors; a znode that vanishes between the listing and its read (a
//! sensor leaving) is simply not shown. The config keys are judged with the nodes' own
//! validation ([`crate::config`]), so every reader agrees on what is in force.

use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;
use zookeeper_client as zkc;

use crate::config::{parse_api_url, parse_sampling_period, ConfigError, DEFAULT_SAMPLING_PERIOD};
use crate::layout;
use crate::rounds::RoundState;
use crate::zk::{
    self, children_opt, get_many_opt, get_opt, Election, Session, SessionConfig, ZkError,
};

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
    /// ([`RoundState::counts`]: written after the previous round closed).
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

/// ZooKeeper did not answer within the timeout given to [`connect`].
#[derive(Debug, thiserror::Error)]
#[error("ZooKeeper at {hosts} unreachable within {timeout:?}")]
pub struct Unreachable {
    /// The connect string.
    pub hosts: String,
    /// How long we waited.
    pub timeout: Duration,
}

/// Starts a session for a short-lived reader (sensorctl, the chaos observer) and waits
/// for it; [`Unreachable`] after `timeout` (the session is closed again).
pub async fn connect(hosts: &str, timeout: Duration) -> Result<Session, Unreachable> {
    let session = Session::start(SessionConfig::new(hosts, Duration::from_secs(10)));
    match session.wait_connected_for(timeout).await {
        Ok(_) => Ok(session),
        Err(_) => {
            session.close();
            Err(Unreachable {
                hosts: hosts.to_string(),
                timeout,
            })
        }
    }
}

/// A znode's data as trimmed text; `None` if it does not exist.
pub async fn get_text(client: &zkc::Client, path: &str) -> Result<Option<String>, ZkError> {
    Ok(get_opt(client, path)
        .await?
        .map(|(d, _)| String::from_utf8_lossy(&d).trim().to_string()))
}

fn parse_u64(text: Option<String>) -> Option<u64> {
    text.and_then(|t| t.trim().parse().ok())
}

fn rfc3339_from_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Reads the cluster's state, retrying after connection trouble for up to `timeout`.
/// Absent znodes are reported as absent.
pub async fn status(session: &Session, timeout: Duration) -> Result<ClusterStatus, ZkError> {
    let election = Election::new(session.clone(), layout::ELECTION, "sensorctl");
    let (contenders, status) = tokio::try_join!(
        async {
            tokio::time::timeout(timeout, election.contenders())
                .await
                .map_err(|_| ZkError::Timeout)?
        },
        zk::retrying(session, timeout, |client| async move {
            read_status(&client).await
        }),
    )?;
    Ok(ClusterStatus {
        leader: contenders.first().cloned(),
        contenders,
        ..status
    })
}

/// One pass of [`status`] (without the contenders): every read is issued at once
/// (pipelined), then assembled.
async fn read_status(client: &zkc::Client) -> Result<ClusterStatus, ZkError> {
    // `/rounds/last` is read before the readings are listed (the two reads are sent in
    // that order on one connection, which ZooKeeper answers in order), so a commit in
    // between only makes readings look stale, never fresh.
    let (round_state, readings) = tokio::try_join!(
        async {
            match RoundState::read(client).await {
                Ok(state) => Ok(Some(state)),
                Err(ZkError::Malformed { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        },
        read_readings(client),
    )?;
    let (barrier, last_committed, counter, sampling_period, api_url, delivered, outbox, conflicts) =
        tokio::try_join!(
            get_text(client, layout::BARRIER),
            get_text(client, layout::ROUNDS_LAST),
            get_opt(client, layout::COUNTER),
            get_text(client, layout::CONFIG_SAMPLING_PERIOD),
            get_text(client, layout::CONFIG_API_URL),
            get_text(client, layout::ROUNDS_DELIVERED),
            children_opt(client, layout::OUTBOX),
            conflict_rounds(client),
        )?;
    let nodes = readings
        .into_iter()
        .map(|(id, data, stat)| {
            let raw = String::from_utf8_lossy(&data).trim().to_string();
            NodeReading {
                id,
                reading: raw.parse::<f64>().ok().filter(|v| v.is_finite()),
                raw,
                updated_at: rfc3339_from_ms(stat.mtime),
                fresh: round_state.is_some_and(|r| r.counts(stat.mzxid)),
            }
        })
        .collect();
    Ok(ClusterStatus {
        leader: None,
        contenders: Vec::new(),
        nodes,
        round: RoundStatus {
            open: barrier.is_some(),
            current: parse_u64(barrier),
            last_committed: parse_u64(last_committed),
        },
        counter: counter
            .and_then(|(data, _)| zk::counter::parse_counter(layout::COUNTER, &data).ok()),
        last_delivered: parse_u64(delivered),
        outbox_depth: outbox.map(|c| c.len()),
        conflicts: ConflictsStatus {
            count: conflicts.len(),
            newest: conflicts.last().copied(),
        },
        config: ConfigStatus {
            sampling_period: ConfigEntry::from_stored(ConfigKey::SamplingPeriod, sampling_period),
            api_url: ConfigEntry::from_stored(ConfigKey::ApiUrl, api_url),
        },
    })
}

/// Every live node's reading znode `(id, data, stat)`, by id; the reads are pipelined.
async fn read_readings(client: &zkc::Client) -> Result<Vec<(String, Vec<u8>, zkc::Stat)>, ZkError> {
    let ids = children_opt(client, layout::READINGS)
        .await?
        .unwrap_or_default();
    let paths: Vec<String> = ids.iter().map(|id| layout::reading(id)).collect();
    let found = get_many_opt(client, &paths).await?;
    Ok(ids
        .into_iter()
        .zip(found)
        // A node that leaves while we list is simply not shown.
        .filter_map(|(id, got)| got.map(|(data, stat)| (id, data, stat)))
        .collect())
}

/// Round numbers under `/rounds/conflicts`, ascending (empty when it is absent).
pub async fn conflict_rounds(client: &zkc::Client) -> Result<Vec<u64>, ZkError> {
    let mut rounds: Vec<u64> = children_opt(client, layout::CONFLICTS)
        .await?
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    rounds.sort_unstable();
    Ok(rounds)
}
