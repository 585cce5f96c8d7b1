//! `sensor-dashboard` binary: parse flags, set up logging, serve until SIGTERM.
//! All behaviour lives in the library (`sensor_dashboard`); see its crate docs.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sensor_common::init_tracing;
use sensor_dashboard::config::{Cli, Command, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.config.validate() {
        eprintln!("sensor-dashboard: {e}");
        return ExitCode::from(2);
    }
    if cli.check_config {
        println!("{}", cli.config);
        println!("# configuration is valid");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sensor-dashboard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Healthcheck { url, timeout }) => {
            let url = url.unwrap_or_else(|| {
                format!("http://127.0.0.1:{}/healthz", cli.config.listen.port())
            });
            match runtime.block_on(sensor_common::health::check(&url, timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sensor-dashboard healthcheck: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        None => match runtime.block_on(serve(cli.config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "sensor-dashboard failed");
                eprintln!("sensor-dashboard: {e:#}");
                ExitCode::FAILURE
            }
        },
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
