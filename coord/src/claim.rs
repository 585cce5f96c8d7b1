//! One live process per node id: the id claim.
//!
//! Two processes with the same `NODE_ID` (ids taken from hostnames, a copied config) would
//! each delete the other's `/mediciones/<id>` every round, and both readings would be lost.
//! So a node claims its id before it does anything else, with an ephemeral znode
//! `/node-ids/<id>` ([`layout::node_claim`]; kazoo peers ignore it) whose data says who holds
//! it (JSON: `host`, `pid`, `session_timeout_ms`).
//!
//! The id is **held by someone else** when `/node-ids/<id>` or `/mediciones/<id>` (which a
//! kazoo-based peer writes, having no claim) exists with an `ephemeralOwner` other than our
//! session. A restarted node's own previous session may still hold both for up to one session
//! timeout, so a held id is waited for — [`grace`]: 1.5 × the longer of our session timeout
//! and the one the holder recorded (ZooKeeper expires a session between one timeout and one
//! timeout plus a tick, and a tick is at most half a timeout) — checking the owner every
//! 200 ms, before giving up with [`ClaimError::Held`].
//!
//! | When | What happens |
//! |---|---|
//! | start-up ([`acquire`]) | claimed, or [`ClaimError::Held`] after the grace: `sensor-node` exits 1 naming the id |
//! | a new session after expiry, or the claim deleted by hand ([`hold`]) | claimed again the same way; if another process took the id meanwhile, [`hold`] returns the error and the node stops |
//! | shutdown | the claim goes with the closed session |

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zookeeper_client as zkc;

use crate::layout;
use crate::zk::{self, ConnState, Session, ZkError};

/// Why the id could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another live session holds the id (after waiting out the grace period).
    #[error("node id {id:?} is in use by another live process ({holder}); each sensor needs its own --id / NODE_ID (two with one id delete each other's readings)")]
    Held {
        /// The id.
        id: String,
        /// Who holds it, as far as the znodes say.
        holder: String,
    },
    /// The session was closed while claiming (shutdown).
    #[error(transparent)]
    Zk(#[from] ZkError),
}

/// What the claim znode holds: enough for an operator to find the other process.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ClaimData {
    host: String,
    pid: u32,
    session_timeout_ms: u64,
}

/// How long a held id is waited for: 1.5 × the longer of the two session timeouts.
pub fn grace(own: Duration, holders: Option<Duration>) -> Duration {
    own.max(holders.unwrap_or_default()) * 3 / 2
}

/// Claims `id` for this process's current session, waiting out a previous session of ours.
/// Retries through connection trouble; fails with [`ClaimError::Held`] or on session close.
pub async fn acquire(session: &Session, id: &str) -> Result<u64, ClaimError> {
    let path = layout::node_claim(id);
    let mut deadline: Option<(u64, tokio::time::Instant)> = None;
    loop {
        let client = session.wait_connected().await?;
        let st = session.current_status();
        let me = client.session_id().0;
        match try_claim(&client, id, &path).await {
            Ok(None) => {
                tracing::info!(node = %id, claim = %path, "node id claimed");
                return Ok(st.generation);
            }
            Ok(Some((holder, holders_timeout))) => {
                let own = client.session_timeout();
                let until = match deadline {
                    Some((gen, until)) if gen == st.generation => until,
                    _ => {
                        let wait = grace(own, holders_timeout);
                        tracing::warn!(node = %id, holder = %holder, wait_ms = wait.as_millis() as u64, session = %format!("{me:#x}"), "node id held by another session; waiting in case it is our own previous one, expiring");
                        let until = tokio::time::Instant::now() + wait;
                        deadline = Some((st.generation, until));
                        until
                    }
                };
                if tokio::time::Instant::now() >= until {
                    return Err(ClaimError::Held {
                        id: id.to_string(),
                        holder,
                    });
                }
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(node = %id, error = %e, "claiming the node id: transient error")
            }
            Err(e) => return Err(e.into()),
        }
        drop(client);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = session.closed() => return Err(ZkError::Closed.into()),
        }
    }
}

/// One attempt: `Ok(None)` when the claim is ours now, `Ok(Some(holder, its timeout))` when
/// another session holds the id.
async fn try_claim(
    client: &zkc::Client,
    id: &str,
    path: &str,
) -> Result<Option<(String, Option<Duration>)>, ZkError> {
    let me = client.session_id().0;
    // A kazoo-style peer (or an older node) with this id shows only as /mediciones/<id>.
    let reading = layout::reading(id);
    if let Some(stat) = client
        .check_stat(&reading)
        .await
        .map_err(|e| ZkError::zk("exists", &reading, e))?
    {
        if stat.ephemeral_owner != me && stat.ephemeral_owner != 0 {
            return Ok(Some((
                format!("session {:#x} writes {reading}", stat.ephemeral_owner),
                None,
            )));
        }
    }
    let data = ClaimData {
        host: hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        pid: std::process::id(),
        session_timeout_ms: client.session_timeout().as_millis() as u64,
    };
    let bytes = serde_json::to_vec(&data).map_err(|e| ZkError::Malformed {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    zk::ensure_path(client, layout::NODE_IDS).await?;
    match client.create(path, &bytes, &zk::ephemeral()).await {
        Ok(_) => return Ok(None),
        Err(zkc::Error::NodeExists) => {}
        Err(e) => return Err(ZkError::zk("create", path, e)),
    }
    match client.get_data(path).await {
        Ok((_, stat)) if stat.ephemeral_owner == me => Ok(None),
        Ok((raw, stat)) => {
            let theirs: Option<ClaimData> = serde_json::from_slice(&raw).ok();
            let holder = match &theirs {
                Some(d) => format!(
                    "session {:#x}, host {:?}, pid {}",
                    stat.ephemeral_owner, d.host, d.pid
                ),
                None => format!("session {:#x}", stat.ephemeral_owner),
            };
            Ok(Some((
                holder,
                theirs.map(|d| Duration::from_millis(d.session_timeout_ms)),
            )))
        }
        // Gone between the create and the read: try again at once.
        Err(zkc::Error::NoNode) => Ok(Some(("(just released)".into(), None))),
        Err(e) => Err(ZkError::zk("get", path, e)),
    }
}

/// Keeps the claim for as long as the node runs: claims again after each new session and
/// when the znode is deleted by hand. Returns only with the error that must stop the node
/// (the id was taken by another process while our session was gone), or when the session is
/// closed ([`ClaimError::Zk`] with [`ZkError::Closed`]).
pub async fn hold(session: Session, id: String, mut claimed: u64) -> ClaimError {
    let path = layout::node_claim(&id);
    let mut status = session.status();
    loop {
        let st = *status.borrow_and_update();
        if st.state == ConnState::Closed {
            return ZkError::Closed.into();
        }
        if st.state == ConnState::Connected && st.generation != claimed {
            match acquire(&session, &id).await {
                Ok(g) => claimed = g,
                Err(e) => return e,
            }
            continue;
        }
        // Watch the claim while connected in the session that holds it.
        let deleted = async {
            if st.state != ConnState::Connected {
                return std::future::pending().await;
            }
            let Ok(client) = session.client() else {
                return std::future::pending().await;
            };
            match client.check_and_watch_stat(&path).await {
                Ok((Some(_), w)) => {
                    drop(client);
                    w.changed().await.event_type == zkc::EventType::NodeDeleted
                }
                Ok((None, _)) => true,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            gone = deleted => if gone {
                tracing::warn!(node = %id, claim = %path, "node id claim deleted; claiming it again");
                claimed = 0;
            },
            r = status.changed() => if r.is_err() { return ZkError::Closed.into(); },
        }
    }
}
