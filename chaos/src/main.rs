//! `chaos [--duration S] [--seed N]`: runs the chaos suite once and prints the seed, the
//! fault log, each invariant's verdict and the figures. Exit 0 when every invariant holds,
//! 1 on a violation, 2 when the harness itself failed (e.g. a binary not built).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Command line of the chaos suite.
#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "Seeded fault schedule over a local ZooKeeper ensemble, Redis, sensor-api and five sensor-nodes, then a check of the delivery invariants"
)]
struct Cli {
    /// Seconds of fault injection (set-up and the final drain come on top).
    #[arg(long, env = "CHAOS_DURATION", default_value_t = 100)]
    duration: u64,
    /// Seed of the schedule [default: random, printed].
    #[arg(long, env = "CHAOS_SEED")]
    seed: Option<u64>,
    /// Directory with the built sensor-node and sensor-api [default: this binary's own].
    #[arg(long, env = "CHAOS_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Keep every log in this directory [default: a temporary one, kept only on failure].
    #[arg(long, env = "CHAOS_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// Sensors' ZooKeeper session timeout, ms.
    #[arg(long, env = "CHAOS_SESSION_TIMEOUT_MS", default_value_t = 3000)]
    session_timeout_ms: u64,
    /// Sampling period, ms.
    #[arg(long, env = "CHAOS_PERIOD_MS", default_value_t = 500)]
    period_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(rand::random);
    let bin_dir = match cli.bin_dir.or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
    }) {
        Some(d) => d,
        None => {
            eprintln!("chaos: cannot tell where the binaries are; pass --bin-dir");
            return ExitCode::from(2);
        }
    };
    let mut opts = chaos::Options::new(seed, Duration::from_secs(cli.duration), bin_dir);
    opts.log_dir = cli.log_dir;
    opts.timing.session = Duration::from_millis(cli.session_timeout_ms);
    opts.timing.period = Duration::from_millis(cli.period_ms);
    eprintln!("chaos: seed {seed}, {} s of faults", cli.duration);
    match chaos::run(&opts) {
        Ok(report) => {
            print!("{}", report.render());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("chaos: harness failure (seed {seed}): {e:#}");
            ExitCode::from(2)
        }
    }
}
