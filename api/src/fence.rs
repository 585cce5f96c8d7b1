//! Fencing tokens that cannot be forged upward.
//!
//! A leader's fencing token is the `czxid` of its contender znode, so no genuine token can
//! exceed the ZooKeeper ensemble's current zxid. The store keeps the highest token it ever
//! accepted as the fence and refuses lower ones (409 `stale_leader`); a forged token above
//! every real one would therefore lock out every real leader for good. With a ZooKeeper
//! session (`ZOOKEEPER_HOSTS`), [`FenceCheck`] refuses such tokens before the store sees
//! them.
//!
//! How the current zxid is learned: the client library does not expose the zxid of its
//! replies, so a refresh writes the probe znode [`PROBE_PATH`] and reads the `mzxid` of
//! that write. Writes are totally ordered, and the leader received its contender znode's
//! creation before it sent the token, so every genuine token is at or below the probe's
//! zxid. The value is cached: a refresh happens only for a token above the cached ceiling
//! (once per new leader), one at a time, at most one per [`MIN_REFRESH_INTERVAL`], so a
//! client spamming forged tokens costs ZooKeeper at most a few small writes per second.
//!
//! | situation | answer |
//! |---|---|
//! | token <= cached ceiling | accepted here (the store still checks staleness) |
//! | token > ceiling, <= zxid after a refresh | accepted; ceiling raised |
//! | token > zxid after a refresh | [`FenceError::Forged`] → 400 naming `fencing`, nothing stored |
//! | ZooKeeper unreachable during a needed refresh | [`FenceError::Unverifiable`] → 503, retry |
//!
//! Without ZooKeeper the API cannot tell a forged token from a real one and trusts every
//! holder of the write token (see the README).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sensor_node::zk::{ensure_path, Session};
use tokio::sync::Mutex;
use tokio::time::Instant;
use zookeeper_client as zk;

/// The znode whose writes reveal the current zxid.
pub const PROBE_PATH: &str = "/services/api-fence-probe";

/// Longest wait for ZooKeeper during one refresh.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(3);

/// Refreshes are at least this far apart.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(50);

/// Why a fencing token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The token is higher than any zxid the ensemble has issued.
    #[error("fencing token {token} is higher than ZooKeeper's current zxid {zxid}: no leader can hold it")]
    Forged {
        /// The presented token.
        token: u64,
        /// The ensemble's zxid at the check.
        zxid: u64,
    },
    /// ZooKeeper could not be asked in time.
    #[error("cannot verify the fencing token against ZooKeeper: {0}")]
    Unverifiable(String),
}

/// Checks fencing tokens against the ensemble's zxid; cheap to clone.
#[derive(Clone)]
pub struct FenceCheck {
    session: Session,
    /// Highest zxid seen so far (0 = none yet).
    ceiling: Arc<AtomicU64>,
    /// Serialises refreshes; holds the time of the last one.
    last_refresh: Arc<Mutex<Option<Instant>>>,
}

impl FenceCheck {
    /// A check over `session` (the API's registration session).
    pub fn new(session: Session) -> FenceCheck {
        FenceCheck {
            session,
            ceiling: Arc::new(AtomicU64::new(0)),
            last_refresh: Arc::new(Mutex::new(None)),
        }
    }

    /// The cached ceiling (highest zxid seen).
    pub fn ceiling(&self) -> u64 {
        self.ceiling.load(Ordering::Acquire)
    }

    /// Accepts `token` when it is at or below the ensemble's current zxid.
    pub async fn check(&self, token: u64) -> Result<(), FenceError> {
        if token <= self.ceiling() {
            return Ok(());
        }
        let mut last = self.last_refresh.lock().await;
        // Another request may have refreshed while we waited.
        if token <= self.ceiling() {
            return Ok(());
        }
        if let Some(at) = *last {
            tokio::time::sleep_until(at + MIN_REFRESH_INTERVAL).await;
        }
        *last = Some(Instant::now());
        let zxid = tokio::time::timeout(REFRESH_TIMEOUT, self.current_zxid())
            .await
            .map_err(|_| FenceError::Unverifiable("ZooKeeper did not answer in time".into()))??;
        self.ceiling.fetch_max(zxid, Ordering::AcqRel);
        tracing::debug!(zxid, token, "fence ceiling refreshed");
        if token <= zxid {
            Ok(())
        } else {
            Err(FenceError::Forged { token, zxid })
        }
    }

    /// Writes the probe znode and returns the zxid of that write.
    async fn current_zxid(&self) -> Result<u64, FenceError> {
        let unverifiable = |e: &dyn std::fmt::Display| FenceError::Unverifiable(e.to_string());
        let client = self
            .session
            .wait_connected()
            .await
            .map_err(|e| unverifiable(&e))?;
        for _ in 0..2 {
            match client.set_data(PROBE_PATH, b"", None).await {
                Ok(stat) => return u64::try_from(stat.mzxid).map_err(|e| unverifiable(&e)),
                Err(zk::Error::NoNode) => ensure_path(&client, PROBE_PATH)
                    .await
                    .map_err(|e| unverifiable(&e))?,
                Err(e) => return Err(unverifiable(&e)),
            }
        }
        Err(FenceError::Unverifiable(format!(
            "{PROBE_PATH} keeps disappearing"
        )))
    }
}
