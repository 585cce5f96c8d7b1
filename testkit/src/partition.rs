//! A network partition between one client and a server, for real session expiry; or a slow
//! link (every byte from the server delivered late), for real late writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy on 127.0.0.1 in front of a ZooKeeper server, to cut one client off (a network
/// partition) while the server and everyone else carry on. While cut, every connection is
/// closed and new ones are accepted and dropped at once. [`Partition::delay`] makes the link
/// slow instead: what the server sends (answers, watch events) reaches the client late.
pub struct Partition {
    port: u16,
    up: Arc<tokio::sync::watch::Sender<bool>>,
    delay: Arc<tokio::sync::watch::Sender<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    /// Starts forwarding `127.0.0.1:<port>` to `127.0.0.1:<target_port>`.
    pub async fn start(target_port: u16) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (up, _) = tokio::sync::watch::channel(true);
        let up = Arc::new(up);
        let state = up.clone();
        let (delay, _) = tokio::sync::watch::channel(Duration::ZERO);
        let delay = Arc::new(delay);
        let lag = delay.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !*state.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = state.subscribe();
                let lag = lag.subscribe();
                tokio::spawn(async move {
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut from_server, mut to_server) = server.into_split();
                    let (mut from_client, mut to_client) = client.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
                        _ = late_copy(&mut from_server, &mut to_client, lag) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Partition {
            port,
            up,
            delay,
            task,
        }
    }

    /// `127.0.0.1:<proxy port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.up.send_replace(true);
    }

    /// Delivers every byte the server sends from now on `d` late (order kept; zero = no
    /// delay). The client's requests still reach the server at once.
    pub fn delay(&self, d: Duration) {
        self.delay.send_replace(d);
    }
}

/// Copies `from` to `to`, each chunk held until `delay` (as it was when the chunk arrived)
/// has passed.
async fn late_copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    delay: tokio::sync::watch::Receiver<Duration>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = tokio::time::Instant::now() + *delay.borrow();
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(read, write);
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}
