//! Headless Chromium as the page tests run it (Debian's `chromium` package).

use std::path::Path;
use std::process::Command;

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium command with a fresh profile in `profile`, and nothing that reaches
/// the network by itself (no QUIC, background networking, component updates or sync), so a
/// test's only traffic is to the pages it names on 127.0.0.1. Callers add their own
/// arguments (`--dump-dom URL`, `--screenshot`, `--remote-debugging-pipe`, ...).
pub fn headless(profile: &Path) -> Command {
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}
