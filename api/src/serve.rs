//! The accept loop: HTTP/1.1 connections with a header-read timeout and a connection cap.
//!
//! `axum::serve` has neither: a client that sends half a request header and waits keeps
//! its connection (and a task) forever, and nothing bounds how many connections are open.
//! This loop serves the same [`Router`] with hyper's HTTP/1 connection builder:
//!
//! | hostile client | what happens |
//! |---|---|
//! | sends a partial header and waits, or idles on a keep-alive connection | closed after [`Limits::header_read_timeout`] (hyper's timer; the timer runs whenever the connection waits for a request head) |
//! | sends headers, then the body slowly | the request timeout ([`crate::layers::timeout`]) answers 503 and the connection closes |
//! | opens many connections | at most [`Limits::max_connections`] are served; further ones wait in the kernel's accept queue until one closes |
//!
//! Graceful shutdown: when `shutdown` resolves the listener closes, idle connections are
//! closed and in-flight requests finish (the caller bounds the wait).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection-level limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A connection that has not sent a complete request head this long after it started
    /// waiting for one is closed.
    pub header_read_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open connections
/// to finish their in-flight requests (wrap the call in a timeout to bound that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting, so excess connections wait in the backlog rather
        // than being accepted and left unserved.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
