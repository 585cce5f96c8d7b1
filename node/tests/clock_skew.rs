//! A leader whose clock is far ahead of the API's: its rounds must still be stored.
//!
//! sensor-api refuses an average whose `taken_at` is more than `TAKEN_AT_MAX_AHEAD` (5 min)
//! ahead of its own clock (400, field `taken_at`). On the old code the leader stamped
//! `taken_at` from its own clock, so a node whose clock ran 10 minutes ahead had every round
//! refused: they piled up in the outbox ("API refused the delivery; rounds stay queued") until
//! it was full and rounds stopped. Now the leader stamps rounds from ZooKeeper's clock (the
//! ensemble's time in the znodes' `ctime`/`mtime`), which its own clock cannot move.
//!
//! Every part real: ZooKeeper, Redis, the `sensor-api` binary (see `real_api`), and a
//! `sensor-node` whose clock is shifted by libfaketime (Debian's `faketime` package,
//! installed by `scripts/install-deps`): `LD_PRELOAD` moves what `clock_gettime` answers for
//! the wall clock only, as a misconfigured device's clock would.

mod common;
mod real_api;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::NodeOpts;
use testkit::RedisServer;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const TOKEN: &str = "clock-skew-test-token";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_ten_minutes_ahead_still_gets_its_rounds_stored_with_the_ensembles_time() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run scripts/install-deps (Debian package `faketime`)"
    );
    let server = testkit::shared_zk();
    let zk = format!(
        "{}{}",
        server.connect_string(),
        testkit::unique_chroot("clock-skew")
    );
    let redis = RedisServer::start().expect("redis");
    let api = real_api::spawn_api(&redis, None, "api-skew", TOKEN);
    let http = reqwest::Client::new();
    api.wait_ready(&http).await;

    let mut opts = NodeOpts::new(&zk, Some(&api.url));
    opts.token = Some(TOKEN.to_string());
    opts.extra_env.extend([
        ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
        ("FAKETIME".to_string(), "+10m".to_string()),
        // Only the wall clock is wrong on a skewed device; timers keep running.
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
        ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
    ]);
    let skewed = common::spawn("skewed", &opts);

    // The node really runs 10 minutes ahead: its log lines carry its clock.
    let ahead = testkit::wait_until_async(Duration::from_secs(20), || async {
        skewed.events().iter().any(|e| {
            e["timestamp"]
                .as_str()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .is_some_and(|t| (t.unix_timestamp() * 1000 - now_ms()) > 9 * 60 * 1000)
        })
    })
    .await;
    assert!(
        ahead,
        "the node's clock is not shifted (libfaketime not applied?)\n{}",
        skewed.tail()
    );

    let stored = testkit::wait_until_async(Duration::from_secs(60), || async {
        api.rounds(&http).await.len() >= 5
    })
    .await;
    let items = api.items(&http).await.unwrap_or_default();
    assert!(
        stored,
        "{} rounds stored from a leader 10 min ahead (expected >= 5)\n--- node ---\n{}\n--- api ---\n{}",
        items.len(),
        skewed.tail(),
        api.proc.log_tail(20)
    );
    // Contiguous from round 1: nothing lost or set aside on the way.
    let rounds: Vec<u64> = items.iter().filter_map(|v| v["round"].as_u64()).collect();
    let expected: Vec<u64> = (1..=rounds.len() as u64).collect();
    assert_eq!(rounds, expected, "stored rounds not contiguous from 1");
    // Stamped with the ensemble's time (this machine's, here), not the node's.
    let now = now_ms();
    for item in &items {
        let taken = item["taken_at_ms"].as_i64().expect("taken_at_ms");
        assert!(
            (now - 120_000..=now + 5_000).contains(&taken),
            "round {} stamped {} ms from the real time: {item}",
            item["round"],
            taken - now
        );
    }
}
