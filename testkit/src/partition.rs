//! A network partition between one client and a server, for real session expiry.

use std::sync::Arc;

use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Forwarding.
    Up,
    /// Connections stay open but carry nothing (packets dropped, no reset).
    Silent,
    /// Connections closed, new ones refused.
    Cut,
}

/// A TCP proxy on 127.0.0.1 in front of a ZooKeeper server, to cut one client off (a network
/// partition) while the server and everyone else carry on. While cut, every connection is
/// closed and new ones are accepted and dropped at once. While silent, nothing is forwarded
/// and nothing is closed: a request sent then is lost without an error, as on a network that
/// drops packets, and the client notices only by its own timeout.
pub struct Partition {
    port: u16,
    link: Arc<watch::Sender<Link>>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    /// Starts forwarding `127.0.0.1:<port>` to `127.0.0.1:<target_port>`.
    pub async fn start(target_port: u16) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (link, _) = watch::channel(Link::Up);
        let link = Arc::new(link);
        let state = link.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let mut link = state.subscribe();
                let now = *link.borrow_and_update();
                match now {
                    Link::Cut => continue,
                    Link::Silent => {
                        // Hold the connection open, answering nothing, until the link changes.
                        tokio::spawn(async move {
                            let _ = link.wait_for(|l| *l != Link::Silent).await;
                            drop(client);
                        });
                        continue;
                    }
                    Link::Up => {}
                }
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        _ = link.wait_for(|l| *l != Link::Up) => {}
                    }
                    // Silent: keep both sockets open, unread, until the link changes again;
                    // bytes sent meanwhile are dropped with the sockets.
                    let _ = link.wait_for(|l| *l != Link::Silent).await;
                });
            }
        });
        Partition { port, link, task }
    }

    /// `127.0.0.1:<proxy port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.link.send_replace(Link::Cut);
    }

    /// Stops carrying bytes in both directions without closing anything. Whatever is sent
    /// meanwhile is lost; [`Partition::heal`] or [`Partition::cut`] then closes these
    /// connections (new ones work after a heal).
    pub fn silence(&self) {
        self.link.send_replace(Link::Silent);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.link.send_replace(Link::Up);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}
