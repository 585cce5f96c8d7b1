//! The ZooKeeper layout: every znode path in one place.
//!
//! The first five are the kazoo-based implementations' layout (wire-compatible); the
//! `/rounds` subtree is ours: the durable hand-off that makes delivery exactly-once.

/// kazoo `Election` path: contenders `<uuid hex>__lock__<seq>`, data = node id.
pub const ELECTION: &str = "/election";
/// kazoo `Barrier`: up (exists) while a round is open. Data: the round number in ASCII
/// (kazoo ignores barrier data; ours is informational).
pub const BARRIER: &str = "/barrier";
/// Parent of the readings: `/mediciones/<id>`, ephemeral, data = reading as ASCII decimal.
pub const READINGS: &str = "/mediciones";
/// Id claims: `/node-ids/<id>`, ephemeral, held by the one process running node `id`
/// (see [`crate::claim`]). Ours; kazoo ignores it.
pub const NODE_IDS: &str = "/node-ids";
/// kazoo `Counter`: readings taken cluster-wide, ASCII integer.
pub const COUNTER: &str = "/counter";
/// Our counter's exactly-once markers: `/counter-writers/<uuid>`, ephemeral, one per
/// counter handle and session, written in the same transaction as `/counter` so a write
/// whose answer was lost can be told applied or not (see [`crate::zk::counter`]). kazoo
/// ignores it.
pub const COUNTER_WRITERS: &str = "/counter-writers";
/// Parent of the live config znodes.
pub const CONFIG: &str = "/config";
/// Sampling period in seconds, ASCII decimal (e.g. `5`, `0.5`).
pub const CONFIG_SAMPLING_PERIOD: &str = "/config/sampling_period";
/// Base URL of the API (e.g. `http://api:8080`).
pub const CONFIG_API_URL: &str = "/config/api_url";
/// Live API instances: `/services/api/<instance>`, ephemeral, data = base URL.
pub const SERVICES_API: &str = "/services/api";
/// sensor-api's fencing probe: every API instance writes it to learn the ensemble's
/// current zxid (a write's reply carries it), so it can refuse fencing tokens no leader
/// can hold. Ours; its content is empty and meaningless.
pub const FENCE_PROBE: &str = "/services/api-fence-probe";
/// This ensemble's cluster id ([`crate::ClusterId`], ASCII, a UUID when created by this
/// version), created once by the first leader; sent with every round so the API keeps
/// each ensemble's rounds and fencing tokens apart (see [`crate::cluster`]).
pub const CLUSTER: &str = "/cluster";
/// Parent of our round bookkeeping.
pub const ROUNDS: &str = "/rounds";
/// Number of the last committed round, ASCII integer (0 or missing = none yet).
pub const ROUNDS_LAST: &str = "/rounds/last";
/// Number of the last round the API acknowledged, ASCII integer.
pub const ROUNDS_DELIVERED: &str = "/rounds/delivered";
/// Committed but not yet acknowledged rounds: `/rounds/outbox/<round, 20 digits>`, JSON
/// [`crate::RoundResult`]. Deleted once the API acknowledged them.
pub const OUTBOX: &str = "/rounds/outbox";

/// Rounds the API refused for good (conflicting value), kept for inspection:
/// `/rounds/conflicts/<round, 20 digits>`, same JSON as the outbox.
pub const CONFLICTS: &str = "/rounds/conflicts";

/// The outbox znode of round `round` (zero-padded so names sort in round order).
pub fn outbox_entry(round: u64) -> String {
    format!("{OUTBOX}/{round:020}")
}

/// The znode of set-aside round `round` (20 digits, like the outbox, so names sort).
pub fn conflict_entry(round: u64) -> String {
    format!("{CONFLICTS}/{round:020}")
}

/// The election znode `name` (a child of [`ELECTION`], `<uuid hex>__lock__<seq>`).
pub fn contender(name: &str) -> String {
    format!("{ELECTION}/{name}")
}

/// The registration znode of API instance `instance` (a child of [`SERVICES_API`]).
pub fn api_instance(instance: &str) -> String {
    format!("{SERVICES_API}/{instance}")
}

/// The claim znode of node `id`.
pub fn node_claim(id: &str) -> String {
    format!("{NODE_IDS}/{id}")
}

/// The reading znode of node `id`.
pub fn reading(id: &str) -> String {
    format!("{READINGS}/{id}")
}
