//! A network partition between one client and a server, for real session expiry.

use std::sync::Arc;

/// A TCP proxy on 127.0.0.1 in front of a ZooKeeper server, to cut one client off (a network
/// partition) while the server and everyone else carry on. While cut, every connection is
/// closed and new ones are accepted and dropped at once.
pub struct Partition {
    port: u16,
    up: Arc<tokio::sync::watch::Sender<bool>>,
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
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !*state.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Partition { port, up, task }
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
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}
