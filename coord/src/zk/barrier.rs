//! kazoo's `Barrier`: "the barrier is up while its znode exists".
//!
//! Wire format as kazoo: one persistent znode with empty data (kazoo `create()` is
//! `ensure_path`), removed by a plain delete. So our leader can release a kazoo follower's
//! `Barrier.wait()` and vice versa.
//!
//! What kazoo lacks, and this has:
//! * waits survive disconnections and session expiry: the watch is re-armed and the znode
//!   re-checked after every state change (kazoo's `wait()` can hang forever after one);
//! * [`Barrier::wait_next`]: wait for a barrier *newer* than the one already seen (by czxid),
//!   so a follower that finished a round cannot slip through the gap between the leader's
//!   `remove()` and its next `create()` and run the same round twice.
//! * [`Barrier::wait_raised`] also returns the version seen ([`Raised`]), so a write can be
//!   made conditional on the barrier still being up (a check in the same transaction).

use std::time::Duration;

use zookeeper_client as zk;

use super::{ensure_path, ConnState, Session, ZkError};

/// One barrier znode.
#[derive(Clone, Debug)]
pub struct Barrier {
    session: Session,
    path: String,
}

/// Identity of one raised barrier: the znode's creation zxid (unique, increasing).
pub type BarrierId = i64;

/// One raised barrier as a waiter saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// Its id (creation zxid).
    pub id: BarrierId,
    /// Its data version when seen: a multi can check it to write only while the barrier is
    /// still up ([`Raised::guard`]). A barrier re-created at the same path has version 0 again,
    /// so this alone cannot tell two barriers apart: callers that must (the round protocol)
    /// add a check of their own.
    pub version: i32,
}

impl Raised {
    /// Adds "this barrier is still up, unchanged" to a transaction.
    pub fn guard(&self, txn: &mut zk::MultiWriter<'_>, path: &str) -> Result<(), ZkError> {
        txn.add_check_version(path, self.version)
            .map_err(|e| ZkError::zk("multi", path, e))
    }
}

impl Barrier {
    /// A barrier at `path` (e.g. `/barrier`).
    pub fn new(session: Session, path: impl Into<String>) -> Self {
        Barrier {
            session,
            path: path.into(),
        }
    }

    /// The barrier path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Raises the barrier (idempotent, like kazoo's `create()`); returns its id (czxid).
    pub async fn create(&self) -> Result<BarrierId, ZkError> {
        let client = self.session.wait_connected().await?;
        ensure_path(&client, &self.path).await?;
        match client.check_stat(&self.path).await {
            Ok(Some(stat)) => Ok(stat.czxid),
            Ok(None) => Err(ZkError::zk("exists", &self.path, zk::Error::NoNode)),
            Err(e) => Err(ZkError::zk("exists", &self.path, e)),
        }
    }

    /// Lowers the barrier. `Ok(true)` if we deleted it, `Ok(false)` if it was not there.
    pub async fn remove(&self) -> Result<bool, ZkError> {
        let client = self.session.wait_connected().await?;
        match client.delete(&self.path, None).await {
            Ok(()) => Ok(true),
            Err(zk::Error::NoNode) => Ok(false),
            Err(e) => Err(ZkError::zk("delete", &self.path, e)),
        }
    }

    /// The current barrier's id, or `None` when the barrier is down.
    pub async fn current(&self) -> Result<Option<BarrierId>, ZkError> {
        let client = self.session.wait_connected().await?;
        client
            .check_stat(&self.path)
            .await
            .map(|s| s.map(|s| s.czxid))
            .map_err(|e| ZkError::zk("exists", &self.path, e))
    }

    /// kazoo's `wait()`: returns when the barrier is down (at once if it is). Survives
    /// reconnects and expiry. `Err(Timeout)` after `timeout` if given.
    pub async fn wait_removed(&self, timeout: Option<Duration>) -> Result<(), ZkError> {
        self.wait_for(timeout, |stat| stat.is_none())
            .await
            .map(|_| ())
    }

    /// Waits for a barrier whose id is greater than `after` (pass `None` to accept any
    /// raised barrier) and returns its id. This is how a follower waits for the *next* round.
    pub async fn wait_next(
        &self,
        after: Option<BarrierId>,
        timeout: Option<Duration>,
    ) -> Result<BarrierId, ZkError> {
        self.wait_raised(after, timeout).await.map(|r| r.id)
    }

    /// [`Barrier::wait_next`], returning the version seen too (to guard a write with it).
    pub async fn wait_raised(
        &self,
        after: Option<BarrierId>,
        timeout: Option<Duration>,
    ) -> Result<Raised, ZkError> {
        let floor = after.unwrap_or(i64::MIN);
        let stat = self
            .wait_for(timeout, |stat| matches!(stat, Some(s) if s.czxid > floor))
            .await?;
        stat.map(|s| Raised {
            id: s.czxid,
            version: s.version,
        })
        .ok_or_else(|| ZkError::zk("exists", &self.path, zk::Error::NoNode))
    }

    async fn wait_for(
        &self,
        timeout: Option<Duration>,
        done: impl Fn(&Option<zk::Stat>) -> bool,
    ) -> Result<Option<zk::Stat>, ZkError> {
        let work = async {
            let mut status = self.session.status();
            loop {
                let client = self.session.wait_connected().await?;
                status.borrow_and_update();
                match client.check_and_watch_stat(&self.path).await {
                    Ok((stat, watcher)) => {
                        if done(&stat) {
                            return Ok(stat);
                        }
                        drop(client);
                        tokio::select! {
                            _ = watcher.changed() => {}
                            _ = wait_state_change(&mut status) => {}
                            _ = self.session.closed() => return Err(ZkError::Closed),
                        }
                    }
                    Err(e) if super::session::is_transient(&e) => {
                        drop(client);
                        tokio::select! {
                            _ = wait_state_change(&mut status) => {}
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                    Err(e) => return Err(ZkError::zk("exists", &self.path, e)),
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| ZkError::Timeout)?,
            None => work.await,
        }
    }
}

/// Resolves when the session state changes (e.g. reconnected after a suspension), so a wait
/// re-checks the znode instead of trusting a watch registered on a connection that died.
async fn wait_state_change(status: &mut tokio::sync::watch::Receiver<super::SessionStatus>) {
    loop {
        if status.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if status.borrow().state == ConnState::Connected {
            return;
        }
    }
}
