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
//!
//! Contender znodes of our own are removed for sure, or the election stalls: an old znode of
//! a live session keeps its place in the queue, and everyone behind it (including this
//! process's next contender) waits for it forever. So:
//!
//! | Where | What happens to our old znode |
//! |---|---|
//! | [`Leadership::resign`], dropping a [`Leadership`], a cancelled [`Election::campaign`] | deleted, retried through connection loss until ZooKeeper confirms it or the session that owns it ends (expired or closed: the znode goes with it) |
//! | each [`Election::campaign`], once per session | contender znodes owned by *this* session under a prefix other than the campaign's own are leftovers (a delete lost some other way) and are deleted first |
//!
//! Invariant this relies on: at most one campaign per session and election path (a session
//! is one process's; `sensor-node` runs one campaign loop).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use zookeeper_client as zk;

use super::{ensure_path, session, ConnState, Session, ZkError};

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
        let children = super::children_opt(&client, &self.path)
            .await?
            .unwrap_or_default();
        let mut seqs: Vec<(i64, String)> = children
            .into_iter()
            .filter_map(|n| contender_sequence(&n).map(|s| (s, n)))
            .collect();
        seqs.sort();
        // Pipelined: one round trip for the lot, not one per contender.
        let paths: Vec<String> = seqs
            .iter()
            .map(|(_, name)| format!("{}/{}", self.path, name))
            .collect();
        Ok(super::get_many_opt(&client, &paths)
            .await?
            .into_iter()
            .flatten()
            .map(|(data, _)| String::from_utf8_lossy(&data).into_owned())
            .collect())
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
        let mut swept: Option<u64> = None;
        loop {
            if self.session.is_closed() {
                return Err(ZkError::Closed);
            }
            let client = self.session.wait_connected().await?;
            let generation = status.borrow_and_update().generation;
            if swept != Some(generation) {
                match self.remove_leftovers(&client, &prefix).await {
                    Ok(()) => swept = Some(generation),
                    Err(e) if e.is_transient() => {
                        tracing::debug!(error = %e, "election: transient error, retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match self
                .try_lead(&client, &prefix, generation, &mut guard)
                .await
            {
                Ok(Some((node, czxid, sequence, confirmed))) => {
                    guard.node = None;
                    let lease = Lease::new(confirmed + lease_length(client.session_timeout()));
                    return Ok(Leadership::new(
                        self.session.clone(),
                        format!("{}/{}", self.path, node),
                        czxid,
                        sequence,
                        generation,
                        lease,
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

    /// Deletes contender znodes that `client`'s session owns under a prefix other than
    /// `prefix`: leftovers of an earlier campaign of this process whose delete was lost. They
    /// would otherwise sit in the queue for as long as the session lives.
    async fn remove_leftovers(&self, client: &zk::Client, prefix: &str) -> Result<(), ZkError> {
        let my_session = client.session_id().0;
        let Some(children) = super::children_opt(client, &self.path).await? else {
            return Ok(());
        };
        for name in children {
            if name.starts_with(prefix) || contender_sequence(&name).is_none() {
                continue;
            }
            let path = format!("{}/{}", self.path, name);
            let stat = match client.check_stat(&path).await {
                Ok(Some(stat)) => stat,
                Ok(None) => continue,
                Err(e) => return Err(ZkError::zk("exists", &path, e)),
            };
            if stat.ephemeral_owner != my_session {
                continue;
            }
            super::delete_opt(client, &path, None).await?;
            tracing::warn!(node = %path, "election: removed a leftover contender of this session (an earlier delete was lost)");
        }
        Ok(())
    }

    /// One pass of kazoo's acquire loop. `Ok(None)` means "look again" (predecessor gone,
    /// session changed); it returns only after waiting for something to happen.
    async fn try_lead(
        &self,
        client: &zk::Client,
        prefix: &str,
        generation: u64,
        guard: &mut ContenderGuard,
    ) -> Result<Option<(String, i64, i64, Instant)>, ZkError> {
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
                guard.node = Some((format!("{}/{}", self.path, name), generation));
                return Ok(None);
            }
        };
        guard.node = Some((format!("{}/{}", self.path, my_node), generation));
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
                // Verify the node is ours in *this* session before claiming leadership. The
                // answer also proves the session was alive when we asked: the lease starts then.
                let asked = Instant::now();
                match client.get_data(&my_path).await {
                    Ok((_, stat)) if stat.ephemeral_owner == my_session => {
                        Ok(Some((my_node, stat.czxid, my_seq, asked)))
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

/// Deletes an abandoned contender znode (campaign cancelled or failed) in the background,
/// with [`delete_contender`]'s guarantee.
struct ContenderGuard {
    session: Session,
    /// The znode and the session generation that created it.
    node: Option<(String, u64)>,
}

impl Drop for ContenderGuard {
    fn drop(&mut self) {
        if let Some((node, generation)) = self.node.take() {
            let session = self.session.clone();
            tokio::spawn(async move { delete_contender(&session, &node, generation).await });
        }
    }
}

/// Deletes our contender znode `node`, created in session `generation`, for sure: retried
/// through connection loss and timeouts until ZooKeeper confirms it (deleted, or already
/// gone) or that session ends (expired or closed: the ephemeral goes with it). Returns
/// whether ZooKeeper confirmed the delete.
///
/// One unconfirmed delete is not enough: a request in flight when the connection drops may
/// never have reached the server, and the session, hence the znode, survives the reconnect.
async fn delete_contender(session: &Session, node: &str, generation: u64) -> bool {
    let mut status = session.status();
    let mut attempt = 0u32;
    loop {
        let s = *status.borrow_and_update();
        if s.generation != generation || matches!(s.state, ConnState::Expired | ConnState::Closed) {
            return false;
        }
        if s.state == ConnState::Connected {
            if let Ok(client) = session.client().map_err(drop).and_then(|c| {
                if c.session_id().0 == s.session_id {
                    Ok(c)
                } else {
                    Err(())
                }
            }) {
                let timeout = client.session_timeout().max(Duration::from_secs(1));
                match tokio::time::timeout(timeout, client.delete(node, None)).await {
                    Ok(Ok(())) | Ok(Err(zk::Error::NoNode)) => return true,
                    Ok(Err(e)) if !session::is_transient(&e) => {
                        tracing::error!(node, error = %e, "cannot delete our contender znode; it stays until our session ends");
                        return false;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(node, error = %e, attempt, "deleting our contender znode failed; retrying")
                    }
                    Err(_) => {
                        tracing::warn!(
                            node,
                            attempt,
                            "deleting our contender znode timed out; retrying"
                        )
                    }
                }
                attempt += 1;
                drop(client);
                // Back off briefly, but react at once to a reconnect or the session's end.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    r = status.changed() => if r.is_err() { return false; },
                }
                continue;
            }
        }
        if status.changed().await.is_err() {
            return false;
        }
    }
}

/// Proof of leadership, revoked automatically.
///
/// `is_held()` turns false — and [`Leadership::lost`] resolves — when the session is
/// suspended or expires, our contender znode is deleted, or the **lease** runs out. It never
/// turns true again: a leader that lost leadership campaigns anew.
///
/// The lease: leadership is only believed for [`lease_length`] (2/3 of the session timeout)
/// after the last request that ZooKeeper answered with "your znode is there, in your
/// session", counted from when that request was *sent*. The server cannot expire the
/// session (and so cannot let another contender lead) sooner than one session timeout after
/// receiving it, so while the lease runs nobody else leads. A monitor task renews it every
/// quarter session timeout. The lease is what makes a process that was frozen (SIGSTOP, a
/// long GC-like stall, a suspended VM) stop acting the instant it runs again, before any of
/// its tasks has noticed that the connection or the session died meanwhile. Dropping the handle resigns (deletes the
/// znode in the background); [`Leadership::resign`] does it and waits.
#[derive(Debug)]
pub struct Leadership {
    session: Session,
    node: String,
    fencing: u64,
    sequence: i64,
    held: watch::Receiver<bool>,
    lease: Lease,
    monitor: tokio::task::JoinHandle<()>,
    /// The session generation that owns our znode.
    generation: u64,
    resigned: bool,
}

/// How long an answer from ZooKeeper keeps leadership valid: 2/3 of the negotiated session
/// timeout (the server needs a full timeout of silence to expire the session), leaving a
/// third as margin for scheduling and clock-rate differences.
pub fn lease_length(session_timeout: Duration) -> Duration {
    session_timeout * 2 / 3
}

/// A deadline that only moves forward, shared by the handle and its monitor task.
#[derive(Clone, Debug)]
struct Lease {
    base: Instant,
    until_us: Arc<AtomicU64>,
}

impl Lease {
    fn new(until: Instant) -> Lease {
        let base = Instant::now();
        let until_us = until.saturating_duration_since(base).as_micros() as u64;
        Lease {
            base,
            until_us: Arc::new(AtomicU64::new(until_us)),
        }
    }

    fn deadline(&self) -> Instant {
        self.base + Duration::from_micros(self.until_us.load(Ordering::Acquire))
    }

    fn extend(&self, until: Instant) {
        let us = until.saturating_duration_since(self.base).as_micros() as u64;
        self.until_us.fetch_max(us, Ordering::AcqRel);
    }

    fn valid(&self) -> bool {
        Instant::now() < self.deadline()
    }
}

impl Leadership {
    fn new(
        session: Session,
        node: String,
        czxid: i64,
        sequence: i64,
        generation: u64,
        lease: Lease,
    ) -> Self {
        let (tx, rx) = watch::channel(true);
        let monitor = tokio::spawn(monitor(
            session.clone(),
            node.clone(),
            generation,
            tx,
            lease.clone(),
        ));
        tracing::info!(node = %node, fencing = czxid, "leadership acquired");
        Leadership {
            session,
            node,
            fencing: czxid as u64,
            sequence,
            held: rx,
            lease,
            monitor,
            generation,
            resigned: false,
        }
    }

    /// Whether we still lead, as far as this process can know without asking ZooKeeper:
    /// not revoked, and the lease has not run out (checked against the clock right now, so
    /// it is false at once when a frozen process wakes up after its session timed out).
    pub fn is_held(&self) -> bool {
        *self.held.borrow() && self.lease.valid()
    }

    /// Resolves when leadership is lost (immediately if it already is).
    pub async fn lost(&self) {
        if !self.is_held() {
            return;
        }
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
    /// commit only while we still lead (the znode's data is never changed, so version 0);
    /// [`Leadership::guarded_multi`] does exactly that.
    pub fn guard_path(&self) -> &str {
        &self.node
    }

    /// The guard of this leadership as an owned value, for a transaction built where the
    /// handle cannot go (a spawned task): [`LeaderGuard::multi`].
    pub fn guard(&self) -> LeaderGuard {
        LeaderGuard {
            node: self.node.clone(),
        }
    }

    /// Starts a ZooKeeper transaction that commits only while we still lead: its first
    /// operation checks our contender znode, and a failed check is reported as
    /// [`ZkError::LeadershipLost`] ([`GuardedMulti`]). `label` names the transaction in
    /// errors (usually the znode it is about).
    pub fn guarded_multi<'a>(&self, client: &'a zk::Client, label: &str) -> GuardedMulti<'a> {
        self.guard().multi(client, label)
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
    ///
    /// Returns once ZooKeeper confirmed the delete or the session that owns the znode ended;
    /// while the connection is down that is until it comes back (at most about one session
    /// timeout). Cancelling this future leaves the delete to a background task.
    pub async fn resign(mut self) {
        self.resigned = true;
        self.monitor.abort();
        // The guard finishes the delete in the background if this future is dropped.
        let mut guard = ContenderGuard {
            session: self.session.clone(),
            node: Some((self.node.clone(), self.generation)),
        };
        let confirmed = delete_contender(&self.session, &self.node, self.generation).await;
        guard.node = None;
        tracing::info!(node = %self.node, confirmed, "leadership resigned");
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.monitor.abort();
        if !self.resigned {
            let node = std::mem::take(&mut self.node);
            let session = self.session.clone();
            let generation = self.generation;
            tokio::spawn(async move { delete_contender(&session, &node, generation).await });
        }
    }
}

/// Revokes leadership on suspension, expiry, a new session, deletion of our znode, or when
/// the lease runs out; renews the lease every quarter session timeout while all is well.
async fn monitor(
    session: Session,
    node: String,
    generation: u64,
    held: watch::Sender<bool>,
    lease: Lease,
) {
    let revoke = |why: &str| {
        tracing::warn!(node = %node, reason = why, "leadership lost");
        held.send_replace(false);
    };
    let mut status = session.status();
    let mut deleted: Option<Pin<Box<dyn Future<Output = zk::WatchedEvent> + Send>>> = None;
    loop {
        let s = *status.borrow_and_update();
        if s.state != ConnState::Connected || s.generation != generation {
            revoke("ZooKeeper session not connected");
            return;
        }
        let Ok(client) = session.client() else {
            revoke("ZooKeeper session closed");
            return;
        };
        let my_session = client.session_id().0;
        let timeout = client.session_timeout();
        // Renew: an answer proves the session was alive when the request was sent. The
        // first pass also arms the deletion watch.
        let sent = Instant::now();
        let arm_watch = deleted.is_none();
        let answer = async {
            if arm_watch {
                client
                    .check_and_watch_stat(&node)
                    .await
                    .map(|(stat, w)| (stat, Some(w)))
            } else {
                client.check_stat(&node).await.map(|stat| (stat, None))
            }
        };
        let answer = tokio::select! {
            a = answer => Some(a),
            _ = tokio::time::sleep_until(lease.deadline().into()) => None,
        };
        drop(client);
        match answer {
            None => {
                revoke("lease expired: no answer from ZooKeeper in time");
                return;
            }
            Some(Ok((Some(stat), w))) if stat.ephemeral_owner == my_session => {
                lease.extend(sent + lease_length(timeout));
                if let Some(w) = w {
                    deleted = Some(Box::pin(w.changed()));
                }
            }
            Some(Ok(_)) => {
                revoke("contender znode deleted");
                return;
            }
            // Connection trouble: the status change or the lease will tell.
            Some(Err(e)) => tracing::debug!(node = %node, error = %e, "leadership renewal failed"),
        }
        let renew_at = sent + timeout / 4;
        let fired = async {
            match deleted.as_mut() {
                Some(f) => Some(f.await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = fired => {
                deleted = None;
                if ev.is_some_and(|ev| ev.event_type == zk::EventType::NodeDeleted) {
                    revoke("contender znode deleted");
                    return;
                }
            }
            _ = status.changed() => {}
            _ = tokio::time::sleep_until(renew_at.into()) => {}
            _ = tokio::time::sleep_until(lease.deadline().into()) => {
                if !lease.valid() {
                    revoke("lease expired: no answer from ZooKeeper in time");
                    return;
                }
            }
        }
    }
}

/// The guard of a [`Leadership`] (its contender znode), detached from the handle.
#[derive(Clone, Debug)]
pub struct LeaderGuard {
    node: String,
}

impl LeaderGuard {
    /// Starts a guarded transaction: see [`Leadership::guarded_multi`].
    pub fn multi<'a>(&self, client: &'a zk::Client, label: &str) -> GuardedMulti<'a> {
        let mut txn = client.new_multi_writer();
        // Only fails on an invalid path, which `commit` then reports.
        let invalid = txn.add_check_version(&self.node, 0).err();
        GuardedMulti {
            txn,
            label: label.to_string(),
            invalid,
        }
    }
}

/// A ZooKeeper transaction guarded by a leadership: operation 0 checks the leader's
/// contender znode (version 0), so the whole transaction applies only while that znode
/// exists, i.e. while the leader's session owns it. The caller's operations are 1, 2, ...
///
/// | failure | error from [`GuardedMulti::commit`] |
/// |---|---|
/// | the check (znode gone or replaced) | [`ZkError::LeadershipLost`] |
/// | another operation (`NodeExists`, `BadVersion`, ...) | [`ZkError::Zk`] with that error |
/// | the request (connection loss, ...) | [`ZkError::Zk`] (transient: outcome unknown) |
/// | an operation with an invalid path | [`ZkError::Zk`], nothing sent |
///
/// Callers that must tell one operation's failure apart use
/// [`GuardedMulti::commit_raw`] and [`multi_error`] for the rest.
pub struct GuardedMulti<'a> {
    txn: zk::MultiWriter<'a>,
    label: String,
    invalid: Option<zk::Error>,
}

impl<'a> GuardedMulti<'a> {
    fn add(&mut self, added: Result<(), zk::Error>) -> &mut Self {
        if let Err(e) = added {
            self.invalid.get_or_insert(e);
        }
        self
    }

    /// Adds a create of `path`.
    pub fn create(
        &mut self,
        path: &str,
        data: &[u8],
        options: &zk::CreateOptions<'_>,
    ) -> &mut Self {
        let added = self.txn.add_create(path, data, options);
        self.add(added)
    }

    /// Adds a write of `path`'s data (compare-and-set on `version` when given).
    pub fn set_data(&mut self, path: &str, data: &[u8], version: Option<i32>) -> &mut Self {
        let added = self.txn.add_set_data(path, data, version);
        self.add(added)
    }

    /// Adds a delete of `path` (compare-and-set on `version` when given).
    pub fn delete(&mut self, path: &str, version: Option<i32>) -> &mut Self {
        let added = self.txn.add_delete(path, version);
        self.add(added)
    }

    /// Commits; errors as in the table above.
    pub async fn commit(self) -> Result<Vec<zk::MultiWriteResult>, ZkError> {
        let label = self.label.clone();
        self.commit_raw().await?.map_err(|e| multi_error(&label, e))
    }

    /// Commits, giving the client's error as is for the caller to inspect (operation
    /// indices count the guard as 0). An operation that could not even be added (an
    /// invalid path) is the outer `Err`.
    pub async fn commit_raw(
        mut self,
    ) -> Result<Result<Vec<zk::MultiWriteResult>, zk::MultiWriteError>, ZkError> {
        if let Some(e) = self.invalid {
            return Err(ZkError::zk("multi", &self.label, e));
        }
        Ok(self.txn.commit().await)
    }
}

/// Maps a failed guarded transaction to [`ZkError`]: a failed check (operation 0) means we
/// are not leader any more.
pub fn multi_error(label: &str, err: zk::MultiWriteError) -> ZkError {
    match err {
        zk::MultiWriteError::RequestFailed { source } => ZkError::zk("multi", label, source),
        zk::MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::NoNode | zk::Error::BadVersion,
        } => ZkError::LeadershipLost,
        zk::MultiWriteError::OperationFailed { source, .. } => ZkError::zk("multi", label, source),
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
