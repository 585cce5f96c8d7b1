//! `sensor-node`: one sensor of the fleet. Thin: parse, validate, wire, run.
//! See the library's crate docs for the round protocol.

use clap::Parser;
use sensor_node::config::{init_tracing, NodeArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = NodeArgs::parse();
    init_tracing(args.log_format);
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sensor-node: {e}");
            std::process::exit(2);
        }
    };
    if args.check_config {
        println!("{}", config.render());
        return Ok(());
    }
    let run = match config.virtual_sensors {
        Some(n) => {
            sensor_node::node::run_virtual(config, n, sensor_common::shutdown::signal()).await
        }
        None => sensor_node::node::run(config, sensor_common::shutdown::signal()).await,
    };
    if let Err(e) = run {
        // e.g. the node id is in use by another live process: exit 1, naming it.
        eprintln!("sensor-node: {e}");
        std::process::exit(1);
    }
    Ok(())
}
