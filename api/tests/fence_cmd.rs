//! `sensor-api fence show|reset` against a real Redis: an operator sees the fence of every
//! cluster and can undo a forged one, after which the real leader delivers again.

mod support;

use std::process::{Command, Output};

use sensor_api::store::{
    Average, ClusterId, IngestStatus, NewPoint, RoundResult, Store, StoreConfig,
};

fn fence_cmd(redis_url: &str, prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sensor-api"))
        .env_clear()
        .env("REDIS_URL", redis_url)
        .env("KEY_PREFIX", prefix)
        .arg("fence")
        .args(args)
        .output()
        .expect("run sensor-api fence")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn round(round: u64, fencing: u64, cluster: &ClusterId) -> NewPoint {
    NewPoint::Round(Average {
        result: RoundResult {
            round,
            value: 20.0 + round as f64,
            samples: 3,
            leader: "n1".into(),
            fencing,
            taken_at: "2026-01-01T00:00:00Z".into(),
            cluster: cluster.clone(),
        },
        taken_at_ms: 1_767_225_600_000 + round as i64,
    })
}

async fn status(store: &Store, point: NewPoint) -> IngestStatus {
    store.ingest(&[point]).await.expect("ingest")[0].status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_and_resets_a_forged_fence() {
    let redis = testkit::shared_redis().url();
    let prefix = support::unique_prefix("fence-cmd");
    let store = Store::open(
        &redis,
        &StoreConfig {
            key_prefix: prefix.clone(),
            ..StoreConfig::default()
        },
    )
    .expect("store");
    let default = ClusterId::default();
    let other = ClusterId::parse("c-2").unwrap();
    // The real leader (token 7), then a forged delivery with the largest token there is.
    assert_eq!(
        status(&store, round(1, 7, &default)).await,
        IngestStatus::Stored
    );
    assert_eq!(
        status(&store, round(1, 3, &other)).await,
        IngestStatus::Stored
    );
    assert_eq!(
        status(&store, round(2, u64::MAX, &default)).await,
        IngestStatus::Stored
    );
    assert_eq!(
        status(&store, round(3, 7, &default)).await,
        IngestStatus::StaleLeader,
        "the forged fence blocks the real leader"
    );

    let show = fence_cmd(&redis, &prefix, &["show"]);
    assert!(show.status.success(), "{show:?}");
    assert_eq!(stdout(&show), format!("default {}\nc-2 3\n", u64::MAX));
    let one = fence_cmd(&redis, &prefix, &["show", "--cluster", "c-2"]);
    assert_eq!(stdout(&one), "c-2 3\n");

    let reset = fence_cmd(
        &redis,
        &prefix,
        &["reset", "--cluster", "default", "--to", "7"],
    );
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(stdout(&reset), format!("default {} -> 7\n", u64::MAX));
    assert_eq!(store.highest_fencing(&default).await.unwrap(), 7);
    assert_eq!(
        store.highest_fencing(&other).await.unwrap(),
        3,
        "other clusters untouched"
    );
    assert_eq!(
        status(&store, round(3, 7, &default)).await,
        IngestStatus::Stored,
        "the real leader delivers again"
    );
    // Reset to 0 clears it.
    let clear = fence_cmd(&redis, &prefix, &["reset", "--cluster", "c-2"]);
    assert_eq!(stdout(&clear), "c-2 3 -> 0\n");
    assert_eq!(store.highest_fencing(&other).await.unwrap(), 0);
}

#[test]
fn bad_ids_exit_2_and_an_unreachable_redis_exits_1() {
    let redis = testkit::shared_redis().url();
    let bad = fence_cmd(&redis, "fence-bad", &["show", "--cluster", "a:b"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cluster id"));
    let missing = fence_cmd(&redis, "fence-bad", &["reset"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "--cluster is required: {missing:?}"
    );
    let down = format!("redis://127.0.0.1:{}/", testkit::free_port());
    let unreachable = fence_cmd(&down, "fence-bad", &["show"]);
    assert_eq!(unreachable.status.code(), Some(1), "{unreachable:?}");
}
