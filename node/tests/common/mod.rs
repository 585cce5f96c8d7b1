//! Shared by the node's end-to-end tests: the harness pieces live in `testkit`; this only
//! binds them to this crate's `sensor-node` binary.
#![allow(dead_code, unused_imports)]

pub use testkit::{NodeOpts, Receiver};

/// A sensor-node process (see [`testkit::Node`]).
pub type Node = testkit::Node;

/// Spawns this crate's `sensor-node` as node `id`.
pub fn spawn(id: &str, opts: &NodeOpts) -> Node {
    testkit::Node::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_sensor-node")),
        id,
        opts,
    )
}
