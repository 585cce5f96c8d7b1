//! Rounds and fences per cluster, against a real Redis: a new cluster's round 1 with a
//! lower fencing token is a new series, not a conflict or a stale leader; deliveries
//! without a cluster id (older nodes) and data written before clusters existed stay in the
//! default cluster.

mod support;

use serde_json::{json, Value};
use support::{avg_at, TestApp};

const BASE_MS: i64 = 1_790_000_000_000;

fn in_cluster(mut v: Value, cluster: &str) -> Value {
    v["cluster"] = json!(cluster);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_is_its_own_series_and_fence() {
    let app = TestApp::start("clusters", None).await;
    // The default cluster (no field: an older node), high tokens.
    let old = json!([
        avg_at(1, 20.0, 9000, BASE_MS),
        avg_at(2, 21.0, 9000, BASE_MS + 1000)
    ]);
    let (status, body) = app.post(&old, None).await;
    assert_eq!(status, 201, "{body}");

    // A fresh ensemble: rounds 1 and 2 again, other values, much lower tokens.
    let b = "5f0c2a9e-1b7d-4c1e-9a53-0b2a4c6d8e10";
    let new = json!([
        in_cluster(avg_at(1, 30.0, 5, BASE_MS + 2000), b),
        in_cluster(avg_at(2, 31.0, 5, BASE_MS + 3000), b),
    ]);
    let (status, body) = app.post(&new, None).await;
    assert_eq!(status, 201, "a new series, not a conflict or stale: {body}");
    assert_eq!(body["stored"], 2);
    // Idempotent within the cluster; fenced within the cluster.
    let (status, body) = app.post(&new, None).await;
    assert_eq!(
        (status, body["duplicates"].clone()),
        (200, json!(2)),
        "{body}"
    );
    let stale = json!([in_cluster(avg_at(3, 32.0, 4, BASE_MS + 4000), b)]);
    let (status, body) = app.post(&stale, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["results"][0]["status"], "stale_leader");
    let conflict = json!([in_cluster(avg_at(2, 99.0, 5, BASE_MS + 3000), b)]);
    let (status, body) = app.post(&conflict, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["results"][0]["status"], "conflict");
    // The default cluster's fence did not move: its leader still delivers.
    let (status, body) = app
        .post(&json!([avg_at(3, 22.0, 9000, BASE_MS + 5000)]), None)
        .await;
    assert_eq!(status, 201, "{body}");
    let default = sensor_api::store::ClusterId::default();
    let cluster_b = sensor_api::store::ClusterId::parse(b).unwrap();
    assert_eq!(
        app.state.store.highest_fencing(&default).await.unwrap(),
        9000
    );
    assert_eq!(
        app.state.store.highest_fencing(&cluster_b).await.unwrap(),
        5
    );

    // One round by number, per cluster (default without the parameter).
    let (status, one) = app.get_json("/api/v1/averages/1").await;
    assert_eq!((status, one["value"].clone()), (200, json!(20.0)), "{one}");
    assert!(
        one.get("cluster").is_none(),
        "default records keep their old shape"
    );
    let (status, one) = app
        .get_json(&format!("/api/v1/averages/1?cluster={b}"))
        .await;
    assert_eq!((status, one["value"].clone()), (200, json!(30.0)), "{one}");
    assert_eq!(one["cluster"], b);

    // The list merges the series in time order, and paging crosses cluster members.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .get_json(&format!("/api/v1/averages?limit=2{cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        for v in page["items"].as_array().unwrap() {
            seen.push((
                v["round"].as_u64().unwrap(),
                v["cluster"].as_str().unwrap_or("default").to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    seen.reverse();
    let d = "default".to_string();
    assert_eq!(
        seen,
        vec![
            (1, d.clone()),
            (2, d.clone()),
            (1, b.to_string()),
            (2, b.to_string()),
            (3, d.clone())
        ]
    );
    let (_, stats) = app.get_json("/api/v1/stats").await;
    assert_eq!(stats["count"], 5);
    // Grafana counts the rounds of every series, in time order.
    let iso = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let query = json!({
        "range": {"from": iso(BASE_MS), "to": iso(BASE_MS + 9_999)},
        "intervalMs": 1000,
        "maxDataPoints": 100,
        "targets": [{"refId": "A", "target": "rounds", "payload": {}}],
    });
    let r = app
        .client
        .post(app.url("/grafana/query"))
        .json(&query)
        .send()
        .await
        .expect("grafana");
    assert_eq!(r.status(), 200);
    let series: Value = r.json().await.expect("json");
    let points: Vec<(f64, i64)> = series[0]["datapoints"]
        .as_array()
        .expect("datapoints")
        .iter()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_i64()?)))
        .collect();
    let counted: f64 = points.iter().map(|p| p.0).sum();
    assert_eq!(counted, 5.0, "{series}");
    assert!(points.windows(2).all(|w| w[0].1 < w[1].1), "{series}");
    // The clusters the store knows, for `sensor-api fence show`.
    let clusters = app.state.store.clusters().await.unwrap();
    assert_eq!(clusters, vec![default, cluster_b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_mixed_cluster_ids_are_refused_naming_the_field() {
    let app = TestApp::start("clusters-bad", None).await;
    let (status, body) = app
        .post(&in_cluster(avg_at(1, 1.0, 1, BASE_MS), "no spaces"), None)
        .await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("cluster")),
        "{body}"
    );
    let (status, body) = app
        .post(
            &json!([in_cluster(avg_at(1, 1.0, 1, BASE_MS), &"x".repeat(65))]),
            None,
        )
        .await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("[0].cluster")),
        "{body}"
    );
    let mixed = json!([
        in_cluster(avg_at(1, 1.0, 1, BASE_MS), "a"),
        in_cluster(avg_at(2, 1.0, 1, BASE_MS + 1), "b"),
    ]);
    let (status, body) = app.post(&mixed, None).await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("[1].cluster")),
        "{body}"
    );
    let (status, body) = app.get_json("/api/v1/averages/1?cluster=a:b").await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("cluster")),
        "{body}"
    );
    let (_, stats) = app.get_json("/api/v1/stats").await;
    assert_eq!(stats["count"], 0, "nothing of a refused batch stored");
}
