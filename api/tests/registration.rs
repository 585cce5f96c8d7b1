//! ZooKeeper registration against a real server: the ephemeral znode appears with the
//! advertised URL, comes back after deletion and after session expiry, and vanishes at once
//! on stop.

use std::time::Duration;

use sensor_api::registration::Registration;
use zookeeper_client as zk;

async fn data_of(client: &zk::Client, path: &str) -> Option<(Vec<u8>, i64)> {
    match client.get_data(path).await {
        Ok((data, stat)) => Some((data, stat.ephemeral_owner)),
        Err(_) => None,
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), &mut check).await,
        "timed out waiting for {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_reregisters_and_deregisters() {
    let zk_server = testkit::shared_zk();
    let chroot = testkit::unique_chroot("api-reg");
    let connect = format!("{}{chroot}", zk_server.connect_string());
    // The registration talks through a proxy, so a partition can expire its session.
    let proxy = testkit::Partition::start(zk_server.port()).await;
    let reg = Registration::start(
        &format!("{}{chroot}", proxy.connect_string()),
        "api-1",
        "http://127.0.0.1:18080",
    );
    let path = "/services/api/api-1";

    let observer = zk::Client::connect(&connect).await.expect("observer");
    wait_for("registration", || async {
        data_of(&observer, path).await.is_some()
    })
    .await;
    let (data, owner1) = data_of(&observer, path).await.unwrap();
    assert_eq!(data, b"http://127.0.0.1:18080");
    assert_ne!(owner1, 0, "ephemeral");

    // An operator deletes it: it comes back.
    observer.delete(path, None).await.expect("delete");
    wait_for("re-creation after delete", || async {
        data_of(&observer, path).await.is_some()
    })
    .await;

    // Expire the session for real: cut it off until the server drops it (its ephemeral
    // goes), then heal; the registration builds a new session and registers again.
    proxy.cut();
    wait_for("the server to expire the partitioned session", || async {
        data_of(&observer, path).await.is_none()
    })
    .await;
    proxy.heal();
    wait_for("a new session owning the znode", || async {
        matches!(data_of(&observer, path).await, Some((_, owner)) if owner != owner1)
    })
    .await;
    assert!(reg.session().current_status().generation >= 2);

    // Stop: gone at once (session closed, not left to time out).
    reg.stop();
    wait_for("deregistration", || async {
        data_of(&observer, path).await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_register_side_by_side() {
    let zk_server = testkit::shared_zk();
    let chroot = testkit::unique_chroot("api-two");
    let connect = format!("{}{chroot}", zk_server.connect_string());
    let a = Registration::start(&connect, "a", "http://a:8080");
    let b = Registration::start(&connect, "b", "http://b:8080");
    let observer = zk::Client::connect(&connect).await.expect("observer");
    wait_for("both registered", || async {
        let mut kids = observer
            .list_children("/services/api")
            .await
            .unwrap_or_default();
        kids.sort();
        kids == ["a", "b"]
    })
    .await;
    a.stop();
    wait_for("only b left", || async {
        observer
            .list_children("/services/api")
            .await
            .unwrap_or_default()
            == ["b"]
    })
    .await;
    b.stop();
}
