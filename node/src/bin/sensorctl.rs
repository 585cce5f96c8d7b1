//! `sensorctl`: thin wrapper around [`sensor_node::ctl`] (parse, run, print, exit code).
//!
//! Exit codes: 0 ok, 2 bad usage or invalid value, 1 ZooKeeper unreachable or failing.

use std::process::ExitCode;

use clap::Parser;
use sensor_node::ctl::{self, CtlArgs};

fn main() -> ExitCode {
    let args = CtlArgs::parse();
    // Library logs (session retries) go to stderr, quiet unless RUST_LOG asks for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(ctl::run(args)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
