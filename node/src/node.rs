//! The sensor-node runtime: wires session, config, sensor, election, rounds and delivery.
//!
//! Tasks, all on one tokio runtime:
//! * the **sensor** ([`round::run_sensor`]) — every node, always;
//! * the **campaign loop** — campaign on `/election`; while leading, run
//!   [`round::lead_rounds`], [`outbox::deliver_while_leading`] and
//!   [`round::log_membership`] side by side; when leadership is lost, stop all three and
//!   campaign again. A node never stops contending because of an error.
//!
//! Before any of them, the node claims its id ([`claim`]): a second live process with the
//! same id refuses to start, and [`run`] returns [`NodeError::IdInUse`].
//!
//! Shutdown (SIGINT/SIGTERM): stop the tasks, resign leadership (delete the election znode)
//! and close the session so `/mediciones/<id>` disappears at once: failover does not wait for
//! a session timeout. An open round is abandoned; the next leader resumes it.

use std::time::Duration;

use tokio::sync::watch;

use crate::claim::{self, ClaimError};
use crate::cluster;
use crate::config::{self, LiveConfig, NodeConfig};
use crate::delivery::Delivery;
use crate::layout;
use crate::outbox::{self, Outbox};
use crate::round::{self, LeadEnd, LeaderContext};
use crate::zk::{Election, Session, ZkError};

/// Why [`run`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The HTTP client for delivery could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Another live process runs with this node id (see [`crate::claim`]).
    #[error(transparent)]
    IdInUse(ClaimError),
}

/// Runs a node until `shutdown` resolves, then leaves cleanly.
/// Never returns early because ZooKeeper or the API is unavailable.
pub async fn run(
    settings: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let session = Session::start(settings.session_config());
    tracing::info!(node = %settings.id, hosts = %settings.zk, "sensor node starting");
    tokio::pin!(shutdown);
    let claimed = tokio::select! {
        c = claim::acquire(&session, &settings.id) => c,
        _ = &mut shutdown => {
            session.close();
            return Ok(());
        }
    };
    let claimed = match claimed {
        Ok(generation) => generation,
        Err(e) => {
            session.close();
            tracing::error!(node = %settings.id, error = %e, "refusing to start");
            return Err(NodeError::IdInUse(e));
        }
    };
    let claim = tokio::spawn(claim::hold(session.clone(), settings.id.clone(), claimed));
    let live = config::watch_live_config(&session, settings.live_defaults());
    let period = period_of(live.clone());
    let delivery = Delivery::new(settings.api_token.clone(), live.clone(), &session)?;
    let outbox = Outbox::new(session.clone(), settings.outbox_limit)
        .with_conflicts_limit(settings.conflicts_limit);

    let (stop_sensor, sensor_stop) = watch::channel(false);
    let sensor = tokio::spawn(round::run_sensor(
        session.clone(),
        settings.id.clone(),
        sensor_stop,
    ));
    let leader_ctx = LeaderContext {
        session: session.clone(),
        id: settings.id.clone(),
        period,
        outbox,
        // Replaced at every leadership term by the ensemble's id (`campaign_loop`).
        cluster: Default::default(),
    };
    let (resign_tx, resign_rx) = watch::channel(false);
    let campaign = tokio::spawn(campaign_loop(leader_ctx, delivery, resign_rx));

    let taken = tokio::select! {
        _ = &mut shutdown => None,
        e = claim => match e {
            Ok(e @ ClaimError::Held { .. }) => Some(e),
            // Closed, or a ZooKeeper error (e.g. no permission): keep running unclaimed.
            other => {
                if let Ok(ClaimError::Zk(e)) = &other {
                    if !matches!(e, ZkError::Closed) {
                        tracing::warn!(node = %settings.id, error = %e, "cannot keep the node id claim");
                    }
                }
                shutdown.await;
                None
            }
        },
    };
    if let Some(e) = &taken {
        tracing::error!(node = %settings.id, error = %e, "node id taken by another process while our session was gone; stopping");
    }
    tracing::info!(node = %settings.id, "shutting down: resigning and closing the session");
    resign_tx.send_replace(true);
    // The campaign loop resigns (deletes its election znode) before returning.
    let _ = tokio::time::timeout(Duration::from_secs(3), campaign).await;
    // Let a reading in progress be published and counted, then stop the sensor (counting
    // may wait out a contended /counter: see round::run_sensor).
    stop_sensor.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), sensor).await;
    session.close();
    // Give the close request a moment to reach ZooKeeper.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tracing::info!(node = %settings.id, "stopped");
    match taken {
        Some(e) => Err(NodeError::IdInUse(e)),
        None => Ok(()),
    }
}

/// Runs `n` independent sensors `<id>-1 ..= <id>-n` in this process until `shutdown`
/// resolves (`--virtual N`). Each is a whole [`run`]: its own session, reading, election
/// contender and delivery, so ZooKeeper sees `n` real clients. Starts are spread over up to
/// one second so `n` sessions do not connect in one burst; shutdown stops them all together.
pub async fn run_virtual(
    settings: NodeConfig,
    n: u32,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    tracing::info!(node = %settings.id, sensors = n, hosts = %settings.zk, "virtual fleet starting");
    let (stop_tx, stop_rx) = watch::channel(false);
    let spread = Duration::from_secs(1) / n.max(1);
    let mut fleet = tokio::task::JoinSet::new();
    for k in 1..=n {
        let mut one = settings.clone();
        one.id = format!("{}-{k}", settings.id);
        one.virtual_sensors = None;
        let mut stop = stop_rx.clone();
        let delay = spread * (k - 1);
        fleet.spawn(async move {
            tokio::time::sleep(delay).await;
            run(one, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        });
    }
    shutdown.await;
    tracing::info!(node = %settings.id, sensors = n, "virtual fleet shutting down");
    stop_tx.send_replace(true);
    let mut first_error = None;
    while let Some(done) = fleet.join_next().await {
        if let Ok(Err(e)) = done {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The sampling period as its own channel (the leader only needs that field).
fn period_of(mut live: watch::Receiver<LiveConfig>) -> watch::Receiver<Duration> {
    let (tx, rx) = watch::channel(live.borrow_and_update().sampling_period);
    tokio::spawn(async move {
        while live.changed().await.is_ok() {
            let p = live.borrow_and_update().sampling_period;
            tx.send_if_modified(|cur| {
                let changed = *cur != p;
                *cur = p;
                changed
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

async fn campaign_loop(ctx: LeaderContext, delivery: Delivery, mut resign: watch::Receiver<bool>) {
    let election = Election::new(ctx.session.clone(), layout::ELECTION, ctx.id.clone());
    loop {
        let leadership = tokio::select! {
            l = election.campaign() => l,
            _ = resigned(&mut resign) => return,
        };
        let leadership = match leadership {
            Ok(l) => l,
            Err(ZkError::Closed) => return,
            Err(e) => {
                tracing::warn!(node = %ctx.id, error = %e, "campaign failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Read (or create) the ensemble's identity in this term's session: after a new
        // session the servers may be a different ensemble with its own series.
        let cluster = match ctx.session.client() {
            Ok(client) => cluster::ensure(&client).await,
            Err(e) => Err(e),
        };
        let cluster = match cluster {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %ctx.id, error = %e, "cannot read the cluster id; resigning and retrying");
                leadership.resign().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let ctx = LeaderContext {
            cluster,
            ..ctx.clone()
        };
        tracing::info!(node = %ctx.id, role = "leader", fencing = leadership.fencing_token(), cluster = %ctx.cluster, "became leader");
        // Committed rounds, from the round loop to delivery (see `deliver_while_leading`).
        let (committed, mut to_deliver) = tokio::sync::mpsc::unbounded_channel();
        let end = tokio::select! {
            end = round::lead_rounds(&ctx, &leadership, &committed) => Some(end),
            _ = outbox::deliver_while_leading(&ctx.outbox, &delivery, &leadership, &mut to_deliver) => {
                // Delivery only stops on lost leadership or a stale-leader answer.
                None
            }
            _ = round::log_membership(&ctx.session, &ctx.id, &leadership) => None,
            _ = resigned(&mut resign) => {
                leadership.resign().await;
                return;
            }
        };
        let was_held = leadership.is_held();
        leadership.resign().await;
        match end {
            Some(LeadEnd::Closed) => return,
            _ if was_held => {
                tracing::warn!(node = %ctx.id, "stepped down (API reports a newer leader); campaigning again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => {
                tracing::warn!(node = %ctx.id, role = "follower", "leadership lost; campaigning again")
            }
        }
    }
}

/// Resolves once shutdown asked the campaign loop to resign.
async fn resigned(resign: &mut watch::Receiver<bool>) {
    let _ = resign.wait_for(|r| *r).await;
}
