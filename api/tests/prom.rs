//! The Prometheus-compatible subset (`/prom`), end to end against a real Redis: Grafana's
//! health check, range and instant queries checked against hand-computed values, GET and
//! form-encoded POST, the catalog endpoints, and `bad_data` errors for everything outside
//! the supported grammar.

mod grafana_support;

use grafana_support::*;
use sensor_api::store::Average;
use serde_json::{json, Value};

/// 2026-01-11T00:00:00Z.
const T: i64 = 1_767_225_600_000 + 10 * 86_400_000;

fn encode(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn prom_get(app: &App, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    app.get(&format!("/prom/api/v1/{path}?{}", encode(params)))
        .await
}

async fn prom_post(app: &App, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    app.post_raw(
        &format!("/prom/api/v1/{path}"),
        "application/x-www-form-urlencoded",
        &encode(params),
    )
    .await
}

fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

fn assert_success(status: u16, body: &Value) -> &Value {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    &body["data"]
}

fn assert_bad_data(status: u16, body: &Value, needle: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    let error = body["error"].as_str().expect("error text");
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
}

/// `(seconds, value)` pairs of one matrix series.
fn values(series: &Value) -> Vec<(f64, f64)> {
    series["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            let v: f64 = p[1]
                .as_str()
                .expect("values are strings")
                .parse()
                .expect("number");
            (p[0].as_f64().expect("seconds"), v)
        })
        .collect()
}

fn small_dataset() -> Vec<Average> {
    vec![
        average(1, T + 5_000, 1.0, 2, "n1", 1),
        average(2, T + 30_000, 3.0, 4, "n1", 1),
        average(3, T + 70_000, 10.0, 1, "n1", 1),
        average(4, T + 200_000, 7.0, 3, "n1", 1),
    ]
}

#[tokio::test]
async fn grafana_save_and_test_query_answers_two() {
    let app = App::start("prom-health").await;
    let want = json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}});
    let params = [("query", "1+1"), ("time", "4")];
    let (status, body) = prom_get(&app, "query", &params).await;
    assert_eq!((status, &body), (200, &want));
    let (status, body) = prom_post(&app, "query", &params).await;
    assert_eq!((status, &body), (200, &want));
    let (status, body) = prom_get(&app, "status/buildinfo", &[]).await;
    let data = assert_success(status, &body);
    assert!(data["version"].as_str().unwrap().starts_with('2'));
}

#[tokio::test]
async fn query_range_answers_step_aligned_buckets() {
    let app = App::start("prom-range").await;
    app.seed(&small_dataset()).await;
    let (start, end) = (secs(T), secs(T + 300_000));
    for post in [false, true] {
        let run = |q: &'static str| {
            let params = [
                ("query", q),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", "60"),
            ];
            let app = &app;
            async move {
                if post {
                    prom_post(app, "query_range", &params).await
                } else {
                    prom_get(app, "query_range", &params).await
                }
            }
        };
        let t = |k: i64| (T + k * 60_000) as f64 / 1000.0;

        let (status, body) = run("sensor_average").await;
        let data = assert_success(status, &body);
        assert_eq!(data["resultType"], "matrix");
        let result = data["result"].as_array().unwrap();
        assert_eq!(result.len(), 1);
        assert_eq!(
            result[0]["metric"],
            json!({"__name__": "sensor_average", "job": "zk-sensors"})
        );
        // The sample at t covers [t - 60 s, t): minutes without rounds have no sample.
        assert_eq!(
            values(&result[0]),
            vec![(t(1), 2.0), (t(2), 10.0), (t(4), 7.0)]
        );

        let (status, body) = run("sensor_samples{}").await;
        let data = assert_success(status, &body);
        assert_eq!(
            values(&data["result"][0]),
            vec![(t(1), 3.0), (t(2), 1.0), (t(4), 3.0)]
        );

        let (status, body) = run(r#"sensor_rounds{job="zk-sensors"}"#).await;
        let data = assert_success(status, &body);
        assert_eq!(
            values(&data["result"][0]),
            vec![
                (t(0), 0.0),
                (t(1), 2.0),
                (t(2), 1.0),
                (t(3), 0.0),
                (t(4), 1.0),
                (t(5), 0.0)
            ],
            "round counts are zero-filled so an alert on sensor_rounds < 1 fires"
        );

        let (status, body) = run(r#"{__name__=~"sensor_.*"}"#).await;
        let data = assert_success(status, &body);
        let names: Vec<&str> = data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"]["__name__"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sensor_average", "sensor_rounds", "sensor_samples"]);

        let (status, body) = run(r#"sensor_average{job!="zk-sensors"}"#).await;
        assert_eq!(assert_success(status, &body)["result"], json!([]));

        let (status, body) = run("2 * 21").await;
        let data = assert_success(status, &body);
        assert_eq!(data["result"][0]["metric"], json!({}));
        assert_eq!(values(&data["result"][0]).len(), 6);
    }
}

/// One average per second for an hour (3 600, past the store's raw-aggregation limit).
fn hour_of_rounds(start: i64) -> Vec<Average> {
    (0..3600_i64)
        .map(|i| {
            average(
                i as u64 + 1,
                start + i * 1000,
                ((i * 5) % 11) as f64,
                1 + (i % 3) as u32,
                "n1",
                1,
            )
        })
        .collect()
}

/// Hand computation: mean value of the averages in `[t - step, t)`.
fn mean_before(data: &[Average], t: i64, step: i64) -> Option<f64> {
    let inside: Vec<f64> = data
        .iter()
        .filter(|a| a.taken_at_ms >= t - step && a.taken_at_ms < t)
        .map(|a| a.result.value)
        .collect();
    (!inside.is_empty()).then(|| inside.iter().sum::<f64>() / inside.len() as f64)
}

#[tokio::test]
async fn large_ranges_match_hand_computation_for_rollup_and_odd_steps() {
    let app = App::start("prom-large").await;
    let start = T + 86_400_000;
    let data = hour_of_rounds(start);
    app.seed(&data).await;
    // 60 s: served from the 1-minute rollups; 15 s: not a multiple of the finest rollup,
    // aggregated from raw averages.
    for (step_s, from, to) in [
        (60_i64, start, start + 3_600_000),
        (15, start + 600_000, start + 1_200_000),
    ] {
        let step = step_s * 1000;
        let (a, b, s) = (secs(from), secs(to), step_s.to_string());
        let (status, body) = prom_get(
            &app,
            "query_range",
            &[
                ("query", "sensor_average"),
                ("start", &a),
                ("end", &b),
                ("step", &s),
            ],
        )
        .await;
        let data_out = assert_success(status, &body);
        let got = values(&data_out["result"][0]);
        let want: Vec<(f64, f64)> = (0..)
            .map(|k| from + k * step)
            .take_while(|t| *t <= to)
            .filter_map(|t| mean_before(&data, t, step).map(|v| (t as f64 / 1000.0, v)))
            .collect();
        assert_eq!(got.len(), want.len(), "step {step_s}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0);
            assert!(
                (g.1 - w.1).abs() < 1e-9,
                "step {step_s} at {}: {} != {}",
                g.0,
                g.1,
                w.1
            );
        }
    }
}

#[tokio::test]
async fn instant_selectors_use_the_latest_average_within_lookback() {
    let app = App::start("prom-instant").await;
    app.seed(&small_dataset()).await;
    let at = secs(T + 100_000);
    let (status, body) =
        prom_get(&app, "query", &[("query", "sensor_average"), ("time", &at)]).await;
    let data = assert_success(status, &body);
    assert_eq!(data["resultType"], "vector");
    assert_eq!(
        data["result"],
        json!([{"metric": {"__name__": "sensor_average", "job": "zk-sensors"}, "value": [(T + 100_000) / 1000, "10"]}])
    );
    let (status, body) =
        prom_post(&app, "query", &[("query", "sensor_samples"), ("time", &at)]).await;
    assert_eq!(assert_success(status, &body)["result"][0]["value"][1], "1");
    let (status, body) =
        prom_get(&app, "query", &[("query", "sensor_rounds"), ("time", &at)]).await;
    assert_eq!(
        assert_success(status, &body)["result"][0]["value"][1],
        "1",
        "rounds in the last minute"
    );

    // Ten minutes after the last average: outside the 5-minute lookback.
    let later = secs(T + 800_000);
    let (status, body) = prom_get(
        &app,
        "query",
        &[("query", "sensor_average"), ("time", &later)],
    )
    .await;
    assert_eq!(assert_success(status, &body)["result"], json!([]));
    let (status, body) = prom_get(
        &app,
        "query",
        &[("query", "sensor_rounds"), ("time", &later)],
    )
    .await;
    assert_eq!(assert_success(status, &body)["result"][0]["value"][1], "0");
}

#[tokio::test]
async fn catalog_endpoints() {
    let app = App::start("prom-catalog").await;
    let (status, body) = prom_get(&app, "labels", &[]).await;
    assert_eq!(assert_success(status, &body), &json!(["__name__", "job"]));
    let (status, body) = prom_post(&app, "labels", &[("match[]", "sensor_average")]).await;
    assert_eq!(assert_success(status, &body), &json!(["__name__", "job"]));

    let (status, body) = prom_get(&app, "label/__name__/values", &[]).await;
    assert_eq!(
        assert_success(status, &body),
        &json!(["sensor_average", "sensor_rounds", "sensor_samples"])
    );
    let (status, body) = prom_get(
        &app,
        "label/__name__/values",
        &[("match[]", "{__name__=~\".*_average\"}")],
    )
    .await;
    assert_eq!(assert_success(status, &body), &json!(["sensor_average"]));
    let (status, body) = prom_get(&app, "label/job/values", &[]).await;
    assert_eq!(assert_success(status, &body), &json!(["zk-sensors"]));
    let (status, body) = prom_get(&app, "label/instance/values", &[]).await;
    assert_eq!(assert_success(status, &body), &json!([]));

    let (status, body) = prom_get(
        &app,
        "series",
        &[
            ("match[]", "sensor_average"),
            ("match[]", "sensor_rounds"),
            ("start", "0"),
            ("end", "10"),
        ],
    )
    .await;
    assert_eq!(
        assert_success(status, &body),
        &json!([
            {"__name__": "sensor_average", "job": "zk-sensors"},
            {"__name__": "sensor_rounds", "job": "zk-sensors"}
        ])
    );
    let (status, body) = prom_post(&app, "series", &[("match[]", "sensor_samples")]).await;
    assert_eq!(assert_success(status, &body).as_array().unwrap().len(), 1);
    let (status, body) = prom_get(&app, "series", &[]).await;
    assert_bad_data(status, &body, "no match[]");

    let (status, body) = prom_get(&app, "metadata", &[]).await;
    let data = assert_success(status, &body);
    assert_eq!(data.as_object().unwrap().len(), 3);
    assert_eq!(data["sensor_average"][0]["type"], "gauge");
    let (status, body) = prom_get(&app, "metadata", &[("metric", "sensor_samples")]).await;
    assert_eq!(assert_success(status, &body).as_object().unwrap().len(), 1);

    let (status, body) = prom_get(&app, "query_exemplars", &[("query", "sensor_average")]).await;
    assert_eq!(assert_success(status, &body), &json!([]));
}

#[tokio::test]
async fn anything_outside_the_subset_is_bad_data() {
    let app = App::start("prom-errors").await;
    let range = |q: &'static str| {
        [
            ("query", q),
            ("start", "1000"),
            ("end", "2000"),
            ("step", "60"),
        ]
    };
    for (q, needle) in [
        ("rate(sensor_average[5m])", "function"),
        ("avg_over_time(sensor_average[5m])", "function"),
        ("sensor_average[5m]", "range selectors"),
        ("sensor_average offset 1h", "offset"),
        ("sensor_average + 1", "arithmetic on series"),
        ("{}", "non-empty matcher"),
        ("sensor_average{job=}", "quoted string"),
        ("", "missing parameter"),
    ] {
        let (status, body) = prom_get(&app, "query_range", &range(q)).await;
        assert_bad_data(status, &body, needle);
        let (status, body) = prom_post(&app, "query", &[("query", q), ("time", "1000")]).await;
        assert_bad_data(status, &body, needle);
    }
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("query", "sensor_average"),
                ("start", "1000"),
                ("end", "2000"),
            ],
            "missing parameter \"step\"",
        ),
        (
            &[
                ("query", "sensor_average"),
                ("start", "1000"),
                ("end", "2000"),
                ("step", "0"),
            ],
            "step",
        ),
        (
            &[
                ("query", "sensor_average"),
                ("start", "2000"),
                ("end", "1000"),
                ("step", "60"),
            ],
            "before start",
        ),
        (
            &[
                ("query", "sensor_average"),
                ("start", "0"),
                ("end", "86400"),
                ("step", "1"),
            ],
            "11,000 points",
        ),
        (
            &[
                ("query", "sensor_average"),
                ("start", "yesterday"),
                ("end", "86400"),
                ("step", "60"),
            ],
            "start",
        ),
        (
            &[
                ("query", "sensor_average"),
                ("end", "86400"),
                ("step", "60"),
            ],
            "missing parameter \"start\"",
        ),
    ];
    for (params, needle) in cases {
        let (status, body) = prom_get(&app, "query_range", params).await;
        assert_bad_data(status, &body, needle);
    }
    let (status, body) = prom_get(&app, "query", &[("query", "1"), ("time", "soon")]).await;
    assert_bad_data(status, &body, "time");
    let (status, body) = prom_get(&app, "label/not-a-label/values", &[]).await;
    assert_bad_data(status, &body, "invalid label name");
}

#[tokio::test]
async fn redis_outage_is_503_unavailable() {
    let mut redis = testkit::RedisServer::start().expect("redis");
    let app = App::start_on(&redis.url(), "prom-outage").await;
    let params = [
        ("query", "sensor_average"),
        ("start", "1000"),
        ("end", "2000"),
        ("step", "60"),
    ];
    let (status, _) = prom_get(&app, "query_range", &params).await;
    assert_eq!(status, 200);
    redis.kill();
    let (status, body) = prom_get(&app, "query_range", &params).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "unavailable");
    // The health check needs no store.
    let (status, _) = prom_get(&app, "query", &[("query", "1+1"), ("time", "4")]).await;
    assert_eq!(status, 200);
}

/// A day of one average every 10 s: 8 640 rollup entries at the finest level, more than
/// Redis' Lua can unpack in one call, so the server must read them in chunks.
#[tokio::test]
async fn day_long_ranges_at_the_finest_step_are_complete() {
    let app = App::start("prom-day").await;
    let start = T + 5 * 86_400_000;
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
    let (a, b) = (secs(start + 10_000), secs(start + 86_400_000));
    let (status, body) = prom_get(
        &app,
        "query_range",
        &[
            ("query", "sensor_average"),
            ("start", &a),
            ("end", &b),
            ("step", "10"),
        ],
    )
    .await;
    let data_out = assert_success(status, &body);
    let got = values(&data_out["result"][0]);
    assert_eq!(got.len(), 8640);
    for (k, (t, v)) in got.iter().enumerate() {
        assert_eq!(*t, (start + (k as i64 + 1) * 10_000) as f64 / 1000.0);
        assert_eq!(*v, (k % 97) as f64, "step {k}");
    }
}
