//! `Store::buckets` with widths under the finest rollup (10 s) over more than the
//! small-range shortcut's 2 000 points: aggregated from raw points, so 1/2/5 s buckets
//! are all filled (no spurious gaps that read as outages); past the raw limit the store
//! refuses and the Grafana layer widens to 10 s. Real Redis.

mod grafana_support;

use grafana_support::*;
use sensor_api::store::{Average, StoreError, SUB_ROLLUP_RAW_LIMIT};
use serde_json::json;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

/// `n` one-second rounds from `start`, values cycling 0..7.
fn seconds(start: i64, n: i64) -> Vec<Average> {
    (0..n)
        .map(|i| {
            average(
                i as u64 + 1,
                start + i * 1000,
                (i % 7) as f64,
                2,
                "node-a",
                1,
            )
        })
        .collect()
}

#[tokio::test]
async fn sub_ten_second_buckets_have_no_spurious_gaps() {
    let app = App::start("fine-store").await;
    let data = seconds(T0, 3600);
    app.seed(&data).await;
    let store = &app.state.store;
    for width in [1_000_i64, 2_000, 5_000] {
        let buckets = store
            .buckets(T0, T0 + 3_600_000 - 1, width)
            .await
            .expect("buckets");
        let per = width / 1000;
        assert_eq!(buckets.len() as i64, 3600 / per, "width {width}");
        for (i, b) in buckets.iter().enumerate() {
            let first = i as i64 * per;
            assert_eq!(b.start_ms, T0 + i as i64 * width, "width {width}");
            assert_eq!(b.count as i64, per, "width {width} bucket {i}");
            assert_eq!(b.samples_sum as i64, 2 * per);
            let values: Vec<f64> = (first..first + per).map(|s| (s % 7) as f64).collect();
            assert_eq!(b.sum, values.iter().sum::<f64>());
            assert_eq!(b.last, *values.last().expect("non-empty"));
            assert_eq!(b.min, values.iter().cloned().fold(f64::INFINITY, f64::min));
        }
    }
    // An unaligned range: partial first and last buckets hold only points in range.
    let buckets = store
        .buckets(T0 + 1_500, T0 + 9_500, 5_000)
        .await
        .expect("buckets");
    let counts: Vec<(i64, u64)> = buckets.iter().map(|b| (b.start_ms - T0, b.count)).collect();
    assert_eq!(counts, vec![(0, 3), (5_000, 5)]);
}

#[tokio::test]
async fn past_the_raw_limit_the_store_refuses_and_grafana_widens_to_ten_seconds() {
    let app = App::start("fine-limit").await;
    let n = SUB_ROLLUP_RAW_LIMIT as i64 + 400; // 14 h of one-second rounds
    app.seed(&seconds(T0, n)).await;
    let end = T0 + n * 1000 - 1;
    match app.state.store.buckets(T0, end, 5_000).await {
        Err(StoreError::InvalidArgument(message)) => {
            assert!(message.contains("10000 ms"), "{message}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|b| b.len())),
    }
    // 20 000 points would be 5 s buckets; the server answers 10 s buckets instead, every
    // one of them full (ten rounds), none empty.
    let body = grafana_query(
        T0,
        end,
        20_000,
        0,
        json!([target("A", "rounds", json!({}))]),
    );
    let (status, answer) = app.post_json("/grafana/query", &body).await;
    assert_eq!(status, 200, "{answer}");
    let points = answer[0]["datapoints"].as_array().expect("datapoints");
    assert_eq!(points.len() as i64, n / 10);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(p[1].as_i64(), Some(T0 + i as i64 * 10_000));
        assert_eq!(p[0].as_f64(), Some(10.0), "bucket {i}");
    }
}
