//! A redirect in front of the API must not count as a delivery.
//!
//! Every part real: ZooKeeper, Redis, the `sensor-api` binary, three `sensor-node`
//! processes, and a tiny HTTP server on 127.0.0.1 that answers every request with
//! `301 Moved Permanently` to the real API's `/api/v1/averages` (what an http→https proxy
//! in front of the API does). A client that followed it would turn the leader's POST into
//! a GET of the public list, which answers 200. Needs the `sensor-api` binary (see
//! `real_api`).

mod common;
mod real_api;

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use common::{Node, NodeOpts};
use sensor_node::layout;
use sensor_node::outbox::read_u64;
use sensor_node::zk::{self, Session, SessionConfig};
use testkit::RedisServer;

/// Serves `301 Location: <target>/api/v1/averages` to every request; returns its base URL.
async fn redirector(target: String) -> String {
    let location = format!("{target}/api/v1/averages");
    let app = Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, location)],
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn tails(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}\n", n.id, n.tail()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leaves_the_outbox_while_the_api_url_redirects() {
    let zk = format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot("redirect")
    );
    let redis = RedisServer::start().expect("redis");
    let token = "redirect-test-token";
    // Not registered in ZooKeeper: the redirecting API_URL is the nodes' only candidate.
    let api = real_api::spawn_api(&redis, None, "api-redirect", token);
    let http = reqwest::Client::new();
    api.wait_ready(&http).await;
    let proxy = redirector(api.url.clone()).await;
    // The redirect target really answers 200 to the GET a followed redirect would send.
    let followed = http
        .get(format!("{proxy}/api/v1/averages"))
        .send()
        .await
        .expect("proxy");
    assert_eq!(followed.status(), 200, "the trap is armed");

    let mut opts = NodeOpts::new(&zk, Some(&proxy));
    opts.token = Some(token.to_string());
    let nodes: Vec<Node> = (1..=3)
        .map(|i| common::spawn(&format!("n{i}"), &opts))
        .collect();

    let session = Session::start(SessionConfig::new(zk.as_str(), Duration::from_secs(4)));
    let client = session
        .wait_connected_for(Duration::from_secs(20))
        .await
        .expect("zk");
    // While the redirect stands: rounds are committed, and every one of them stays queued.
    let committed = testkit::wait_until_async(Duration::from_secs(60), || async {
        read_u64(&client, layout::ROUNDS_LAST)
            .await
            .map(|v| v.value >= 6)
            .unwrap_or(false)
    })
    .await;
    assert!(committed, "rounds are committed\n{}", tails(&nodes));
    // Give delivery time to try (and, on old code, to "deliver") the last ones too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = read_u64(&client, layout::ROUNDS_LAST).await.unwrap().value;
    let mut queued: Vec<u64> = client
        .list_children(layout::OUTBOX)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    queued.sort_unstable();
    let delivered = read_u64(&client, layout::ROUNDS_DELIVERED)
        .await
        .unwrap()
        .value;
    assert_eq!(
        delivered,
        0,
        "no round counts as delivered through a redirect\n{}",
        tails(&nodes)
    );
    assert_eq!(
        queued[..last as usize],
        (1..=last).collect::<Vec<_>>()[..],
        "every committed round is still in the outbox"
    );
    assert!(api.rounds(&http).await.is_empty(), "nothing reached Redis");
    let warned = nodes.iter().any(|n| {
        n.events_named("API URL answers with a redirect; not following it (fix API_URL)")
            .iter()
            .any(|e| e["location"] == format!("{}/api/v1/averages", api.url))
    });
    assert!(
        warned,
        "the redirect is logged with its Location\n{}",
        tails(&nodes)
    );

    // The operator points the fleet at the API itself: the backlog drains, in order.
    zk::ensure_path(&client, layout::CONFIG).await.unwrap();
    client
        .create(
            layout::CONFIG_API_URL,
            api.url.as_bytes(),
            &zk::persistent(),
        )
        .await
        .expect("set api_url");
    let drained = testkit::wait_until_async(Duration::from_secs(60), || async {
        api.rounds(&http).await.len() as u64 >= last + 2
    })
    .await;
    assert!(
        drained,
        "backlog delivered once the URL is right\n{}",
        tails(&nodes)
    );
    let rounds = api.rounds(&http).await;
    let expected: Vec<u64> = (1..=rounds.len() as u64).collect();
    assert_eq!(rounds, expected, "every round stored once, in order");
    session.close();
}
