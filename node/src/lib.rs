//! # zk-sensors node: the coordination library behind `sensor-node` and `sensorctl`
//!
//! A fleet of sensor nodes coordinates through Apache ZooKeeper, with the znode layout the
//! existing kazoo-based (Python) implementations use, so both can share one ensemble:
//!
//! | znode | kind | written by | content |
//! |---|---|---|---|
//! | `/election/<uuid>__lock__<seq>` | ephemeral-sequential | every node | node id (kazoo `Election`) |
//! | `/barrier` | persistent | the leader | round number, ASCII (kazoo `Barrier` ignores data): up while a round runs |
//! | `/mediciones/<id>` | ephemeral | each node | its latest reading, ASCII decimal |
//! | `/node-ids/<id>` | ephemeral | each node | claims the id: one live process per id ([`claim`]) |
//! | `/counter` | persistent | each node | readings taken cluster-wide, ASCII integer (kazoo `Counter`) |
//! | `/counter-writers/<uuid>` | ephemeral | each node | marker written with each increment: exactly-once after a lost answer |
//! | `/config/sampling_period`, `/config/api_url` | persistent | operators (`sensorctl`) | live config |
//! | `/services/api/<instance>` | ephemeral | each sensor-api | its base URL (discovery) |
//! | `/rounds/last` | persistent | the leader | last committed round number |
//! | `/rounds/outbox/<round>` | persistent | the leader | committed, not yet delivered [`RoundResult`] (JSON) |
//! | `/rounds/delivered` | persistent | the leader | last round the API acknowledged |
//! | `/rounds/conflicts/<round>` | persistent | the leader | rounds the API refused for good (kept, not dropped) |
//! | `/cluster` | persistent | the first leader | this ensemble's cluster id (UUID): the API keeps rounds and fences per cluster ([`cluster`]) |
//!
//! ## The round protocol, in short
//! The leader opens a round by creating `/barrier`; every node takes one reading for it and
//! writes `/mediciones/<id>` while that round is still open; after `sampling_period` the
//! leader averages the readings that count for the round and, in one ZooKeeper transaction
//! guarded by its election znode, records the result in the outbox, advances `/rounds/last`
//! and removes the barrier. **The one freshness rule:** a reading counts for the round in
//! progress if it was written after the previous round closed (its mzxid is greater than
//! `/rounds/last`'s), which counts kazoo followers (they publish between barriers) and ours
//! alike, each once per round ([`round::RoundState`]).
//! Delivery drains the outbox in order; the API is idempotent on the round number and
//! rejects older fencing tokens. So every round reaches the API exactly once, in order,
//! across leader crashes, session expiry, ZooKeeper server crashes and API outages. The
//! details, and why each failure is covered, are in [`round`] and [`outbox`]; the process
//! wiring (tasks, shutdown) in [`node`].
//!
//! The recipes live in [`zk`]; they are kazoo-compatible on the wire and follow Curator's
//! connection-state rules (a suspended session means "no longer leader").

#![warn(missing_docs)]

pub mod claim;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod delivery;
pub mod layout;
pub mod node;
pub mod outbox;
pub mod result;
pub mod round;
pub mod zk;

pub use result::{ClusterId, RoundResult};
