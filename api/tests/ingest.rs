//! Writes against a real Redis: idempotency, fencing (also under concurrent duplicate
//! POSTs), batches, validation errors, auth, the legacy endpoint, JSON 404/405.

mod support;

use serde_json::{json, Value};
use support::{avg, TestApp};

async fn stored_count(app: &TestApp) -> u64 {
    app.state.store.count().await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_post_is_stored_and_idempotent() {
    let app = TestApp::start("single", None).await;
    let (status, body) = app.post(&avg(1, 21.5, 1), None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"round": 1, "status": "stored"}));

    // Same content again: success, nothing new.
    let (status, body) = app.post(&avg(1, 21.5, 1), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");
    assert_eq!(stored_count(&app).await, 1);

    // Different value for the stored round: 409 and the stored value is untouched.
    let (status, body) = app.post(&avg(1, 99.0, 1), None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["field"], "round");
    assert!(body["error"].as_str().unwrap().contains("different value"));
    let (status, one) = app.get_json("/api/v1/averages/1").await;
    assert_eq!(status, 200);
    assert_eq!(one["value"], 21.5);
    assert_eq!(one["leader"], "node-1");
    assert_eq!(one["taken_at"], "2026-01-01T00:00:01Z");
    assert_eq!(one["taken_at_ms"], 1_767_225_601_000i64);
    assert_eq!(stored_count(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_fencing_token_is_rejected() {
    let app = TestApp::start("fence", None).await;
    assert_eq!(app.post(&avg(1, 1.0, 5), None).await.0, 201);
    // A deposed leader (token 4) tries to store a new round.
    let (status, body) = app.post(&avg(2, 2.0, 4), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("fencing token 4"),
        "{body}"
    );
    assert_eq!(stored_count(&app).await, 1);
    // The same token as the highest is fine, a higher one too.
    assert_eq!(app.post(&avg(2, 2.0, 5), None).await.0, 201);
    assert_eq!(app.post(&avg(3, 3.0, 7), None).await.0, 201);
    assert_eq!(app.post(&avg(4, 4.0, 6), None).await.0, 409);
    // A retry of an already stored round with an old token is still a duplicate (success).
    assert_eq!(app.post(&avg(2, 2.0, 5), None).await.0, 200);
    assert_eq!(
        app.state
            .store
            .highest_fencing(&Default::default())
            .await
            .unwrap(),
        7
    );
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("sensor_api_stale_leader_rejections_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sensor_api_duplicates_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sensor_api_last_round 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_is_all_or_nothing() {
    let app = TestApp::start("batch", None).await;
    let batch = json!([avg(10, 1.0, 1), avg(11, 1.1, 1), avg(12, 1.2, 2)]);
    let (status, body) = app.post(&batch, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["stored"], 3);
    assert_eq!(body["duplicates"], 0);

    // Backlog drain overlapping what is stored: duplicates + new ones.
    let batch = json!([avg(11, 1.1, 1), avg(12, 1.2, 2), avg(13, 1.3, 2)]);
    let (status, body) = app.post(&batch, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["stored"], 1);
    assert_eq!(body["duplicates"], 2);

    // One conflicting item rejects the whole batch: round 14 must not be stored.
    let batch = json!([avg(14, 1.4, 2), avg(12, 5.0, 2)]);
    let (status, body) = app.post(&batch, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["results"][0]["status"], "not_applied");
    assert_eq!(body["results"][1]["status"], "conflict");
    assert_eq!(app.get("/api/v1/averages/14").await.status(), 404);

    // The same round twice in one batch with different values is a conflict too.
    let batch = json!([avg(15, 1.0, 2), avg(15, 2.0, 2)]);
    assert_eq!(app.post(&batch, None).await.0, 409);
    // ... and with the same value it is stored once.
    let batch = json!([avg(15, 1.0, 2), avg(15, 1.0, 2)]);
    let (status, body) = app.post(&batch, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["stored"], 1);
    assert_eq!(body["duplicates"], 1);

    // A fencing token going down inside a batch is stale.
    let batch = json!([avg(16, 1.0, 3), avg(17, 1.0, 2)]);
    let (status, body) = app.post(&batch, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["results"][1]["status"], "stale_leader");
    assert_eq!(stored_count(&app).await, 5);
    // Nothing of a rejected batch raised the fencing token either.
    assert_eq!(
        app.state
            .store
            .highest_fencing(&Default::default())
            .await
            .unwrap(),
        2
    );
}

/// Many clients POST the same rounds at once, some with a different value and some with a
/// stale token: each round ends up stored exactly once, with one of the offered values,
/// and every other request is a duplicate or a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_never_store_twice() {
    let app = TestApp::start("concurrent", None).await;
    let mut tasks = Vec::new();
    for round in 1..=20u64 {
        for copy in 0..12u64 {
            let client = app.client.clone();
            let url = app.url("/api/v1/averages");
            // Copies 0..8 carry the "true" value, 8..12 a divergent one.
            let value = if copy < 8 {
                round as f64
            } else {
                round as f64 + 0.5
            };
            let body = avg(round, value, 10);
            tasks.push(tokio::spawn(async move {
                let r = client.post(url).json(&body).send().await.expect("post");
                (round, copy, r.status().as_u16())
            }));
        }
    }
    let mut stored = std::collections::HashMap::<u64, u32>::new();
    for t in tasks {
        let (round, _copy, status) = t.await.expect("task");
        match status {
            201 => *stored.entry(round).or_default() += 1,
            200 | 409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    for round in 1..=20u64 {
        assert_eq!(
            stored.get(&round),
            Some(&1),
            "round {round} stored {:?} times",
            stored.get(&round)
        );
        let (_, a) = app.get_json(&format!("/api/v1/averages/{round}")).await;
        let v = a["value"].as_f64().unwrap();
        assert!(v == round as f64 || v == round as f64 + 0.5);
    }
    assert_eq!(stored_count(&app).await, 20);
    let (_, list) = app.get_json("/api/v1/averages?limit=1000").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 20);
}

/// Leaders with different fencing tokens race: no round with a token below the final
/// highest may be stored after a higher one was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_leaders_are_fenced() {
    let app = TestApp::start("race", None).await;
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let client = app.client.clone();
        let url = app.url("/api/v1/averages");
        let fencing = i % 10;
        let body = avg(1000 + i, i as f64, fencing);
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.expect("post");
            (fencing, r.status().as_u16())
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        let (fencing, status) = t.await.expect("task");
        assert!(status == 201 || status == 409, "{status}");
        if status == 201 {
            accepted.push(fencing);
        }
    }
    // Exactly the accepted requests are stored, and the highest accepted token is kept.
    let stored = app
        .state
        .store
        .range_asc(i64::MIN / 2, i64::MAX / 2, 1000)
        .await
        .unwrap();
    assert_eq!(stored.len(), accepted.len());
    let max = accepted.iter().copied().max().unwrap();
    assert_eq!(
        app.state
            .store
            .highest_fencing(&Default::default())
            .await
            .unwrap(),
        max
    );
    // After the race, any token below the highest is refused.
    if max > 0 {
        assert_eq!(app.post(&avg(5000, 1.0, max - 1), None).await.0, 409);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_400_with_field_and_stores_nothing() {
    let app = TestApp::start("bad", None).await;
    let good = avg(1, 1.0, 1);
    let with = |k: &str, v: Value| {
        let mut o = good.clone();
        o[k] = v;
        o
    };
    let without = |k: &str| {
        let mut o = good.clone();
        o.as_object_mut().unwrap().remove(k);
        o
    };
    let cases: Vec<(String, &str)> = vec![
        (with("value", json!("NaN")).to_string(), "value"),
        (with("value", json!("23.5")).to_string(), "value"),
        (with("value", json!(null)).to_string(), "value"),
        (good.to_string().replace("1.0", "1e999"), "body"),
        (good.to_string().replace("1.0", "NaN"), "body"),
        (good.to_string().replace("1.0", "Infinity"), "body"),
        (with("round", json!(-1)).to_string(), "round"),
        (with("round", json!(1.5)).to_string(), "round"),
        (with("round", json!("7")).to_string(), "round"),
        (with("samples", json!(0)).to_string(), "samples"),
        (
            with("samples", json!(5_000_000_000u64)).to_string(),
            "samples",
        ),
        (with("leader", json!("")).to_string(), "leader"),
        (with("leader", json!("x".repeat(300))).to_string(), "leader"),
        (with("fencing", json!(-3)).to_string(), "fencing"),
        (with("taken_at", json!("yesterday")).to_string(), "taken_at"),
        (with("taken_at", json!(12345)).to_string(), "taken_at"),
        (without("value").to_string(), "value"),
        (without("round").to_string(), "round"),
        (without("taken_at").to_string(), "taken_at"),
        ("".to_string(), "body"),
        ("   ".to_string(), "body"),
        ("{\"round\": 1,".to_string(), "body"),
        ("not json".to_string(), "body"),
        ("42".to_string(), "body"),
        ("[]".to_string(), "body"),
        (
            json!([good, with("value", json!("x"))]).to_string(),
            "[1].value",
        ),
        (json!([good, 5]).to_string(), "[1]"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post_raw(body.clone(), None).await;
        assert_eq!(status, 400, "body {body:?} -> {answer}");
        assert_eq!(answer["field"], field, "body {body:?} -> {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Oversized body: 413 JSON.
    let huge = format!("[{}]", vec![good.to_string(); 1000].join(","));
    assert!(huge.len() > 64 * 1024);
    let (status, answer) = app.post_raw(huge, None).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["field"], "body");
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_need_the_token_reads_do_not() {
    let app = TestApp::start("auth", Some("s3cret")).await;
    let body = avg(1, 1.0, 1);
    let (status, answer) = app.post(&body, None).await;
    assert_eq!(status, 401);
    assert!(answer["error"].is_string());
    assert_eq!(app.post(&body, Some("wrong")).await.0, 401);
    // Auth is checked before the body: bad JSON without a token is still 401.
    assert_eq!(app.post_raw("garbage", None).await.0, 401);
    assert_eq!(stored_count(&app).await, 0);
    assert_eq!(app.post(&body, Some("s3cret")).await.0, 201);
    // The scheme is case-insensitive (RFC 7235); the token is not.
    let r = app
        .client
        .post(app.url("/api/v1/averages"))
        .header("authorization", "bearer s3cret")
        .json(&avg(1, 1.0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "duplicate of round 1, accepted");
    assert_eq!(app.post(&body, Some("S3CRET")).await.0, 401);

    // Legacy: header or ?token=.
    assert_eq!(app.get("/nuevo?dato=1").await.status(), 401);
    assert_eq!(app.get("/nuevo?dato=1&token=nope").await.status(), 401);
    assert_eq!(app.get("/nuevo?dato=1&token=s3cret").await.status(), 200);
    let r = app
        .client
        .get(app.url("/nuevo?dato=2"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A bearer token in the POST is not accepted as a query parameter.
    let r = app
        .client
        .post(app.url("/api/v1/averages?token=s3cret"))
        .json(&avg(2, 1.0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Reads are public.
    for path in [
        "/",
        "/api/v1/averages",
        "/api/v1/averages/1",
        "/api/v1/stats",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_eq!(stored_count(&app).await, 3);
}

/// The auth layer answers before the handler: a refused write never reads its body, never
/// sends a command to Redis (the store's latency histogram counts every call) and is
/// answered in the API's error shape. Each write route is checked, so a route added
/// outside the layer's group fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_writes_never_reach_redis() {
    let token = "layer-token-0123456789";
    let app = TestApp::start("auth-layer", Some(token)).await;
    let calls = || app.state.store.latency().count();
    let before = calls();
    let refused: Vec<reqwest::RequestBuilder> = vec![
        app.client
            .post(app.url("/api/v1/averages"))
            .json(&avg(1, 1.0, 1)),
        app.client
            .post(app.url("/api/v1/averages"))
            .bearer_auth("layer-token-012345678")
            .json(&avg(1, 1.0, 1)),
        app.client
            .post(app.url("/api/v1/averages"))
            .header("authorization", format!("Basic {token}"))
            .json(&avg(1, 1.0, 1)),
        app.client
            .post(app.url(&format!("/api/v1/averages?token={token}")))
            .json(&avg(1, 1.0, 1)),
        app.client.get(app.url("/nuevo?dato=1")),
        app.client
            .get(app.url("/nuevo?dato=1&token=wrong-but-long-enough")),
        app.client
            .get(app.url(&format!("/nuevo?dato=1&token={token}")))
            .bearer_auth("a-wrong-bearer-wins-over-query"),
    ];
    for (i, req) in refused.into_iter().enumerate() {
        let r = req.send().await.expect("send");
        assert_eq!(r.status(), 401, "request {i}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "request {i}");
        let body: Value = r.json().await.expect("JSON body");
        assert_eq!(
            body,
            json!({"error": "missing or wrong API token"}),
            "request {i}"
        );
    }
    assert_eq!(calls(), before, "a refused write sent a command to Redis");
    assert_eq!(stored_count(&app).await, 0);
    // The same requests with the token do reach Redis.
    let before = calls();
    assert_eq!(app.post(&avg(1, 1.0, 1), Some(token)).await.0, 201);
    let r = app
        .get(&format!("/nuevo?dato=1&token={token}"))
        .await
        .status();
    assert_eq!(r, 200);
    assert!(calls() > before);
    assert_eq!(stored_count(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_endpoint_stores_with_server_time() {
    let app = TestApp::start("legacy", None).await;
    let before = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let (status, body) = app.get_json("/nuevo?dato=23.5").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "stored");
    assert_eq!(body["value"], 23.5);
    assert_eq!(app.get("/nuevo?dato=-4").await.status(), 200);
    assert_eq!(app.get("/nuevo?dato=%2023.5%20").await.status(), 200);
    // Repeats are separate readings (legacy points are never deduplicated).
    assert_eq!(app.get("/nuevo?dato=23.5").await.status(), 200);
    for bad in [
        "/nuevo",
        "/nuevo?dato=",
        "/nuevo?dato=abc",
        "/nuevo?dato=NaN",
        "/nuevo?dato=inf",
        "/nuevo?dato=1e999",
        "/nuevo?dato=1,5",
    ] {
        let (status, body) = app.get_json(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "dato", "{bad}");
    }
    let (_, list) = app.get_json("/api/v1/averages").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["value"], 23.5, "newest first");
    assert_eq!(items[3]["value"], 23.5);
    for it in items {
        assert_eq!(it["round"], 0);
        assert_eq!(it["leader"], "legacy");
        assert_eq!(it["samples"], 1);
        assert!(it["taken_at_ms"].as_i64().unwrap() >= before);
    }
    // Legacy points count in stats, and node rounds still work beside them.
    let (_, stats) = app.get_json("/api/v1/stats").await;
    assert_eq!(stats["count"], 4);
    assert_eq!(stats["min"], -4.0);
    assert_eq!(
        app.post(&avg(0, 5.0, 1), None).await.0,
        201,
        "round 0 of a node does not clash with legacy points"
    );
    assert_eq!(app.get("/api/v1/averages/0").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::start("routes", None).await;
    let (status, body) = app.get_json("/no/such/thing").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let r = app
        .client
        .delete(app.url("/api/v1/averages"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = app
        .client
        .post(app.url("/nuevo?dato=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

/// Two API instances on one Redis (a supported set-up): duplicates spread over both are
/// still stored once, and both serve the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_redis() {
    let url = testkit::shared_redis().url();
    let config = sensor_api::store::StoreConfig {
        key_prefix: support::unique_prefix("two"),
        ..Default::default()
    };
    let open = || sensor_api::store::Store::open(&url, &config).expect("store");
    let a = TestApp::serve(sensor_api::AppState::new(open())).await;
    let b = TestApp::serve(sensor_api::AppState::new(open())).await;
    let mut tasks = Vec::new();
    for round in 1..=10u64 {
        for app in [&a, &b, &a, &b] {
            let client = app.client.clone();
            let target = app.url("/api/v1/averages");
            let body = avg(round, round as f64, 1);
            tasks.push(tokio::spawn(async move {
                client
                    .post(target)
                    .json(&body)
                    .send()
                    .await
                    .expect("post")
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            201 => created += 1,
            200 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(created, 10, "each round stored by exactly one request");
    let (_, list_a) = a.get_json("/api/v1/averages").await;
    let (_, list_b) = b.get_json("/api/v1/averages").await;
    assert_eq!(list_a["items"].as_array().unwrap().len(), 10);
    assert_eq!(list_a, list_b);
}
