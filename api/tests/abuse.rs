//! Hostile requests against the real `sensor-api` binary and a real Redis (and ZooKeeper
//! for fencing): each is refused or answered quickly, nothing refused is stored, and the
//! process keeps serving `/healthz`.
//!
//! Bounds are generous (a busy 2-core CI machine, a debug build): a refusal within 2 s,
//! `/healthz` within 2 s. The old code failed each of these outright: it crashed, answered
//! 200 after seconds of CPU, accepted the data, or kept the connection open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{free_port, Proc, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_sensor-api");
const TOKEN: &str = "abuse-test-token-0123456789";
const QUICK: Duration = Duration::from_secs(2);

struct Api {
    proc: Proc,
    base: String,
    port: u16,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Api {
    fn start(redis_url: &str, extra: &[(&str, &str)]) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", redis_url)
            .env("KEY_PREFIX", format!("abuse-{}-{port}", std::process::id()))
            .env("API_TOKEN", TOKEN)
            .env("REDIS_TIMEOUT", "1s")
            .env("RUST_LOG", "info");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let proc = Proc::spawn("sensor-api", cmd, &dir.path().join("api.log")).expect("spawn");
        let up = testkit::wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "sensor-api did not listen; log:\n{}", proc.log_tail(30));
        Api {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn url_with(&self, path: &str, query: &[(&str, &str)]) -> String {
        format!("{}{path}?{}", self.base, form(query))
    }

    /// Sends a request; returns status, headers, body text, and how long it took.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, String, Duration) {
        let started = Instant::now();
        let r = req.send().await.unwrap_or_else(|e| {
            panic!(
                "request failed ({e}); sensor-api log:\n{}",
                self.proc.log_tail(30)
            )
        });
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        (status, headers, body, started.elapsed())
    }

    async fn prom_query(&self, query: &str) -> (u16, Value, Duration) {
        let req = self
            .client
            .post(self.url("/prom/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("query", query), ("time", "1700000000")]));
        let (status, _, body, took) = self.send(req).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::Null),
            took,
        )
    }

    async fn post_averages(&self, body: &Value) -> (u16, Value) {
        let req = self
            .client
            .post(self.url("/api/v1/averages"))
            .bearer_auth(TOKEN)
            .json(body);
        let (status, _, text, _) = self.send(req).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, _, text, _) = self.send(self.client.get(self.url(path))).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `/healthz` answers 200 within [`QUICK`] (a dead process fails [`Api::send`]).
    async fn assert_healthy(&self) {
        let (status, _, _, took) = self.send(self.client.get(self.url("/healthz"))).await;
        assert_eq!(status, 200);
        assert!(took < QUICK, "/healthz took {took:?}");
    }
}

/// `application/x-www-form-urlencoded` text of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn average(round: u64, value: Value, fencing: u64, taken_at_ms: i64) -> Value {
    json!({"round": round, "value": value, "samples": 3, "leader": "node-1",
           "fencing": fencing, "taken_at": iso(taken_at_ms)})
}

fn assert_bad(status: u16, body: &Value, took: Duration, needle: &str) {
    assert_eq!(status, 400, "{body}");
    assert!(took < QUICK, "refusal took {took:?}");
    let text = body.to_string();
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_and_long_queries_are_refused_not_crashed() {
    let api = Api::start(&testkit::shared_redis().url(), &[]);
    // ~8 000 leading minus signs (the query that aborted the process).
    let (status, body, took) = api.prom_query(&format!("{}1", "-".repeat(8000))).await;
    assert_bad(status, &body, took, "bad_data");
    // Deep nesting inside the length limit.
    let nested = format!("{}1{}", "(".repeat(2000), ")".repeat(2000));
    let (status, body, took) = api.prom_query(&nested[..4000]).await;
    assert_bad(status, &body, took, "nests deeper");
    let (status, body, took) = api.prom_query(&format!("{}1", "-".repeat(3000))).await;
    assert_bad(status, &body, took, "nests deeper");
    // The same through match[] selectors and query_range.
    let (status, _, text, took) = api
        .send(
            api.client
                .post(api.url("/prom/api/v1/series"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[("match[]", "(".repeat(3000).as_str())])),
        )
        .await;
    assert_bad(
        status,
        &serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
        "nests deeper",
    );
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_bombs_and_matcher_floods_are_refused() {
    let api = Api::start(&testkit::shared_redis().url(), &[]);
    let bomb: Vec<String> = (1..=20).map(|i| format!("l{i}=~`\\w{{200}}`")).collect();
    let query = format!("sensor_average{{{}}}", bomb.join(","));
    let (status, body, took) = api.prom_query(&query).await;
    assert_bad(status, &body, took, "too complex");
    let one = r#"sensor_average{job=~"(a|b|c|d|e|f|g|h|i|j){1,1000}"}"#;
    let (status, body, took) = api.prom_query(one).await;
    assert_bad(status, &body, took, "too complex");
    let flood: Vec<String> = (0..40).map(|i| format!("l{i}=\"x\"")).collect();
    let (status, body, took) = api
        .prom_query(&format!("sensor_average{{{}}}", flood.join(",")))
        .await;
    assert_bad(status, &body, took, "matchers in one selector");
    let many: Vec<(&str, &str)> = (0..50).map(|_| ("match[]", "sensor_average")).collect();
    let (status, _, text, took) = api
        .send(
            api.client
                .post(api.url("/prom/api/v1/series"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&many)),
        )
        .await;
    assert_bad(
        status,
        &serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
        "match[] selectors",
    );
    // An ordinary regex still works.
    let (status, body, _) = api.prom_query(r#"{__name__=~"sensor_.*"}"#).await;
    assert_eq!(status, 200, "{body}");
    api.assert_healthy().await;
}

async fn seed(api: &Api, rounds: u64, step_ms: i64) -> i64 {
    let start = now_ms() - rounds as i64 * step_ms;
    let batch: Vec<Value> = (0..rounds)
        .map(|r| {
            average(
                r + 1,
                json!(20.0 + r as f64 % 7.0),
                1,
                start + r as i64 * step_ms,
            )
        })
        .collect();
    for chunk in batch.chunks(300) {
        let (status, body) = api.post_averages(&json!(chunk)).await;
        assert!(status == 201 || status == 200, "{status} {body}");
    }
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_fan_out_is_bounded() {
    let api = Api::start(&testkit::shared_redis().url(), &[]);
    seed(&api, 200, 60_000).await;
    let range = json!({"from": iso(now_ms() - 365 * 86_400_000), "to": iso(now_ms())});
    let targets = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"refId": format!("T{i}"), "target": "average"}))
            .collect()
    };
    let request = |n: usize| json!({"range": range, "maxDataPoints": 20000, "intervalMs": 1, "targets": targets(n)});
    let (status, _, text, took) = api
        .send(
            api.client
                .post(api.url("/grafana/query"))
                .json(&request(300)),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(took < QUICK, "{took:?}");
    assert!(text.contains("targets"), "{text}");
    // The most targets allowed: the response is capped in total points.
    let (status, _, text, _) = api
        .send(
            api.client
                .post(api.url("/grafana/query"))
                .json(&request(50)),
        )
        .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let series: Vec<Value> = serde_json::from_str(&text).expect("json");
    assert_eq!(series.len(), 50);
    let points: usize = series
        .iter()
        .map(|s| s["datapoints"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(points <= 200_000, "{points} points in one response");
    assert!(text.len() < 10_000_000, "{} bytes", text.len());
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_intervals_and_steps_are_cheap_or_refused() {
    let api = Api::start(&testkit::shared_redis().url(), &[]);
    // A history of 100 days: the range below is clamped to it and still reads too much.
    seed(&api, 100, 86_400_000).await;
    let range = json!({"from": iso(now_ms() - 3_600_000), "to": iso(now_ms())});
    for _ in 0..2 {
        let body = json!({"range": range, "intervalMs": 1e19, "maxDataPoints": 1000,
                          "targets": [{"refId": "A", "target": "average"}]});
        let (status, _, text, took) = api
            .send(api.client.post(api.url("/grafana/query")).json(&body))
            .await;
        assert_eq!(status, 200, "{text}");
        assert!(took < QUICK, "intervalMs 1e19 took {took:?}");
    }
    for (field, value) in [("intervalMs", json!(-5)), ("maxDataPoints", json!(0))] {
        let mut body = json!({"range": range, "targets": [{"refId": "A", "target": "average"}]});
        body[field] = value;
        let (status, _, text, took) = api
            .send(api.client.post(api.url("/grafana/query")).json(&body))
            .await;
        assert_bad(
            status,
            &serde_json::from_str(&text).unwrap_or(Value::Null),
            took,
            field,
        );
    }
    // Ten years at a step of 86 410 s: 3 650 points, each reading 8 641 ten-second rollups.
    let end = now_ms() / 1000;
    let start = (end - 10 * 365 * 86_400).to_string();
    let end = end.to_string();
    let (status, _, text, took) = api
        .send(api.client.get(api.url_with(
            "/prom/api/v1/query_range",
            &[
                ("query", "sensor_average"),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", "86410"),
            ],
        )))
        .await;
    assert_bad(
        status,
        &serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
        "rollup entries",
    );
    // The same range at a daily step is cheap and answered.
    let (status, _, text, took) = api
        .send(api.client.get(api.url_with(
            "/prom/api/v1/query_range",
            &[
                ("query", "sensor_average"),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", "1d"),
            ],
        )))
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(took < QUICK, "{took:?}");
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_bodies_are_cut_off() {
    let api = Api::start(
        &testkit::shared_redis().url(),
        &[("HEADER_READ_TIMEOUT", "1s"), ("REQUEST_TIMEOUT", "2s")],
    );
    // Half a request header, then silence: the server closes the connection.
    let mut slow = TcpStream::connect(("127.0.0.1", api.port)).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let closed = match slow.read(&mut buf) {
        Ok(n) => n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    let took = started.elapsed();
    assert!(closed, "connection not closed after {took:?}");
    assert!(took < Duration::from_secs(6), "closed only after {took:?}");
    // A complete header, then a body that never finishes: 503 at the request timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", api.port)).expect("connect");
    slow.write_all(
        format!(
            "POST /api/v1/averages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"round\":"
        )
        .as_bytes(),
    )
    .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let n = slow.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    let api = Api::start(
        &testkit::shared_redis().url(),
        &[("MAX_CONNECTIONS", "2"), ("HEADER_READ_TIMEOUT", "30s")],
    );
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", api.port)).expect("connect"))
        .collect();
    // Both slots are held: a third connection is queued, not served.
    let mut third = TcpStream::connect(("127.0.0.1", api.port)).expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    assert!(
        third.read(&mut buf).is_err(),
        "a third connection was served while the cap of 2 was held"
    );
    // A slot frees: the queued connection is served.
    drop(idle);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let n = third.read(&mut buf).expect("served after a slot freed");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_values_are_refused_and_nothing_of_the_batch_is_stored() {
    let api = Api::start(&testkit::shared_redis().url(), &[]);
    let now = now_ms();
    let good = average(1, json!(21.5), 5, now - 1000);
    let year_9999 = 253_402_300_000_000;
    for (bad, field) in [
        (average(2, json!(1e308), 5, now), "[1].value"),
        (average(2, json!(-2e12), 5, now), "[1].value"),
        (average(2, json!(1.0), 5, year_9999), "[1].taken_at"),
        (average(2, json!(1.0), 5, now + 3_600_000), "[1].taken_at"),
        (
            {
                let mut a = average(2, json!(1.0), 5, now);
                a["leader"] = json!("evil\u{1b}[31m\nforged log line");
                a
            },
            "[1].leader",
        ),
        (
            {
                let mut a = average(2, json!(1.0), 5, now);
                a["leader"] = json!("x".repeat(129));
                a
            },
            "[1].leader",
        ),
    ] {
        let (status, body) = api.post_averages(&json!([good, bad])).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], field, "{body}");
        let (status, _) = api.get_json("/api/v1/averages/1").await;
        assert_eq!(status, 404, "nothing of a refused batch is stored");
    }
    let (status, _, text, _) = api
        .send(
            api.client
                .get(api.url_with("/nuevo", &[("dato", "1e300"), ("token", TOKEN)])),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    let (_, stats) = api.get_json("/api/v1/stats").await;
    assert_eq!(stats["count"], 0, "{stats}");
    // A plausible batch is stored.
    let (status, body) = api.post_averages(&json!([good])).await;
    assert_eq!(status, 201, "{body}");
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_fencing_tokens_are_refused_with_zookeeper() {
    use zookeeper_client as zk;
    let zk_server = testkit::shared_zk();
    let chroot = testkit::unique_chroot("api-fence");
    let root = zk::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk");
    root.mkdir(
        &chroot,
        &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
    )
    .await
    .expect("chroot");
    let hosts = format!("{}{chroot}", zk_server.connect_string());
    let api = Api::start(
        &testkit::shared_redis().url(),
        &[
            ("ZOOKEEPER_HOSTS", hosts.as_str()),
            ("INSTANCE_ID", "fence-test"),
        ],
    );
    // A genuine token: the czxid of a contender-like znode created now.
    let (stat, _) = root
        .create(
            &format!("{chroot}/contender-"),
            b"",
            &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("create");
    let genuine = stat.czxid as u64;
    let now = now_ms();
    for (round, forged) in [(1, u64::MAX), (2, genuine + 1_000_000), (3, 1u64 << 62)] {
        let (status, body) = api
            .post_averages(&average(round, json!(20.0), forged, now))
            .await;
        assert_eq!(status, 400, "fencing {forged}: {body}");
        assert_eq!(body["field"], "fencing", "{body}");
        let (status, _) = api.get_json(&format!("/api/v1/averages/{round}")).await;
        assert_eq!(status, 404, "forged write stored");
    }
    // In a batch the offending item is named.
    let (status, body) = api
        .post_averages(&json!([
            average(4, json!(20.0), genuine, now),
            average(5, json!(20.0), u64::MAX, now)
        ]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "[1].fencing", "{body}");
    // The genuine leader is not locked out.
    let (status, body) = api
        .post_averages(&average(6, json!(20.0), genuine, now))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, _, metrics, _) = api.send(api.client.get(api.url("/metrics"))).await;
    assert!(
        metrics.contains("sensor_api_forged_fencing_rejections_total 4"),
        "{metrics}"
    );
    api.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusals_are_503_with_retry_after_not_500() {
    let redis = RedisServer::start().expect("redis");
    let api = Api::start(&redis.url(), &[]);
    let admin = redis::Client::open(redis.url()).expect("client");
    let mut admin = admin.get_connection().expect("admin connection");
    let config = |conn: &mut redis::Connection, k: &str, v: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(conn)
            .expect("CONFIG SET");
    };
    let now = now_ms();
    let (status, body) = api.post_averages(&average(1, json!(1.0), 1, now)).await;
    assert_eq!(status, 201, "{body}");

    let expect_503 = |what: &'static str| {
        move |(status, headers, text, took): (u16, reqwest::header::HeaderMap, String, Duration)| {
            assert_eq!(status, 503, "{what}: {text}");
            assert!(
                headers.contains_key("retry-after"),
                "{what}: no Retry-After"
            );
            assert!(took < QUICK, "{what} took {took:?}");
            assert!(
                serde_json::from_str::<Value>(&text).is_ok(),
                "{what}: {text}"
            );
        }
    };
    let write = |round: u64| {
        api.client
            .post(api.url("/api/v1/averages"))
            .bearer_auth(TOKEN)
            .json(&average(round, json!(1.0), 1, now))
    };

    // OOM: a full Redis under noeviction refuses the ingest script's writes.
    config(&mut admin, "maxmemory-policy", "noeviction");
    config(&mut admin, "maxmemory", "1");
    expect_503("OOM")(api.send(write(2)).await);
    config(&mut admin, "maxmemory", "0");

    // BUSY: a long Lua script blocks Redis; others get BUSY after the threshold.
    config(&mut admin, "busy-reply-threshold", "100");
    let url = redis.url();
    let busy = std::thread::spawn(move || {
        let mut conn = redis::Client::open(url)
            .expect("client")
            .get_connection()
            .expect("conn");
        let _: redis::RedisResult<()> = redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query(&mut conn);
    });
    std::thread::sleep(Duration::from_millis(300));
    expect_503("BUSY")(api.send(api.client.get(api.url("/api/v1/stats"))).await);
    api.assert_healthy().await;
    let killed = testkit::wait_until(Duration::from_secs(10), || {
        redis::cmd("SCRIPT")
            .arg("KILL")
            .query::<()>(&mut admin)
            .is_ok()
    });
    assert!(killed, "SCRIPT KILL");
    busy.join().expect("busy thread");

    // Nothing refused was stored; the first write is intact.
    let (_, stats) = api.get_json("/api/v1/stats").await;
    assert_eq!(stats["count"], 1, "{stats}");

    // READONLY: the Redis became a replica (of a second, real Redis). Last: this replaces
    // the data set with the master's.
    let master = RedisServer::start().expect("master");
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port())
        .query(&mut admin)
        .expect("REPLICAOF");
    expect_503("READONLY")(api.send(write(3)).await);
    // MASTERDOWN: a replica whose master is gone, told not to serve stale data.
    config(&mut admin, "replica-serve-stale-data", "no");
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(free_port())
        .query(&mut admin)
        .expect("REPLICAOF dead");
    expect_503("MASTERDOWN")(api.send(api.client.get(api.url("/api/v1/stats"))).await);
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut admin)
        .expect("REPLICAOF NO ONE");
    // (Becoming a replica replaced the data set with the empty master's.) Writes work again.
    let (status, body) = api.post_averages(&average(9, json!(1.0), 1, now)).await;
    assert_eq!(status, 201, "{body}");

    let log = api.proc.log_tail(200);
    assert!(!log.contains("unexpected data in redis"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_pages_carry_security_headers() {
    let api = Api::start(&testkit::shared_redis().url(), &[]);
    let big = "x".repeat(70 * 1024);
    for (path, key) in [
        ("/grafana/query", "message"),
        ("/prom/api/v1/query", "error"),
        ("/api/v1/averages", "error"),
    ] {
        let req = api
            .client
            .post(api.url(path))
            .bearer_auth(TOKEN)
            .body(big.clone());
        let (status, headers, text, _) = api.send(req).await;
        assert_eq!(status, 413, "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
        assert!(body[key].is_string(), "{path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
    }
    let (status, _, text, _) = api
        .send(api.client.get(api.url("/prom/api/v1/label/%FF%FE/values")))
        .await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(body["errorType"], "bad_data", "{body}");
    let (status, headers, html, _) = api.send(api.client.get(api.url("/"))).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        !html.contains("<script>") && !html.contains("<style>"),
        "inline code left"
    );
    for asset in ["/static/history.css", "/static/history.js"] {
        let (status, _, _, _) = api.send(api.client.get(api.url(asset))).await;
        assert_eq!(status, 200, "{asset}");
    }
    let (_, headers, _, _) = api.send(api.client.get(api.url("/healthz"))).await;
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[test]
fn short_tokens_are_refused_and_redis_passwords_never_logged() {
    let out = Command::new(BIN)
        .env_clear()
        .args(["--check-config"])
        .env("API_TOKEN", "short-token")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("API_TOKEN") && err.contains("16"), "{err}");

    let redis = RedisServer::start().expect("redis");
    let mut admin = redis::Client::open(redis.url())
        .expect("client")
        .get_connection()
        .expect("conn");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("sup3r-secret-pw")
        .query(&mut admin)
        .expect("requirepass");
    let url = format!("redis://:sup3r-secret-pw@127.0.0.1:{}/", redis.port());
    let api = Api::start(&url, &[("RUST_LOG", "debug")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let status = rt.block_on(async { api.send(api.client.get(api.url("/readyz"))).await.0 });
    assert_eq!(status, 200, "{}", api.proc.log_tail(20));
    let log = std::fs::read_to_string(api.proc.log_path()).expect("log");
    assert!(log.contains("sensor-api listening"), "{log}");
    assert!(
        !log.contains("sup3r-secret-pw"),
        "password in the log:\n{log}"
    );
}

#[test]
fn evicting_redis_is_reported_loudly_at_start_up() {
    let redis = RedisServer::start().expect("redis");
    let mut admin = redis::Client::open(redis.url())
        .expect("client")
        .get_connection()
        .expect("conn");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut admin)
        .expect("policy");
    let api = Api::start(&redis.url(), &[]);
    let warned = testkit::wait_until(Duration::from_secs(10), || {
        api.proc.log_tail(50).contains("REDIS MAY EVICT OUR KEYS")
    });
    assert!(warned, "{}", api.proc.log_tail(50));
}
