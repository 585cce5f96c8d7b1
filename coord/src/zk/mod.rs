//! kazoo-compatible ZooKeeper recipes that survive failure.
//!
//! Each recipe speaks kazoo's wire format, so a kazoo-based (Python) sensor and ours can share
//! one ZooKeeper, and follows Curator's rules for connection states, which is where kazoo
//! breaks (see `shared/research/kazoo-curator-recipes.md`):
//!
//! * [`session`] — one logical session that rebuilds itself after expiry and reports
//!   Connected / Suspended / Expired; the process never exits because ZooKeeper went away.
//! * [`election`] — kazoo `Election`/`Lock` naming (`<uuid-hex>__lock__<seq>`), predecessor
//!   watching (no herd effect), and a [`election::Leadership`] handle that is revoked the
//!   moment the session is suspended, with a fencing token that grows across leaders.
//! * [`barrier`] — kazoo `Barrier` (exists-watch on one znode) plus waiting for the *next*
//!   barrier, so a follower cannot take two readings in one round.
//! * [`counter`] — kazoo `Counter` (ASCII integer in the znode, compare-and-set on version).
//! * [`watch`] — data and children watches as `tokio::sync::watch` receivers that always hold
//!   the current state, re-armed across reconnects and expiry.
//!
//! Every recipe takes a [`Session`] and never keeps a `zookeeper_client::Client` longer than
//! one operation, so closing the session really closes it.

pub mod barrier;
pub mod counter;
pub mod election;
pub mod session;
pub mod watch;

pub use barrier::Barrier;
pub use counter::Counter;
pub use election::{Election, GuardedMulti, LeaderGuard, Leadership};
pub use session::{ConnState, Session, SessionConfig, SessionStatus};
pub use watch::{ChildrenWatch, DataWatch, NodeData};

use zookeeper_client as zk;

/// Errors from the recipes. [`ZkError::is_transient`] tells retryable ones apart.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// No session right now (ZooKeeper unreachable or a new session being built).
    #[error("not connected to ZooKeeper")]
    NotConnected,
    /// The [`Session`] was closed by its owner.
    #[error("ZooKeeper session closed")]
    Closed,
    /// A bounded wait ran out.
    #[error("timed out waiting for ZooKeeper")]
    Timeout,
    /// The operation needed leadership and it is gone (suspended, expired, node deleted).
    #[error("leadership lost")]
    LeadershipLost,
    /// ZooKeeper answered with an error.
    #[error("ZooKeeper {op} {path}: {source}")]
    Zk {
        /// The operation (`create`, `get`, `set`, ...).
        op: &'static str,
        /// The znode path.
        path: String,
        /// The client's error.
        #[source]
        source: zk::Error,
    },
    /// A znode held data we could not understand; the recipe reports instead of crashing.
    #[error("malformed data at {path}: {reason}")]
    Malformed {
        /// The znode path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl ZkError {
    /// Wraps a client error with the operation and path it came from.
    pub fn zk(op: &'static str, path: &str, source: zk::Error) -> ZkError {
        ZkError::Zk {
            op,
            path: path.to_string(),
            source,
        }
    }

    /// True for connection trouble (retry after reconnect), false for answers
    /// (NoNode, BadVersion, ...) and for [`ZkError::Closed`].
    pub fn is_transient(&self) -> bool {
        match self {
            ZkError::NotConnected | ZkError::Timeout => true,
            ZkError::Zk { source, .. } => session::is_transient(source),
            _ => false,
        }
    }

    /// The client error, if this is one.
    pub fn zk_error(&self) -> Option<&zk::Error> {
        match self {
            ZkError::Zk { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Persistent, open-ACL create options (what kazoo's `ensure_path` uses).
pub fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Ephemeral, open-ACL create options.
pub fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// Reads a znode's data and stat; `None` if it does not exist. Other errors are returned.
pub async fn get_opt(
    client: &zk::Client,
    path: &str,
) -> Result<Option<(Vec<u8>, zk::Stat)>, ZkError> {
    match client.get_data(path).await {
        Ok(v) => Ok(Some(v)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::zk("get", path, e)),
    }
}

/// Most reads [`get_many_opt`] keeps in flight at once.
const MAX_IN_FLIGHT: usize = 256;

/// Reads many znodes at once ([`get_opt`] each), answers in the order of `paths`. The
/// requests are pipelined over the session's one connection (up to 256 in flight), so
/// reading a thousand znodes costs a few round trips, not a thousand.
pub async fn get_many_opt<S: AsRef<str>>(
    client: &zk::Client,
    paths: &[S],
) -> Result<Vec<Option<(Vec<u8>, zk::Stat)>>, ZkError> {
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(MAX_IN_FLIGHT) {
        let reads: Vec<_> = chunk.iter().map(|p| get_opt(client, p.as_ref())).collect();
        out.extend(futures::future::try_join_all(reads).await?);
    }
    Ok(out)
}

/// A znode's children, sorted; `None` if it does not exist. Other errors are returned.
pub async fn children_opt(client: &zk::Client, path: &str) -> Result<Option<Vec<String>>, ZkError> {
    match client.list_children(path).await {
        Ok(mut names) => {
            names.sort();
            Ok(Some(names))
        }
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::zk("list", path, e)),
    }
}

/// Deletes `path` (compare-and-set on `version` when given); `false` if it did not exist
/// (absent is fine: deleted already by a retry or someone else). Other errors are returned.
pub async fn delete_opt(
    client: &zk::Client,
    path: &str,
    version: Option<i32>,
) -> Result<bool, ZkError> {
    match client.delete(path, version).await {
        Ok(()) => Ok(true),
        Err(zk::Error::NoNode) => Ok(false),
        Err(e) => Err(ZkError::zk("delete", path, e)),
    }
}

/// kazoo's `ensure_path`: creates `path` and its missing ancestors as persistent znodes with
/// empty data; existing ones are left alone.
pub async fn ensure_path(client: &zk::Client, path: &str) -> Result<(), ZkError> {
    match client.mkdir(path, &persistent()).await {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(ZkError::zk("mkdir", path, e)),
    }
}

/// Runs `op` with the session's client, retrying after connection trouble until `op`
/// succeeds, fails with a non-transient error, or `deadline` passes.
///
/// Only for idempotent operations (reads, version-checked writes whose outcome the caller
/// re-checks): a write that was applied but whose answer was lost is retried as well.
pub async fn retrying<T, F, Fut>(
    session: &Session,
    deadline: std::time::Duration,
    mut op: F,
) -> Result<T, ZkError>
where
    F: FnMut(zk::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ZkError>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let remaining = until.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(ZkError::Timeout);
        }
        let client = session.wait_connected_for(remaining).await?;
        let timeout = client
            .session_timeout()
            .max(std::time::Duration::from_secs(1));
        match tokio::time::timeout(timeout.min(remaining), op(client)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if e.is_transient() => {
                tracing::debug!(error = %e, "transient ZooKeeper error; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                tracing::debug!("ZooKeeper request timed out; retrying");
            }
        }
    }
}
