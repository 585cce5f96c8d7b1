//! # zk-sensors node: the coordination library behind `sensor-node` and `sensorctl`
//!
//! A fleet of sensor nodes coordinates through Apache ZooKeeper, with the znode layout the
//! existing kazoo-based (Python) implementations use, so both can share one ensemble:
//!
//! | znode | kind | written by | content |
//! |---|---|---|---|
//! | `/election/<uuid>__lock__<seq>` | ephemeral-sequential | every node | node id (kazoo `Election`) |
//! | `/barrier` | persistent | the leader | empty (kazoo `Barrier`): up while a round runs |
//! | `/mediciones/<id>` | ephemeral | each node | its latest reading, ASCII decimal |
//! | `/counter` | persistent | each node | readings taken cluster-wide, ASCII integer (kazoo `Counter`) |
//! | `/config/sampling_period`, `/config/api_url` | persistent | operators (`sensorctl`) | live config |
//!
//! The recipes live in [`zk`]; they are kazoo-compatible on the wire and follow Curator's
//! connection-state rules (a suspended session means "no longer leader").

pub mod config;
pub mod ctl;
pub mod delivery;
pub mod layout;
pub mod node;
pub mod outbox;
pub mod result;
pub mod round;
pub mod zk;

pub use result::RoundResult;
