//! A slow link between one client and a server, for real late writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

/// A TCP proxy on 127.0.0.1 in front of a ZooKeeper server that delivers what the server
/// sends (answers, watch events) late, by a delay the test sets at any time
/// ([`SlowLink::delay`]); the client's requests reach the server at once. A client behind
/// it learns of a change late and acts on it late — a paused process, a slow disk or a
/// congested link, as the server sees it — while its session stays alive.
pub struct SlowLink {
    port: u16,
    delay: Arc<watch::Sender<Duration>>,
    cuts: Arc<watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowLink {
    /// Starts forwarding `127.0.0.1:<port>` to `127.0.0.1:<target_port>`, with no delay yet.
    pub async fn start(target_port: u16) -> SlowLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (delay, _) = watch::channel(Duration::ZERO);
        let delay = Arc::new(delay);
        let lag = delay.clone();
        let (cuts, _) = watch::channel(0u64);
        let cuts = Arc::new(cuts);
        let cutter = cuts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let lag = lag.subscribe();
                let mut cut = cutter.subscribe();
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
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        SlowLink {
            port,
            delay,
            cuts,
            task,
        }
    }

    /// `127.0.0.1:<proxy port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Delivers every byte the server sends from now on `d` late (order kept; zero: no delay).
    pub fn delay(&self, d: Duration) {
        self.delay.send_replace(d);
    }

    /// Closes every connection open now, dropping what the server sent that is still held
    /// back: a client whose request reached the server loses its answer (the request was
    /// applied, the client sees a connection loss). New connections are accepted as before.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk held until the delay in force when it arrived passed.
async fn late_copy(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    delay: watch::Receiver<Duration>,
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
