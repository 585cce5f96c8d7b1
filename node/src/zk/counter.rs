//! kazoo's `Counter`: an integer kept as ASCII decimal in a znode's data.
//!
//! Wire format as kazoo (default `int` counter): empty data means 0 (kazoo creates the node
//! with `ensure_path`, empty), otherwise `repr(int)` in ASCII, e.g. `b"42"`. Increments are
//! compare-and-set on the znode version, retried on `BadVersion`, so concurrent increments
//! from any mix of kazoo and our clients are never lost.
//!
//! Failure behaviour: if the connection drops while a `set` is in flight, its outcome is
//! unknown. We re-read: if the znode moved exactly one version and holds our new value, the
//! increment is taken as applied; otherwise it is retried. (Two clients that read the same
//! value and both lost their answers could both take the one success as theirs; ZooKeeper
//! offers no way to tell, and kazoo simply retries, double counting instead.)

use std::time::Duration;

use zookeeper_client as zk;

use super::{ensure_path, Session, ZkError};

/// A shared counter at one path.
#[derive(Clone, Debug)]
pub struct Counter {
    session: Session,
    path: String,
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
        }
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
    /// connection trouble (waiting for a reconnect) until applied or the session is closed.
    pub async fn add(&self, delta: i64) -> Result<i64, ZkError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            let client = self.session.wait_connected().await?;
            match self.try_add(&client, delta).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    drop(client);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(ZkError::Zk {
                    source: zk::Error::BadVersion,
                    ..
                }) => {
                    // Contention: jitter a little so N clients do not collide in lockstep.
                    let jitter = rand::random_range(0..=backoff.as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Increments by one (see [`Counter::add`]).
    pub async fn increment(&self) -> Result<i64, ZkError> {
        self.add(1).await
    }

    async fn try_add(&self, client: &zk::Client, delta: i64) -> Result<i64, ZkError> {
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
        match client
            .set_data(&self.path, payload.as_bytes(), Some(stat.version))
            .await
        {
            Ok(_) => Ok(post),
            Err(e) if super::session::is_transient(&e) => {
                // Outcome unknown: look once the connection is back.
                let client = self.session.wait_connected().await?;
                match client.get_data(&self.path).await {
                    Ok((now, now_stat))
                        if now_stat.version == stat.version + 1 && now == payload.as_bytes() =>
                    {
                        Ok(post)
                    }
                    _ => Err(ZkError::zk("set", &self.path, e)),
                }
            }
            Err(e) => Err(ZkError::zk("set", &self.path, e)),
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
