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

use std::sync::Arc;
use std::time::Duration;

use sensor_coord::wire::ClusterId;
use sensor_coord::zk::{ensure_path, Session};
use tokio::sync::Mutex;
use tokio::time::Instant;
use zookeeper_client as zk;

/// The znode whose writes reveal the current zxid.
pub const PROBE_PATH: &str = sensor_coord::layout::FENCE_PROBE;

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

/// How long a learned ensemble id is trusted for deciding that a batch's cluster is another
/// ensemble's (an ensemble swapped behind the same address shows up at the next refresh).
pub const ENSEMBLE_ID_TTL: Duration = Duration::from_secs(10);

/// Checks fencing tokens against the ensemble's zxid; cheap to clone.
///
/// Tokens are comparable only with the zxids of the ensemble that issued them, and each
/// cluster id names one ensemble ([`sensor_coord::cluster`]). So a token is checked only when
/// its batch belongs to the cluster of the ensemble this API is connected to (its `/cluster`
/// znode; `default` while absent). A batch of another cluster cannot be verified here and is
/// let through, as without ZooKeeper: a forged token there can only become the fence of that
/// other cluster's series, never of the live one.
#[derive(Clone)]
pub struct FenceCheck {
    session: Session,
    /// What the last refresh learned; the lock also serialises refreshes.
    known: Arc<Mutex<Known>>,
}

/// The ensemble as of the last refresh.
#[derive(Default)]
struct Known {
    /// Its cluster id (`None`: not read yet).
    ensemble: Option<ClusterId>,
    /// Highest zxid seen on it (0 = none yet).
    ceiling: u64,
    /// When the last refresh started.
    last_refresh: Option<Instant>,
}

impl FenceCheck {
    /// A check over `session` (the API's registration session).
    pub fn new(session: Session) -> FenceCheck {
        FenceCheck {
            session,
            known: Arc::new(Mutex::new(Known::default())),
        }
    }

    /// The cached ceiling (highest zxid seen on the connected ensemble).
    pub async fn ceiling(&self) -> u64 {
        self.known.lock().await.ceiling
    }

    /// Accepts `token` of a batch of `cluster` when it is at or below the ensemble's current
    /// zxid, or when `cluster` is not the connected ensemble's (see the type's doc).
    pub async fn check(&self, cluster: &ClusterId, token: u64) -> Result<(), FenceError> {
        let mut known = self.known.lock().await;
        let ours = known.ensemble.as_ref().map(|id| id == cluster);
        if ours == Some(true) && token <= known.ceiling {
            return Ok(());
        }
        let recent = known
            .last_refresh
            .is_some_and(|at| at.elapsed() < ENSEMBLE_ID_TTL);
        if ours == Some(false) && recent {
            return Ok(());
        }
        if let Some(at) = known.last_refresh {
            tokio::time::sleep_until(at + MIN_REFRESH_INTERVAL).await;
        }
        known.last_refresh = Some(Instant::now());
        let (ensemble, zxid) = tokio::time::timeout(REFRESH_TIMEOUT, self.current_ensemble())
            .await
            .map_err(|_| FenceError::Unverifiable("ZooKeeper did not answer in time".into()))??;
        if known.ensemble.as_ref() != Some(&ensemble) {
            known.ceiling = 0;
        }
        known.ceiling = known.ceiling.max(zxid);
        tracing::debug!(zxid, token, ensemble = %ensemble, "fence ceiling refreshed");
        let ceiling = known.ceiling;
        let ours = &ensemble == cluster;
        known.ensemble = Some(ensemble);
        if !ours || token <= ceiling {
            Ok(())
        } else {
            Err(FenceError::Forged { token, zxid })
        }
    }

    /// The connected ensemble's cluster id and its current zxid.
    async fn current_ensemble(&self) -> Result<(ClusterId, u64), FenceError> {
        let zxid = self.current_zxid().await?;
        let client = self
            .session
            .wait_connected()
            .await
            .map_err(|e| FenceError::Unverifiable(e.to_string()))?;
        let id = sensor_coord::cluster::read(&client)
            .await
            .map_err(|e| FenceError::Unverifiable(e.to_string()))?
            .unwrap_or_default();
        Ok((id, zxid))
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
