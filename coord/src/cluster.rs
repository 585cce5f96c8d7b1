//! The cluster identity: which round series this ZooKeeper ensemble writes.
//!
//! Round numbers live in ZooKeeper (`/rounds/last`), the history in Redis. When the fleet
//! moves to a fresh ensemble (a new data directory, a restored backup, another compose
//! file) while Redis keeps its history, rounds restart at 1 and fencing tokens (czxids)
//! may be lower than the ones the API has seen. So every ensemble carries an identity, the
//! [`layout::CLUSTER`] znode, and every round result names it ([`RoundResult::cluster`]):
//! the API keys rounds and fences per cluster, and a new ensemble simply starts a new
//! series next to the old one. Nothing is overwritten, nothing set aside, no operator step.
//!
//! | situation at [`ensure`] | outcome |
//! |---|---|
//! | `/cluster` holds a valid id | that id |
//! | `/cluster` absent, no round committed yet (fresh ensemble) | a random UUID, created once |
//! | `/cluster` absent, rounds already committed (ensemble of a version without ids) | `default`: the series its earlier rounds were stored under continues |
//! | two nodes create it at once | one create wins (`NodeExists` for the other), both read the winner's id |
//! | `/cluster` holds something invalid | [`ZkError::Malformed`]: the leader does not lead until an operator fixes it |
//!
//! The leader reads it at the start of every leadership term, so a node that meets a
//! different ensemble after a new session (expiry, servers replaced) uses that ensemble's
//! id. kazoo-based implementations ignore the znode.
//!
//! [`RoundResult::cluster`]: crate::RoundResult::cluster

use zookeeper_client as zkc;

use crate::layout;
use crate::rounds::read_u64;
use crate::wire::ClusterId;
use crate::zk::{self, ZkError};

/// The ensemble's cluster id, creating [`layout::CLUSTER`] if it does not exist yet (see
/// the module doc for which id a new one gets). Fails on ZooKeeper errors (the caller
/// retries) and on an invalid stored id.
pub async fn ensure(client: &zkc::Client) -> Result<ClusterId, ZkError> {
    if let Some(id) = read(client).await? {
        return Ok(id);
    }
    let committed = read_u64(client, layout::ROUNDS_LAST).await?.value;
    let fresh = if committed > 0 {
        ClusterId::default()
    } else {
        ClusterId::random()
    };
    match client
        .create(
            layout::CLUSTER,
            fresh.as_str().as_bytes(),
            &zk::persistent(),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(cluster = %fresh, committed, "cluster identity created");
            Ok(fresh)
        }
        Err(zkc::Error::NodeExists) => read(client).await?.ok_or_else(|| ZkError::Malformed {
            path: layout::CLUSTER.into(),
            reason: "deleted right after it was created".into(),
        }),
        Err(e) => Err(ZkError::zk("create", layout::CLUSTER, e)),
    }
}

/// The id stored in [`layout::CLUSTER`], `None` if the znode does not exist.
pub async fn read(client: &zkc::Client) -> Result<Option<ClusterId>, ZkError> {
    let Some((data, _)) = zk::get_opt(client, layout::CLUSTER).await? else {
        return Ok(None);
    };
    ClusterId::parse(&String::from_utf8_lossy(&data))
        .map(Some)
        .map_err(|e| ZkError::Malformed {
            path: layout::CLUSTER.into(),
            reason: e.to_string(),
        })
}
