//! The Grafana JSON datasource endpoints (`/grafana`), end to end against a real Redis:
//! every answer validated against the plugin's OpenAPI schemas, realistic Grafana 12
//! request bodies, and downsampling checked against values computed here by hand.

mod grafana_support;

use grafana_support::*;
use sensor_api::store::Average;
use serde_json::{json, Value};

/// 2026-01-01T00:00:00Z: aligned to every grid width up to a day.
const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn query_pointer() -> String {
    response_schema("/query", "post")
}

/// POSTs a `/query`, checks the request and the 200 answer against the spec, returns it.
async fn query_ok(app: &App, spec: &Value, body: &Value) -> Vec<Value> {
    assert_valid(spec, &request_schema("/query"), body);
    query_ok_legacy(app, spec, body).await
}

/// Same, for requests from older plugin versions (payload as JSON text, which the current
/// spec no longer describes): only the answer is checked against the spec.
async fn query_ok_legacy(app: &App, spec: &Value, body: &Value) -> Vec<Value> {
    let (status, answer) = app.post_json("/grafana/query", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_valid(spec, &query_pointer(), &answer);
    answer.as_array().expect("array").clone()
}

fn points(series: &Value) -> Vec<(Option<f64>, i64)> {
    series["datapoints"]
        .as_array()
        .expect("datapoints")
        .iter()
        .map(|p| (p[0].as_f64(), p[1].as_i64().expect("timestamp")))
        .collect()
}

fn by_ref<'a>(results: &'a [Value], ref_id: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["refId"] == ref_id)
        .unwrap_or_else(|| panic!("no result for {ref_id}: {results:?}"))
}

/// 3 300 averages, one per second over an hour starting `start`, with a 5-minute outage
/// (seconds 600..900) and a leader change at second 1 800.
fn hour_of_rounds(start: i64) -> Vec<Average> {
    (0..3600_i64)
        .filter(|i| !(600..900).contains(i))
        .map(|i| {
            let (leader, fencing) = if i < 1800 {
                ("node-a", 1)
            } else {
                ("node-b", 2)
            };
            average(
                i as u64 + 1,
                start + i * 1000,
                ((i * 7) % 13) as f64 + 0.25,
                1 + (i % 5) as u32,
                leader,
                fencing,
            )
        })
        .collect()
}

/// Hand computation of one bucket: (avg, min, max, last, samples avg, samples sum, count).
#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    samples: u64,
    count: u64,
}

fn expected_buckets(data: &[Average], first: i64, width: i64, n: usize) -> Vec<Expected> {
    let mut out = vec![Expected::default(); n];
    for a in data {
        let i = (a.taken_at_ms - first).div_euclid(width);
        if i < 0 || i as usize >= n {
            continue;
        }
        let e = &mut out[i as usize];
        if e.count == 0 {
            e.min = a.result.value;
            e.max = a.result.value;
        }
        e.count += 1;
        e.sum += a.result.value;
        e.min = e.min.min(a.result.value);
        e.max = e.max.max(a.result.value);
        e.last = a.result.value;
        e.samples += u64::from(a.result.samples);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[tokio::test]
async fn health_answers_200_for_save_and_test() {
    let app = App::start("health").await;
    for path in ["/grafana", "/grafana/"] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test]
async fn catalog_endpoints_match_the_spec() {
    let app = App::start("catalog").await;
    let spec = patched_openapi();

    let body = json!({"metric": "", "payload": {}, "app": "dashboard", "requestId": "x"});
    assert_valid(&spec, &request_schema("/metrics"), &body);
    let (status, metrics) = app.post_json("/grafana/metrics", &body).await;
    assert_eq!(status, 200);
    assert_valid(&spec, &response_schema("/metrics", "post"), &metrics);
    let names: Vec<&str> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["average", "samples", "rounds", "leader_changes"]);
    let average = &metrics[0];
    let aggregation = average["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aggregation")
        .expect("aggregation payload");
    let options: Vec<&str> = aggregation["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["avg", "min", "max", "last"]);

    // An empty body is fine too (Grafana sends one when the editor opens).
    let (status, _) = app
        .post_raw("/grafana/metrics", "application/json", "")
        .await;
    assert_eq!(status, 200);

    let body =
        json!({"metric": "average", "payload": {"aggregation": "max"}, "name": "aggregation"});
    assert_valid(&spec, &request_schema("/metric-payload-options"), &body);
    let (status, opts) = app
        .post_json("/grafana/metric-payload-options", &body)
        .await;
    assert_eq!(status, 200);
    assert_valid(
        &spec,
        &response_schema("/metric-payload-options", "post"),
        &opts,
    );
    assert_eq!(opts.as_array().unwrap().len(), 4);
    let (status, opts) = app
        .post_json(
            "/grafana/metric-payload-options",
            &json!({"metric": "rounds", "payload": {}, "name": "rate"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        opts,
        json!([{"label": "per_bucket", "value": "per_bucket"}, {"label": "per_minute", "value": "per_minute"}])
    );
    let (status, err) = app
        .post_json(
            "/grafana/metric-payload-options",
            &json!({"metric": "nope", "payload": {}, "name": "aggregation"}),
        )
        .await;
    assert_grafana_error(status, &err, 400, "unknown metric");

    let body = json!({
        "payload": {"target": "metrics", "variables": {}},
        "range": {"from": iso(T0), "to": iso(T0 + HOUR), "raw": {"from": "now-1h", "to": "now"}},
        "rangeRaw": {"from": "now-1h", "to": "now"}
    });
    assert_valid(&spec, &request_schema("/variable"), &body);
    let (status, vars) = app.post_json("/grafana/variable", &body).await;
    assert_eq!(status, 200);
    assert_valid(&spec, &response_schema("/variable", "post"), &vars);
    assert_eq!(vars[0]["__value"], "average");
    assert_eq!(vars[0]["text"], "average");
    let (status, vars) = app
        .post_json(
            "/grafana/variable",
            &json!({"payload": {"target": "aggregations"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(vars.as_array().unwrap().len(), 4);
    let (status, err) = app
        .post_json(
            "/grafana/variable",
            &json!({"payload": {"target": "leaders()"}}),
        )
        .await;
    assert_grafana_error(status, &err, 400, "unknown variable query");

    let (status, keys) = app.post_json("/grafana/tag-keys", &json!({})).await;
    assert_eq!(status, 200);
    assert_valid(&spec, &response_schema("/tag-keys", "post"), &keys);
    let body = json!({"key": "leader"});
    assert_valid(&spec, &request_schema("/tag-values"), &body);
    let (status, values) = app.post_json("/grafana/tag-values", &body).await;
    assert_eq!((status, values), (200, json!([])));
}

#[tokio::test]
async fn every_aggregation_matches_hand_computed_buckets_with_null_gaps() {
    let app = App::start("small").await;
    let spec = patched_openapi();
    // Ten minutes; minute 1 and minute 5 have no rounds.
    let mut data = vec![
        average(1, T0 + 1_000, 1.0, 2, "n1", 1),
        average(2, T0 + 20_000, 2.0, 4, "n1", 1),
        average(3, T0 + 40_000, 3.0, 6, "n1", 1),
        average(4, T0 + 2 * MIN + 5_000, 10.0, 3, "n1", 1),
    ];
    for m in [3_i64, 4, 6, 7, 8, 9] {
        data.push(average(
            m as u64 + 10,
            T0 + m * MIN + 30_000,
            m as f64 * 1.5,
            m as u32,
            "n1",
            1,
        ));
    }
    app.seed(&data).await;

    let targets = json!([
        target("A", "average", json!({"aggregation": "avg"})),
        target("B", "average", json!({"aggregation": "min"})),
        target("C", "average", json!({"aggregation": "max"})),
        // Old plugin versions send the payload as JSON text.
        target("D", "average", json!("{\"aggregation\": \"last\"}")),
        target("E", "samples", json!({})),
        target("F", "samples", json!({"aggregation": "sum"})),
        target("G", "rounds", json!("")),
        target("H", "rounds", json!({"rate": "per_minute"})),
        {"refId": "I", "target": "average", "hide": true, "payload": {}},
        {"refId": "J", "target": "", "payload": {}},
    ]);
    let body = grafana_query(T0, T0 + 10 * MIN - 1, 10, 1000, targets);
    let results = query_ok_legacy(&app, &spec, &body).await;
    assert_eq!(
        results.len(),
        8,
        "hidden and empty targets are not answered"
    );

    let times: Vec<i64> = (0..10).map(|m| T0 + m * MIN).collect();
    let expect = |ref_id: &str, name: &str, values: [Option<f64>; 10]| {
        let series = by_ref(&results, ref_id);
        assert_eq!(series["target"], name, "{ref_id}");
        let got = points(series);
        let want: Vec<(Option<f64>, i64)> = values.into_iter().zip(times.iter().copied()).collect();
        assert_eq!(got, want, "{ref_id} ({name})");
    };
    let m = |k: f64| Some(k * 1.5);
    expect(
        "A",
        "average",
        [
            Some(2.0),
            None,
            Some(10.0),
            m(3.0),
            m(4.0),
            None,
            m(6.0),
            m(7.0),
            m(8.0),
            m(9.0),
        ],
    );
    expect(
        "B",
        "average (min)",
        [
            Some(1.0),
            None,
            Some(10.0),
            m(3.0),
            m(4.0),
            None,
            m(6.0),
            m(7.0),
            m(8.0),
            m(9.0),
        ],
    );
    expect(
        "C",
        "average (max)",
        [
            Some(3.0),
            None,
            Some(10.0),
            m(3.0),
            m(4.0),
            None,
            m(6.0),
            m(7.0),
            m(8.0),
            m(9.0),
        ],
    );
    expect(
        "D",
        "average (last)",
        [
            Some(3.0),
            None,
            Some(10.0),
            m(3.0),
            m(4.0),
            None,
            m(6.0),
            m(7.0),
            m(8.0),
            m(9.0),
        ],
    );
    let s = |k: f64| Some(k);
    expect(
        "E",
        "samples",
        [
            Some(4.0),
            None,
            Some(3.0),
            s(3.0),
            s(4.0),
            None,
            s(6.0),
            s(7.0),
            s(8.0),
            s(9.0),
        ],
    );
    expect(
        "F",
        "samples (sum)",
        [
            Some(12.0),
            None,
            Some(3.0),
            s(3.0),
            s(4.0),
            None,
            s(6.0),
            s(7.0),
            s(8.0),
            s(9.0),
        ],
    );
    let one = Some(1.0);
    expect(
        "G",
        "rounds",
        [Some(3.0), None, one, one, one, None, one, one, one, one],
    );
    expect(
        "H",
        "rounds per minute",
        [Some(3.0), None, one, one, one, None, one, one, one, one],
    );
}

#[tokio::test]
async fn large_history_is_served_from_rollups_exactly() {
    let app = App::start("rollups").await;
    let spec = patched_openapi();
    let start = T0 + 24 * HOUR;
    let data = hour_of_rounds(start);
    app.seed(&data).await;

    // (maxDataPoints, expected width, expected buckets): 1-minute and 10-minute grids.
    for (max_points, width, n) in [(60_u64, MIN, 60_usize), (7, 10 * MIN, 6)] {
        let body = grafana_query(
            start,
            start + HOUR - 1,
            max_points,
            1000,
            json!([
                target("A", "average", json!({})),
                target("B", "average", json!({"aggregation": "min"})),
                target("C", "average", json!({"aggregation": "max"})),
                target("D", "average", json!({"aggregation": "last"})),
                target("E", "samples", json!({})),
                target("F", "rounds", json!({})),
            ]),
        );
        let results = query_ok(&app, &spec, &body).await;
        let want = expected_buckets(&data, start, width, n);
        for (ref_id, pick) in [
            (
                "A",
                (|e: &Expected| e.sum / e.count as f64) as fn(&Expected) -> f64,
            ),
            ("B", |e| e.min),
            ("C", |e| e.max),
            ("D", |e| e.last),
            ("E", |e| e.samples as f64 / e.count as f64),
            ("F", |e| e.count as f64),
        ] {
            let got = points(by_ref(&results, ref_id));
            assert_eq!(got.len(), n, "{ref_id} at {width} ms");
            for (i, ((value, t), e)) in got.iter().zip(&want).enumerate() {
                assert_eq!(*t, start + i as i64 * width, "{ref_id} timestamp {i}");
                match value {
                    None => assert_eq!(e.count, 0, "{ref_id} bucket {i} should have data"),
                    Some(v) => {
                        assert!(e.count > 0, "{ref_id} bucket {i} should be null");
                        assert!(
                            close(*v, pick(e)),
                            "{ref_id} bucket {i}: {v} != {}",
                            pick(e)
                        );
                    }
                }
            }
        }
        if width == MIN {
            // The outage (seconds 600..900) is minutes 10..14: nulls, so the chart has a gap.
            let avg = points(by_ref(&results, "A"));
            assert!(avg[10..15].iter().all(|(v, _)| v.is_none()));
            assert!(avg[9].0.is_some() && avg[15].0.is_some());
        }
    }
}

#[tokio::test]
async fn fine_grids_are_exact_from_raw_points_with_gaps_only_in_outages() {
    let app = App::start("fine").await;
    let spec = patched_openapi();
    let start = T0 + 2 * 24 * HOUR;
    let data = hour_of_rounds(start);
    app.seed(&data).await;
    // One hour at 1000 points is 5 s buckets over 3 300 raw points (more than the store's
    // small-range shortcut): aggregated from raw points, so every bucket holds its five
    // rounds and only the real outage (seconds 600..900) is null.
    let body = grafana_query(
        start,
        start + HOUR - 1,
        1000,
        1000,
        json!([
            target("A", "rounds", json!({})),
            target("B", "average", json!({}))
        ]),
    );
    let results = query_ok(&app, &spec, &body).await;
    let rounds = points(by_ref(&results, "A"));
    assert_eq!(rounds.len(), 720);
    let want = expected_buckets(&data, start, 5_000, 720);
    for (i, ((v, t), e)) in rounds.iter().zip(&want).enumerate() {
        assert_eq!(*t, start + i as i64 * 5_000);
        let in_outage = (120..180).contains(&i);
        assert_eq!(e.count, if in_outage { 0 } else { 5 }, "hand count {i}");
        assert_eq!(*v, (!in_outage).then_some(5.0), "bucket {i}");
    }
    let avg = points(by_ref(&results, "B"));
    for ((v, _), e) in avg.iter().zip(&want) {
        assert_eq!(v.is_some(), e.count > 0);
        if let Some(v) = v {
            assert!(close(*v, e.sum / e.count as f64));
        }
    }
}

#[tokio::test]
async fn points_are_ascending_evenly_spaced_and_within_max_data_points() {
    let app = App::start("bounds").await;
    let spec = patched_openapi();
    let start = T0 + 3 * 24 * HOUR;
    app.seed(&hour_of_rounds(start)).await;
    let ranges = [
        (start + 1234, start + 1234),
        (start - 5 * MIN, start + 7 * MIN + 13),
        (start + 17, start + HOUR + 99),
        (start - 6 * HOUR, start + 6 * HOUR),
        (start - 30 * 24 * HOUR, start + 2 * HOUR),
        (start - 5 * 365 * 24 * HOUR, start + HOUR),
    ];
    for (from, to) in ranges {
        for max_points in [1_u64, 3, 50, 1000, 1920] {
            for interval in [0_u64, 15_000] {
                let body = grafana_query(
                    from,
                    to,
                    max_points,
                    interval,
                    json!([target("A", "average", json!({}))]),
                );
                let results = query_ok(&app, &spec, &body).await;
                let pts = points(&results[0]);
                assert!(!pts.is_empty());
                assert!(
                    pts.len() as u64 <= max_points,
                    "{} > {max_points} for {from}..{to}",
                    pts.len()
                );
                let step = pts.get(1).map_or(i64::MAX / 2, |p| p.1 - pts[0].1);
                assert!(
                    step >= interval as i64,
                    "width {step} below intervalMs {interval}"
                );
                for w in pts.windows(2) {
                    assert_eq!(w[1].1 - w[0].1, step, "evenly spaced, ascending");
                }
                assert!(
                    pts[0].1 <= from && pts[pts.len() - 1].1 + step > to,
                    "grid covers the range"
                );
                if pts.len() > 1 {
                    assert_eq!(pts[0].1 % step, 0, "epoch-aligned");
                }
            }
        }
    }
}

#[tokio::test]
async fn tables_and_leader_change_annotations() {
    let app = App::start("tables").await;
    let spec = patched_openapi();
    let start = T0 + 4 * 24 * HOUR;
    let data = hour_of_rounds(start);
    app.seed(&data).await;
    let body = grafana_query(
        start,
        start + HOUR - 1,
        60,
        1000,
        json!([
            target(
                "T",
                "average",
                json!({"format": "table", "aggregation": "max"})
            ),
            target("L", "leader_changes", json!({})),
            target("S", "samples", json!({})),
        ]),
    );
    let results = query_ok(&app, &spec, &body).await;
    assert_eq!(results.len(), 3);

    let table = by_ref(&results, "T");
    assert_eq!(table["type"], "table");
    assert_eq!(table["columns"][0], json!({"text": "Time", "type": "time"}));
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        55,
        "one row per non-empty minute (5 minutes of outage)"
    );
    let want = expected_buckets(&data, start, MIN, 60);
    for row in rows {
        let i = ((row[0].as_i64().unwrap() - start) / MIN) as usize;
        assert!(close(row[1].as_f64().unwrap(), want[i].max));
    }

    let notes = by_ref(&results, "L");
    let columns: Vec<&str> = notes["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["time", "title", "text"]);
    assert_eq!(notes["rows"].as_array().unwrap().len(), 1, "{notes}");
    let row = &notes["rows"][0];
    assert_eq!(row[0], json!(start + 1_800_000));
    assert!(row[1].as_str().unwrap().contains("node-b"));
    assert!(row[2].as_str().unwrap().contains("node-a → node-b"));
    assert!(row[2].as_str().unwrap().contains("round 1801"));

    assert_eq!(by_ref(&results, "S")["target"], "samples");
}

#[tokio::test]
async fn bad_requests_get_a_message_grafana_can_show() {
    let app = App::start("errors").await;
    let ok_targets = json!([target("A", "average", json!({}))]);
    let cases: Vec<(Value, &str)> = vec![
        (
            grafana_query(
                T0,
                T0 + HOUR,
                100,
                0,
                json!([target("A", "temperature", json!({}))]),
            ),
            "unknown metric `temperature`",
        ),
        (
            grafana_query(
                T0,
                T0 + HOUR,
                100,
                0,
                json!([target("A", "samples", json!({"aggregation": "max"}))]),
            ),
            "does not support aggregation `max`",
        ),
        (
            grafana_query(
                T0,
                T0 + HOUR,
                100,
                0,
                json!([target("A", "average", json!({"aggregation": "median"}))]),
            ),
            "unknown aggregation",
        ),
        (
            grafana_query(
                T0,
                T0 + HOUR,
                100,
                0,
                json!([target("A", "average", json!({"format": "heatmap"}))]),
            ),
            "unknown format",
        ),
        (
            grafana_query(
                T0,
                T0 + HOUR,
                100,
                0,
                json!([target("A", "average", json!("{not json"))]),
            ),
            "payload is not a JSON object",
        ),
        (
            grafana_query(T0 + HOUR, T0, 100, 0, ok_targets.clone()),
            "range.from is after range.to",
        ),
        (
            json!({"targets": ok_targets.clone(), "maxDataPoints": 100}),
            "range.from is missing",
        ),
        (
            json!({"targets": ok_targets.clone(), "range": {"from": "yesterday", "to": iso(T0)}}),
            "not an ISO-8601",
        ),
    ];
    for (body, needle) in cases {
        let (status, err) = app.post_json("/grafana/query", &body).await;
        assert_grafana_error(status, &err, 400, needle);
    }
    let mut filtered = grafana_query(T0, T0 + HOUR, 100, 0, ok_targets.clone());
    filtered["adhocFilters"] = json!([{"key": "leader", "operator": "=", "value": "n1"}]);
    let (status, err) = app.post_json("/grafana/query", &filtered).await;
    assert_grafana_error(status, &err, 400, "ad hoc filters");

    let (status, err) = app
        .post_raw("/grafana/query", "application/json", "{\"targets\": [")
        .await;
    assert_grafana_error(status, &err, 400, "invalid JSON request body");
}

#[tokio::test]
async fn redis_outage_is_a_503_with_a_message() {
    let mut redis = testkit::RedisServer::start().expect("redis");
    let app = App::start_on(&redis.url(), "outage").await;
    let body = grafana_query(
        T0,
        T0 + HOUR,
        100,
        0,
        json!([target("A", "average", json!({}))]),
    );
    let (status, _) = app.post_json("/grafana/query", &body).await;
    assert_eq!(status, 200);
    redis.kill();
    let (status, err) = app.post_json("/grafana/query", &body).await;
    assert_grafana_error(status, &err, 503, "unavailable");
    let (status, err) = app.get("/grafana").await;
    assert_grafana_error(status, &err, 503, "unavailable");
    redis.restart().expect("restart");
    assert!(
        testkit::wait_until_async(std::time::Duration::from_secs(10), || async {
            app.post_json("/grafana/query", &body).await.0 == 200
        })
        .await,
        "recovers once Redis is back"
    );
}

/// A wide panel over a day of one average every 10 s: 8 640 buckets of 10 s, more rollup
/// entries than Redis' Lua can unpack in one call; every bucket must still be there.
#[tokio::test]
async fn wide_panels_over_long_ranges_are_complete() {
    let app = App::start("wide").await;
    let spec = patched_openapi();
    let start = T0 + 5 * 24 * HOUR;
    let data: Vec<Average> = (0..8640_i64)
        .map(|i| {
            average(
                i as u64 + 1,
                start + i * 10_000 + 3_000,
                (i % 97) as f64,
                2,
                "n1",
                1,
            )
        })
        .collect();
    app.seed(&data).await;
    let body = grafana_query(
        start,
        start + 24 * HOUR - 1,
        10_000,
        0,
        json!([target("A", "average", json!({}))]),
    );
    let results = query_ok(&app, &spec, &body).await;
    let pts = points(&results[0]);
    assert_eq!(pts.len(), 8640);
    for (k, (v, t)) in pts.iter().enumerate() {
        assert_eq!(*t, start + k as i64 * 10_000);
        assert_eq!(*v, Some((k % 97) as f64), "bucket {k}");
    }
}
