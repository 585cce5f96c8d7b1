//! kazoo's `Counter`: an integer kept as ASCII decimal in a znode's data.
//!
//! Wire format as kazoo (default `int` counter): empty data means 0 (kazoo creates the node
//! with `ensure_path`, empty), otherwise `repr(int)` in ASCII, e.g. `b"42"`. Increments are
//! compare-and-set on the znode version, retried on `BadVersion`, so concurrent increments
//! from any mix of kazoo and our clients are never lost.
//!
//! Failure behaviour: if the connection drops while a write is in flight, its outcome is
//! unknown, and neither guess is safe: retrying double-counts when the write had been applied,
//! and "it looks applied" (version moved, value as expected) loses an increment when another
//! client wrote the same value. Both happened in `tests/failures.rs` when the ensemble's
//! leader server was killed under load. So each [`Counter`] handle owns a **marker**: an
//! ephemeral znode `<path>-writers/<uuid>` written in the same multi as the counter, with the
//! attempt number as data and a version check. After a lost answer we reconnect and read the
//! marker: it names the attempt that was applied, if any; and because every attempt checks
//! the marker's version, a stale attempt that is still in flight can no longer commit once a
//! later one did (or vice versa). kazoo peers see only `<path>` and its ASCII value.
//!
//! If the session *expired* while an answer was lost, the marker went with it and the outcome
//! cannot be known: [`Counter::add`] then returns an error (op `"add: outcome unknown"`)
//! instead of guessing; retrying it may double-count.

use std::sync::Arc;
use std::time::Duration;

use sensor_common::backoff::Backoff;
use zookeeper_client as zk;

use super::{ensure_path, Session, ZkError};

/// A shared counter at one path. Clones share one marker and take turns (one `add` at a
/// time per handle family); use separate handles for parallel increments.
#[derive(Clone, Debug)]
pub struct Counter {
    session: Session,
    path: String,
    marker: Arc<tokio::sync::Mutex<Marker>>,
    min_backoff: Duration,
    max_backoff: Duration,
}

/// This handle's marker znode in one session, and the next attempt number.
#[derive(Debug, Default)]
struct Marker {
    /// Session that owns the marker (0 = none yet).
    session_id: i64,
    /// `<path>-writers/<uuid>`.
    path: String,
    /// The marker's version as of our last successful write or read.
    version: i32,
    /// Attempt numbers, unique per handle.
    next_attempt: u64,
}

/// A successful [`Counter::add_observed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Added {
    /// The counter's value after the increment.
    pub value: i64,
    /// Attempts that lost the compare-and-set to another writer first.
    pub conflicts: u32,
}

/// How an attempt ended.
enum Attempt {
    Applied(i64),
    /// Counter version changed under us: read again.
    Conflict,
    /// Our cached marker state is stale: re-read it.
    MarkerStale,
    /// The answer was lost; the attempt (which would give this value) may or may not have
    /// been applied.
    Unknown(i64),
}

/// Parses kazoo's counter payload (empty = 0).
pub fn parse_counter(path: &str, data: &[u8]) -> Result<i64, ZkError> {
    if data.is_empty() {
        return Ok(0);
    }
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| ZkError::Malformed {
            path: path.to_string(),
            reason: format!(
                "counter value {:?} is not an integer",
                String::from_utf8_lossy(data)
            ),
        })
}

impl Counter {
    /// A counter at `path` (e.g. `/counter`).
    pub fn new(session: Session, path: impl Into<String>) -> Self {
        Counter {
            session,
            path: path.into(),
            marker: Arc::new(tokio::sync::Mutex::new(Marker::default())),
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
        }
    }

    /// The same counter with another jittered back-off after a version conflict: the first
    /// wait is up to `min`, doubling up to `max` (default 5 ms to 100 ms). With many writers
    /// on the one znode every failed attempt is still a replicated, logged transaction:
    /// writers that are not in a hurry (the sensors' counting, which is off their critical
    /// path) should back off further to leave room.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// The current value (0 if the znode is missing or empty).
    pub async fn get(&self) -> Result<i64, ZkError> {
        let client = self.session.wait_connected().await?;
        match client.get_data(&self.path).await {
            Ok((data, _)) => parse_counter(&self.path, &data),
            Err(zk::Error::NoNode) => Ok(0),
            Err(e) => Err(ZkError::zk("get", &self.path, e)),
        }
    }

    /// Adds `delta` and returns the new value. Retries through version conflicts and
    /// connection trouble (waiting for a reconnect) until applied exactly once, or the session
    /// is closed ([`ZkError::Closed`]). Fails without retrying when an answer was lost *and*
    /// the session expired before the outcome could be read (see the module doc).
    pub async fn add(&self, delta: i64) -> Result<i64, ZkError> {
        self.add_observed(delta).await.map(|added| added.value)
    }

    /// [`Counter::add`], also saying how contended the znode was: a caller that is not in a
    /// hurry can space its increments out when others compete for the znode.
    pub async fn add_observed(&self, delta: i64) -> Result<Added, ZkError> {
        let mut conflicts = 0;
        let value = self.add_inner(delta, &mut conflicts).await?;
        Ok(Added { value, conflicts })
    }

    async fn add_inner(&self, delta: i64, conflicts: &mut u32) -> Result<i64, ZkError> {
        let mut marker = self.marker.lock().await;
        let mut backoff = Backoff::new(self.min_backoff, self.max_backoff);
        // Attempts whose answer was lost: (attempt number, value it would give). Every attempt
        // checks the marker version we last saw, so at most one of them can ever apply, and
        // only until one of ours succeeds or the marker shows which one did.
        let mut unresolved: Vec<(u64, i64)> = Vec::new();
        let applied = |unresolved: &[(u64, i64)], seen: u64| {
            unresolved
                .iter()
                .find(|(a, _)| *a == seen)
                .map(|(_, post)| *post)
        };
        loop {
            let client = self.session.wait_connected().await?;
            let sid = client.session_id().0;
            if !unresolved.is_empty() {
                if marker.session_id != sid {
                    tracing::warn!(path = %self.path, delta, "counter write lost with its session; outcome unknown");
                    return Err(ZkError::zk(
                        "add: outcome unknown",
                        &self.path,
                        zk::Error::SessionExpired,
                    ));
                }
                match self.read_marker(&client, &mut marker).await {
                    Ok(Some(seen)) => {
                        if let Some(post) = applied(&unresolved, seen) {
                            return Ok(post);
                        }
                        // None applied so far; the next attempt checks the version just read,
                        // so a late one landing first makes it fail (and we look again).
                    }
                    Ok(None) => continue, // marker gone: the check above reports it
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if marker.session_id != sid {
                match self.create_marker(&client, &mut marker).await {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            marker.next_attempt += 1;
            let attempt = marker.next_attempt;
            match self.try_add(&client, &mut marker, delta, attempt).await {
                Ok(Attempt::Applied(v)) => return Ok(v),
                Ok(Attempt::Conflict) => {
                    *conflicts += 1;
                    // Contention: jitter a little so N clients do not collide in lockstep.
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Ok(Attempt::MarkerStale) => {
                    if let Ok(Some(seen)) = self.read_marker(&client, &mut marker).await {
                        if let Some(post) = applied(&unresolved, seen) {
                            return Ok(post);
                        }
                    }
                }
                Ok(Attempt::Unknown(post)) => {
                    unresolved.push((attempt, post));
                    drop(client);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) if e.is_transient() => {
                    drop(client);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Increments by one (see [`Counter::add`]).
    pub async fn increment(&self) -> Result<i64, ZkError> {
        self.add(1).await
    }

    async fn create_marker(&self, client: &zk::Client, marker: &mut Marker) -> Result<(), ZkError> {
        let parent = format!("{}-writers", self.path);
        ensure_path(client, &parent).await?;
        let path = format!("{parent}/{}", uuid::Uuid::new_v4().simple());
        client
            .create(&path, b"", &super::ephemeral())
            .await
            .map_err(|e| ZkError::zk("create", &path, e))?;
        *marker = Marker {
            session_id: client.session_id().0,
            path,
            version: 0,
            next_attempt: marker.next_attempt,
        };
        Ok(())
    }

    /// Reads the marker: the last applied attempt number (0 if none), and refreshes the
    /// cached version. `Ok(None)` if the marker is gone (its session expired).
    async fn read_marker(
        &self,
        client: &zk::Client,
        marker: &mut Marker,
    ) -> Result<Option<u64>, ZkError> {
        match client.get_data(&marker.path).await {
            Ok((data, stat)) => {
                marker.version = stat.version;
                Ok(Some(
                    std::str::from_utf8(&data)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                ))
            }
            Err(zk::Error::NoNode) => {
                marker.session_id = 0;
                Ok(None)
            }
            Err(e) => Err(ZkError::zk("get", &marker.path, e)),
        }
    }

    async fn try_add(
        &self,
        client: &zk::Client,
        marker: &mut Marker,
        delta: i64,
        attempt: u64,
    ) -> Result<Attempt, ZkError> {
        let (data, stat) = match client.get_data(&self.path).await {
            Ok(v) => v,
            Err(zk::Error::NoNode) => {
                ensure_path(client, &self.path).await?;
                client
                    .get_data(&self.path)
                    .await
                    .map_err(|e| ZkError::zk("get", &self.path, e))?
            }
            Err(e) => return Err(ZkError::zk("get", &self.path, e)),
        };
        let pre = parse_counter(&self.path, &data)?;
        let post = pre + delta;
        let payload = post.to_string();
        let attempt_data = attempt.to_string();
        let mut multi = client.new_multi_writer();
        let bad = |e| ZkError::zk("multi", &self.path, e);
        multi
            .add_set_data(&self.path, payload.as_bytes(), Some(stat.version))
            .map_err(bad)?;
        multi
            .add_set_data(&marker.path, attempt_data.as_bytes(), Some(marker.version))
            .map_err(bad)?;
        match multi.commit().await {
            Ok(_) => {
                marker.version += 1;
                Ok(Attempt::Applied(post))
            }
            Err(zk::MultiWriteError::OperationFailed { index: 0, source }) => match source {
                zk::Error::BadVersion | zk::Error::NoNode => Ok(Attempt::Conflict),
                e => Err(ZkError::zk("set", &self.path, e)),
            },
            Err(zk::MultiWriteError::OperationFailed { source, .. }) => match source {
                zk::Error::BadVersion | zk::Error::NoNode => Ok(Attempt::MarkerStale),
                e => Err(ZkError::zk("set", &marker.path, e)),
            },
            Err(zk::MultiWriteError::RequestFailed { source }) => {
                if super::session::is_transient(&source) {
                    Ok(Attempt::Unknown(post))
                } else {
                    Err(ZkError::zk("multi", &self.path, source))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_counter;

    #[test]
    fn kazoo_payloads_parse() {
        assert_eq!(parse_counter("/c", b"").ok(), Some(0));
        assert_eq!(parse_counter("/c", b"42").ok(), Some(42));
        assert_eq!(parse_counter("/c", b"-3").ok(), Some(-3));
        assert!(parse_counter("/c", b"abc").is_err());
        assert!(parse_counter("/c", b"3.5").is_err());
    }
}
