//! `sensor-api fence show|reset`: the operator's view of, and way out of, the fencing tokens
//! the store holds (one per cluster, see [`crate::store`]).
//!
//! The fence is the highest fencing token accepted from a cluster; deliveries with a lower
//! one are refused as `stale_leader`. A token that should never have become the fence (a
//! hand-made POST with a huge number, a restored Redis next to an older ensemble) blocks
//! every real leader of that cluster. `fence show` tells which value is in force; `fence
//! reset --cluster ID [--to N]` replaces it. Resetting to 0 accepts any token until the
//! next delivery raises the fence again, so do it once the bad writer is stopped.
//!
//! | outcome | exit code |
//! |---|---|
//! | done (output on stdout) | 0 |
//! | Redis unreachable or failing | 1 |
//! | bad cluster id, malformed Redis URL | 2 |

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{Config, FenceAction};
use crate::store::{ClusterId, Store, StoreConfig, StoreError};

/// Why a fence command failed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The cluster id or the Redis URL is malformed.
    #[error("{0}")]
    Usage(String),
    /// Redis did not answer, or answered something unexpected.
    #[error("redis: {0}")]
    Store(#[from] StoreError),
}

impl FenceError {
    /// The process exit code for this error (see the module doc).
    pub fn exit_code(&self) -> u8 {
        match self {
            FenceError::Usage(_) => 2,
            FenceError::Store(_) => 1,
        }
    }
}

/// Runs `action` against the Redis of `config`; returns what to print.
pub async fn run(config: &Config, action: FenceAction) -> Result<String, FenceError> {
    let store = Store::open(
        &config.redis_url,
        &StoreConfig {
            key_prefix: config.key_prefix.clone(),
            response_timeout: config.redis_timeout.max(Duration::from_secs(2)),
            connect_timeout: Duration::from_secs(2),
        },
    )
    .map_err(|e| FenceError::Usage(e.to_string()))?;
    let parse = |c: &str| ClusterId::parse(c).map_err(|e| FenceError::Usage(e.to_string()));
    let mut out = String::new();
    match action {
        FenceAction::Show { cluster } => {
            let clusters = match cluster {
                Some(c) => vec![parse(&c)?],
                None => store.clusters().await?,
            };
            for c in clusters {
                let fence = store.highest_fencing(&c).await?;
                let _ = writeln!(out, "{c} {fence}");
            }
        }
        FenceAction::Reset { cluster, to } => {
            let c = parse(&cluster)?;
            let before = store.set_fence(&c, to).await?;
            tracing::info!(cluster = %c, before, after = to, "fence reset by an operator");
            let _ = writeln!(out, "{c} {before} -> {to}");
        }
    }
    Ok(out)
}
