//! `sensor-dashboard` binary: parse flags, set up logging, serve until SIGTERM.
//! All behaviour lives in the library (`sensor_dashboard`); see its crate docs.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sensor_common::{init_tracing, launch};
use sensor_dashboard::config::{Cli, Command, Config};

fn main() -> ExitCode {
    const NAME: &str = "sensor-dashboard";
    let cli = Cli::parse();
    let runtime = match launch::prepare(NAME, &cli.config, cli.config.validate(), cli.check_config)
    {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match cli.command {
        Some(Command::Healthcheck { url, timeout }) => {
            let url = url.unwrap_or_else(|| {
                format!("http://127.0.0.1:{}/healthz", cli.config.listen.port())
            });
            launch::healthcheck(NAME, &runtime, &url, timeout)
        }
        None => launch::exit_status(NAME, runtime.block_on(serve(cli.config))),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(config.log_format);
    let (session, app) = sensor_dashboard::start(&config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, zookeeper = %config.zookeeper_hosts, read_only = config.admin_token().is_none(), "sensor-dashboard listening");
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        // Closing the session ends the monitor, which ends every event stream, so the
        // graceful shutdown is not held up by open SSE connections.
        let session = session.clone();
        async move {
            sensor_common::shutdown::signal().await;
            tracing::info!("shutting down");
            session.close();
        }
    });
    let result = server.await.context("server");
    session.close();
    tracing::info!("stopped");
    result
}
