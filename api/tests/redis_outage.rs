//! Redis killed, restarted and frozen mid-test: the API answers 503 (never hangs, never
//! exits) and recovers by itself, and the data survives the restart (AOF).

mod support;

use std::time::{Duration, Instant};

use support::{avg, TestApp};
use testkit::RedisServer;

async fn wait_ready(app: &TestApp, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if app.get("/readyz").await.status() == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted() {
    let mut redis = RedisServer::start().expect("redis");
    let app = TestApp::start_on(&redis.url(), "outage", None).await;
    assert_eq!(app.post(&avg(1, 1.0, 1), None).await.0, 201);
    assert_eq!(app.get("/nuevo?dato=2").await.status(), 200);
    // Let the AOF reach the disk (appendfsync everysec) before the crash.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();

    let started = Instant::now();
    let (status, body) = app.post(&avg(2, 2.0, 1), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unavailable"));
    assert_eq!(app.get("/nuevo?dato=3").await.status(), 503);
    let r = app.get("/api/v1/averages").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(app.get("/api/v1/averages/1").await.status(), 503);
    assert_eq!(app.get("/api/v1/stats").await.status(), 503);
    let (status, html) = app.get_text("/").await;
    assert_eq!(status, 503);
    assert!(html.contains("Storage unavailable"));
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness does not depend on Redis"
    );
    let (status, metrics) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("sensor_api_redis_up 0"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503s come fast, not after long hangs"
    );

    redis.restart().expect("restart redis");
    assert!(
        wait_ready(&app, Duration::from_secs(15)).await,
        "recovered without restart"
    );
    assert_eq!(app.post(&avg(2, 2.0, 1), None).await.0, 201);
    // Data from before the crash survived, and idempotency still holds across it.
    assert_eq!(app.post(&avg(1, 1.0, 1), None).await.0, 200);
    let (_, list) = app.get_json("/api/v1/averages").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("sensor_api_redis_up 1"));
    assert!(metrics
        .contains("sensor_api_http_requests_total{route=\"/api/v1/averages\",status=\"503\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_times_out_to_503_and_recovers() {
    let redis = RedisServer::start().expect("redis");
    let app = TestApp::start_on(&redis.url(), "frozen", None).await;
    assert_eq!(app.post(&avg(1, 1.0, 1), None).await.0, 201);
    redis.pause();
    let started = Instant::now();
    let (status, body) = app.post(&avg(2, 2.0, 1), None).await;
    let waited = started.elapsed();
    redis.resume();
    assert_eq!(status, 503, "{body}");
    assert!(
        waited < Duration::from_secs(5),
        "bounded by the Redis timeout, waited {waited:?}"
    );
    assert!(wait_ready(&app, Duration::from_secs(15)).await);
    // The write that timed out may or may not have been applied by Redis after SIGCONT;
    // a retry is then a duplicate or a fresh store, never a conflict.
    let (status, _) = app.post(&avg(2, 2.0, 1), None).await;
    assert!(status == 200 || status == 201, "{status}");
    assert_eq!(app.state.store.count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down() {
    let mut redis = RedisServer::start().expect("redis");
    redis.kill();
    let app = TestApp::start_on(&redis.url(), "late", None).await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.post(&avg(1, 1.0, 1), None).await.0, 503);
    redis.restart().expect("restart");
    assert!(wait_ready(&app, Duration::from_secs(15)).await);
    assert_eq!(app.post(&avg(1, 1.0, 1), None).await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_answers_503() {
    let redis = RedisServer::start().expect("redis");
    let mut state = sensor_api::AppState::new(support::store(&redis.url(), "timeout"));
    state.request_timeout = Duration::from_millis(300);
    let app = TestApp::serve(state).await;
    assert_eq!(app.get("/api/v1/stats").await.status(), 200);
    redis.pause();
    let started = Instant::now();
    let (status, body) = app.get_json("/api/v1/stats").await;
    let waited = started.elapsed();
    redis.resume();
    assert_eq!(status, 503, "{body}");
    assert!(
        waited < Duration::from_millis(750),
        "request timeout (300 ms) before the Redis timeout (800 ms): {waited:?}"
    );
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("route=\"/api/v1/stats\",status=\"503\"} 1"),
        "{metrics}"
    );
}
