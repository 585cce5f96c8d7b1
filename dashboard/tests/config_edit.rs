//! Editing the live config from the dashboard, against a real ZooKeeper: the token is
//! required, invalid values are refused with the nodes' own messages, and a concurrent
//! change is detected instead of overwritten.

mod support;

use std::time::Duration;

use sensor_coord::config::{parse_api_url, parse_sampling_period};
use sensor_coord::zk::{Session, SessionConfig};
use support::{escape, Dashboard};

async fn stored(s: &Session, path: &str) -> Option<(String, i32)> {
    let c = s
        .wait_connected_for(Duration::from_secs(30))
        .await
        .expect("session");
    match c.get_data(path).await {
        Ok((d, stat)) => Some((String::from_utf8_lossy(&d).into_owned(), stat.version)),
        Err(_) => None,
    }
}

fn version_of(v: &serde_json::Value, key: &str) -> String {
    v["cluster"]["config"][key]["version"]
        .as_i64()
        .map_or("absent".to_string(), |n| n.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_edit_needs_token_validates_like_nodes_and_detects_conflicts() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-edit")
    );
    let token = "correct horse battery staple";
    let dash = Dashboard::start(&connect, &["--admin-token", token]).await;
    let s = Session::start(SessionConfig::new(
        connect.as_str(),
        Duration::from_secs(10),
    ));
    let v = dash
        .wait_for(Duration::from_secs(30), "a first read", |v| {
            v["zookeeper"]["stale"] == false
        })
        .await;
    assert_eq!(version_of(&v, "sampling_period"), "absent");
    let (_, page) = dash.page("").await;
    assert!(
        page.contains("id=\"edit-sampling_period\""),
        "edit form shown"
    );
    assert!(page.contains("name=\"version\" value=\"absent\""));

    // Without the token, or with a wrong one: refused, nothing written.
    let (status, _, body) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", "2"),
            ("version", "absent"),
        ])
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", "2"),
            ("version", "absent"),
            ("token", "correct horse battery stapl"),
        ])
        .await;
    assert_eq!(status, 401);
    assert_eq!(stored(&s, "/config/sampling_period").await, None);

    // Invalid values: refused with exactly the nodes' messages.
    for (key, bad, message) in [
        (
            "sampling_period",
            "abc",
            parse_sampling_period("abc").unwrap_err().to_string(),
        ),
        (
            "sampling_period",
            "0",
            parse_sampling_period("0").unwrap_err().to_string(),
        ),
        (
            "sampling_period",
            "3600.5",
            parse_sampling_period("3600.5").unwrap_err().to_string(),
        ),
        (
            "api_url",
            "ftp://x",
            parse_api_url("ftp://x").unwrap_err().to_string(),
        ),
    ] {
        let (status, _, body) = dash
            .post_config(&[
                ("key", key),
                ("value", bad),
                ("version", "absent"),
                ("token", token),
            ])
            .await;
        assert_eq!(status, 422, "{key}={bad}");
        assert!(
            body.contains(&escape(&message)),
            "{key}={bad}: page lacks {message:?}"
        );
    }
    assert_eq!(stored(&s, "/config/sampling_period").await, None);
    let (status, _, _) = dash
        .post_config(&[
            ("key", "<x>"),
            ("value", "1"),
            ("version", "absent"),
            ("token", token),
        ])
        .await;
    assert_eq!(status, 400);

    // A valid edit: created, and the page shows it with its version.
    let (status, location, _) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", " 2.5 "),
            ("version", "absent"),
            ("token", token),
            ("editor", "alice"),
        ])
        .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/?saved=sampling_period"));
    assert_eq!(
        stored(&s, "/config/sampling_period").await,
        Some(("2.5".to_string(), 0))
    );
    let v = dash
        .wait_for(Duration::from_secs(10), "version 0", |v| {
            version_of(v, "sampling_period") == "0"
        })
        .await;
    assert_eq!(
        v["cluster"]["config"]["sampling_period"]["source"],
        "zookeeper"
    );

    // Two people edit from the same page (version 0): the first wins, the second is told.
    let (status, _, _) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", "3"),
            ("version", "0"),
            ("token", token),
        ])
        .await;
    assert_eq!(status, 303);
    let (status, _, body) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", "4"),
            ("version", "0"),
            ("token", token),
        ])
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("changed by someone else"),
        "conflict explained"
    );
    assert!(
        body.contains("it is now 3 (version 1)"),
        "current value shown"
    );
    assert_eq!(
        stored(&s, "/config/sampling_period").await,
        Some(("3".to_string(), 1))
    );

    // Creating a key someone else created meanwhile is a conflict too.
    let c = s.client().expect("client");
    c.create(
        "/config/api_url",
        b"http://other:8080",
        &sensor_coord::zk::persistent(),
    )
    .await
    .expect("create api_url");
    let (status, _, body) = dash
        .post_config(&[
            ("key", "api_url"),
            ("value", "http://api:8080"),
            ("version", "absent"),
            ("token", token),
        ])
        .await;
    assert_eq!(status, 409);
    assert!(body.contains("http://other:8080"));
    assert_eq!(
        stored(&s, "/config/api_url").await,
        Some(("http://other:8080".to_string(), 0))
    );
    s.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_token_the_page_is_read_only() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-ro")
    );
    let dash = Dashboard::start(&connect, &[]).await;
    dash.wait_for(Duration::from_secs(30), "a first read", |v| {
        v["zookeeper"]["stale"] == false
    })
    .await;
    let (_, page) = dash.page("").await;
    assert!(page.contains("id=\"read-only\""), "says read-only");
    assert!(
        !page.contains("id=\"edit-sampling_period\""),
        "no edit form"
    );
    let (status, _, _) = dash
        .post_config(&[
            ("key", "sampling_period"),
            ("value", "2"),
            ("version", "absent"),
            ("token", ""),
        ])
        .await;
    assert_eq!(status, 403);
}

/// The admin token is checked by a layer before the form is parsed or ZooKeeper is
/// touched: a POST without it is refused whatever its body, and a script may send the
/// token as `Authorization: Bearer` instead of a form field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_checked_before_the_form() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-admin")
    );
    let token = "admin-layer-token-0123";
    let dash = Dashboard::start(&connect, &["--admin-token", token]).await;
    let s = Session::start(SessionConfig::new(
        connect.as_str(),
        Duration::from_secs(10),
    ));
    dash.wait_for(Duration::from_secs(30), "a first read", |v| {
        v["zookeeper"]["stale"] == false
    })
    .await;
    let post = |body: &'static str, bearer: Option<&'static str>| {
        let mut req = support::http()
            .post(format!("{}/config", dash.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        async move {
            let r = req.send().await.expect("POST /config");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    // No token: 401 with the page, even for a body the form parser would reject (422).
    for body in ["", "garbage", "key=sampling_period"] {
        let (status, page) = post(body, None).await;
        assert_eq!(status, 401, "body {body:?}");
        assert!(page.contains("wrong or missing admin token"), "{page}");
    }
    // A wrong bearer header is the credential even with the right form token.
    let (status, _) = post(
        "key=sampling_period&value=2&version=absent&token=admin-layer-token-0123",
        Some("admin-layer-token-0124"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(stored(&s, "/config/sampling_period").await, None);
    // The right bearer header without a form token: written.
    let (status, _) = post(
        "key=sampling_period&value=2&version=absent",
        Some("admin-layer-token-0123"),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        stored(&s, "/config/sampling_period").await,
        Some(("2".to_string(), 0))
    );
    s.close();
}

/// The real binary's access log: one line per request with the route pattern, status and
/// latency; neither the query string nor the form (with its token) is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_routes_not_queries_or_tokens() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-log")
    );
    let port = testkit::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sensor-dashboard"));
    cmd.env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ZOOKEEPER_HOSTS", &connect)
        .env("DASHBOARD_ADMIN_TOKEN", "admin-token-never-logged")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let proc = testkit::Proc::spawn("dashboard", cmd, &dir.path().join("d.log"))
        .expect("spawn sensor-dashboard");
    let base = format!("http://127.0.0.1:{port}");
    let up = testkit::wait_until_async(Duration::from_secs(30), || {
        let url = format!("{base}/healthz");
        async move { support::http().get(url).send().await.is_ok() }
    })
    .await;
    assert!(up, "dashboard did not listen:\n{}", proc.log_tail(30));
    let r = support::http()
        .get(format!("{base}/?q=query-text-not-logged"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(r.status(), 200);
    let r = support::http()
        .post(format!("{base}/config"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=sampling_period&value=2&version=absent&token=wrong-token-not-logged")
        .send()
        .await
        .expect("POST /config");
    assert_eq!(r.status(), 401);
    let logged = testkit::wait_until(Duration::from_secs(5), || {
        proc.log_tail(50).contains("\"route\":\"/config\"")
    });
    let log = proc.log_tail(50);
    assert!(logged, "{log}");
    // One JSON object per line; the access lines are those of target `access`.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .map(|v| v["fields"].clone())
        .collect();
    let line = |route: &str| {
        access
            .iter()
            .find(|f| f["route"] == route)
            .unwrap_or_else(|| panic!("no access line for {route}:\n{log}"))
            .clone()
    };
    let config = line("/config");
    assert_eq!(config["method"], "POST", "{config}");
    assert_eq!(config["status"], 401, "{config}");
    assert!(config["latency_ms"].as_f64().is_some(), "{config}");
    assert_eq!(line("/")["status"], 200, "{log}");
    for secret in [
        "query-text-not-logged",
        "wrong-token-not-logged",
        "admin-token-never-logged",
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}
