//! Service registration in ZooKeeper (filled in below).

use tokio::task::JoinHandle;

use crate::config::Config;

/// Starts the registration task when `ZOOKEEPER_HOSTS` is set.
pub fn spawn(config: &Config) -> Option<JoinHandle<()>> {
    let _hosts = config.zookeeper_hosts.clone()?;
    None
}
