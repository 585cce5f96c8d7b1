//! # zk-sensors node: `sensor-node` and `sensorctl`
//!
//! A fleet of sensor nodes coordinates through Apache ZooKeeper, with the znode layout the
//! existing kazoo-based (Python) implementations use, so both can share one ensemble. The
//! recipes, the layout (table in `sensor_coord`'s crate doc), the cluster-state reader and
//! the wire contract live in the coordination library, `sensor_coord`; this crate is the
//! node's behaviour on top of it: rounds, the outbox, delivery to the API, the process
//! wiring and `sensorctl`'s command line.
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
//! The recipes live in [`zk`] (re-exported from `sensor_coord`); they are kazoo-compatible
//! on the wire and follow Curator's connection-state rules (a suspended session means "no
//! longer leader").

#![warn(missing_docs)]

pub mod config;
pub mod ctl;
pub mod delivery;
pub mod node;
pub mod outbox;
pub mod round;

// The coordination library, under the names this crate's modules and tests have always
// used for it.
pub use sensor_coord::wire as result;
pub use sensor_coord::{claim, cluster, layout, zk};
pub use sensor_coord::{ClusterId, RoundResult};
