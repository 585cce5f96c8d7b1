//! The cluster as the dashboard shows it, and how one picture of it is read from ZooKeeper.
//!
//! [`read_cluster`] is `sensorctl status` ([`ctl::status`]: leader, contenders, live sensors
//! and readings, round, counter, delivery, outbox) plus what only the dashboard needs, read
//! right after it: the leader's fencing token (its election znode's czxid), the barrier's
//! creation time (to count the readings of the running round), the config znodes'
//! versions (for the edit form's compare-and-set), the rounds set aside as conflicts and the
//! API instances. The two reads are not one transaction; a change landing between them is
//! shown one refresh later.
//!
//! Everything read from ZooKeeper is data we do not control: strings are made UTF-8
//! (lossy) and clipped to a few hundred characters here, once, before anything renders
//! them (templates escape HTML on top).

use std::time::Duration;

use sensor_coord::layout::{self, CONFLICTS};
use sensor_coord::status::{self as ctl, ConfigEntry, ConfigKey};
use sensor_coord::zk::election::contender_sequence;
use sensor_coord::zk::{self, Session, ZkError};
use serde::Serialize;
use zookeeper_client as zkc;

use crate::ensemble::ServerInfo;

/// Longest id (sensor, contender, API instance) kept; longer ones are clipped with `…`.
pub const MAX_ID: usize = 128;
/// Longest free text (raw reading, URL, config value) kept.
pub const MAX_TEXT: usize = 256;
/// Most conflict round numbers listed (their count is always exact).
pub const MAX_CONFLICTS_LISTED: usize = 20;

/// Clips `text` to `max` characters, marking the cut with `…`.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Everything the page and `GET /api/v1/cluster` show. Cheap to compare: the event stream
/// sends only the parts that differ from what a client already has.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    /// Our link to ZooKeeper and how fresh [`Snapshot::cluster`] is.
    pub zookeeper: ZkHealth,
    /// The servers of the connect string, probed with `srvr`.
    pub ensemble: Vec<ServerInfo>,
    /// The last successfully read cluster state; `None` until the first read succeeds.
    pub cluster: Option<Cluster>,
    /// Recent averages from sensor-api.
    pub averages: Averages,
}

/// Connection health and staleness.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZkHealth {
    /// Session state: `connecting`, `connected`, `suspended`, `expired`, `closed`.
    pub session: String,
    /// True when the last read failed or the session is not connected: `cluster` is the
    /// last known state, not the current one.
    pub stale: bool,
    /// Since when it is stale (ms since the epoch).
    pub stale_since_ms: Option<i64>,
    /// Why (the last read's error, or the session state).
    pub error: Option<String>,
}

/// One read of the cluster's znodes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// When it was read (ms since the epoch).
    pub read_at_ms: i64,
    /// The current leader, if any contender exists.
    pub leader: Option<Leader>,
    /// Contender ids in election order (the first leads).
    pub contenders: Vec<String>,
    /// Live sensors (`/mediciones/*`), by id.
    pub sensors: Vec<Sensor>,
    /// Round bookkeeping.
    pub round: Round,
    /// The live config.
    pub config: LiveConfig,
    /// API instances registered under `/services/api`.
    pub api_instances: Vec<ApiInstance>,
}

/// The leader and its fencing token.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Leader {
    /// Its node id (the election znode's data).
    pub id: String,
    /// Fencing token: its election znode's czxid (grows across leaders).
    pub fencing: u64,
    /// When its election znode was created (ms since the epoch).
    pub contender_since_ms: i64,
    /// Since when it leads: the moment the dashboard saw it take over, or, for a leader
    /// already in place when the dashboard started, its contender time (then
    /// `since_observed` is false: it may have led only later).
    pub since_ms: i64,
    /// Whether `since_ms` is the observed take-over.
    pub since_observed: bool,
}

/// One live sensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sensor {
    /// Node id.
    pub id: String,
    /// Its latest reading, if the znode holds a finite number.
    pub reading: Option<f64>,
    /// The znode's data as stored (clipped).
    pub raw: String,
    /// When the reading was written (znode mtime, ms since the epoch).
    pub updated_ms: Option<i64>,
    /// Whether its reading counts for the running round (the leader's freshness rule).
    pub in_round: bool,
}

/// Where the round protocol is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `/barrier` is up and not every live sensor has read yet.
    Collecting,
    /// `/barrier` is up and every live sensor has read: the leader closes it at the end
    /// of the sampling period.
    Committing,
    /// No barrier (no leader is running rounds: each commit raises the next round's
    /// barrier in the same transaction, so a running fleet is always collecting or
    /// committing); committed rounds still wait in the outbox for the API.
    Delivering,
    /// No barrier, nothing to deliver (no leader, or rounds stopped).
    Idle,
}

impl Phase {
    /// Lower-case name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Collecting => "collecting",
            Phase::Committing => "committing",
            Phase::Delivering => "delivering",
            Phase::Idle => "idle",
        }
    }
}

/// Round bookkeeping, from `/barrier` and `/rounds/*`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Round {
    /// The running round (barrier data) or, between rounds, the last committed one.
    pub number: Option<u64>,
    /// The phase.
    pub phase: Phase,
    /// Readings written since the barrier went up.
    pub received: usize,
    /// Live sensors.
    pub live: usize,
    /// `/rounds/last`.
    pub last_committed: Option<u64>,
    /// `/rounds/delivered`.
    pub last_delivered: Option<u64>,
    /// Committed rounds waiting for delivery (`/rounds/outbox` children).
    pub outbox: usize,
    /// Rounds the API refused for good (`/rounds/conflicts` children).
    pub conflicts: usize,
    /// The newest of them (at most [`MAX_CONFLICTS_LISTED`]), ascending.
    pub conflict_rounds: Vec<u64>,
    /// `/counter`: readings taken cluster-wide.
    pub counter: Option<i64>,
}

/// The live config with the znode versions the edit form writes against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveConfig {
    /// `/config/sampling_period`.
    pub sampling_period: ConfigItem,
    /// `/config/api_url`.
    pub api_url: ConfigItem,
}

impl LiveConfig {
    /// The item of `key`.
    pub fn item(&self, key: ConfigKey) -> &ConfigItem {
        match key {
            ConfigKey::SamplingPeriod => &self.sampling_period,
            ConfigKey::ApiUrl => &self.api_url,
        }
    }
}

/// One config key, as `sensorctl config get` judges it, plus its znode version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigItem {
    /// Value, source (znode / nodes' default / invalid) and the nodes' error message.
    #[serde(flatten)]
    pub entry: ConfigEntry,
    /// The znode's data version; `None` when the znode is absent.
    pub version: Option<i32>,
}

/// A sensor-api instance registered for discovery.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiInstance {
    /// Znode name under `/services/api`.
    pub name: String,
    /// Its advertised base URL (clipped).
    pub url: String,
}

/// Recent averages from `GET <api>/api/v1/averages`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Averages {
    /// The API base URL they came from.
    pub source: Option<String>,
    /// Oldest first.
    pub points: Vec<AveragePoint>,
    /// Why the last fetch failed, if it did.
    pub error: Option<String>,
}

/// One average.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AveragePoint {
    /// Round number.
    pub round: u64,
    /// The average.
    pub value: f64,
    /// When the leader closed the round (ms since the epoch).
    pub taken_at_ms: i64,
}

/// What [`read_cluster`] adds to `sensorctl status`.
struct Extras {
    leader: Option<(String, u64, i64)>,
    config: Vec<(ConfigKey, Option<String>, Option<i32>)>,
    conflicts: Vec<String>,
    api_instances: Vec<ApiInstance>,
}

/// Reads the cluster once; fails (instead of waiting) after about `timeout` when
/// ZooKeeper does not answer. The leader's `since_ms` is its contender time here; the
/// monitor replaces it with the observed take-over. `sensorctl status`'s read and the
/// dashboard's own reads run at the same time (their requests pipelined on one session).
pub async fn read_cluster(session: &Session, timeout: Duration) -> Result<Cluster, ZkError> {
    let (status, extras) = tokio::try_join!(
        ctl::status(session, timeout),
        zk::retrying(session, timeout, |client| async move {
            read_extras(&client).await
        }),
    )?;
    Ok(assemble(status, extras))
}

/// A znode's children, sorted; none if it does not exist.
async fn children(client: &zkc::Client, path: &str) -> Result<Vec<String>, ZkError> {
    Ok(zk::children_opt(client, path).await?.unwrap_or_default())
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).trim().to_string()
}

async fn read_extras(client: &zkc::Client) -> Result<Extras, ZkError> {
    let (leader, config, conflicts, api_instances) = tokio::try_join!(
        read_leader(client),
        read_config(client),
        children(client, CONFLICTS),
        read_api_instances(client),
    )?;
    Ok(Extras {
        leader,
        config,
        conflicts,
        api_instances,
    })
}

/// The leader: the contender with the lowest sequence that still exists.
async fn read_leader(client: &zkc::Client) -> Result<Option<(String, u64, i64)>, ZkError> {
    let mut contenders: Vec<(i64, String)> = children(client, layout::ELECTION)
        .await?
        .into_iter()
        .filter_map(|n| contender_sequence(&n).map(|s| (s, n)))
        .collect();
    contenders.sort();
    for (_, name) in contenders {
        if let Some((data, stat)) = zk::get_opt(client, &layout::contender(&name)).await? {
            return Ok(Some((
                clip(&text(&data), MAX_ID),
                stat.czxid as u64,
                stat.ctime,
            )));
        }
    }
    Ok(None)
}

/// Each config key's stored text and znode version (for the edit form's compare-and-set).
async fn read_config(
    client: &zkc::Client,
) -> Result<Vec<(ConfigKey, Option<String>, Option<i32>)>, ZkError> {
    let found = zk::get_many_opt(client, &ConfigKey::ALL.map(ConfigKey::znode)).await?;
    Ok(ConfigKey::ALL
        .into_iter()
        .zip(found)
        .map(|(key, got)| match got {
            Some((data, stat)) => (key, Some(clip(&text(&data), MAX_TEXT)), Some(stat.version)),
            None => (key, None, None),
        })
        .collect())
}

/// The registered API instances.
async fn read_api_instances(client: &zkc::Client) -> Result<Vec<ApiInstance>, ZkError> {
    let names = children(client, layout::SERVICES_API).await?;
    let paths: Vec<String> = names.iter().map(|n| layout::api_instance(n)).collect();
    let found = zk::get_many_opt(client, &paths).await?;
    Ok(names
        .into_iter()
        .zip(found)
        // An instance that leaves while we list is simply not shown.
        .filter_map(|(name, got)| {
            got.map(|(data, _)| ApiInstance {
                name: clip(&name, MAX_ID),
                url: clip(&text(&data), MAX_TEXT),
            })
        })
        .collect())
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn assemble(status: ctl::ClusterStatus, extras: Extras) -> Cluster {
    let sensors: Vec<Sensor> = status
        .nodes
        .iter()
        .map(|n| {
            let updated_ms = n.updated_at.as_deref().and_then(rfc3339_ms);
            Sensor {
                id: clip(&n.id, MAX_ID),
                reading: n.reading,
                raw: clip(&n.raw, 64),
                updated_ms,
                in_round: status.round.open && n.fresh,
            }
        })
        .collect();
    let received = sensors.iter().filter(|s| s.in_round).count();
    let live = sensors.len();
    let outbox = status.outbox_depth.unwrap_or(0);
    let phase = if status.round.open {
        if live > 0 && received >= live {
            Phase::Committing
        } else {
            Phase::Collecting
        }
    } else if outbox > 0 {
        Phase::Delivering
    } else {
        Phase::Idle
    };
    let mut conflict_rounds: Vec<u64> = extras
        .conflicts
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    conflict_rounds.sort_unstable();
    let skip = conflict_rounds.len().saturating_sub(MAX_CONFLICTS_LISTED);
    let conflict_rounds = conflict_rounds.split_off(skip);
    let item = |key: ConfigKey| {
        let (stored, version) = extras
            .config
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, s, v)| (s.clone(), *v))
            .unwrap_or((None, None));
        ConfigItem {
            entry: ConfigEntry::from_stored(key, stored),
            version,
        }
    };
    Cluster {
        read_at_ms: now_ms(),
        leader: extras.leader.map(|(id, fencing, ctime)| Leader {
            id,
            fencing,
            contender_since_ms: ctime,
            since_ms: ctime,
            since_observed: false,
        }),
        contenders: status
            .contenders
            .iter()
            .map(|c| clip(c.trim(), MAX_ID))
            .collect(),
        round: Round {
            number: if status.round.open {
                status.round.current
            } else {
                status.round.last_committed
            },
            phase,
            received,
            live,
            last_committed: status.round.last_committed,
            last_delivered: status.last_delivered,
            outbox,
            conflicts: extras.conflicts.len(),
            conflict_rounds,
            counter: status.counter,
        },
        sensors,
        config: LiveConfig {
            sampling_period: item(ConfigKey::SamplingPeriod),
            api_url: item(ConfigKey::ApiUrl),
        },
        api_instances: extras.api_instances,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
