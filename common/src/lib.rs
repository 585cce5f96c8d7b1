//! # zk-sensors common: small things every binary shares
//!
//! Each is written once here instead of once per binary:
//!
//! * [`backoff`] — the one retry back-off (exponential, jittered).
//! * [`log`] — `--log-format` and the `tracing` set-up: every binary logs to **stderr**.

#![warn(missing_docs)]

pub mod backoff;
pub mod log;

pub use log::{init_tracing, LogFormat};
