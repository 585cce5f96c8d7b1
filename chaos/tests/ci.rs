//! The CI chaos run: a fixed seed, about two minutes. Override with CHAOS_SEED and
//! CHAOS_DURATION (seconds of faults). Needs sensor-node and sensor-api built in this
//! target directory (`cargo test --workspace` builds them; otherwise `cargo build -p
//! zk-sensors-node -p sensor-api`).

use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn fixed_seed_chaos_run_keeps_every_invariant() {
    let seed = env_u64("CHAOS_SEED", 20261129);
    let duration = Duration::from_secs(env_u64("CHAOS_DURATION", 100));
    let bin_dir = testkit::bin_path("sensor-node")
        .parent()
        .expect("target dir")
        .to_path_buf();
    let opts = chaos::Options::new(seed, duration, bin_dir);
    let report = chaos::run(&opts).expect("the chaos harness runs");
    println!("{}", report.render());
    assert!(
        report.uncovered.is_empty(),
        "the CI run must exercise every fault kind; not exercised: {:?}",
        report.uncovered
    );
    assert!(report.passed(), "invariant violated:\n{}", report.render());
}
