//! A change of the sampling period applies to the round already running, not only to the
//! next one: lowered from 30 s to 0.5 s, the open round closes at once (it opened more than
//! 0.5 s ago) instead of 30 s after it opened.

mod common;

use std::time::{Duration, Instant};

use common::{NodeOpts, Receiver};
use sensor_node::zk::{self, Barrier, Session, SessionConfig};

/// Fails on the old code, where the 30 s round ran to its end before the new period applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_sampling_period_closes_the_open_round_at_once() {
    let zk = format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot("period-lowered")
    );
    let receiver = Receiver::start().await;
    let mut opts = NodeOpts::new(&zk, Some(&receiver.url()));
    opts.period = "30".into();
    let n1 = common::spawn("n1", &opts);
    let n2 = common::spawn("n2", &opts);
    let s = Session::start(SessionConfig::new(&zk, Duration::from_secs(4)));
    s.wait_connected_for(Duration::from_secs(20))
        .await
        .expect("connect");
    // Round 1 is open (the barrier is up) and both nodes have published for it.
    let barrier = Barrier::new(s.clone(), "/barrier");
    let c = s.client().unwrap();
    let open = testkit::wait_until_async(Duration::from_secs(60), || async {
        barrier.current().await.ok().flatten().is_some()
            && c.list_children("/mediciones").await.map(|l| l.len()) == Ok(2)
    })
    .await;
    assert!(open, "round 1 never opened\n{}\n{}", n1.tail(), n2.tail());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.last_round(), 0, "a 30 s round closed early");

    zk::ensure_path(&c, "/config").await.unwrap();
    c.create("/config/sampling_period", b"0.5", &zk::persistent())
        .await
        .unwrap();
    let changed = Instant::now();
    assert!(
        receiver.wait_round(1, Duration::from_secs(10)).await,
        "the open 30 s round did not close within 10 s of lowering the period to 0.5 s\n{}\n{}",
        n1.tail(),
        n2.tail()
    );
    let took = changed.elapsed();
    println!("period 30 s -> 0.5 s: round 1 delivered {took:?} after the change");
    // And the fleet runs at the new period from there on.
    assert!(
        receiver.wait_round(11, Duration::from_secs(30)).await,
        "rounds at 0.5 s did not follow (last {})\n{}",
        receiver.last_round(),
        n1.tail()
    );
    receiver.assert_contiguous();
    // The leader applied the change to its open round and said so. Under load the
    // leadership can move, or a failed round be re-opened, while the round is open; a round
    // (re-)opened after the change starts with the new period already, and has nothing to log.
    const APPLIED: &str =
        "sampling period changed: the open round closes at its opening + the new period";
    let applied = [&n1, &n2]
        .iter()
        .any(|n| !n.events_named(APPLIED).is_empty());
    let count = |event: &str| n1.events_named(event).len() + n2.events_named(event).len();
    let reopened = count("became leader") > 1 || count("round failed; retrying") > 0;
    assert!(
        applied || reopened,
        "no leader logged applying the change to the open round (and it was never re-opened)\n{}\n{}",
        n1.tail(),
        n2.tail()
    );
}
