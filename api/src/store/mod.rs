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
//! | `P:roll:<step>`    | hash   | bucket start (ms) → `count sum min max last last_ms samples` |
//! | `P:rollidx:<step>` | zset   | bucket start scored by itself (which buckets exist)        |
//! | `P:leaders`        | zset   | one entry per leader change, scored by `taken_at_ms`       |
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
//!   entirely before the cutoff).
//! * `P:leaders` holds an entry for a node round exactly when its leader differs from the
//!   leader of the nearest earlier stored node round in time order (`taken_at_ms`, then
//!   member; legacy points are skipped, they have no leader). The ingest script keeps this
//!   true for out-of-order arrivals too: storing a round re-evaluates both the round and the
//!   next stored node round after it. An entry is `<round, 20 digits> <fencing token>
//!   <JSON ["previous leader","new leader"]>`. Entries are not backfilled: points stored
//!   by a version without this key have no leader-change entries among themselves (the
//!   first round stored afterwards is compared with its stored predecessor as usual).
//!
//! # Failure behaviour
//! The connection is a lazily connecting [`ConnectionManager`]: the store can be created
//! while Redis is down, every call then fails fast with [`StoreError::Unavailable`], and the
//! manager reconnects by itself once Redis answers again. Commands time out after the
//! configured response timeout (a stopped Redis looks like a down one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::metrics::LatencyHistogram;

/// Rollup levels (bucket widths in ms) maintained at ingest: 10 s, 1 min, 5 min, 1 h, 1 day.
/// Their ratios are small integers, so any range decomposes into few rollup buckets.
pub const ROLLUP_STEPS_MS: [i64; 5] = [10_000, 60_000, 300_000, 3_600_000, 86_400_000];

/// Below this many raw points in a range, [`Store::buckets`] aggregates raw points directly
/// (cheaper than assembling rollups for small ranges).
const RAW_AGGREGATION_LIMIT: u64 = 2_000;

/// Most raw points [`Store::buckets`] aggregates for a bucket width under the finest rollup
/// (10 s), where no rollup can serve the buckets. About 14 hours of one-second rounds: the
/// points are read in pages of [`RAW_PAGE`], so Redis is never blocked for long, and one
/// call costs a few hundred milliseconds at most. Past it, such widths are refused
/// ([`StoreError::InvalidArgument`]); callers widen to 10 s first (the Grafana layer checks
/// this limit with [`Store::count_range`] before asking).
pub const SUB_ROLLUP_RAW_LIMIT: u64 = 50_000;

/// Points read per script call when aggregating raw points.
const RAW_PAGE: usize = 5_000;

/// How many points one retention script call deletes, so Redis serves ingest in between.
const RETENTION_BATCH: usize = 500;

pub use sensor_node::result::ClusterId;

/// One stored average, as the nodes deliver it (plus the server-side parsed time).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Average {
    /// Round number (unique per node round; 0 for legacy `/nuevo` points).
    pub round: u64,
    /// The average value (always finite).
    pub value: f64,
    /// How many sensor readings the average is made of (1 for legacy points).
    pub samples: u32,
    /// Id of the leader that computed it (`"legacy"` for `/nuevo` points).
    pub leader: String,
    /// The leader's fencing token (0 for legacy points).
    pub fencing: u64,
    /// RFC 3339 time as received (server time for legacy points).
    pub taken_at: String,
    /// `taken_at` in milliseconds since the Unix epoch, parsed by the server.
    pub taken_at_ms: i64,
    /// The cluster (ensemble) whose series the round belongs to; omitted for the default
    /// cluster, so records stored by earlier versions decode unchanged.
    #[serde(default, skip_serializing_if = "ClusterId::is_default")]
    pub cluster: ClusterId,
}

/// Aggregate of the points whose time falls in `[start_ms, start_ms + width)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, a multiple of the bucket width.
    pub start_ms: i64,
    /// Number of points.
    pub count: u64,
    /// Sum of their values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Value of the latest point (by time, then by arrival).
    pub last: f64,
    /// Sum of the points' `samples`.
    pub samples_sum: u64,
}

/// A change of leader between two consecutive stored node rounds (time order, legacy
/// points skipped), recorded at ingest in `P:leaders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// When the first round of the new leader was taken (epoch ms).
    pub at_ms: i64,
    /// That round.
    pub round: u64,
    /// Its fencing token.
    pub fencing: u64,
    /// Leader of the stored round just before it.
    pub from: String,
    /// The new leader.
    pub to: String,
}

/// Most leader changes [`Store::leader_changes`] returns for one range (the newest ones):
/// bounds a query's cost even for a leader that flapped every round.
pub const LEADER_CHANGES_LIMIT: usize = 10_000;

/// Summary of a time range (the `/api/v1/stats` answer).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Stats {
    /// Number of stored points in the range.
    pub count: u64,
    /// Time of the oldest point, ms since epoch.
    pub first_ms: Option<i64>,
    /// Time of the newest point, ms since epoch.
    pub last_ms: Option<i64>,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Arithmetic mean of the values.
    pub mean: Option<f64>,
}

/// A new point for [`Store::ingest`]: either a node round or a legacy reading.
#[derive(Clone, Debug, PartialEq)]
pub enum NewPoint {
    /// A node-delivered average; idempotent on its round.
    Round(Average),
    /// A legacy `/nuevo` reading: numbered by the legacy counter, never deduplicated.
    Legacy {
        /// The value.
        value: f64,
        /// Server time when it was received, ms since epoch.
        taken_at_ms: i64,
        /// The same time in RFC 3339.
        taken_at: String,
    },
}

/// What happened to one item of an ingest call: the wire contract's per-item status,
/// shared with the nodes (see [`sensor_node::result`]).
pub use sensor_node::result::ItemStatus as IngestStatus;

/// Outcome of one ingested item (the wire contract's [`sensor_node::result::ItemResult`]).
pub use sensor_node::result::ItemResult as IngestResult;

/// A position in the time order: the `(taken_at_ms, member)` of a point. Pages continue
/// strictly before (older) or after (newer) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Time of the point.
    pub ms: i64,
    /// Its member name (`r:…` or `l:…`).
    pub member: String,
}

impl Cursor {
    /// Text form used in URLs: `<ms>_<member>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.ms, self.member)
    }

    /// Parses [`Cursor::encode`]'s form; `None` if malformed.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (ms, member) = text.split_once('_')?;
        let ms: i64 = ms.parse().ok()?;
        let (kind, rest) = member.split_once(':')?;
        let (digits, cluster) = match rest.split_once(':') {
            Some((d, c)) => (d, Some(c)),
            None => (rest, None),
        };
        let valid = (kind == "r" || (kind == "l" && cluster.is_none()))
            && digits.len() == 20
            && digits.bytes().all(|b| b.is_ascii_digit())
            && cluster.is_none_or(|c| ClusterId::parse(c).is_ok_and(|c| !c.is_default()));
        valid.then(|| Cursor {
            ms,
            member: member.to_string(),
        })
    }
}

/// One point with its position, as returned by page queries.
#[derive(Clone, Debug, PartialEq)]
pub struct Positioned {
    /// The point.
    pub average: Average,
    /// Its position (use as a cursor to continue after it).
    pub cursor: Cursor,
}

/// Redis error codes that mean "the server cannot take this now; retry later".
pub const UNAVAILABLE_CODES: [&str; 5] = ["OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN"];

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, too slow, or refused the command for a transient reason.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis answered something this code does not understand (a bug or foreign data).
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
    /// The caller passed arguments that make no sense (e.g. a zero bucket width).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<redis::RedisError> for StoreError {
    /// Server-side unavailability is [`StoreError::Unavailable`] (503, retry) also when a
    /// script hits it: [`UNAVAILABLE_CODES`] (a full Redis under `noeviction`, a read-only
    /// replica, a busy or loading server, a replica without its master). Any other failing
    /// Lua script is a bug in this crate, not an outage: it becomes
    /// [`StoreError::Corrupt`] (500, logged) so clients do not retry it forever. Everything
    /// else (I/O, timeouts, refused connections) is [`StoreError::Unavailable`].
    fn from(e: redis::RedisError) -> Self {
        let text = e.to_string();
        if e.code().is_some_and(|c| UNAVAILABLE_CODES.contains(&c)) {
            return StoreError::Unavailable(e);
        }
        if text.contains("user_script") || text.contains("Error running script") {
            StoreError::Corrupt(format!("redis script failed: {text}"))
        } else {
            StoreError::Unavailable(e)
        }
    }
}

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

struct Keys {
    prefix: String,
    rec: String,
    time: String,
    fence: String,
    last_round: String,
    clusters: String,
    legacy_seq: String,
    roll: Vec<String>,
    rollidx: Vec<String>,
    leaders: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
            rec: format!("{prefix}:rec"),
            time: format!("{prefix}:time"),
            fence: format!("{prefix}:fence"),
            last_round: format!("{prefix}:last_round"),
            clusters: format!("{prefix}:clusters"),
            legacy_seq: format!("{prefix}:legacy_seq"),
            leaders: format!("{prefix}:leaders"),
            roll: ROLLUP_STEPS_MS
                .iter()
                .map(|s| format!("{prefix}:roll:{s}"))
                .collect(),
            rollidx: ROLLUP_STEPS_MS
                .iter()
                .map(|s| format!("{prefix}:rollidx:{s}"))
                .collect(),
        }
    }

    /// The fence of `cluster` (the default cluster keeps the pre-cluster key).
    fn fence(&self, cluster: &ClusterId) -> String {
        if cluster.is_default() {
            self.fence.clone()
        } else {
            format!("{}:cluster:{cluster}:fence", self.prefix)
        }
    }

    /// The highest stored round of `cluster` (default: the pre-cluster key).
    fn last_round(&self, cluster: &ClusterId) -> String {
        if cluster.is_default() {
            self.last_round.clone()
        } else {
            format!("{}:cluster:{cluster}:last_round", self.prefix)
        }
    }
}

/// Check-and-store of a batch, atomically (Redis runs a script without interleaving).
///
/// KEYS: rec, time, fence, last_round (both of the batch's cluster), legacy_seq, then
/// (roll, rollidx) per level, leaders, clusters.
/// ARGV: nlevels, steps..., nitems, then per item: kind ("r"/"l"), round (20 digits),
/// value, fencing (20 digits), taken_at_ms, samples, json, leader; then the batch's
/// cluster id (node round members are `r:<round>` for `default`, `r:<round>:<cluster>`
/// otherwise, as [`round_member`] builds them).
/// Returns a flat array: status per item, and for legacy items the assigned member.
const INGEST_LUA: &str = r#"
local nlevels = tonumber(ARGV[1])
local steps = {}
for i = 1, nlevels do steps[i] = tonumber(ARGV[1 + i]) end
local base = 2 + nlevels
local nitems = tonumber(ARGV[base])
local fence = redis.call('GET', KEYS[3]) or '00000000000000000000'
local statuses = {}
local pending = {}
local rejected = false
local W = 8
local cluster = ARGV[base + nitems * W + 1]
local suffix = ''
if cluster ~= 'default' then suffix = ':' .. cluster end
for i = 0, nitems - 1 do
  local o = base + i * W
  local kind = ARGV[o + 1]
  if kind == 'r' then
    local member = 'r:' .. ARGV[o + 2] .. suffix
    local value = tonumber(ARGV[o + 3])
    local fencing = ARGV[o + 4]
    local prev = pending[member]
    if prev == nil then
      local stored = redis.call('HGET', KEYS[1], member)
      if stored then prev = cjson.decode(stored).value end
    end
    if prev ~= nil then
      if prev == value then statuses[i + 1] = 'duplicate' else statuses[i + 1] = 'conflict'; rejected = true end
    elseif fencing < fence then
      statuses[i + 1] = 'stale_leader'; rejected = true
    else
      statuses[i + 1] = 'stored'
      pending[member] = value
      fence = fencing
    end
  else
    statuses[i + 1] = 'stored'
  end
end
local out = {}
if rejected then
  for i = 1, nitems do
    local s = statuses[i]
    if s == 'stored' then s = 'not_applied' end
    out[#out + 1] = s
    out[#out + 1] = ''
  end
  return out
end
local function num(x) return string.format('%.17g', x) end
local function roll(level, ms, value, samples)
  local step = steps[level]
  local start = math.floor(ms / step) * step
  local field = num(start)
  local hkey = KEYS[4 + level * 2]
  local agg = redis.call('HGET', hkey, field)
  local c, s, mn, mx, last, last_ms, smp
  if agg then
    local t = {}
    for w in string.gmatch(agg, '%S+') do t[#t + 1] = tonumber(w) end
    c, s, mn, mx, last, last_ms, smp = t[1] + 1, t[2] + value, t[3], t[4], t[5], t[6], t[7] + samples
    if value < mn then mn = value end
    if value > mx then mx = value end
    if ms >= last_ms then last = value; last_ms = ms end
  else
    c, s, mn, mx, last, last_ms, smp = 1, value, value, value, value, ms, samples
    redis.call('ZADD', KEYS[5 + level * 2], start, field)
  end
  redis.call('HSET', hkey, field, num(c) .. ' ' .. num(s) .. ' ' .. num(mn) .. ' ' .. num(mx) .. ' ' .. num(last) .. ' ' .. num(last_ms) .. ' ' .. num(smp))
end
local LK = KEYS[6 + nlevels * 2]
-- Leaders of the rounds this call stored: in a batch of consecutive rounds the
-- predecessor is usually the previous item, which then needs no HGET and JSON decode.
local batch_leaders = {}
local function leader_of(member)
  local cached = batch_leaders[member]
  if cached then return cached[1], cached[2] end
  local j = redis.call('HGET', KEYS[1], member)
  if not j then return nil, '0' end
  return cjson.decode(j).leader, (string.match(j, '"fencing":(%d+)') or '0')
end
-- Nearest node round strictly before (dir < 0) or after (dir > 0) the position
-- (ms, member) in time order, skipping legacy points; returns member and score text.
local function neighbour(ms, member, dir)
  local offset, chunk = 0, 2
  while true do
    local got
    if dir < 0 then
      got = redis.call('ZREVRANGEBYSCORE', KEYS[2], ms, '-inf', 'WITHSCORES', 'LIMIT', offset, chunk)
    else
      got = redis.call('ZRANGEBYSCORE', KEYS[2], ms, '+inf', 'WITHSCORES', 'LIMIT', offset, chunk)
    end
    if #got == 0 then return nil, nil end
    for i = 1, #got, 2 do
      local m, s = got[i], tonumber(got[i + 1])
      local beyond
      if dir < 0 then beyond = (s < ms) or (m < member) else beyond = (s > ms) or (m > member) end
      if beyond and string.sub(m, 1, 2) == 'r:' then return m, got[i + 1] end
    end
    offset = offset + chunk
    if chunk < 4096 then chunk = chunk * 2 end
  end
end
local function change(round20, fencing, prev, leader)
  return round20 .. ' ' .. fencing .. ' ' .. cjson.encode({prev, leader})
end
-- Keeps P:leaders exact after storing node round `member`: its own entry, and the entry
-- of the next node round (whose predecessor it now is).
local function track_leader(member, ms, leader, fencing)
  batch_leaders[member] = {leader, fencing}
  local round20 = string.sub(member, 3, 22)
  local p = neighbour(ms, member, -1)
  if p then
    local pl = leader_of(p)
    if pl ~= leader then redis.call('ZADD', LK, ms, change(round20, fencing, pl, leader)) end
  end
  local n, nms = neighbour(ms, member, 1)
  if n then
    local n20 = string.sub(n, 3, 22)
    for _, e in ipairs(redis.call('ZRANGEBYSCORE', LK, nms, nms)) do
      if string.sub(e, 1, 20) == n20 then redis.call('ZREM', LK, e) end
    end
    local nl, nf = leader_of(n)
    if nl ~= leader then redis.call('ZADD', LK, nms, change(n20, nf, leader, nl)) end
  end
end
local stored_round = false
for i = 0, nitems - 1 do
  local o = base + i * W
  local kind = ARGV[o + 1]
  local member = ''
  if statuses[i + 1] == 'stored' then
    if kind == 'r' then
      member = 'r:' .. ARGV[o + 2] .. suffix
      stored_round = true
      local lr = redis.call('GET', KEYS[4])
      if (not lr) or ARGV[o + 2] > lr then redis.call('SET', KEYS[4], ARGV[o + 2]) end
    else
      member = 'l:' .. string.format('%020d', redis.call('INCR', KEYS[5]))
    end
    local value = tonumber(ARGV[o + 3])
    local ms = tonumber(ARGV[o + 5])
    local samples = tonumber(ARGV[o + 6])
    local json = ARGV[o + 7]
    redis.call('HSET', KEYS[1], member, json)
    redis.call('ZADD', KEYS[2], ms, member)
    for level = 1, nlevels do roll(level, ms, value, samples) end
    if kind == 'r' then track_leader(member, ms, ARGV[o + 8], ARGV[o + 4]) end
  end
  out[#out + 1] = statuses[i + 1]
  out[#out + 1] = member
end
redis.call('SET', KEYS[3], fence)
if stored_round then redis.call('SADD', KEYS[7 + nlevels * 2], cluster) end
return out
"#;

/// One page in either direction. KEYS: time, rec. ARGV: start_ms (the bound paging starts
/// from: max for "desc", min for "asc"), cursor member ("" = none, inclusive start), end_ms,
/// limit, direction ("desc" | "asc"). Points at start_ms up to and including the cursor
/// member (in paging order) are skipped. Returns flat [member, ms, json, ...].
const PAGE_LUA: &str = r#"
local start_ms, cur, end_ms, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local desc = ARGV[5] == 'desc'
local cmd = desc and 'ZREVRANGEBYSCORE' or 'ZRANGEBYSCORE'
local out, n, offset, chunk = {}, 0, 0, math.min(limit, 5000) + 16
while n < limit do
  local got = redis.call(cmd, KEYS[1], start_ms, end_ms, 'WITHSCORES', 'LIMIT', offset, chunk)
  if #got == 0 then break end
  for i = 1, #got, 2 do
    local m, s = got[i], got[i + 1]
    local seen = cur ~= '' and s == start_ms and ((desc and m >= cur) or (not desc and m <= cur))
    if not seen and n < limit then
      local j = redis.call('HGET', KEYS[2], m)
      if j then out[#out + 1] = m; out[#out + 1] = s; out[#out + 1] = j; n = n + 1 end
    end
  end
  offset = offset + chunk
end
return out
"#;

/// Rollup buckets of one level with start in [lo, hi]. KEYS: rollidx, roll. ARGV: lo, hi.
/// Returns flat [start, agg, ...].
const ROLLUP_RANGE_LUA: &str = r#"
local starts = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
-- HMGET in chunks: Lua's unpack() fails beyond a few thousand values.
for c = 1, #starts, 1000 do
  local last = math.min(c + 999, #starts)
  local aggs = redis.call('HMGET', KEYS[2], unpack(starts, c, last))
  for i = c, last do
    local a = aggs[i - c + 1]
    if a then out[#out + 1] = starts[i]; out[#out + 1] = a end
  end
end
return out
"#;

/// Deletes up to ARGV[2] points with time <= ARGV[1]. KEYS: time, rec. Returns the count.
const TRIM_POINTS_LUA: &str = r#"
local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ms == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(ms))
redis.call('ZREM', KEYS[1], unpack(ms))
return #ms
"#;

/// Deletes up to ARGV[2] rollup buckets with start <= ARGV[1]. KEYS: rollidx, roll.
const TRIM_ROLLUPS_LUA: &str = r#"
local st = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #st == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(st))
redis.call('ZREM', KEYS[1], unpack(st))
return #st
"#;

struct Scripts {
    ingest: Script,
    page: Script,
    rollup_range: Script,
    trim_points: Script,
    trim_rollups: Script,
}

/// Handle to the Redis store; cheap to clone (all clones share one multiplexed connection).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    latency: Arc<LatencyHistogram>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys.rec)
            .finish()
    }
}

fn pad(n: u64) -> String {
    format!("{n:020}")
}

/// The member of node round `round` of `cluster` (see the module doc; the ingest script
/// builds the same).
fn round_member(cluster: &ClusterId, round: u64) -> String {
    if cluster.is_default() {
        format!("r:{}", pad(round))
    } else {
        format!("r:{}:{cluster}", pad(round))
    }
}

/// Parses a rollup aggregate string (`count sum min max last last_ms samples`).
fn parse_agg(start_ms: i64, text: &str) -> Result<(Bucket, i64), StoreError> {
    let parts: Vec<f64> = text
        .split_whitespace()
        .map(|w| w.parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| StoreError::Corrupt(format!("rollup aggregate {text:?}")))?;
    if parts.len() != 7 {
        return Err(StoreError::Corrupt(format!("rollup aggregate {text:?}")));
    }
    Ok((
        Bucket {
            start_ms,
            count: parts[0] as u64,
            sum: parts[1],
            min: parts[2],
            max: parts[3],
            last: parts[4],
            samples_sum: parts[6] as u64,
        },
        parts[5] as i64,
    ))
}

/// Running aggregate used to merge rollup buckets and raw points.
#[derive(Clone, Debug)]
struct Acc {
    bucket: Bucket,
    last_ms: i64,
}

impl Acc {
    fn merge(&mut self, other: &Bucket, other_last_ms: i64) {
        let b = &mut self.bucket;
        if b.count == 0 {
            *b = Bucket {
                start_ms: b.start_ms,
                ..other.clone()
            };
            self.last_ms = other_last_ms;
            return;
        }
        b.count += other.count;
        b.sum += other.sum;
        b.min = b.min.min(other.min);
        b.max = b.max.max(other.max);
        b.samples_sum += other.samples_sum;
        if other_last_ms >= self.last_ms {
            b.last = other.last;
            self.last_ms = other_last_ms;
        }
    }

    fn empty(start_ms: i64) -> Acc {
        Acc {
            bucket: Bucket {
                start_ms,
                count: 0,
                sum: 0.0,
                min: 0.0,
                max: 0.0,
                last: 0.0,
                samples_sum: 0,
            },
            last_ms: i64::MIN,
        }
    }

    fn add_point(&mut self, a: &Average) {
        let p = Bucket {
            start_ms: 0,
            count: 1,
            sum: a.value,
            min: a.value,
            max: a.value,
            last: a.value,
            samples_sum: u64::from(a.samples),
        };
        self.merge(&p, a.taken_at_ms);
    }
}

fn floor_to(x: i64, step: i64) -> i64 {
    x.div_euclid(step) * step
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
                ingest: Script::new(INGEST_LUA),
                page: Script::new(PAGE_LUA),
                rollup_range: Script::new(ROLLUP_RANGE_LUA),
                trim_points: Script::new(TRIM_POINTS_LUA),
                trim_rollups: Script::new(TRIM_ROLLUPS_LUA),
            }),
            latency: Arc::new(LatencyHistogram::default()),
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

    /// Stores points atomically: every node round is checked (duplicate / conflicting value
    /// / stale fencing token, within its cluster) and, unless one item is rejected, all new
    /// items are written together with their rollups. Legacy points are always stored (in
    /// the default cluster). Fails with [`StoreError::InvalidArgument`] when the node rounds
    /// of one call belong to different clusters (callers validate that first).
    pub async fn ingest(&self, points: &[NewPoint]) -> Result<Vec<IngestResult>, StoreError> {
        let k = &self.keys;
        let mut clusters = points.iter().filter_map(|p| match p {
            NewPoint::Round(a) => Some(&a.cluster),
            NewPoint::Legacy { .. } => None,
        });
        let default = ClusterId::default();
        let cluster = clusters.next().unwrap_or(&default);
        if clusters.any(|c| c != cluster) {
            return Err(StoreError::InvalidArgument(
                "the rounds of one batch must belong to one cluster".into(),
            ));
        }
        let mut inv = self.scripts.ingest.prepare_invoke();
        inv.key(&k.rec)
            .key(&k.time)
            .key(k.fence(cluster))
            .key(k.last_round(cluster))
            .key(&k.legacy_seq);
        for (roll, idx) in k.roll.iter().zip(&k.rollidx) {
            inv.key(roll).key(idx);
        }
        inv.key(&k.leaders).key(&k.clusters);
        inv.arg(ROLLUP_STEPS_MS.len());
        for step in ROLLUP_STEPS_MS {
            inv.arg(step);
        }
        inv.arg(points.len());
        for p in points {
            match p {
                NewPoint::Round(a) => {
                    let json = serde_json::to_string(a)
                        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                    inv.arg("r")
                        .arg(pad(a.round))
                        .arg(a.value.to_string())
                        .arg(pad(a.fencing))
                        .arg(a.taken_at_ms)
                        .arg(a.samples)
                        .arg(json)
                        .arg(&a.leader);
                }
                NewPoint::Legacy {
                    value,
                    taken_at_ms,
                    taken_at,
                } => {
                    let a = Average {
                        round: 0,
                        value: *value,
                        samples: 1,
                        leader: "legacy".to_string(),
                        fencing: 0,
                        taken_at: taken_at.clone(),
                        taken_at_ms: *taken_at_ms,
                        cluster: ClusterId::default(),
                    };
                    let json = serde_json::to_string(&a)
                        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                    inv.arg("l")
                        .arg("")
                        .arg(value.to_string())
                        .arg("")
                        .arg(taken_at_ms)
                        .arg(1)
                        .arg(json)
                        .arg("");
                }
            }
        }
        inv.arg(cluster.as_str());
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self.timed(inv.invoke_async(&mut conn)).await?;
        if flat.len() != points.len() * 2 {
            return Err(StoreError::Corrupt(format!(
                "ingest script returned {} fields for {} items",
                flat.len(),
                points.len()
            )));
        }
        points
            .iter()
            .zip(flat.chunks(2))
            .map(|(p, pair)| {
                let status = match pair[0].as_str() {
                    "stored" => IngestStatus::Stored,
                    "duplicate" => IngestStatus::Duplicate,
                    "conflict" => IngestStatus::Conflict,
                    "stale_leader" => IngestStatus::StaleLeader,
                    "not_applied" => IngestStatus::NotApplied,
                    other => return Err(StoreError::Corrupt(format!("ingest status {other:?}"))),
                };
                let round = match p {
                    NewPoint::Round(a) => a.round,
                    NewPoint::Legacy { .. } => 0,
                };
                Ok(IngestResult { round, status })
            })
            .collect()
    }

    /// The stored average of node round `round` of `cluster`, if any.
    pub async fn get(
        &self,
        cluster: &ClusterId,
        round: u64,
    ) -> Result<Option<Average>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = self
            .timed(conn.hget(&self.keys.rec, round_member(cluster, round)))
            .await?;
        json.map(|j| decode_average(&j)).transpose()
    }

    /// Number of stored points (O(1)).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(conn.zcard(&self.keys.time)).await
    }

    /// Number of points with `from_ms <= taken_at_ms <= to_ms` (O(log n)).
    pub async fn count_range(&self, from_ms: i64, to_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(conn.zcount(&self.keys.time, from_ms, to_ms))
            .await
    }

    /// Number of points strictly newer than `cursor` (its position from the top), O(log n).
    pub async fn count_newer(&self, cursor: &Cursor) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let newer_time: u64 = self
            .timed(conn.zcount(&self.keys.time, format!("({}", cursor.ms), "+inf"))
            .await?;
        // Points of the same millisecond with a greater member come earlier in newest-first
        // order; there are at most a handful of them.
        let same: Vec<String> = self
            .timed(conn.zrangebyscore(&self.keys.time, cursor.ms, cursor.ms))
            .await?;
        let same_newer = same.iter().filter(|m| **m > cursor.member).count() as u64;
        Ok(newer_time + same_newer)
    }

    /// Highest node round stored so far in the series being written now: the cluster of
    /// the newest stored node round (0 if none). A new series restarts at 1, so a maximum
    /// over all clusters would freeze at the old series' end.
    pub async fn last_round(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let newest: Vec<String> = self.timed(conn.zrevrange(&self.keys.time, 0, 15)).await?;
        let cluster = newest
            .iter()
            .find(|m| m.starts_with("r:"))
            .and_then(|m| m.get(23..))
            .and_then(|c| ClusterId::parse(c).ok())
            .unwrap_or_default();
        let v: Option<String> = self.timed(conn.get(self.keys.last_round(&cluster))).await?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Highest fencing token accepted so far from `cluster` (0 if none).
    pub async fn highest_fencing(&self, cluster: &ClusterId) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<String> = self.timed(conn.get(self.keys.fence(cluster))).await?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Every cluster with a fence or a stored node round, default first, then by id.
    pub async fn clusters(&self) -> Result<Vec<ClusterId>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = self.timed(conn.smembers(&self.keys.clusters)).await?;
        let mut out: Vec<ClusterId> = names
            .iter()
            .filter_map(|n| ClusterId::parse(n).ok())
            .filter(|c| !c.is_default())
            .collect();
        out.sort();
        out.insert(0, ClusterId::default());
        Ok(out)
    }

    /// Sets the fence of `cluster` to `token` (0 removes it: any token is accepted again).
    /// For an operator undoing a forged or obsolete fence (`sensor-api fence reset`); a
    /// real leader's next delivery raises it again. Returns the previous value.
    pub async fn set_fence(&self, cluster: &ClusterId, token: u64) -> Result<u64, StoreError> {
        let before = self.highest_fencing(cluster).await?;
        let mut conn = self.conn.clone();
        let key = self.keys.fence(cluster);
        if token == 0 {
            let _: u64 = self.timed(conn.del(key)).await?;
        } else {
            let _: () = self.timed(conn.set(key, pad(token))).await?;
        }
        Ok(before)
    }

    /// Up to `limit` points with `from_ms <= time <= to_ms`, newest first, continuing strictly
    /// after (older than) `before` when given. O(log n + limit).
    pub async fn page_desc(
        &self,
        from_ms: i64,
        to_ms: i64,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Positioned>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (max_ms, cur) = match before {
            Some(c) if c.ms <= to_ms => (c.ms, c.member.as_str()),
            _ => (to_ms, ""),
        };
        self.page("desc", max_ms, cur, from_ms, limit).await
    }

    /// Up to `limit` points with `from_ms <= time <= to_ms`, oldest first, continuing strictly
    /// after (newer than) `after` when given. O(log n + limit).
    pub async fn page_asc(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Positioned>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (min_ms, cur) = match after {
            Some(c) if c.ms >= from_ms => (c.ms, c.member.as_str()),
            _ => (from_ms, ""),
        };
        self.page("asc", min_ms, cur, to_ms, limit).await
    }

    /// Runs the paging script in `direction` ("desc" or "asc"): from `start_ms` (continuing
    /// strictly past member `cur` when non-empty) towards `end_ms`, at most `limit` points.
    async fn page(
        &self,
        direction: &str,
        start_ms: i64,
        cur: &str,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Positioned>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .timed(
                self.scripts
                    .page
                    .key(&self.keys.time)
                    .key(&self.keys.rec)
                    .arg(start_ms)
                    .arg(cur)
                    .arg(end_ms)
                    .arg(limit)
                    .arg(direction)
                    .invoke_async(&mut conn),
            )
            .await?;
        decode_positioned(&flat)
    }

    /// Averages with from_ms <= taken_at_ms <= to_ms, ascending by time, at most `limit`.
    pub async fn range_asc(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Average>, StoreError> {
        Ok(self
            .page_asc(from_ms, to_ms, None, limit)
            .await?
            .into_iter()
            .map(|p| p.average)
            .collect())
    }

    /// Time of the oldest and newest stored point, if any.
    pub async fn time_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let first: Vec<(String, f64)> = self
            .timed(conn.zrange_withscores(&self.keys.time, 0, 0))
            .await?;
        let last: Vec<(String, f64)> = self
            .timed(conn.zrange_withscores(&self.keys.time, -1, -1))
            .await?;
        match (first.first(), last.first()) {
            (Some(f), Some(l)) => Ok(Some((f.1 as i64, l.1 as i64))),
            _ => Ok(None),
        }
    }

    /// Rollup buckets of level `level` whose start lies in `[lo, hi]`, with their last_ms.
    async fn rollups(
        &self,
        level: usize,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<(Bucket, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .timed(
                self.scripts
                    .rollup_range
                    .key(&self.keys.rollidx[level])
                    .key(&self.keys.roll[level])
                    .arg(lo)
                    .arg(hi)
                    .invoke_async(&mut conn),
            )
            .await?;
        flat.chunks(2)
            .map(|pair| {
                let start: i64 = pair[0]
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("rollup start {:?}", pair[0])))?;
                parse_agg(start, pair.get(1).map(String::as_str).unwrap_or(""))
            })
            .collect()
    }

    /// Exact aggregate of all points in `[from_ms, to_ms]`, from as few rollup buckets as
    /// possible (coarse levels in the middle, finer towards the edges, raw points only for
    /// the sub-10-second remainders). The range should first be clamped to the data.
    async fn aggregate_exact(&self, from_ms: i64, to_ms: i64) -> Result<Acc, StoreError> {
        let mut acc = Acc::empty(from_ms);
        // Work list of (range, highest level allowed); ranges are inclusive.
        let mut work = vec![(from_ms, to_ms, ROLLUP_STEPS_MS.len())];
        while let Some((a, b, levels)) = work.pop() {
            if a > b {
                continue;
            }
            if levels == 0 {
                // Less than one finest rollup step (10 s) of raw points.
                for p in self.range_asc(a, b, usize::MAX >> 1).await? {
                    acc.add_point(&p);
                }
                continue;
            }
            let level = levels - 1;
            let step = ROLLUP_STEPS_MS[level];
            let first_full = floor_to(a + step - 1, step);
            let end_full = floor_to(b + 1, step); // exclusive
            if first_full < end_full {
                for (bucket, last_ms) in self.rollups(level, first_full, end_full - step).await? {
                    acc.merge(&bucket, last_ms);
                }
                work.push((a, first_full - 1, level));
                work.push((end_full, b, level));
            } else {
                work.push((a, b, level));
            }
        }
        Ok(acc)
    }

    /// Aggregates per bucket of `bucket_ms` (aligned to multiples of bucket_ms since epoch)
    /// over [from_ms, to_ms]; only non-empty buckets, ascending.
    ///
    /// Fast on huge histories: buckets fully inside the range are assembled from the
    /// coarsest rollup level whose width divides `bucket_ms`; the (at most two) partially
    /// covered edge buckets are computed exactly. Small ranges (few raw points) are
    /// aggregated from raw points. If no rollup width divides `bucket_ms` and the range is
    /// large, the coarsest rollup level at most a tenth of `bucket_ms` wide (else the 10 s
    /// level) is used, each of its buckets attributed to the output bucket containing its
    /// start: an approximation of at most one rollup step at bucket edges (every output
    /// bucket of 10 s or more contains a rollup start, so none is left spuriously empty).
    /// Callers wanting exact edges pick widths that are multiples of 10 s, 1 min, 5 min,
    /// 1 h or 1 day. Widths under 10 s are always aggregated from raw points, exactly, up
    /// to [`SUB_ROLLUP_RAW_LIMIT`] points in the range.
    ///
    /// Fails when Redis does ([`StoreError::Unavailable`]), and with
    /// [`StoreError::InvalidArgument`] for `bucket_ms <= 0` or a width under 10 s over more
    /// than [`SUB_ROLLUP_RAW_LIMIT`] points.
    pub async fn buckets(
        &self,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        if bucket_ms <= 0 {
            return Err(StoreError::InvalidArgument(format!(
                "bucket width must be positive, got {bucket_ms}"
            )));
        }
        let Some((first, last)) = self.time_bounds().await? else {
            return Ok(Vec::new());
        };
        let (from_ms, to_ms) = (from_ms.max(first), to_ms.min(last));
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let mut out: BTreeMap<i64, Acc> = BTreeMap::new();
        let mut add = |start: i64, b: &Bucket, last_ms: i64| {
            out.entry(start)
                .or_insert_with(|| Acc::empty(start))
                .merge(b, last_ms);
        };
        let raw_count = self.count_range(from_ms, to_ms).await?;
        let level = ROLLUP_STEPS_MS
            .iter()
            .rposition(|step| bucket_ms % step == 0);
        let sub_rollup = bucket_ms < ROLLUP_STEPS_MS[0];
        if sub_rollup && raw_count > SUB_ROLLUP_RAW_LIMIT {
            // Rollups are 10 s wide: they would fill only every few sub-10-second buckets
            // and leave the others empty, which reads as outages. Refuse instead.
            return Err(StoreError::InvalidArgument(format!(
                "bucket width {bucket_ms} ms is finer than the finest rollup ({} ms) and the range holds {raw_count} points (limit {SUB_ROLLUP_RAW_LIMIT}); use a width of at least {} ms or a shorter range",
                ROLLUP_STEPS_MS[0], ROLLUP_STEPS_MS[0]
            )));
        }
        if raw_count <= RAW_AGGREGATION_LIMIT || sub_rollup {
            let mut after: Option<Cursor> = None;
            loop {
                let page = self
                    .page_asc(from_ms, to_ms, after.as_ref(), RAW_PAGE)
                    .await?;
                let full = page.len() == RAW_PAGE;
                for p in &page {
                    let mut acc = Acc::empty(0);
                    acc.add_point(&p.average);
                    add(
                        floor_to(p.average.taken_at_ms, bucket_ms),
                        &acc.bucket,
                        acc.last_ms,
                    );
                }
                match page.into_iter().last() {
                    Some(p) if full => after = Some(p.cursor),
                    _ => break,
                }
            }
        } else if let Some(level) = level {
            let step = ROLLUP_STEPS_MS[level];
            let first_bucket = floor_to(from_ms, bucket_ms);
            let last_bucket = floor_to(to_ms, bucket_ms);
            let full = |s: i64| s >= from_ms && s + bucket_ms - 1 <= to_ms;
            // Interior: buckets entirely inside [from_ms, to_ms], from rollups.
            let lo = if full(first_bucket) {
                first_bucket
            } else {
                first_bucket + bucket_ms
            };
            let hi_end = if full(last_bucket) {
                last_bucket + bucket_ms
            } else {
                last_bucket
            };
            if lo < hi_end {
                for (b, last_ms) in self.rollups(level, lo, hi_end - step).await? {
                    add(floor_to(b.start_ms, bucket_ms), &b, last_ms);
                }
            }
            // Partially covered edge buckets, exactly.
            let mut edges = vec![first_bucket];
            if last_bucket != first_bucket {
                edges.push(last_bucket);
            }
            for s in edges.into_iter().filter(|s| !full(*s)) {
                let acc = self
                    .aggregate_exact(s.max(from_ms), (s + bucket_ms - 1).min(to_ms))
                    .await?;
                if acc.bucket.count > 0 {
                    add(s, &acc.bucket, acc.last_ms);
                }
            }
        } else {
            // No rollup width divides bucket_ms: take the coarsest level at most a tenth of
            // the bucket width and attribute each of its buckets to the output bucket that
            // contains its start (placement error at most one rollup step, never slow).
            let level = ROLLUP_STEPS_MS
                .iter()
                .rposition(|step| step * 10 <= bucket_ms)
                .unwrap_or(0);
            let step = ROLLUP_STEPS_MS[level];
            for (b, last_ms) in self.rollups(level, floor_to(from_ms, step), to_ms).await? {
                add(floor_to(b.start_ms, bucket_ms), &b, last_ms);
            }
        }
        Ok(out
            .into_values()
            .filter(|a| a.bucket.count > 0)
            .map(|a| a.bucket)
            .collect())
    }

    /// Count, first/last time, min/max/mean of the points in `[from_ms, to_ms]`, from rollups
    /// (fast on any history size).
    pub async fn stats(&self, from_ms: i64, to_ms: i64) -> Result<Stats, StoreError> {
        let empty = Stats {
            count: 0,
            first_ms: None,
            last_ms: None,
            min: None,
            max: None,
            mean: None,
        };
        let Some((first, last)) = self.time_bounds().await? else {
            return Ok(empty);
        };
        let (from_ms, to_ms) = (from_ms.max(first), to_ms.min(last));
        if from_ms > to_ms {
            return Ok(empty);
        }
        let acc = self.aggregate_exact(from_ms, to_ms).await?;
        if acc.bucket.count == 0 {
            return Ok(empty);
        }
        let oldest = self.page_asc(from_ms, to_ms, None, 1).await?;
        let newest = self.page_desc(from_ms, to_ms, None, 1).await?;
        let b = acc.bucket;
        Ok(Stats {
            count: b.count,
            first_ms: oldest.first().map(|p| p.cursor.ms),
            last_ms: newest.first().map(|p| p.cursor.ms),
            min: Some(b.min),
            max: Some(b.max),
            mean: Some(b.sum / b.count as f64),
        })
    }

    /// Deletes points with time <= `cutoff_ms` in small batches (each batch is one short
    /// script, so ingest is never blocked for long), the leader changes at or before it,
    /// then rollup buckets that end at or before the cutoff. Returns how many points were deleted.
    pub async fn trim_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let mut conn = self.conn.clone();
            let n: u64 = self
                .timed(
                    self.scripts
                        .trim_points
                        .key(&self.keys.time)
                        .key(&self.keys.rec)
                        .arg(cutoff_ms)
                        .arg(RETENTION_BATCH)
                        .invoke_async(&mut conn),
                )
                .await?;
            deleted += n;
            if n < RETENTION_BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Leader changes are few (one per election), so one command removes them.
        let mut conn = self.conn.clone();
        let _: u64 = self
            .timed(conn.zrembyscore(&self.keys.leaders, "-inf", cutoff_ms))
            .await?;
        for (level, step) in ROLLUP_STEPS_MS.iter().enumerate() {
            // A bucket starting at s ends at s + step - 1; delete those ending <= cutoff.
            let max_start = cutoff_ms - step + 1;
            loop {
                let mut conn = self.conn.clone();
                let n: u64 = self
                    .timed(
                        self.scripts
                            .trim_rollups
                            .key(&self.keys.rollidx[level])
                            .key(&self.keys.roll[level])
                            .arg(max_start)
                            .arg(RETENTION_BATCH)
                            .invoke_async(&mut conn),
                    )
                    .await?;
                if n < RETENTION_BATCH as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(deleted)
    }

    /// Leader changes with `from_ms <= at_ms <= to_ms`, oldest first: one `ZREVRANGEBYSCORE`
    /// over the changes recorded at ingest, so the cost depends on the number of changes,
    /// not on the number of points. At most the newest [`LEADER_CHANGES_LIMIT`]. Changes
    /// among points stored before leader changes were recorded are not known (no
    /// backfill). Fails when Redis does, or with [`StoreError::Corrupt`] for an entry this
    /// code did not write.
    pub async fn leader_changes(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<LeaderChange>, StoreError> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let entries: Vec<(String, f64)> = self
            .timed(conn.zrevrangebyscore_limit_withscores(
                &self.keys.leaders,
                to_ms,
                from_ms,
                0,
                LEADER_CHANGES_LIMIT as isize,
            ))
            .await?;
        let mut changes = entries
            .iter()
            .map(|(entry, score)| decode_leader_change(entry, *score as i64))
            .collect::<Result<Vec<_>, _>>()?;
        changes.reverse();
        Ok(changes)
    }

    /// The cutoff time that keeps only the newest `max_count` points (None if fewer).
    pub async fn count_cutoff(&self, max_count: u64) -> Result<Option<i64>, StoreError> {
        let total = self.count().await?;
        if total <= max_count {
            return Ok(None);
        }
        let rank = (total - max_count - 1) as isize;
        let mut conn = self.conn.clone();
        let at: Vec<(String, f64)> = self
            .timed(conn.zrange_withscores(&self.keys.time, rank, rank))
            .await?;
        Ok(at.first().map(|(_, s)| *s as i64))
    }
}

/// Parses a `P:leaders` entry: `<round> <fencing> ["from","to"]`.
fn decode_leader_change(entry: &str, at_ms: i64) -> Result<LeaderChange, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("leader change entry {entry:?}"));
    let mut parts = entry.splitn(3, ' ');
    let round = parts
        .next()
        .and_then(|r| r.parse().ok())
        .ok_or_else(corrupt)?;
    let fencing = parts
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(corrupt)?;
    let (from, to): (String, String) = parts
        .next()
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(corrupt)?;
    Ok(LeaderChange {
        at_ms,
        round,
        fencing,
        from,
        to,
    })
}

fn decode_average(json: &str) -> Result<Average, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("record {json:?}: {e}")))
}

fn decode_positioned(flat: &[String]) -> Result<Vec<Positioned>, StoreError> {
    flat.chunks(3)
        .map(|t| {
            if t.len() != 3 {
                return Err(StoreError::Corrupt("page triple".into()));
            }
            let ms: f64 = t[1]
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("score {:?}", t[1])))?;
            Ok(Positioned {
                average: decode_average(&t[2])?,
                cursor: Cursor {
                    ms: ms as i64,
                    member: t[0].clone(),
                },
            })
        })
        .collect()
}
