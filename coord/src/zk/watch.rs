//! Data and children watches that keep working across reconnects and session expiry.
//!
//! Each watch is a background task feeding a `tokio::sync::watch` channel, so a reader
//! always sees the **current** state (intermediate values may be skipped, as with kazoo's
//! `DataWatch`, which is right for config and membership). After every reconnect or new
//! session the task re-reads and re-arms, so a change made while we were disconnected is
//! delivered once we are back (kazoo's raw watches are lost on reconnect; its recipes
//! re-arm, and so do these).
//!
//! A missing znode is a value ([`NodeData::Missing`], or an empty child list with
//! `exists == false`), never an error that ends the watch; malformed contents are for the
//! reader to judge. The task ends when every receiver is dropped or the session is closed.

use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use super::{ConnState, Session, SessionStatus};

/// The state of a watched znode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeData {
    /// Not read yet (no session so far).
    Unknown,
    /// The znode does not exist.
    Missing,
    /// The znode's data and its last-modification zxid.
    Present {
        /// Raw data.
        data: Vec<u8>,
        /// `mzxid`: changes on every write, so equal values written twice are still seen.
        mzxid: i64,
    },
}

impl NodeData {
    /// The data as UTF-8 text, trimmed, if present and valid UTF-8.
    pub fn text(&self) -> Option<String> {
        match self {
            NodeData::Present { data, .. } => {
                std::str::from_utf8(data).ok().map(|s| s.trim().to_string())
            }
            _ => None,
        }
    }
}

/// A live view of one znode's data.
pub struct DataWatch;

impl DataWatch {
    /// Starts watching `path`. The receiver holds [`NodeData::Unknown`] until the first read.
    pub fn start(session: &Session, path: impl Into<String>) -> watch::Receiver<NodeData> {
        let (tx, rx) = watch::channel(NodeData::Unknown);
        tokio::spawn(run(session.clone(), path.into(), tx));
        rx
    }
}

/// A live view of one znode's children.
pub struct ChildrenWatch;

/// The children of a watched znode.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Children {
    /// Whether the parent exists (unlike kazoo, a missing parent does not end the watch).
    pub exists: bool,
    /// Child names, sorted.
    pub names: Vec<String>,
    /// False until the first successful read.
    pub known: bool,
}

impl ChildrenWatch {
    /// Starts watching the children of `path`.
    pub fn start(session: &Session, path: impl Into<String>) -> watch::Receiver<Children> {
        let (tx, rx) = watch::channel(Children::default());
        tokio::spawn(run(session.clone(), path.into(), tx));
        rx
    }
}

/// Waits for "something may have changed": the watcher fired, the session changed state
/// (reconnected, new session), or the owner went away. Returns false to stop.
async fn wait_wakeup<T>(
    session: &Session,
    status: &mut watch::Receiver<SessionStatus>,
    tx: &watch::Sender<T>,
    watcher: Option<zk::OneshotWatcher>,
) -> bool {
    let state_change = async {
        loop {
            if status.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if status.borrow().state == ConnState::Connected {
                return;
            }
        }
    };
    let fired = async {
        match watcher {
            Some(w) => {
                w.changed().await;
            }
            None => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    tokio::select! {
        _ = fired => true,
        _ = state_change => true,
        _ = tx.closed() => false,
        _ = session.closed() => false,
    }
}

/// What a watch publishes: how to read it (arming a watch) and what "missing" looks like.
trait Snapshot: Clone + PartialEq + Send + Sync + 'static {
    /// Log name of the watch kind.
    const KIND: &'static str;
    /// The value for a znode that does not exist.
    fn missing() -> Self;
    /// Reads the current value and arms a one-shot watch on it.
    fn read(
        client: &zk::Client,
        path: &str,
    ) -> impl std::future::Future<Output = Result<(Self, zk::OneshotWatcher), zk::Error>> + Send;
}

impl Snapshot for NodeData {
    const KIND: &'static str = "data";

    fn missing() -> Self {
        NodeData::Missing
    }

    async fn read(
        client: &zk::Client,
        path: &str,
    ) -> Result<(Self, zk::OneshotWatcher), zk::Error> {
        let (data, stat, w) = client.get_and_watch_data(path).await?;
        Ok((
            NodeData::Present {
                data,
                mzxid: stat.mzxid,
            },
            w,
        ))
    }
}

impl Snapshot for Children {
    const KIND: &'static str = "children";

    fn missing() -> Self {
        Children {
            exists: false,
            names: Vec::new(),
            known: true,
        }
    }

    async fn read(
        client: &zk::Client,
        path: &str,
    ) -> Result<(Self, zk::OneshotWatcher), zk::Error> {
        let (mut names, w) = client.list_and_watch_children(path).await?;
        names.sort();
        Ok((
            Children {
                exists: true,
                names,
                known: true,
            },
            w,
        ))
    }
}

fn replace_if_changed<T: PartialEq>(cur: &mut T, new: T) -> bool {
    if *cur == new {
        false
    } else {
        *cur = new;
        true
    }
}

/// The watch loop shared by both kinds: read and arm; on a missing znode arm an exists
/// watch instead; publish only changes; wait for the watch, a reconnect or the end.
async fn run<T: Snapshot>(session: Session, path: String, tx: watch::Sender<T>) {
    let mut status = session.status();
    loop {
        let client = tokio::select! {
            c = session.wait_connected() => match c { Ok(c) => c, Err(_) => return },
            _ = tx.closed() => return,
        };
        status.borrow_and_update();
        let watcher = match T::read(&client, &path).await {
            Ok((value, w)) => {
                tx.send_if_modified(|cur| replace_if_changed(cur, value));
                Some(w)
            }
            Err(zk::Error::NoNode) => match client.check_and_watch_stat(&path).await {
                Ok((None, w)) => {
                    tx.send_if_modified(|cur| replace_if_changed(cur, T::missing()));
                    Some(w)
                }
                // Created in between: read again at once.
                Ok((Some(_), _)) => continue,
                Err(_) => None,
            },
            Err(e) => {
                tracing::debug!(path = %path, kind = T::KIND, error = %e, "watch read failed; will retry");
                None
            }
        };
        drop(client);
        if !wait_wakeup(&session, &mut status, &tx, watcher).await {
            return;
        }
    }
}
