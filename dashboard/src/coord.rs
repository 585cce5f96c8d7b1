//! Everything the dashboard takes from the node crate, in one place: the ZooKeeper
//! session and recipes, the znode layout, `sensorctl status`'s reader and types, and the
//! nodes' config validation. When these move to a shared coordination crate, only this
//! file changes.

pub use sensor_node::config::{
    init_tracing, parse_api_url, parse_zk_hosts, ConfigError, LogFormat,
};
pub use sensor_node::ctl::{self, ConfigEntry, ConfigKey, CtlError, ValueSource};
pub use sensor_node::layout;
pub use sensor_node::outbox::CONFLICTS;
pub use sensor_node::zk::election::contender_sequence;
pub use sensor_node::zk::session::split_chroot;
pub use sensor_node::zk::{self, ConnState, Session, SessionConfig, ZkError};
