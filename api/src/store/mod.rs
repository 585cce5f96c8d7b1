//! Redis storage of round averages: atomic idempotent ingest, time-ordered queries,
//! rollups for fast aggregation, and retention.
//!
//! # Data model (all keys start with the configured prefix `P`)
//!
//! | key                | type   | content                                                    |
//! |--------------------|--------|------------------------------------------------------------|
//! | `P:rec`            | hash   | member → JSON of [`Average`]                               |
//! | `P:time`           | zset   | member scored by `taken_at_ms`: every range query uses it   |
//! | `P:fence`          | string | default cluster: highest fencing token accepted (20-digit zero-padded) |
//! | `P:last_round`     | string | default cluster: highest node round stored (metrics gauge) |
//! | `P:cluster:<id>:fence` | string | the same, for cluster `<id>`                          |
//! | `P:cluster:<id>:last_round` | string | the same, for cluster `<id>`                     |
//! | `P:clusters`       | set    | every cluster id that stored a node round (`fence show`)   |
//! | `P:legacy_seq`     | string | counter numbering legacy `/nuevo` points                   |
//! | `P:rollup`         | hash   | `<step>:<bucket start>` → `count sum min max last last_ms samples`, every level |
//! | `P:roll:<step>`    | hash   | bucket start → the same: written by versions before `P:rollup`, still read and trimmed |
//! | `P:rollidx:<step>` | zset   | bucket start scored by itself (which buckets exist)        |
//! | `P:leaders`        | zset   | one entry per leader change, scored by `taken_at_ms`       |
//! | `P:roundidx2`       | zset   | node rounds only, all scored 0, ordered by text: `<cluster> <enc(taken_at_ms)> <member> <fencing, 20 digits> <leader>` |
//! | `P:roundidx2:state` | string | `ready` once `P:roundidx2` holds every stored node round (see Upgrades) |
//!
//! A *member* names one stored point: `r:<round, 20 digits>` for a node round of the
//! default cluster, `r:<round, 20 digits>:<cluster id>` for one of another cluster, and
//! `l:<sequence, 20 digits>` for a legacy point. Zero padding makes the lexicographic order
//! of members equal their numeric order, which breaks ties between points of the same
//! millisecond consistently (pagination cursors rely on it).
//!
//! # Clusters
//! Rounds are unique per `(cluster, round)` and fenced per cluster ([`ClusterId`]): a fleet
//! moved to a fresh ZooKeeper ensemble restarts at round 1 with its own (possibly lower)
//! fencing tokens, and that is a new series, not a conflict. All series share `P:rec`,
//! `P:time`, the rollups and `P:leaders`, so every read (history page, JSON API, Grafana,
//! Prometheus) shows them merged in time order without knowing about clusters. Deliveries
//! without a cluster id (older nodes) and legacy points belong to the default cluster,
//! whose keys are the ones earlier versions wrote (`r:<round>` members, `P:fence`,
//! `P:last_round`): data stored before the upgrade reads unchanged, no migration.
//!
//! # Invariants
//! * A round is stored at most once. The check (exists? same value? fencing token not older
//!   than the highest accepted?) and the write happen inside one Lua script, so concurrent
//!   duplicate POSTs — also from two API instances sharing the Redis — cannot both store.
//! * A batch is all-or-nothing: if one item conflicts, nothing of the batch is written.
//! * Rollups are updated by the same script as the point, so they never disagree with the
//!   raw data (except after retention, which deletes a rollup bucket only once it lies
//!   entirely before the cutoff). A bucket is the merge of its `P:roll:<step>` part (from
//!   before the upgrade) and its `P:rollup` part; one ingest call reads every bucket it
//!   touches with one `HMGET` and writes them with one `HSET`, whatever the batch size.
//! * `P:roundidx2` holds exactly the stored node rounds (retention removes entries with
//!   their points). The cluster comes first and `enc` (in `lua/common.lua`) makes text
//!   order equal time order, so each cluster's rounds are one time-ordered range and the
//!   neighbours of a round among its cluster's rounds are one
//!   `ZREVRANGEBYLEX`/`ZRANGEBYLEX` each, carry their leader and fencing token, and legacy
//!   points and other clusters' rounds are never visited.
//! * `P:leaders` holds an entry for a node round exactly when its leader differs from the
//!   leader of the nearest earlier stored node round *of the same cluster* in time order
//!   (`taken_at_ms`, then member; legacy points are skipped, they have no leader; two
//!   clusters delivering at the same time are two successions, not one alternating). The ingest script keeps this
//!   true for out-of-order arrivals too: storing a round re-evaluates both the round and the
//!   next stored node round after it. An entry is `<round, 20 digits> <fencing token>
//!   <JSON ["previous leader","new leader"]>`. Entries are not backfilled: points stored
//!   by a version without this key have no leader-change entries among themselves (the
//!   first round stored afterwards is compared with its stored predecessor as usual).
//!
//! # Upgrades
//! Data written before `P:rollup` and `P:roundidx2` existed reads unchanged: old rollup
//! hashes are merged into every read and trimmed by retention. The ingest script migrates
//! once, in place and incrementally: while `P:roundidx2:state` is not `ready` it holds how
//! many points of `P:time` (newest first) have been indexed, and each ingest call indexes
//! the node rounds among the next 1 000 (a few milliseconds of Redis time) and finds
//! neighbours with the old scan of `P:time` until the index is complete. A fresh
//! deployment is `ready` on its first ingest. The index of earlier versions, `P:roundidx`
//! (one time order for all clusters, so leader changes were computed across clusters),
//! is rebuilt this way as `P:roundidx2` and then deleted (`UNLINK`).
//! Upgrade all instances sharing a Redis together: a round an older instance stores after
//! the migration is missing from `P:roundidx2` (reads stay exact, its leader change may be
//! missed).
//!
//! # Failure behaviour
//! The connection is a lazily connecting [`ConnectionManager`]: the store can be created
//! while Redis is down, every call then fails fast with [`StoreError::Unavailable`], and the
//! manager reconnects by itself once Redis answers again. Commands time out after the
//! configured response timeout (a stopped Redis looks like a down one).
//!
//! # Modules
//! | module | concept |
//! |---|---|
//! | [`model`] | the values stored and returned |
//! | `keys` | key names and point members |
//! | `ingest` (+ `lua/ingest.lua`) | atomic, idempotent, fenced batch ingest; group commit of concurrent batches into one script call |
//! | `page` (+ `lua/page.lua`) | points by round, counts, cursor pages |
//! | [`planner`] | the query planner: rollup levels, every read limit, rollups or raw points |
//! | `rollup` (+ `lua/rollup_range.lua`) | reading rollups, executing plans: [`Store::series`] |
//! | `stats` | range summaries |
//! | `leaders` | leader changes |
//! | `fence` | per-cluster fence, last round, cluster set |
//! | `retention` (+ `lua/trim_*.lua`) | deleting old points |
//! | [`error`] | [`StoreError`] |

mod error;
mod fence;
mod ingest;
mod keys;
mod leaders;
pub mod model;
mod page;
pub mod planner;
mod retention;
mod rollup;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::metrics::LatencyHistogram;

pub use error::{StoreError, UNAVAILABLE_CODES};
pub use leaders::{LeaderChange, LEADER_CHANGES_LIMIT};
pub use model::{Average, Bucket, Cursor, NewPoint, Positioned, Stats};
pub use planner::{Exactness, SeriesQuery, ROLLUP_STEPS_MS, SUB_ROLLUP_RAW_LIMIT};

use keys::Keys;

pub use sensor_coord::wire::ClusterId;
/// The wire contract's round result, the fields of every stored [`Average`].
pub use sensor_coord::wire::RoundResult;

/// What happened to one item of an ingest call: the wire contract's per-item status,
/// shared with the nodes (see [`sensor_coord::wire`]).
pub use sensor_coord::wire::ItemStatus as IngestStatus;

/// Outcome of one ingested item (the wire contract's [`sensor_coord::wire::ItemResult`]).
pub use sensor_coord::wire::ItemResult as IngestResult;

/// Connection settings for [`Store::open`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Prefix of every key (lets several deployments or tests share one Redis).
    pub key_prefix: String,
    /// How long one Redis command may take before it counts as a failure.
    pub response_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            key_prefix: "zk-sensors".to_string(),
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

struct Scripts {
    ingest: Script,
    page: Script,
    rollup_range: Script,
    trim_points: Script,
    trim_rollups: Script,
}

/// Lua shared by every script (`enc`/`dec` of P:roundidx2 keys, rollup number text).
const COMMON_LUA: &str = include_str!("lua/common.lua");

/// A store script: [`COMMON_LUA`] followed by `body`.
fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON_LUA}\n{body}"))
}

/// Handle to the Redis store; cheap to clone (all clones share one multiplexed connection).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    latency: Arc<LatencyHistogram>,
    /// The group-commit writer's queue (see `ingest`), started by the first ingest.
    ingest_queue: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<ingest::Job>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys.rec)
            .finish()
    }
}

impl Store {
    /// Creates the store without connecting: the first command connects, and a down Redis
    /// only makes commands fail with [`StoreError::Unavailable`]. Fails only for a malformed
    /// URL.
    pub fn open(redis_url: &str, config: &StoreConfig) -> Result<Store, StoreError> {
        let client = redis::Client::open(redis_url)
            .map_err(|e| StoreError::InvalidArgument(format!("redis url: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Store {
            conn,
            keys: Arc::new(Keys::new(&config.key_prefix)),
            scripts: Arc::new(Scripts {
                ingest: script(ingest::INGEST_LUA),
                page: script(page::PAGE_LUA),
                rollup_range: script(rollup::ROLLUP_RANGE_LUA),
                trim_points: script(retention::TRIM_POINTS_LUA),
                trim_rollups: script(retention::TRIM_ROLLUPS_LUA),
            }),
            latency: Arc::new(LatencyHistogram::default()),
            ingest_queue: Arc::default(),
        })
    }

    /// Latency of every Redis call made by this store (for `/metrics`).
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Runs one Redis call, recording its latency.
    async fn timed<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let start = Instant::now();
        let result = fut.await;
        self.latency.observe(start.elapsed());
        result.map_err(StoreError::from)
    }

    /// `PING`: whether Redis answers right now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = self
            .timed(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }
}
