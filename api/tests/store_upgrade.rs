//! A deployment written by the store before `P:rollup` and `P:roundidx` (its ingest script
//! is kept in `fixtures/ingest_v1.lua`) stays readable after the upgrade, and new rounds
//! beside the old ones are tracked exactly: rollup buckets holding points from before and
//! after the upgrade read as one, the in-script migration indexes the old node rounds so a
//! late round finds its old neighbours, and retention trims both layouts.

use std::time::Duration;

use sensor_api::store::{
    Average, IngestStatus, NewPoint, RoundResult, Store, StoreConfig, ROLLUP_STEPS_MS,
};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;

fn average(round: u64, ms: i64, value: f64, leader: &str, fencing: u64) -> Average {
    Average {
        result: RoundResult {
            round,
            value,
            samples: 3,
            leader: leader.to_string(),
            fencing,
            taken_at: String::new(),
            cluster: Default::default(),
        },
        taken_at_ms: ms,
    }
}

/// Stores node rounds (default cluster) and legacy points with the pre-upgrade script.
async fn ingest_v1(conn: &mut redis::aio::MultiplexedConnection, p: &str, items: &[Average]) {
    let script = redis::Script::new(include_str!("fixtures/ingest_v1.lua"));
    let mut inv = script.prepare_invoke();
    for k in ["rec", "time", "fence", "last_round", "legacy_seq"] {
        inv.key(format!("{p}:{k}"));
    }
    for s in ROLLUP_STEPS_MS {
        inv.key(format!("{p}:roll:{s}"))
            .key(format!("{p}:rollidx:{s}"));
    }
    inv.key(format!("{p}:leaders")).key(format!("{p}:clusters"));
    inv.arg(ROLLUP_STEPS_MS.len());
    for s in ROLLUP_STEPS_MS {
        inv.arg(s);
    }
    inv.arg(items.len());
    for a in items {
        let legacy = a.result.round == 0;
        inv.arg(if legacy { "l" } else { "r" })
            .arg(format!("{:020}", a.result.round))
            .arg(a.result.value.to_string())
            .arg(format!("{:020}", a.result.fencing))
            .arg(a.taken_at_ms)
            .arg(a.result.samples)
            .arg(serde_json::to_string(a).expect("json"))
            .arg(&a.result.leader);
    }
    inv.arg("default");
    let out: Vec<String> = inv.invoke_async(conn).await.expect("v1 ingest");
    assert!(out.chunks(2).all(|s| s[0] == "stored"), "{out:?}");
}

#[tokio::test]
async fn a_pre_upgrade_deployment_reads_unchanged_and_grows_exactly() {
    let redis = testkit::shared_redis();
    let prefix = format!("upgrade-{}", std::process::id());
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Before the upgrade: rounds 1..=10 led by node-a, 11..=15 by node-b (one second
    // apart), and legacy points in between.
    let mut old: Vec<Average> = (1..=15)
        .map(|r| {
            let leader = if r <= 10 { "node-a" } else { "node-b" };
            average(r, T0 + r as i64 * 1000, r as f64, leader, 1)
        })
        .collect();
    old.extend((0..5).map(|i| average(0, T0 + 10_200 + i, 100.0, "legacy", 0)));
    ingest_v1(&mut conn, &prefix, &old).await;
    // A longer legacy history after them: the migration takes several ingest calls, and
    // the first ones find neighbours by the old scan.
    let tail: Vec<Average> = (0..2_500)
        .map(|i| average(0, T0 + 50_000 + i, 1.0, "legacy", 0))
        .collect();
    for chunk in tail.chunks(500) {
        ingest_v1(&mut conn, &prefix, chunk).await;
    }

    // The round index of the previous version (one time order for every cluster) is
    // rebuilt per cluster by the migration and then deleted.
    let v1_index = format!("{prefix}:roundidx");
    let _: u64 = redis::cmd("ZADD")
        .arg(&v1_index)
        .arg(0)
        .arg("10000001767225601000 r:00000000000000000001 00000000000000000001 node-a")
        .query_async(&mut conn)
        .await
        .expect("zadd");

    let store = Store::open(
        &redis.url(),
        &StoreConfig {
            key_prefix: prefix.clone(),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
        },
    )
    .expect("store");
    let before = store.stats(T0, T0 + HOUR).await.expect("stats");
    assert_eq!(before.count, 2_520);
    assert_eq!(before.mean, Some((120.0 + 500.0 + 2_500.0) / 2_520.0));

    // After: round 16 (node-c), then round 20 arriving late at 10.5 s (node-c, between
    // old rounds 10 and 11) with a duplicate of an old round, then round 17 (node-c).
    let new = [
        vec![average(16, T0 + 16_000, 16.0, "node-c", 5)],
        vec![
            average(20, T0 + 10_500, 20.0, "node-c", 5),
            average(3, T0 + 3_000, 3.0, "node-a", 5),
        ],
        vec![average(17, T0 + 17_000, 17.0, "node-c", 5)],
    ];
    let mut statuses = Vec::new();
    for batch in new {
        let points: Vec<NewPoint> = batch.into_iter().map(NewPoint::Round).collect();
        let results = store.ingest(&points).await.expect("ingest");
        statuses.extend(results.into_iter().map(|r| r.status));
    }
    assert_eq!(
        statuses,
        [
            IngestStatus::Stored,
            IngestStatus::Stored,
            IngestStatus::Duplicate,
            IngestStatus::Stored
        ]
    );
    let state: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:roundidx2:state"))
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(state.as_deref(), Some("ready"), "migration complete");
    let v1_left: u64 = redis::cmd("EXISTS")
        .arg(&v1_index)
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert_eq!(v1_left, 0, "the previous index is deleted");
    let changes: Vec<(u64, String, String)> = store
        .leader_changes(T0, T0 + HOUR)
        .await
        .expect("changes")
        .into_iter()
        .map(|c| (c.round, c.from, c.to))
        .collect();
    let ch = |r: u64, a: &str, b: &str| (r, a.to_string(), b.to_string());
    assert_eq!(
        changes,
        [
            ch(20, "node-a", "node-c"),
            ch(11, "node-c", "node-b"),
            ch(16, "node-b", "node-c")
        ]
    );

    // Every rollup level holds old and new points in shared buckets: the sums are exact.
    let total = 120.0 + 500.0 + 2_500.0 + 16.0 + 20.0 + 17.0;
    for width in [10_000, 60_000, HOUR, 24 * HOUR] {
        let buckets = store.buckets(T0, T0 + HOUR, width).await.expect("buckets");
        let count: u64 = buckets.iter().map(|b| b.count).sum();
        let sum: f64 = buckets.iter().map(|b| b.sum).sum();
        assert_eq!((count, sum), (2_523, total), "width {width}");
    }
    let after = store.stats(T0, T0 + HOUR).await.expect("stats");
    assert_eq!((after.count, after.max), (2_523, Some(100.0)));

    // Retention trims points, index entries and both rollup layouts.
    store.trim_before(T0 + HOUR).await.expect("trim");
    assert_eq!(store.count().await.expect("count"), 0);
    let index_left: u64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}:roundidx2"))
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(index_left, 0, "index entries trimmed with their points");
    assert!(store
        .buckets(T0, T0 + HOUR, 10_000)
        .await
        .expect("buckets")
        .is_empty());
    let fresh = average(40, T0 + 2 * HOUR, 1.0, "node-d", 6);
    store
        .ingest(&[NewPoint::Round(fresh)])
        .await
        .expect("ingest");
    assert!(store
        .leader_changes(T0, T0 + 3 * HOUR)
        .await
        .expect("changes")
        .is_empty());
}
