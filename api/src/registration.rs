//! Service registration: while this process runs, the ephemeral znode
//! `/services/api/<instance id>` holds its advertised URL, so nodes discover live API
//! instances by listing `/services/api`.
//!
//! Built on the coordination library's self-healing [`Session`]: after a session expiry
//! (ZooKeeper outage longer than the session timeout, or a long GC/SIGSTOP pause) a new
//! session is built and the znode is re-created. A znode left behind by one of *our*
//! earlier sessions (ZooKeeper keeps an expired session's ephemerals for up to one session
//! timeout) is deleted and re-created at once; one owned by a foreign session (another live
//! instance configured with the same id) is left alone and retried every few seconds, with
//! a warning, so two instances never fight over one name.
//!
//! The znode is watched: deleted by an operator, it comes back. On shutdown
//! [`Registration::stop`] closes the session, so the znode vanishes immediately instead of
//! after the session timeout and nodes stop sending to this instance at once.

use std::time::Duration;

use sensor_coord::layout;
use sensor_coord::zk::{ensure_path, ephemeral, ConnState, Session, SessionConfig, ZkError};
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::config::Config;

/// Parent znode of every API instance's registration.
pub const SERVICES_PATH: &str = layout::SERVICES_API;

/// Session timeout requested from ZooKeeper (clamped by the server).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between attempts after an error or while a foreign session holds the name.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// A running registration; [`Registration::stop`] removes the znode.
#[derive(Debug)]
pub struct Registration {
    session: Session,
    task: JoinHandle<()>,
    path: String,
}

impl Registration {
    /// Starts registering `url` as `/services/api/<id>` on `connect_string`. Returns at once;
    /// connecting and (re-)creating happen in the background for as long as it runs.
    pub fn start(connect_string: &str, id: &str, url: &str) -> Registration {
        let session = Session::start(SessionConfig::new(connect_string, SESSION_TIMEOUT));
        let path = layout::api_instance(id);
        let task = tokio::spawn(run(session.clone(), path.clone(), url.to_string()));
        Registration {
            session,
            task,
            path,
        }
    }

    /// The registered znode path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The ZooKeeper session (for status checks).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Stops re-registering and closes the session: the znode disappears now.
    pub fn stop(self) {
        self.task.abort();
        self.session.close();
        tracing::info!(path = %self.path, "deregistered from ZooKeeper");
    }
}

/// Starts the registration described by the config, when `ZOOKEEPER_HOSTS` is set.
pub fn spawn(config: &Config) -> Option<Registration> {
    let hosts = config.zookeeper_hosts.as_deref()?;
    Some(Registration::start(
        hosts,
        &config.effective_instance_id(),
        &config.effective_advertise_url(),
    ))
}

/// What [`ensure_registered`] found.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The znode is ours (created now, or already there).
    Registered,
    /// A live foreign session owns the name.
    TakenBy(i64),
}

async fn ensure_registered(
    client: &zk::Client,
    path: &str,
    url: &[u8],
    our_sessions: &[i64],
) -> Result<Outcome, ZkError> {
    let me = client.session_id().0;
    ensure_path(client, SERVICES_PATH).await?;
    for _ in 0..3 {
        match client.create(path, url, &ephemeral()).await {
            Ok(_) => {
                tracing::info!(%path, url = %String::from_utf8_lossy(url), session = me, "registered in ZooKeeper");
                return Ok(Outcome::Registered);
            }
            Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(ZkError::zk("create", path, e)),
        }
        let (data, stat) = match client.get_data(path).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) => continue, // vanished meanwhile: create again
            Err(e) => return Err(ZkError::zk("get", path, e)),
        };
        let owner = stat.ephemeral_owner;
        if owner == me {
            if data != url {
                client
                    .set_data(path, url, Some(stat.version))
                    .await
                    .map_err(|e| ZkError::zk("set", path, e))?;
            }
            return Ok(Outcome::Registered);
        }
        if !our_sessions.contains(&owner) {
            return Ok(Outcome::TakenBy(owner));
        }
        // Left behind by one of our expired sessions: replace it now.
        match client.delete(path, Some(stat.version)).await {
            Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => {}
            Err(e) => return Err(ZkError::zk("delete", path, e)),
        }
    }
    Err(ZkError::Malformed {
        path: path.to_string(),
        reason: "znode keeps reappearing".to_string(),
    })
}

async fn run(session: Session, path: String, url: String) {
    let mut our_sessions: Vec<i64> = Vec::new();
    let mut status = session.status();
    loop {
        let client = match session.wait_connected().await {
            Ok(c) => c,
            Err(_) => return, // closed
        };
        let me = client.session_id().0;
        if !our_sessions.contains(&me) {
            our_sessions.push(me);
        }
        let outcome = tokio::time::timeout(
            SESSION_TIMEOUT,
            ensure_registered(&client, &path, url.as_bytes(), &our_sessions),
        )
        .await;
        let registered = match outcome {
            Ok(Ok(Outcome::Registered)) => true,
            Ok(Ok(Outcome::TakenBy(owner))) => {
                tracing::warn!(%path, owner, "instance id registered by another live session; retrying (set INSTANCE_ID to a unique name)");
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(%path, error = %e, "registration failed; retrying");
                false
            }
            Err(_) => {
                tracing::warn!(%path, "registration timed out; retrying");
                false
            }
        };
        if !registered {
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = session.closed() => return,
            }
            continue;
        }
        // Registered: sleep until the znode changes or the session does.
        let watcher = match client.check_and_watch_stat(&path).await {
            Ok((Some(stat), watcher)) if stat.ephemeral_owner == me => watcher,
            _ => continue,
        };
        drop(client);
        status.borrow_and_update();
        tokio::select! {
            _ = watcher.changed() => {}
            _ = wait_for_trouble(&mut status) => {}
            _ = session.closed() => return,
        }
    }
}

/// Resolves when the session leaves `Connected` (suspended, expired, new generation).
async fn wait_for_trouble(
    status: &mut tokio::sync::watch::Receiver<sensor_coord::zk::SessionStatus>,
) {
    loop {
        if status.changed().await.is_err() {
            return;
        }
        if status.borrow().state != ConnState::Connected {
            return;
        }
    }
}
