//! # zk-sensors common: small things every binary shares
//!
//! Each is written once here instead of once per binary:
//!
//! * [`backoff`] — the one retry back-off (exponential, jittered).
//! * [`duration`] — duration flags (`500ms`, `10s`, `1m30s`, bare seconds).
//! * [`health`] — the containers' healthcheck command.
//! * [`launch`] — the start and the end of a service binary (validate, `--check-config`,
//!   runtime, healthcheck, exit status).
//! * [`log`] — `--log-format` and the `tracing` set-up: every binary logs to **stderr**.
//! * [`secret`] — [`Secret`], which redacts itself, and the one constant-time comparison.
//! * [`shutdown`] — the SIGINT/SIGTERM future.

#![warn(missing_docs)]

pub mod backoff;
pub mod duration;
pub mod health;
pub mod launch;
pub mod log;
pub mod secret;
pub mod shutdown;

pub use log::{init_tracing, LogFormat};
pub use secret::Secret;
