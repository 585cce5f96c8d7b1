//! # zk-sensors coord: the fleet's coordination library
//!
//! Everything more than one process needs to agree on: `sensor-node` and `sensorctl` (the
//! node crate), `sensor-api` (registration, fencing), `sensor-dashboard`, the chaos suite
//! and the benchmarks depend on this crate, none of them on each other.
//!
//! * [`zk`] — kazoo-compatible ZooKeeper recipes that survive failure (session, election,
//!   barrier, counter, watches).
//! * [`layout`] — every znode path, in one place.
//! * [`rounds`] — the `/rounds` bookkeeping as ZooKeeper records it, and the one freshness
//!   rule ([`rounds::RoundState::counts`]).
//! * [`status`] — the cluster-state reader behind `sensorctl status` and the dashboard.
//! * [`config`] — validation of the values operators set (sampling period, API URL,
//!   connect string, node id), shared by nodes, `sensorctl` and the dashboard.
//! * [`cluster`] — the ensemble's identity; [`claim`] — one live process per node id.
//! * [`wire`] — what crosses HTTP between the leader and sensor-api.
//!
//! The znode layout, shared with the existing kazoo-based (Python) implementations so both
//! can use one ensemble:
//!
//! | znode | kind | written by | content |
//! |---|---|---|---|
//! | `/election/<uuid>__lock__<seq>` | ephemeral-sequential | every node | node id (kazoo `Election`) |
//! | `/barrier` | persistent | the leader | round number, ASCII (kazoo `Barrier` ignores data): up while a round runs |
//! | `/mediciones/<id>` | ephemeral | each node | its latest reading, ASCII decimal |
//! | `/node-ids/<id>` | ephemeral | each node | claims the id: one live process per id ([`claim`]) |
//! | `/counter` | persistent | each node | readings taken cluster-wide, ASCII integer (kazoo `Counter`) |
//! | `/counter-writers/<uuid>` | ephemeral | each node | marker written with each increment: exactly-once after a lost answer |
//! | `/config/sampling_period`, `/config/api_url` | persistent | operators (`sensorctl`, dashboard) | live config |
//! | `/services/api/<instance>` | ephemeral | each sensor-api | its base URL (discovery) |
//! | `/rounds/last` | persistent | the leader | last committed round number |
//! | `/rounds/outbox/<round>` | persistent | the leader | committed, not yet delivered [`RoundResult`] (JSON) |
//! | `/rounds/delivered` | persistent | the leader | last round the API acknowledged |
//! | `/rounds/conflicts/<round>` | persistent | the leader | rounds the API refused for good (kept, not dropped) |
//! | `/cluster` | persistent | the first leader | this ensemble's cluster id (UUID): the API keeps rounds and fences per cluster ([`cluster`]) |

#![warn(missing_docs)]

pub mod claim;
pub mod cluster;
pub mod config;
pub mod layout;
pub mod rounds;
pub mod status;
pub mod wire;
pub mod zk;

pub use wire::{ClusterId, RoundResult};
