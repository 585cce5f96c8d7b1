//! Group commit of ingest (store/ingest.rs): batches queued while a script call is in
//! flight share one call, and every batch gets exactly the answer and leaves exactly the
//! data it would have alone. A private Redis, so `INFO commandstats` counts only this test.
mod support;

use futures::FutureExt;
use redis::AsyncCommands;
use sensor_api::store::{
    Average, ClusterId, IngestResult, IngestStatus, NewPoint, RoundResult, Store, StoreError,
};

fn round(n: u64, value: f64, fencing: u64, leader: &str, cluster: &ClusterId) -> NewPoint {
    let ms = 1_767_225_600_000 + n as i64 * 1_000;
    NewPoint::Round(Average {
        result: RoundResult {
            round: n,
            value,
            samples: 3,
            leader: leader.to_string(),
            fencing,
            taken_at: format!("2026-01-01T00:{:02}:{:02}Z", (n / 60) % 60, n % 60),
            cluster: cluster.clone(),
        },
        taken_at_ms: ms,
    })
}

/// The batches of the group, in queue order (a mix of refused and accepted ones whose
/// answers depend on the batches before them in the same call).
fn batches() -> Vec<Vec<NewPoint>> {
    let d = ClusterId::default();
    let other = ClusterId::parse("east").expect("cluster id");
    vec![
        // stale fencing token (the fence is 5): refused, nothing stored
        vec![round(10, 1.0, 3, "old", &d)],
        // valid round with a leader change
        vec![round(11, 2.0, 5, "b", &d)],
        // a valid round and a conflicting one: all or nothing
        vec![round(12, 3.0, 5, "b", &d), round(1, 9.0, 5, "a", &d)],
        // the round stored two batches earlier in the same call: duplicate
        vec![round(11, 2.0, 5, "b", &d)],
        // raises the fence to 7 ...
        vec![round(13, 4.0, 7, "c", &d), round(14, 5.0, 7, "c", &d)],
        // ... so this one is now stale
        vec![round(15, 6.0, 6, "b", &d)],
        // another cluster has its own fence
        vec![round(10, 7.0, 1, "x", &other)],
        // a back-dated round between stored ones (re-evaluates its successor's change)
        vec![round(5, 8.0, 7, "c", &d)],
        // a legacy point
        vec![NewPoint::Legacy {
            value: 1.5,
            taken_at_ms: 1_767_225_612_500,
            taken_at: "2026-01-01T00:00:12.500Z".to_string(),
        }],
    ]
}

fn expected() -> Vec<Vec<IngestStatus>> {
    use IngestStatus::*;
    vec![
        vec![StaleLeader],
        vec![Stored],
        vec![NotApplied, Conflict],
        vec![Duplicate],
        vec![Stored, Stored],
        vec![StaleLeader],
        vec![Stored],
        vec![Stored],
        vec![Stored],
    ]
}

fn statuses(results: &[IngestResult]) -> Vec<IngestStatus> {
    results.iter().map(|r| r.status).collect()
}

async fn seed(store: &Store) {
    let d = ClusterId::default();
    let r = store
        .ingest(&[round(1, 1.0, 5, "a", &d), round(2, 1.5, 5, "a", &d)])
        .await
        .expect("seed");
    assert!(r.iter().all(|r| r.status == IngestStatus::Stored));
}

/// Every key of `prefix` with its whole content, the prefix stripped, sorted.
async fn dump(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.expect("keys");
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("type");
        let content: Vec<String> = match kind.as_str() {
            "string" => vec![conn.get(&key).await.expect("get")],
            "hash" => {
                let mut h: Vec<(String, String)> = conn.hgetall(&key).await.expect("hgetall");
                h.sort();
                h.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
            }
            "zset" => {
                let z: Vec<(String, f64)> =
                    conn.zrange_withscores(&key, 0, -1).await.expect("zrange");
                z.into_iter().map(|(m, s)| format!("{m}@{s}")).collect()
            }
            "set" => {
                let mut s: Vec<String> = conn.smembers(&key).await.expect("smembers");
                s.sort();
                s
            }
            other => panic!("unexpected type {other} of {key}"),
        };
        let name = key.strip_prefix(prefix).expect("prefix").to_string();
        out.push(format!("{name} {}", content.join(" ")));
    }
    out.sort();
    out
}

/// A private Redis (so `INFO commandstats` counts only this test) and a connection to it.
async fn private_redis() -> (testkit::RedisServer, redis::aio::MultiplexedConnection) {
    let redis = testkit::RedisServer::start().expect("redis");
    let conn = redis::Client::open(redis.url().as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    (redis, conn)
}

/// A store on `url` under a fresh key prefix, and the prefix (to read its keys).
fn open_store(url: &str, tag: &str) -> (Store, String) {
    let prefix = support::unique_prefix(tag);
    let store = Store::open(
        url,
        &sensor_api::store::StoreConfig {
            key_prefix: prefix.clone(),
            ..Default::default()
        },
    )
    .expect("store");
    (store, prefix)
}

async fn script_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("info");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Concurrent batches (one stale fencing token, one conflict, valid rounds, a duplicate of
/// a round stored earlier in the same call, another cluster, a legacy point) share one
/// script call, and each is answered and stored exactly as when sent one at a time.
/// On a current-thread runtime every batch is queued before the writer task runs, so the
/// group is deterministic.
#[tokio::test(flavor = "current_thread")]
async fn grouped_batches_answer_and_store_as_if_alone() {
    let (redis, mut conn) = private_redis().await;
    let url = redis.url();

    // Reference: the same batches one call each, in the same order.
    let (alone, alone_prefix) = open_store(&url, "alone");
    seed(&alone).await;
    let mut alone_answers = Vec::new();
    for b in batches() {
        alone_answers.push(statuses(&alone.ingest(&b).await.expect("ingest")));
    }
    assert_eq!(alone_answers, expected());

    // Grouped: all batches queued together.
    let (grouped, grouped_prefix) = open_store(&url, "grouped");
    seed(&grouped).await;
    let all = batches();
    let calls_before = script_calls(&mut conn).await;
    let answers = futures::future::join_all(all.iter().map(|b| grouped.ingest(b))).await;
    let calls = script_calls(&mut conn).await - calls_before;
    let answers: Vec<_> = answers
        .into_iter()
        .map(|r| statuses(&r.expect("ingest")))
        .collect();
    assert_eq!(answers, expected(), "each batch answered as if alone");
    assert_eq!(calls, 1, "the {} batches shared one script call", all.len());

    // Nothing partially stored, nothing lost: the data equal the one-at-a-time data.
    let stored = dump(&mut conn, &grouped_prefix).await;
    assert!(
        stored.iter().any(|l| l.starts_with(":leaders ")) && stored.len() > 10,
        "{stored:?}"
    );
    assert_eq!(stored, dump(&mut conn, &alone_prefix).await);
}

/// A request that gave up (its future dropped, as the request timeout does) while its
/// batch waited in the queue is left out of the group: nothing of it is stored, and the
/// batches around it are answered as usual.
#[tokio::test(flavor = "current_thread")]
async fn batch_given_up_in_the_queue_is_not_applied() {
    let (redis, mut conn) = private_redis().await;
    let url = redis.url();
    let (store, prefix) = open_store(&url, "gaveup");
    let d = ClusterId::default();
    let kept = [round(1, 1.0, 1, "a", &d)];
    let dropped = [round(2, 2.0, 1, "a", &d)];
    let mut first = Box::pin(store.ingest(&kept));
    // Queued, not yet sent: the writer task has not run on this single-threaded runtime.
    assert!(futures::poll!(&mut first).is_pending());
    assert!(store.ingest(&dropped).now_or_never().is_none(), "queued");
    let answer = first.await.expect("ingest");
    assert_eq!(statuses(&answer), vec![IngestStatus::Stored]);
    let rec = format!("{prefix}:rec");
    let stored: Vec<String> = conn.hkeys(&rec).await.expect("hkeys");
    assert_eq!(stored, vec![format!("r:{:020}", 1)]);
    // A later batch after it is answered normally.
    let later = store.ingest(&dropped).await.expect("ingest");
    assert_eq!(statuses(&later), vec![IngestStatus::Stored]);
}

/// A batch that makes the script fail (it names a stored round whose record is damaged:
/// not JSON) fails alone: the batches that shared its script call are tried again one
/// call each and stored, and the damaged record is left as it was.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_batch_fails_alone() {
    let (redis, mut conn) = private_redis().await;
    let url = redis.url();
    let (store, prefix) = open_store(&url, "poison");
    let d = ClusterId::default();
    let east = ClusterId::parse("east").expect("cluster id");
    let seeded = store
        .ingest(&[round(1, 1.0, 1, "a", &d)])
        .await
        .expect("seed");
    assert_eq!(statuses(&seeded), vec![IngestStatus::Stored]);
    let rec = format!("{prefix}:rec");
    let damaged = format!("r:{:020}", 1);
    let _: () = conn.hset(&rec, &damaged, "not json").await.expect("damage");

    // One group (a current-thread runtime queues all three before the writer runs): a
    // batch of another cluster, the batch naming the damaged round, a new default round.
    let batches = [
        vec![round(1, 7.0, 1, "x", &east)],
        vec![round(1, 1.0, 1, "a", &d)],
        vec![round(2, 2.0, 1, "a", &d)],
    ];
    let calls_before = script_calls(&mut conn).await;
    let answers = futures::future::join_all(batches.iter().map(|b| store.ingest(b))).await;
    let calls = script_calls(&mut conn).await - calls_before;
    assert!(
        matches!(&answers[1], Err(StoreError::Corrupt(_))),
        "the batch naming the damaged record fails: {:?}",
        answers[1]
    );
    for i in [0, 2] {
        let got = answers[i]
            .as_ref()
            .expect("a neighbour of the failing batch");
        assert_eq!(statuses(got), vec![IngestStatus::Stored], "batch {i}");
    }
    assert_eq!(calls, 4, "one group call, then one call per batch");

    let mut members: Vec<String> = conn.hkeys(&rec).await.expect("hkeys");
    members.sort();
    assert_eq!(
        members,
        vec![
            damaged.clone(),
            format!("r:{:020}:east", 1),
            format!("r:{:020}", 2)
        ]
    );
    let kept: String = conn.hget(&rec, &damaged).await.expect("hget");
    assert_eq!(kept, "not json");
}
