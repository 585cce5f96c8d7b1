//! A ZooKeeper session that outlives ZooKeeper outages and session expiry.
//!
//! `zookeeper-client`'s [`Client`](zookeeper_client::Client) is one session: once it is expired or closed it stays so.
//! [`Session`] owns a supervisor task that builds a `Client`, watches its state, and builds
//! a new one after expiry, forever, with capped back-off (never kazoo's hour-long sleeps).
//! Users see one value, [`SessionStatus`], through a `watch` channel:
//!
//! * `Connecting` — no session yet (ZooKeeper unreachable, or a new session being built);
//! * `Connected` — requests go through;
//! * `Suspended` — disconnected; the session may still be alive on the server. Leaders must
//!   act as if they lost leadership (Curator's rule);
//! * `Expired` — the session is gone with its ephemerals and watches; a new one is being built.
//!
//! [`SessionStatus::generation`] increases with every new session, so a user that owns
//! ephemeral znodes re-creates them when it changes.
//!
//! Connect strings are comma-separated `host:port` with an optional `/chroot` suffix. Hosts
//! that do not resolve are skipped by the client (a stopped docker container's name vanishes
//! from DNS); the chroot znode is created if missing.

use std::sync::Arc;
use std::time::Duration;

use sensor_common::backoff::Backoff;
use tokio::sync::watch;
use zookeeper_client as zk;

use super::ZkError;

/// Connection state as the rest of the program needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// No session yet, or a new one being established after expiry.
    Connecting,
    /// Connected; requests are served.
    Connected,
    /// Disconnected from every server; the session may still be alive.
    Suspended,
    /// The session expired (ephemerals gone); a new one is on its way.
    Expired,
    /// [`Session::close`] was called; terminal.
    Closed,
}

/// What [`Session::status`] reports: the state and which session it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// Current connection state.
    pub state: ConnState,
    /// 1 for the first session, +1 for each new session after expiry (0 before the first).
    pub generation: u64,
    /// The ZooKeeper session id (0 when none).
    pub session_id: i64,
}

/// Settings for [`Session::start`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// `host:port,host:port[/chroot]`.
    pub connect_string: String,
    /// Requested session timeout; the server clamps it to [2, 20] × its tickTime.
    pub session_timeout: Duration,
}

impl SessionConfig {
    /// A config with the given connect string and session timeout.
    pub fn new(connect_string: impl Into<String>, session_timeout: Duration) -> Self {
        SessionConfig {
            connect_string: connect_string.into(),
            session_timeout,
        }
    }
}

#[derive(Debug)]
struct Shared {
    client: watch::Sender<Option<zk::Client>>,
    status: watch::Sender<SessionStatus>,
    shutdown: watch::Sender<bool>,
    config: SessionConfig,
}

/// A self-healing ZooKeeper session. Cheap to clone; all clones share one session.
///
/// Invariant: at most one `zk::Client` is current; after [`Session::close`] none is, and
/// every ephemeral znode of this process is gone at once (the session is closed, not left to
/// time out).
#[derive(Clone, Debug)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Starts connecting in the background and returns at once. Never fails because
    /// ZooKeeper is down: use [`Session::wait_connected`] or [`Session::status`].
    pub fn start(config: SessionConfig) -> Session {
        let (client, _) = watch::channel(None);
        let (status, _) = watch::channel(SessionStatus {
            state: ConnState::Connecting,
            generation: 0,
            session_id: 0,
        });
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            client,
            status,
            shutdown,
            config,
        });
        tokio::spawn(supervise(shared.clone()));
        Session { shared }
    }

    /// The connect string this session was started with.
    pub fn connect_string(&self) -> &str {
        &self.shared.config.connect_string
    }

    /// A receiver of the session status; `changed()` wakes on every transition.
    pub fn status(&self) -> watch::Receiver<SessionStatus> {
        self.shared.status.subscribe()
    }

    /// The status right now.
    pub fn current_status(&self) -> SessionStatus {
        *self.shared.status.borrow()
    }

    /// The current client, if a session exists (it may be suspended: requests then queue).
    ///
    /// Do not keep the returned client for long: a held clone keeps an expired or closed
    /// session's resources alive. Take a fresh one per operation.
    pub fn client(&self) -> Result<zk::Client, ZkError> {
        self.shared
            .client
            .borrow()
            .clone()
            .ok_or(ZkError::NotConnected)
    }

    /// Waits until the session is `Connected` and returns its client.
    /// Fails only with [`ZkError::Closed`] after [`Session::close`].
    pub async fn wait_connected(&self) -> Result<zk::Client, ZkError> {
        let mut status = self.status();
        loop {
            let state = status.borrow_and_update().state;
            match state {
                ConnState::Connected => {
                    if let Some(c) = self.shared.client.borrow().clone() {
                        return Ok(c);
                    }
                }
                ConnState::Closed => return Err(ZkError::Closed),
                _ => {}
            }
            if status.changed().await.is_err() {
                return Err(ZkError::Closed);
            }
        }
    }

    /// Like [`Session::wait_connected`] but gives up after `timeout`.
    pub async fn wait_connected_for(&self, timeout: Duration) -> Result<zk::Client, ZkError> {
        tokio::time::timeout(timeout, self.wait_connected())
            .await
            .map_err(|_| ZkError::Timeout)?
    }

    /// A future that resolves when [`Session::close`] is called; recipes' background tasks
    /// select on it so that closing the session ends them.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// Whether [`Session::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    /// Closes the session now: ephemeral znodes disappear immediately (no session-timeout
    /// wait for failover). Idempotent.
    pub fn close(&self) {
        self.shared.shutdown.send_replace(true);
        self.shared.client.send_replace(None);
        self.shared
            .status
            .send_modify(|s| s.state = ConnState::Closed);
    }
}

/// Errors that mean "the connection is not usable right now; retry after reconnecting",
/// as opposed to answers from ZooKeeper (NoNode, BadVersion, ...).
///
/// A request in flight when a server dies may fail with `Custom(ConnectionReset)` rather
/// than `ConnectionLoss` (measured): it is treated as connection loss too.
pub fn is_transient(err: &zk::Error) -> bool {
    matches!(
        err,
        zk::Error::ConnectionLoss
            | zk::Error::Timeout
            | zk::Error::SessionExpired
            | zk::Error::ClientClosed
            | zk::Error::SessionMoved
            | zk::Error::NoHosts
            | zk::Error::Throttled
            | zk::Error::Custom(_)
    )
}

async fn supervise(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut generation = 0u64;
    // 200 ms doubling to 2 s, never below 60 % of that: an immediate retry against a
    // server that just refused is pointless.
    let mut retry =
        Backoff::new(Duration::from_millis(200), Duration::from_secs(2)).with_floor(0.6);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connect = connect_once(&shared.config);
        let client = tokio::select! {
            r = connect => r,
            _ = shutdown.wait_for(|c| *c) => return,
        };
        let client = match client {
            Ok(c) => c,
            Err(err) => {
                let delay = retry.next_delay();
                let attempt = retry.attempts();
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(hosts = %shared.config.connect_string, error = %err, attempt, retry_in_ms = delay.as_millis() as u64, "cannot establish ZooKeeper session; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.wait_for(|c| *c) => return,
                }
            }
        };
        retry.reset();
        generation += 1;
        let session_id = client.session_id().0;
        tracing::info!(generation, session = %format!("{session_id:#x}"), timeout_ms = client.session_timeout().as_millis() as u64, "ZooKeeper session established");
        let mut states = client.state_watcher();
        shared.client.send_replace(Some(client));
        shared.status.send_replace(SessionStatus {
            state: ConnState::Connected,
            generation,
            session_id,
        });
        loop {
            let state = tokio::select! {
                s = states.changed() => s,
                _ = shutdown.wait_for(|c| *c) => return,
            };
            let mapped = match state {
                zk::SessionState::Disconnected => ConnState::Suspended,
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    ConnState::Connected
                }
                zk::SessionState::Expired
                | zk::SessionState::Closed
                | zk::SessionState::AuthFailed => ConnState::Expired,
            };
            let previous = shared.status.borrow().state;
            if previous == mapped {
                continue;
            }
            match mapped {
                ConnState::Suspended => {
                    tracing::warn!(generation, "ZooKeeper connection lost; session suspended")
                }
                ConnState::Connected => tracing::info!(generation, "ZooKeeper reconnected"),
                _ => tracing::warn!(
                    generation,
                    ?state,
                    "ZooKeeper session ended; building a new one"
                ),
            }
            if mapped == ConnState::Expired {
                shared.client.send_replace(None);
                shared.status.send_replace(SessionStatus {
                    state: ConnState::Expired,
                    generation,
                    session_id,
                });
                break;
            }
            shared.status.send_modify(|s| s.state = mapped);
        }
    }
}

async fn connect_once(config: &SessionConfig) -> Result<zk::Client, zk::Error> {
    let (hosts, chroot) = split_chroot(&config.connect_string);
    let connector = zk::Client::connector()
        .with_session_timeout(config.session_timeout)
        .with_connection_timeout(Duration::from_millis(
            (config.session_timeout.as_millis() as u64 / 3).clamp(500, 5_000),
        ));
    let client = tokio::time::timeout(
        config.session_timeout.max(Duration::from_secs(2)) * 2,
        connector.connect(hosts),
    )
    .await
    .map_err(|_| zk::Error::Timeout)??;
    match chroot {
        None => Ok(client),
        Some(root) => {
            let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            match client.mkdir(root, &opts).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
            client
                .chroot(root.to_string())
                .map_err(|_| zk::Error::BadArguments(&"invalid chroot"))
        }
    }
}

/// Splits `h1:p,h2:p/chroot` into hosts and an optional chroot (`None` for `/` or absent).
pub fn split_chroot(connect_string: &str) -> (&str, Option<&str>) {
    match connect_string.find('/') {
        Some(i) if connect_string[i..].len() > 1 => {
            (&connect_string[..i], Some(&connect_string[i..]))
        }
        Some(i) => (&connect_string[..i], None),
        None => (connect_string, None),
    }
}

#[cfg(test)]
mod tests {
    use super::split_chroot;

    #[test]
    fn chroot_is_split_from_hosts() {
        assert_eq!(split_chroot("a:1,b:2"), ("a:1,b:2", None));
        assert_eq!(split_chroot("a:1,b:2/"), ("a:1,b:2", None));
        assert_eq!(split_chroot("a:1/app/x"), ("a:1", Some("/app/x")));
    }
}
