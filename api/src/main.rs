//! `sensor-api` binary: parse flags, set up logging, wire the store, serve until SIGTERM.
//! All behaviour lives in the library (`sensor_api`); see its crate docs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sensor_api::config::{Cli, Command, Config};
use sensor_api::fence::FenceCheck;
use sensor_api::retention::RetentionPolicy;
use sensor_api::serve::Limits;
use sensor_api::store::{Store, StoreConfig};
use sensor_api::{app, AppState};
use sensor_common::launch;

/// The allocator: the API allocates and frees small buffers per request on every worker
/// thread, where mimalloc's thread-local free lists are much cheaper than glibc's malloc
/// (measured: `bench/api/run.sh`, see README "Measured").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    const NAME: &str = "sensor-api";
    let cli = Cli::parse();
    let runtime = match launch::prepare(NAME, &cli.config, cli.config.validate(), cli.check_config)
    {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match cli.command {
        Some(Command::Healthcheck { url, timeout }) => {
            let url = url
                .unwrap_or_else(|| format!("http://127.0.0.1:{}/readyz", cli.config.listen.port()));
            launch::healthcheck(NAME, &runtime, &url, timeout)
        }
        Some(Command::Fence { action }) => {
            match runtime.block_on(sensor_api::fence_cmd::run(&cli.config, action)) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sensor-api fence: {e:#}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        None => launch::exit_status(NAME, runtime.block_on(serve(cli.config))),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    sensor_common::init_tracing(config.log_format);
    let store = Store::open(
        &config.redis_url,
        &StoreConfig {
            key_prefix: config.key_prefix.clone(),
            response_timeout: config.redis_timeout,
            connect_timeout: config.redis_timeout.min(Duration::from_secs(2)),
        },
    )
    .context("redis url")?;
    if let Err(e) = store.ping().await {
        // Not fatal: the store reconnects by itself; until then requests answer 503.
        tracing::warn!(error = %e, "redis not reachable at start-up; serving 503 until it is");
    }
    warn_if_redis_evicts(&config).await;
    let registration = sensor_api::registration::spawn(&config);
    let mut state = AppState::new(store.clone()).with_token(config.api_token.clone());
    state.request_timeout = config.request_timeout;
    state.max_concurrent_reads = config.max_concurrent_reads;
    state.plausibility = config.plausibility();
    state.fence = registration
        .as_ref()
        .map(|r| FenceCheck::new(r.session().clone()));
    if state.fence.is_none() {
        tracing::info!("no ZOOKEEPER_HOSTS: fencing tokens are not checked against ZooKeeper; every holder of the write token is trusted");
    }
    let policy = RetentionPolicy {
        max_age: config.retention_max_age,
        max_count: config.retention_max_count,
        interval: config.retention_interval,
    };
    let retention = tokio::spawn(sensor_api::retention::run(
        store.clone(),
        state.metrics.clone(),
        policy,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, redis = %config.redis_url_redacted(), auth = config.api_token.is_some(), "sensor-api listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let limits = Limits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
    };
    let server = tokio::spawn(sensor_api::serve::serve(
        listener,
        app(state),
        limits,
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));
    sensor_common::shutdown::signal().await;
    tracing::info!(
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "shutting down: finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    retention.abort();
    if let Some(r) = registration {
        r.stop();
    }
    match tokio::time::timeout(config.shutdown_grace, server).await {
        Ok(Ok(())) => tracing::info!("stopped cleanly"),
        Ok(Err(e)) => return Err(e).context("server task"),
        Err(_) => tracing::warn!("grace period over; dropping remaining connections"),
    }
    Ok(())
}

/// Warns loudly when Redis may evict keys: an evicted fence or record silently breaks
/// fencing and idempotency. Only `noeviction` (and the `volatile-*` policies, which never
/// touch our keys: none has a TTL) are safe. Never fails start-up.
async fn warn_if_redis_evicts(config: &Config) {
    let check = async {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await?;
        Ok::<_, redis::RedisError>(reply.get(1).cloned())
    };
    match tokio::time::timeout(config.redis_timeout, check).await {
        Ok(Ok(Some(policy))) if policy.starts_with("allkeys") => tracing::error!(
            policy = %policy,
            "REDIS MAY EVICT OUR KEYS: maxmemory-policy={policy} can delete fences and records under memory pressure, breaking fencing and idempotency; set maxmemory-policy noeviction"
        ),
        Ok(Ok(Some(policy))) => tracing::info!(policy = %policy, "redis maxmemory-policy"),
        Ok(Ok(None)) => {
            tracing::warn!("redis did not report maxmemory-policy; make sure it is noeviction")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read redis maxmemory-policy (CONFIG GET refused?); make sure it is noeviction")
        }
        Err(_) => tracing::warn!(
            "redis did not answer CONFIG GET maxmemory-policy in time; make sure it is noeviction"
        ),
    }
}
