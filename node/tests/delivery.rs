//! HTTP delivery against a tiny axum receiver (not the real API) and a real ZooKeeper.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use sensor_node::config::{watch_live_config, LiveConfig};
use sensor_node::delivery::{Delivery, DeliveryError};
use sensor_node::layout;
use sensor_node::zk::{self, Session, SessionConfig};
use sensor_node::RoundResult;
use serde_json::{json, Value};
use tokio::sync::watch;

/// What the receiver saw and what it answers.
#[derive(Default)]
struct Receiver {
    /// `(Authorization header, body)` per request.
    seen: Mutex<Vec<(Option<String>, Value)>>,
    /// Answer: status and JSON body (default 201 `{}`).
    answer: Mutex<Option<(u16, Value)>>,
    /// Delay before answering (to provoke client time-outs).
    delay: Mutex<Option<Duration>>,
}

impl Receiver {
    fn answer(&self, status: u16, body: Value) {
        *self.answer.lock().unwrap() = Some((status, body));
    }
    fn seen(&self) -> Vec<(Option<String>, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn ingest(
    State(rx): State<Arc<Receiver>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body_rounds: Vec<u64> = body
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["round"].as_u64()).collect())
        .unwrap_or_default();
    rx.seen.lock().unwrap().push((auth, body));
    let delay = *rx.delay.lock().unwrap();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    // Default: sensor-api's success answer, one `stored` result per item sent.
    let confirm = || {
        let results: Vec<Value> = body_rounds
            .iter()
            .map(|r| json!({"round": r, "status": "stored"}))
            .collect();
        (
            201,
            json!({"stored": results.len(), "duplicates": 0, "results": results}),
        )
    };
    let (status, body) = rx.answer.lock().unwrap().clone().unwrap_or_else(confirm);
    (StatusCode::from_u16(status).unwrap(), Json(body))
}

/// Starts a receiver on 127.0.0.1:0; returns its base URL.
async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/api/v1/averages", post(ingest))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), state)
}

/// A base URL where nothing listens (connection refused).
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", testkit::free_port())
}

async fn connected(chroot: &str) -> Session {
    let hosts = format!("{}{}", testkit::shared_zk().connect_string(), chroot);
    let s = Session::start(SessionConfig::new(hosts, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    s
}

/// A live config that never changes (a receiver keeps the last value after its sender
/// is gone).
fn fixed(url: Option<String>) -> watch::Receiver<LiveConfig> {
    watch::channel(LiveConfig {
        sampling_period: Duration::from_secs(5),
        api_url: url,
    })
    .1
}

fn result(round: u64, value: f64) -> RoundResult {
    RoundResult {
        round,
        value,
        samples: 3,
        leader: "n1".to_string(),
        fencing: 42,
        taken_at: "2026-11-26T22:00:00Z".to_string(),
        cluster: Default::default(),
    }
}

async fn register(session: &Session, name: &str, url: &str) {
    let client = session.client().unwrap();
    zk::ensure_path(&client, layout::SERVICES_API)
        .await
        .unwrap();
    client
        .create(
            &format!("{}/{name}", layout::SERVICES_API),
            url.as_bytes(),
            &zk::ephemeral(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn delivers_one_json_array_with_bearer_token() {
    let session = connected(&testkit::unique_chroot("deliver-ok")).await;
    let (url, rx) = receiver().await;
    let d = Delivery::new(Some("tok-1".into()), fixed(Some(url.clone())), &session).unwrap();
    let batch = vec![result(1, 20.5), result(2, 21.25)];
    let done = d.deliver(&batch).await.expect("delivered");
    assert_eq!(done.url, url);
    assert_eq!(done.rounds, 2);
    assert_eq!(done.status, 201);
    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "one request for the whole batch");
    assert_eq!(seen[0].0.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen[0].1, serde_json::to_value(&batch).unwrap());

    // Without a token: no Authorization header at all.
    let anon = Delivery::new(None, fixed(Some(url.clone())), &session).unwrap();
    anon.deliver(&batch[..1]).await.expect("delivered");
    assert_eq!(rx.seen()[1].0, None);
    assert_eq!(
        rx.seen()[1].1,
        json!([serde_json::to_value(&batch[0]).unwrap()])
    );
    // An empty batch sends nothing.
    anon.deliver(&[]).await.expect("empty is fine");
    assert_eq!(rx.seen().len(), 2);
    session.close();
}

#[tokio::test]
async fn answers_map_to_stale_leader_conflict_unauthorized_and_unavailable() {
    let session = connected(&testkit::unique_chroot("deliver-409")).await;
    let (url, rx) = receiver().await;
    let d = Delivery::new(None, fixed(Some(url.clone())), &session).unwrap();
    let batch = [result(6, 20.0), result(7, 21.0)];

    // sensor-api's 409 bodies (api/src/error.rs + routes/ingest.rs).
    rx.answer(
        409,
        json!({"error": "fencing token 42 of round 6 is lower than the highest accepted (deposed leader)",
               "field": "round",
               "results": [{"round": 6, "status": "stale_leader"}, {"round": 7, "status": "not_applied"}]}),
    );
    let err = d.deliver(&batch).await.unwrap_err();
    assert!(matches!(err, DeliveryError::StaleLeader { .. }), "{err:?}");
    assert!(!err.is_retryable());

    rx.answer(
        409,
        json!({"error": "round 7 is already stored with a different value",
               "field": "round",
               "results": [{"round": 6, "status": "duplicate"}, {"round": 7, "status": "conflict"}]}),
    );
    let err = d.deliver(&batch).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Conflict { round: Some(7), .. }),
        "{err:?}"
    );

    rx.answer(401, json!({"error": "missing or wrong API token"}));
    let err = d.deliver(&batch).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );

    rx.answer(503, json!({"error": "storage unavailable, retry later"}));
    let err = d.deliver(&batch).await.unwrap_err();
    match &err {
        DeliveryError::Unavailable { failures } => {
            assert_eq!(failures.len(), 1);
            assert!(failures[0].1.contains("503"), "{failures:?}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(
        rx.seen().len(),
        4,
        "each attempt is exactly one request here"
    );

    // No candidate at all is "unavailable", not a panic or a hang.
    let none = Delivery::new(None, fixed(None), &session).unwrap();
    assert!(matches!(
        none.deliver(&batch).await,
        Err(DeliveryError::Unavailable { failures }) if failures.is_empty()
    ));
    session.close();
}

#[tokio::test]
async fn first_candidate_down_then_discovered_instance_is_used() {
    let session = connected(&testkit::unique_chroot("deliver-failover")).await;
    let (url, rx) = receiver().await;
    let (busy_url, busy) = receiver().await;
    busy.answer(503, json!({"error": "storage unavailable, retry later"}));
    // Preferred URL refuses connections; registrations: a 503 one and a good one.
    let dead = dead_url();
    register(&session, "a-busy", &busy_url).await;
    register(&session, "b-good", &url).await;
    let d = Delivery::new(None, fixed(Some(dead.clone())), &session).unwrap();
    let found = testkit::wait_until_async(Duration::from_secs(10), || async {
        d.candidates().len() == 3
    })
    .await;
    assert!(found, "discovered: {:?}", d.candidates());
    assert_eq!(d.candidates(), vec![dead, busy_url, url.clone()]);

    let done = d
        .deliver(&[result(1, 20.0)])
        .await
        .expect("third candidate");
    assert_eq!(done.url, url);
    assert_eq!(busy.seen().len(), 1, "the busy instance was tried once");
    assert_eq!(rx.seen().len(), 1);
    session.close();
}

#[tokio::test]
async fn discovery_follows_services_api_registrations() {
    let chroot = testkit::unique_chroot("deliver-discovery");
    let session = connected(&chroot).await;
    let api = connected(&chroot).await; // the registering "API instance" has its own session
    let (url, rx) = receiver().await;
    let d = Delivery::new(None, fixed(None), &session).unwrap();
    assert!(d.discovered().is_empty());

    register(&api, "instance-1", &format!("{url}/")).await;
    register(&api, "instance-2", "not a url").await;
    let found = testkit::wait_until_async(Duration::from_secs(10), || async {
        d.discovered() == vec![url.clone()]
    })
    .await;
    assert!(found, "discovered: {:?}", d.discovered());
    d.deliver(&[result(1, 20.0)])
        .await
        .expect("delivered via discovery");
    assert_eq!(rx.seen().len(), 1);

    // The instance's session ends: its ephemeral vanishes and so does the candidate.
    api.close();
    let gone = testkit::wait_until_async(Duration::from_secs(10), || async {
        d.discovered().is_empty()
    })
    .await;
    assert!(gone, "still discovered: {:?}", d.discovered());
    assert!(matches!(
        d.deliver(&[result(2, 20.0)]).await,
        Err(DeliveryError::Unavailable { .. })
    ));
    session.close();
}

#[tokio::test]
async fn config_api_url_change_switches_target_live() {
    let session = connected(&testkit::unique_chroot("deliver-live")).await;
    let (url_a, rx_a) = receiver().await;
    let (url_b, rx_b) = receiver().await;
    let live = watch_live_config(
        &session,
        LiveConfig {
            sampling_period: Duration::from_secs(5),
            api_url: Some(url_a.clone()),
        },
    );
    let d = Delivery::new(None, live, &session).unwrap();
    d.deliver(&[result(1, 20.0)]).await.expect("to A (default)");
    assert_eq!((rx_a.seen().len(), rx_b.seen().len()), (1, 0));

    let client = session.client().unwrap();
    zk::ensure_path(&client, layout::CONFIG).await.unwrap();
    client
        .create(layout::CONFIG_API_URL, url_b.as_bytes(), &zk::persistent())
        .await
        .unwrap();
    let switched = testkit::wait_until_async(Duration::from_secs(10), || async {
        d.candidates().first() == Some(&url_b)
    })
    .await;
    assert!(switched, "candidates: {:?}", d.candidates());
    let done = d.deliver(&[result(2, 20.0)]).await.expect("to B");
    assert_eq!(done.url, url_b);
    assert_eq!((rx_a.seen().len(), rx_b.seen().len()), (1, 1));

    // Deleting the znode goes back to the flag/env default.
    client.delete(layout::CONFIG_API_URL, None).await.unwrap();
    let back = testkit::wait_until_async(Duration::from_secs(10), || async {
        d.candidates().first() == Some(&url_a)
    })
    .await;
    assert!(back, "candidates: {:?}", d.candidates());
    session.close();
}

#[tokio::test]
async fn a_hanging_instance_times_out_and_the_next_one_is_used() {
    let session = connected(&testkit::unique_chroot("deliver-timeout")).await;
    let (slow_url, slow) = receiver().await;
    *slow.delay.lock().unwrap() = Some(Duration::from_secs(30));
    let (url, rx) = receiver().await;
    register(&session, "b-good", &url).await;
    let d = Delivery::with_timeout(
        None,
        fixed(Some(slow_url.clone())),
        &session,
        Duration::from_millis(500),
    )
    .unwrap();
    let found = testkit::wait_until_async(Duration::from_secs(10), || async {
        d.candidates().len() == 2
    })
    .await;
    assert!(found, "{:?}", d.candidates());
    let done = d
        .deliver(&[result(1, 20.0)])
        .await
        .expect("second candidate");
    assert_eq!(done.url, url);
    assert_eq!((slow.seen().len(), rx.seen().len()), (1, 1));

    // Alone, the hanging instance gives Unavailable("timed out"), not a hang.
    let alone = Delivery::with_timeout(
        None,
        fixed(Some(slow_url)),
        &session,
        Duration::from_millis(500),
    )
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), alone.deliver(&[result(2, 20.0)]))
        .await
        .expect("bounded by the request timeout")
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    session.close();
}

#[tokio::test]
async fn a_success_status_without_one_accepted_result_per_round_is_not_delivered() {
    let session = connected(&testkit::unique_chroot("deliver-odd")).await;
    let (url, rx) = receiver().await;
    let d = Delivery::new(None, fixed(Some(url.clone())), &session).unwrap();
    let batch = [result(6, 20.0), result(7, 21.0)];
    let odd = [
        json!({}),
        json!({"ok": true}),
        json!({"items": [], "next_cursor": null}),
        json!({"stored": 1, "duplicates": 0, "results": [{"round": 6, "status": "stored"}]}),
        json!({"stored": 2, "duplicates": 0, "results": [{"round": 7, "status": "stored"}, {"round": 6, "status": "stored"}]}),
        json!({"stored": 1, "duplicates": 0, "results": [{"round": 6, "status": "stored"}, {"round": 7, "status": "not_applied"}]}),
        json!({"stored": 3, "duplicates": 0, "results": [{"round": 6, "status": "stored"}, {"round": 7, "status": "stored"}, {"round": 8, "status": "stored"}]}),
        json!({"stored": 2, "duplicates": 0, "results": [{"round": 6, "status": "stored"}, {"round": 7, "status": "kept"}]}),
    ];
    for body in odd {
        rx.answer(200, body.clone());
        match d.deliver(&batch).await {
            Err(DeliveryError::Unavailable { failures }) => {
                assert_eq!(failures.len(), 1, "{failures:?}");
                assert!(failures[0].1.contains("HTTP 200"), "{failures:?}");
            }
            other => panic!("answer {body} must not count as delivered, got {other:?}"),
        }
    }
    // The real answer shape, with a duplicate, does.
    rx.answer(
        200,
        json!({"stored": 1, "duplicates": 1, "results": [{"round": 6, "status": "duplicate"}, {"round": 7, "status": "stored"}]}),
    );
    d.deliver(&batch).await.expect("confirmed per round");
    session.close();
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_error_names_the_location() {
    let session = connected(&testkit::unique_chroot("deliver-301")).await;
    let (url, rx) = receiver().await;
    // A real server answering 301 to the receiver: following it would POST there (or GET).
    let location = format!("{url}/api/v1/averages");
    let loc = location.clone();
    let app = axum::Router::new().fallback(move || {
        let loc = loc.clone();
        async move { (StatusCode::MOVED_PERMANENTLY, [("location", loc)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let d = Delivery::new(None, fixed(Some(proxy)), &session).unwrap();
    let err = d.deliver(&[result(1, 20.0)]).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("301") && text.contains(&location), "{text}");
    assert!(
        rx.seen().is_empty(),
        "the redirect target was never contacted"
    );
    session.close();
}
