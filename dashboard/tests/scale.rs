//! 1000 sensors: the page stays small (summary first, 100 rows a page, searchable) and the
//! event stream sends only the readings that changed. The 1000 sensors are ephemeral
//! znodes (readings and election contenders, in kazoo's layout) written by this test's own
//! ZooKeeper session: 1000 sensor-node processes do not fit on a 2-core test machine.
//! Prints the measured figures (read time, page size, message sizes).

mod support;

use std::time::{Duration, Instant};

use sensor_coord::zk::{self, Session, SessionConfig};
use sensor_dashboard::snapshot::read_cluster;
use support::{sensor_ids, Dashboard, SseReader};
use zookeeper_client as zkc;

const N: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sensors_page_and_stream_stay_small() {
    let zk = testkit::shared_zk();
    let connect = format!(
        "{}{}",
        zk.connect_string(),
        testkit::unique_chroot("dash-scale")
    );
    let s = Session::start(SessionConfig::new(
        connect.as_str(),
        Duration::from_secs(10),
    ));
    let client = s
        .wait_connected_for(Duration::from_secs(30))
        .await
        .expect("session");
    zk::ensure_path(&client, "/mediciones")
        .await
        .expect("mkdir");
    zk::ensure_path(&client, "/election").await.expect("mkdir");
    let eph = zk::ephemeral();
    let eph_seq = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let creates = chunk.iter().map(|i| {
            let client = client.clone();
            let (eph, eph_seq) = (&eph, &eph_seq);
            async move {
                let id = format!("s{i:04}");
                client
                    .create(
                        &format!("/mediciones/{id}"),
                        format!("{}.5", 15 + i % 20).as_bytes(),
                        eph,
                    )
                    .await
                    .expect("reading");
                client
                    .create(
                        &format!("/election/{:032x}__lock__", i),
                        id.as_bytes(),
                        eph_seq,
                    )
                    .await
                    .expect("contender");
            }
        });
        futures::future::join_all(creates).await;
    }

    // One read of the whole cluster, as the monitor does it every refresh.
    let started = Instant::now();
    let cluster = read_cluster(&s, Duration::from_secs(30))
        .await
        .expect("read");
    let read_ms = started.elapsed().as_millis();
    assert_eq!(cluster.sensors.len(), N);
    assert_eq!(cluster.contenders.len(), N);

    let dash = Dashboard::start(&connect, &[]).await;
    let v = dash
        .wait_for(Duration::from_secs(60), "1000 sensors", |v| {
            sensor_ids(v).len() == N
        })
        .await;
    assert_eq!(v["cluster"]["leader"]["id"], "s0000");
    let json_bytes = serde_json::to_vec(&v).expect("json").len();

    let started = Instant::now();
    let (status, html) = dash.page("").await;
    let page_ms = started.elapsed().as_millis();
    assert_eq!(status, 200);
    assert_eq!(
        html.matches("<tr data-sensor=").count(),
        100,
        "one page of rows"
    );
    assert!(html.contains("Showing 1–100 of 1000"));
    assert!(
        html.contains("+ 987 more contenders"),
        "the picture stays bounded"
    );
    assert!(
        html.contains("and 950 more"),
        "the contender list stays bounded"
    );
    assert!(
        html.find("id=\"sec-summary\"") < html.find("id=\"sensor-rows\""),
        "summary first"
    );
    let (_, found) = dash.page("?q=s099").await;
    assert_eq!(found.matches("<tr data-sensor=").count(), 10, "search");
    let (_, last_page) = dash.page("?page=9").await;
    assert!(last_page.contains("data-sensor=\"s0999\"") && last_page.contains("Showing 901–1000"));

    // The stream: everything once, then only what changed.
    let mut sse = SseReader::open(&dash.url).await;
    let mut first_bytes = 0;
    loop {
        let m = sse
            .next(Duration::from_secs(20))
            .await
            .expect("initial messages");
        first_bytes += m.data.to_string().len();
        if m.event == "sensors" {
            assert_eq!(m.data["full"], true);
            assert_eq!(m.data["upsert"].as_array().map(Vec::len), Some(N));
            break;
        }
    }
    for i in 0..10 {
        client
            .set_data(&format!("/mediciones/s{i:04}"), b"99.25", None)
            .await
            .expect("new reading");
    }
    // A read may land between two of those writes: collect deltas until all 10 arrived.
    let mut changed = std::collections::BTreeSet::new();
    let mut delta_bytes = 0;
    while changed.len() < 10 {
        let m = sse
            .next(Duration::from_secs(30))
            .await
            .expect("a sensors delta");
        if m.event != "sensors" {
            continue;
        }
        assert_eq!(m.data["full"], false);
        delta_bytes += m.data.to_string().len();
        for u in m.data["upsert"].as_array().expect("upsert") {
            assert_eq!(u["reading"], "99.25", "only changed readings are sent: {u}");
            assert!(changed.insert(u["id"].to_string()), "sent twice: {u}");
        }
    }
    println!(
        "MEASURED {N} sensors: read_cluster {read_ms} ms; JSON state {json_bytes} B; page {} B in {page_ms} ms; \
         first SSE burst {first_bytes} B; delta(s) after 10 readings changed {} B",
        html.len(),
        delta_bytes
    );
    s.close();
}
