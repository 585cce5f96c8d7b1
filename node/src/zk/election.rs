//! Leader election, wire-compatible with kazoo's `Election` (= kazoo `Lock`).
//!
//! Contender znode: `<path>/<uuid4 hex>__lock__<10-digit seq>`, ephemeral-sequential, data =
//! the identifier in UTF-8. The contender with the lowest sequence leads; every other one
//! watches only its immediate predecessor (no herd effect). A kazoo contender and ours on the
//! same path therefore take turns correctly.
//!
//! Unlike kazoo, leadership is an explicit [`Leadership`] handle that is **revoked** as soon
//! as the session is suspended, expires or our znode disappears (Curator's rule: a suspended
//! connection means you may no longer be leader). Before declaring leadership we check that
//! our znode's `ephemeralOwner` is our current session (the CURATOR-696 double-leader bug).
//!
//! Fencing: [`Leadership::fencing_token`] is the contender znode's `czxid`. ZooKeeper zxids
//! grow monotonically and a later leader's znode was created after the earlier leader's one,
//! so tokens strictly increase across leaders, even if `/election` is deleted and re-created.
//! A write guarded by [`Leadership::guard_path`] (a `check` in a multi) can only commit while
//! our znode exists.

use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use super::{ensure_path, ConnState, Session, ZkError};

/// kazoo's marker between the uuid prefix and the sequence number.
pub const LOCK_MARKER: &str = "__lock__";

/// Sequence number of a kazoo lock/election contender name, or `None` for foreign names.
pub fn contender_sequence(name: &str) -> Option<i64> {
    let idx = name.rfind(LOCK_MARKER)?;
    let seq = &name[idx + LOCK_MARKER.len()..];
    let digits = seq.strip_prefix('-').unwrap_or(seq);
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// An election on one path. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Election {
    session: Session,
    path: String,
    identifier: String,
}

impl Election {
    /// An election on `path` (e.g. `/election`) for a contender named `identifier`.
    pub fn new(session: Session, path: impl Into<String>, identifier: impl Into<String>) -> Self {
        Election {
            session,
            path: path.into(),
            identifier: identifier.into(),
        }
    }

    /// The election path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// kazoo's `contenders()`: identifiers of live contenders in sequence order; the first is
    /// the current leader. Nodes that vanish while listing are skipped.
    pub async fn contenders(&self) -> Result<Vec<String>, ZkError> {
        let client = self.session.wait_connected_for(self.timeout()).await?;
        let children = match client.list_children(&self.path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(ZkError::zk("list", &self.path, e)),
        };
        let mut seqs: Vec<(i64, String)> = children
            .into_iter()
            .filter_map(|n| contender_sequence(&n).map(|s| (s, n)))
            .collect();
        seqs.sort();
        let mut out = Vec::with_capacity(seqs.len());
        for (_, name) in seqs {
            let p = format!("{}/{}", self.path, name);
            match client.get_data(&p).await {
                Ok((data, _)) => out.push(String::from_utf8_lossy(&data).into_owned()),
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(ZkError::zk("get", &p, e)),
            }
        }
        Ok(out)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Waits until we lead, then returns the handle. Survives disconnections and session
    /// expiry while waiting (re-creating the contender znode on a new session). Fails only
    /// with [`ZkError::Closed`] or on a non-transient ZooKeeper error (e.g. no permission).
    ///
    /// Cancel-safe: dropping the future leaves at most a contender znode, which is deleted
    /// at once in the background (or vanishes with the session).
    pub async fn campaign(&self) -> Result<Leadership, ZkError> {
        let prefix = format!("{}{}", uuid::Uuid::new_v4().simple(), LOCK_MARKER);
        let mut guard = ContenderGuard {
            session: self.session.clone(),
            node: None,
        };
        let mut status = self.session.status();
        loop {
            if self.session.is_closed() {
                return Err(ZkError::Closed);
            }
            let client = self.session.wait_connected().await?;
            let generation = status.borrow_and_update().generation;
            match self.try_lead(&client, &prefix, &mut guard).await {
                Ok(Some((node, czxid, sequence))) => {
                    guard.node = None;
                    return Ok(Leadership::new(
                        self.session.clone(),
                        format!("{}/{}", self.path, node),
                        czxid,
                        sequence,
                        generation,
                    ));
                }
                Ok(None) => {}
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "election: transient error, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One pass of kazoo's acquire loop. `Ok(None)` means "look again" (predecessor gone,
    /// session changed); it returns only after waiting for something to happen.
    async fn try_lead(
        &self,
        client: &zk::Client,
        prefix: &str,
        guard: &mut ContenderGuard,
    ) -> Result<Option<(String, i64, i64)>, ZkError> {
        let my_session = client.session_id().0;
        ensure_path(client, &self.path).await?;
        let children = client
            .list_children(&self.path)
            .await
            .map_err(|e| ZkError::zk("list", &self.path, e))?;
        // Our node: one with our prefix (a create whose answer was lost still counts).
        let mine = children.iter().find(|n| n.starts_with(prefix)).cloned();
        let my_node = match mine {
            Some(n) => n,
            None => {
                let create_path = format!("{}/{}", self.path, prefix);
                let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
                let (_, seq) = client
                    .create(&create_path, self.identifier.as_bytes(), &opts)
                    .await
                    .map_err(|e| ZkError::zk("create", &create_path, e))?;
                let name = format!("{prefix}{seq}");
                tracing::debug!(node = %name, "election: contender created");
                guard.node = Some(format!("{}/{}", self.path, name));
                return Ok(None);
            }
        };
        guard.node = Some(format!("{}/{}", self.path, my_node));
        let Some(my_seq) = contender_sequence(&my_node) else {
            return Err(ZkError::Malformed {
                path: my_node,
                reason: "contender name without sequence".into(),
            });
        };
        let predecessor = children
            .iter()
            .filter_map(|n| contender_sequence(n).map(|s| (s, n)))
            .filter(|(s, n)| *s < my_seq && *n != &my_node)
            .max_by_key(|(s, _)| *s)
            .map(|(_, n)| n.clone());
        let my_path = format!("{}/{}", self.path, my_node);
        match predecessor {
            None => {
                // Verify the node is ours in *this* session before claiming leadership.
                match client.get_data(&my_path).await {
                    Ok((_, stat)) if stat.ephemeral_owner == my_session => {
                        Ok(Some((my_node, stat.czxid, my_seq)))
                    }
                    Ok(_) | Err(zk::Error::NoNode) => {
                        // A node of an expired session of ours: delete and start over.
                        let _ = client.delete(&my_path, None).await;
                        guard.node = None;
                        Ok(None)
                    }
                    Err(e) => Err(ZkError::zk("get", &my_path, e)),
                }
            }
            Some(pred) => {
                let pred_path = format!("{}/{}", self.path, pred);
                match client.get_and_watch_data(&pred_path).await {
                    Ok((_, _, watcher)) => {
                        let mut status = self.session.status();
                        status.borrow_and_update();
                        tokio::select! {
                            _ = watcher.changed() => {}
                            _ = status.changed() => {}
                            _ = self.session.closed() => return Err(ZkError::Closed),
                        }
                        Ok(None)
                    }
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(ZkError::zk("get", &pred_path, e)),
                }
            }
        }
    }
}

/// Deletes an abandoned contender znode (campaign cancelled or failed) in the background.
struct ContenderGuard {
    session: Session,
    node: Option<String>,
}

impl Drop for ContenderGuard {
    fn drop(&mut self) {
        if let (Some(node), Ok(client)) = (self.node.take(), self.session.client()) {
            tokio::spawn(async move {
                let _ = client.delete(&node, None).await;
            });
        }
    }
}

/// Proof of leadership, revoked automatically.
///
/// `is_held()` turns false — and [`Leadership::lost`] resolves — when the session is
/// suspended or expires, or our contender znode is deleted. It never turns true again: a
/// leader that lost leadership campaigns anew. Dropping the handle resigns (deletes the
/// znode in the background); [`Leadership::resign`] does it and waits.
#[derive(Debug)]
pub struct Leadership {
    session: Session,
    node: String,
    fencing: u64,
    sequence: i64,
    held: watch::Receiver<bool>,
    monitor: tokio::task::JoinHandle<()>,
    resigned: bool,
}

impl Leadership {
    fn new(session: Session, node: String, czxid: i64, sequence: i64, generation: u64) -> Self {
        let (tx, rx) = watch::channel(true);
        let monitor = tokio::spawn(monitor(session.clone(), node.clone(), generation, tx));
        tracing::info!(node = %node, fencing = czxid, "leadership acquired");
        Leadership {
            session,
            node,
            fencing: czxid as u64,
            sequence,
            held: rx,
            monitor,
            resigned: false,
        }
    }

    /// Whether we still lead, as far as this process can know without asking ZooKeeper.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves when leadership is lost (immediately if it already is).
    pub async fn lost(&self) {
        let mut rx = self.held.clone();
        let _ = rx.wait_for(|held| !*held).await;
    }

    /// Strictly increasing across successive leaders: the contender znode's czxid.
    pub fn fencing_token(&self) -> u64 {
        self.fencing
    }

    /// The kazoo sequence number of our contender znode.
    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    /// Our contender znode. Put `check_version(guard_path, 0)` in a multi to make a write
    /// commit only while we still lead (the znode's data is never changed, so version 0).
    pub fn guard_path(&self) -> &str {
        &self.node
    }

    /// Asks ZooKeeper whether our znode still exists in our session. Fails with
    /// [`ZkError::LeadershipLost`] if not (and revokes the handle).
    pub async fn verify(&self) -> Result<(), ZkError> {
        if !self.is_held() {
            return Err(ZkError::LeadershipLost);
        }
        let client = self.session.client()?;
        let session_id = client.session_id().0;
        match client.get_data(&self.node).await {
            Ok((_, stat)) if stat.ephemeral_owner == session_id && self.is_held() => Ok(()),
            Ok(_) | Err(zk::Error::NoNode) => Err(ZkError::LeadershipLost),
            Err(e) => Err(ZkError::zk("get", &self.node, e)),
        }
    }

    /// Gives up leadership: deletes the contender znode so the next contender leads at once.
    pub async fn resign(mut self) {
        self.resigned = true;
        self.monitor.abort();
        if let Ok(client) = self.session.client() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), client.delete(&self.node, None)).await;
        }
        tracing::info!(node = %self.node, "leadership resigned");
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.monitor.abort();
        if !self.resigned {
            if let Ok(client) = self.session.client() {
                let node = std::mem::take(&mut self.node);
                tokio::spawn(async move {
                    let _ = client.delete(&node, None).await;
                });
            }
        }
    }
}

/// Revokes leadership on suspension, expiry, a new session, or deletion of our znode.
async fn monitor(session: Session, node: String, generation: u64, held: watch::Sender<bool>) {
    let mut status = session.status();
    loop {
        let s = *status.borrow_and_update();
        if s.state != ConnState::Connected || s.generation != generation {
            tracing::warn!(node = %node, state = ?s.state, "leadership lost: ZooKeeper session not connected");
            held.send_replace(false);
            return;
        }
        let client = match session.client() {
            Ok(c) => c,
            Err(_) => {
                held.send_replace(false);
                return;
            }
        };
        let watcher = match client.check_and_watch_stat(&node).await {
            Ok((Some(_), w)) => Some(w),
            Ok((None, _)) => {
                tracing::warn!(node = %node, "leadership lost: contender znode deleted");
                held.send_replace(false);
                return;
            }
            Err(_) => None,
        };
        drop(client);
        match watcher {
            Some(w) => {
                tokio::select! {
                    ev = w.changed() => {
                        if ev.event_type == zk::EventType::NodeDeleted {
                            tracing::warn!(node = %node, "leadership lost: contender znode deleted");
                            held.send_replace(false);
                            return;
                        }
                    }
                    _ = status.changed() => {}
                }
            }
            None => {
                // Request failed (connection trouble): the status change will tell.
                tokio::select! {
                    _ = status.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::contender_sequence;

    #[test]
    fn kazoo_names_parse() {
        assert_eq!(
            contender_sequence("3f2c0000000000000000000000009ab1__lock__0000000007"),
            Some(7)
        );
        assert_eq!(contender_sequence("x__lock__-0000000001"), Some(-1));
        assert_eq!(contender_sequence("_c_1234-latch-0000000001"), None);
        assert_eq!(contender_sequence("abc__lock__12"), None);
    }
}
