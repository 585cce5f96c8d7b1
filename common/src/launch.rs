//! The start and the end of every long-running service binary (`sensor-api`,
//! `sensor-dashboard`), so both behave alike at their edges: an invalid setting exits 2
//! naming it, `--check-config` prints the effective values and exits 0, a failed runtime
//! or server exits 1 with the cause on stderr (and in the log when logging is up).

use std::fmt::Display;
use std::process::ExitCode;
use std::time::Duration;

/// Validates and, unless only `--check-config` was asked for, builds the async runtime.
/// `Err` is the exit code the binary returns at once (after printing why on stderr, or the
/// configuration on stdout for `--check-config`).
pub fn prepare(
    name: &str,
    config: &impl Display,
    validation: Result<(), impl Display>,
    check_config: bool,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    if let Err(e) = validation {
        eprintln!("{name}: {e}");
        return Err(ExitCode::from(2));
    }
    if check_config {
        println!("{config}");
        println!("# configuration is valid");
        return Err(ExitCode::SUCCESS);
    }
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("{name}: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The `healthcheck` subcommand: probes `url` ([`crate::health::check`]); 0 on a 2xx
/// answer, 1 otherwise with the reason on stderr.
pub fn healthcheck(
    name: &str,
    runtime: &tokio::runtime::Runtime,
    url: &str,
    timeout: Duration,
) -> ExitCode {
    match runtime.block_on(crate::health::check(url, timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} healthcheck: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a server that returned: 0, or 1 with the error (`{:#}`, so an
/// `anyhow` chain is whole) logged and printed on stderr.
pub fn exit_status<E: Display>(name: &str, served: Result<(), E>) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
