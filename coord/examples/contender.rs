//! A tiny election contender in its own process, for failure tests (SIGKILL, SIGSTOP) of
//! [`sensor_coord::zk::Election`].
//!
//! Usage: `contender [CONNECT_STRING]` (or env `ZK_CONNECT`). Other settings, all optional:
//! `ZK_SESSION_TIMEOUT_MS` (default 2000), `ELECTION_PATH` (default `/election`),
//! `CONTENDER_ID` (default `contender-<pid>`), `ACT_EVERY_MS` (default 100).
//!
//! It campaigns, leads until [`sensor_coord::zk::Leadership::lost`] resolves, then campaigns
//! again, forever. Machine-readable lines on stdout (`<ts>` = Unix time in microseconds):
//!
//! * `STATE <Connecting|Connected|Suspended|Expired|Closed> <generation> <ts>` — session;
//! * `LEADER <fencing> <ts>` — leadership acquired;
//! * `ACT <fencing> <ts>` — every `ACT_EVERY_MS` while leading: `ts` is the moment
//!   [`sensor_coord::zk::Leadership::is_held`] was checked and said yes, i.e. a leader action;
//! * `LOST <fencing> <ts>` — leadership lost (printed before any further `LEADER`);
//! * `ERROR <message>` — a campaign failed; it retries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sensor_coord::zk::{Election, Session, SessionConfig};

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let connect = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ZK_CONNECT").ok())
        .ok_or_else(|| anyhow::anyhow!("usage: contender CONNECT_STRING (or ZK_CONNECT)"))?;
    let timeout = Duration::from_millis(env_u64("ZK_SESSION_TIMEOUT_MS", 2000));
    let path = std::env::var("ELECTION_PATH").unwrap_or_else(|_| "/election".into());
    let id = std::env::var("CONTENDER_ID")
        .unwrap_or_else(|_| format!("contender-{}", std::process::id()));
    let act_every = Duration::from_millis(env_u64("ACT_EVERY_MS", 100));

    let session = Session::start(SessionConfig::new(connect, timeout));
    let mut status = session.status();
    tokio::spawn(async move {
        loop {
            let s = *status.borrow_and_update();
            println!("STATE {:?} {} {}", s.state, s.generation, now_us());
            if status.changed().await.is_err() {
                return;
            }
        }
    });

    let election = Election::new(session.clone(), path, id);
    loop {
        let leadership = match election.campaign().await {
            Ok(l) => l,
            Err(e) => {
                println!("ERROR {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let fencing = leadership.fencing_token();
        println!("LEADER {fencing} {}", now_us());
        let mut tick = tokio::time::interval(act_every);
        loop {
            tokio::select! {
                _ = leadership.lost() => break,
                _ = tick.tick() => {
                    // The guard every real leader action must pass.
                    if !leadership.is_held() {
                        break;
                    }
                    println!("ACT {fencing} {}", now_us());
                }
            }
        }
        println!("LOST {fencing} {}", now_us());
    }
}
