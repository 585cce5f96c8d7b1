//! The `sensor-api` binary: `--check-config`, the `healthcheck` subcommand, access logs,
//! and graceful shutdown on SIGTERM with a request in flight.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{free_port, Proc, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_sensor-api");

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sensor-api");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_effective_config() {
    let (code, out, err) = run(
        &["--check-config", "--listen", "127.0.0.1:9999"],
        &[
            ("REDIS_URL", "redis://:pw@redis:6379/1"),
            ("API_TOKEN", "topsecret-0123456789"),
            ("RETENTION_MAX_AGE", "30d"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("LISTEN_ADDR=127.0.0.1:9999"), "{out}");
    assert!(
        out.contains("REDIS_URL=redis://<redacted>@redis:6379/1"),
        "{out}"
    );
    assert!(out.contains("API_TOKEN=<set, redacted>"), "{out}");
    assert!(out.contains("RETENTION_MAX_AGE=2592000000ms"), "{out}");
    assert!(
        !out.contains("topsecret") && !out.contains(":pw@"),
        "secrets never printed"
    );
}

#[test]
fn check_config_names_the_bad_setting() {
    for (args, env, needle) in [
        (
            vec!["--check-config", "--redis", "http://redis:6379"],
            vec![],
            "REDIS_URL",
        ),
        (
            vec!["--check-config"],
            vec![("RETENTION_MAX_COUNT", "0")],
            "RETENTION_MAX_COUNT",
        ),
        (
            vec!["--check-config"],
            vec![("RETENTION_MAX_AGE", "5y")],
            "retention-max-age",
        ),
        (
            vec!["--check-config"],
            vec![("LISTEN_ADDR", "not-an-address")],
            "--listen",
        ),
        (
            vec!["--check-config"],
            vec![("ZOOKEEPER_HOSTS", "zk1,zk2")],
            "ZOOKEEPER_HOSTS",
        ),
        (
            vec!["--check-config"],
            vec![("ADVERTISE_URL", "api:8080")],
            "ADVERTISE_URL",
        ),
        (
            vec!["--check-config"],
            vec![("API_TOKEN", " ")],
            "API_TOKEN",
        ),
        (
            vec!["--check-config"],
            vec![("REQUEST_TIMEOUT", "0s")],
            "REQUEST_TIMEOUT",
        ),
    ] {
        let (code, out, err) = run(&args, &env);
        assert_ne!(code, 0, "{args:?} {env:?} accepted: {out}");
        assert!(
            err.contains(needle),
            "{args:?} {env:?}: message {err:?} does not name {needle}"
        );
    }
}

struct Server {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_server(redis_url: &str, extra: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis_url)
        .env("KEY_PREFIX", format!("bin-{}-{port}", std::process::id()))
        .env("RUST_LOG", "info");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let proc = Proc::spawn("sensor-api", cmd, &dir.path().join("api.log")).expect("spawn");
    let up = testkit::wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "sensor-api did not listen; log:\n{}", proc.log_tail(30));
    Server {
        proc,
        port,
        _dir: dir,
    }
}

#[test]
fn healthcheck_subcommand_and_access_log() {
    let redis = testkit::shared_redis();
    let server = start_server(&redis.url(), &[]);
    let url = format!("http://127.0.0.1:{}/readyz", server.port);
    let (code, out, err) = run(&["healthcheck", "--url", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    // Default URL from LISTEN_ADDR, as in a container.
    let listen = format!("0.0.0.0:{}", server.port);
    let (code, _, err) = run(&["healthcheck"], &[("LISTEN_ADDR", &listen)]);
    assert_eq!(code, 0, "{err}");
    // Nothing listening: exit 1 quickly.
    let dead = format!("http://127.0.0.1:{}/readyz", free_port());
    let started = Instant::now();
    let (code, _, err) = run(&["healthcheck", "--url", &dead, "--timeout", "2s"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The access log has one line per request, with route and status, without the query.
    let r = reqwest::blocking_get(&format!(
        "http://127.0.0.1:{}/nuevo?dato=1&token=hidden",
        server.port
    ));
    assert_eq!(r, 200);
    let logged = testkit::wait_until(Duration::from_secs(5), || {
        server.proc.log_tail(50).contains("route=/nuevo")
    });
    let log = server.proc.log_tail(50);
    assert!(logged, "{log}");
    assert!(
        log.contains("status=200") && log.contains("route=/readyz"),
        "{log}"
    );
    assert!(
        !log.contains("hidden"),
        "query strings (tokens) are not logged:\n{log}"
    );
    // A path parameter is logged as the route pattern with the latency; a hostile path
    // as `unmatched`: raw paths never reach the log.
    let r = reqwest::blocking_get(&format!(
        "http://127.0.0.1:{}/api/v1/averages/918273645",
        server.port
    ));
    assert_eq!(r, 404);
    let r = reqwest::blocking_get(&format!(
        "http://127.0.0.1:{}/forged%20status=200",
        server.port
    ));
    assert_eq!(r, 404);
    let logged = testkit::wait_until(Duration::from_secs(5), || {
        server.proc.log_tail(50).contains("route=unmatched")
    });
    let log = server.proc.log_tail(50);
    assert!(logged, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("route=/api/v1/averages/{round}"))
        .unwrap_or_else(|| panic!("no access line for the round route:\n{log}"));
    for field in ["method=GET", "status=404", "latency_ms="] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(
        !log.contains("918273645") && !log.contains("forged"),
        "raw paths are not logged:\n{log}"
    );
}

/// A tiny blocking GET without pulling reqwest's blocking feature.
mod reqwest {
    pub fn blocking_get(url: &str) -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            ::reqwest::get(url)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let redis = RedisServer::start().expect("redis");
    let mut server = start_server(
        &redis.url(),
        &[("REDIS_TIMEOUT", "3s"), ("SHUTDOWN_GRACE", "10s")],
    );
    let url = format!("http://127.0.0.1:{}/nuevo?dato=5", server.port);
    assert_eq!(reqwest::blocking_get(&url), 200);
    // Freeze Redis so the next request hangs inside the handler for ~3 s.
    redis.pause();
    let in_flight = std::thread::spawn(move || reqwest::blocking_get(&url));
    std::thread::sleep(Duration::from_millis(700));
    server.proc.signal(libc::SIGTERM);
    let status = in_flight.join().expect("request thread");
    redis.resume();
    assert_eq!(
        status, 503,
        "the in-flight request got its answer (Redis timed out), not a reset"
    );
    let exit = server
        .proc
        .wait_timeout(Duration::from_secs(15))
        .expect("exited after SIGTERM");
    assert!(
        exit.success(),
        "clean exit: {exit:?}\n{}",
        server.proc.log_tail(20)
    );
    let log = server.proc.log_tail(20);
    assert!(
        log.contains("shutting down") && log.contains("stopped cleanly"),
        "{log}"
    );
}

#[test]
fn retention_flags_trim_in_the_background() {
    let redis = testkit::shared_redis();
    let server = start_server(
        &redis.url(),
        &[
            ("RETENTION_MAX_COUNT", "3"),
            ("RETENTION_INTERVAL", "200ms"),
        ],
    );
    for v in 1..=6 {
        let url = format!("http://127.0.0.1:{}/nuevo?dato={v}", server.port);
        assert_eq!(reqwest::blocking_get(&url), 200);
    }
    let stats = format!("http://127.0.0.1:{}/api/v1/stats", server.port);
    let trimmed = testkit::wait_until(Duration::from_secs(10), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let body: serde_json::Value = ::reqwest::get(&stats).await.ok()?.json().await.ok()?;
            Some(body["count"] == 3 && body["min"] == 4.0)
        })
        .unwrap_or(false)
    });
    assert!(
        trimmed,
        "oldest points trimmed to 3; log:\n{}",
        server.proc.log_tail(20)
    );
}
