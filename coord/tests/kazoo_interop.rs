//! Wire compatibility with kazoo 2.11.0 (the recipe library of the existing Python sensors):
//! a kazoo peer (`tests/support/kazoo_peer.py`, run with `python3`) and our recipes share one
//! ZooKeeper (separate chroots per test) and must agree on election, counter and barrier.
//!
//! kazoo must be installed (`python3 -m pip install kazoo==2.11.0`; CI's install step does
//! it). A missing kazoo fails these tests instead of skipping them.

mod support;

use std::time::Duration;

use sensor_coord::zk::{Barrier, Counter, Election, Session};
use support::{
    assert_no_overlap, connected, field, lines, log_path, now_us, require_kazoo, spawn_kazoo,
    wait_line, Term,
};
use testkit::Proc;

fn shared_connect(tag: &str) -> String {
    format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot(tag)
    )
}

/// Connects our session first: it creates the chroot, which kazoo expects to exist.
async fn ours(cs: &str) -> Session {
    connected(cs, Duration::from_secs(4)).await
}

async fn ready(p: &Proc) {
    assert!(
        wait_line(p, 0, Duration::from_secs(30), |l| l == "READY")
            .await
            .is_some(),
        "kazoo peer did not connect:\n{}",
        p.log_tail(30)
    );
}

async fn done(p: &mut Proc) {
    assert!(
        wait_line(p, 0, Duration::from_secs(60), |l| l == "DONE")
            .await
            .is_some(),
        "kazoo peer did not finish:\n{}",
        p.log_tail(30)
    );
    let status = p.wait_timeout(Duration::from_secs(10)).expect("peer exits");
    assert!(status.success(), "kazoo peer failed:\n{}", p.log_tail(30));
}

/// `<32 lowercase hex>__lock__<10 digits>`: kazoo's contender name.
fn is_kazoo_contender_name(name: &str) -> bool {
    let Some((prefix, seq)) = name.split_once("__lock__") else {
        return false;
    };
    prefix.len() == 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && seq.len() == 10
        && seq.bytes().all(|b| b.is_ascii_digit())
}

fn kazoo_terms(p: &Proc) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for l in lines(p) {
        if l.starts_with("LEADER ") {
            let ts = field(&l, 1);
            terms.push(Term {
                who: "kazoo".into(),
                fencing: 0,
                start: ts,
                last: ts,
                ended: false,
            });
        } else if l.starts_with("RESIGN ") {
            let t = terms.last_mut().expect("RESIGN after LEADER");
            t.last = field(&l, 1);
            t.ended = true;
        }
    }
    terms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_our_election_contenders_take_turns_and_never_lead_together() {
    require_kazoo();
    let cs = shared_connect("kz-election");
    let s = ours(&cs).await;
    const ROUNDS: usize = 4;
    let mut kazoo = spawn_kazoo(
        "kazoo-election",
        &[
            "election",
            &cs,
            "/election",
            "kazoo",
            "300",
            &ROUNDS.to_string(),
        ],
    );
    ready(&kazoo).await;
    // kazoo leads first; ours queues behind it.
    assert!(
        wait_line(&kazoo, 0, Duration::from_secs(10), |l| l
            .starts_with("LEADER"))
        .await
        .is_some(),
        "kazoo never led:\n{}",
        kazoo.log_tail(30)
    );
    let election = Election::new(s.clone(), "/election", "rust");
    let client = s.client().unwrap();
    let mut our_terms = Vec::new();
    let mut names_seen = Vec::new();
    for round in 0..ROUNDS {
        let leadership = tokio::time::timeout(Duration::from_secs(20), election.campaign())
            .await
            .expect("we lead within 20 s")
            .expect("campaign");
        let start = now_us();
        let mut last = start;
        // While we lead, kazoo re-queues behind us: both names in kazoo's format, and
        // contenders() (kazoo's API) lists us first.
        if round + 1 < ROUNDS {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let names = client.list_children("/election").await.unwrap();
                if names.len() == 2 {
                    names_seen.extend(names);
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "kazoo did not queue behind us: {names:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let contenders = election.contenders().await.unwrap();
            assert_eq!(contenders, ["rust", "kazoo"]);
        }
        let hold_until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < hold_until {
            assert!(leadership.is_held(), "lost leadership without any failure");
            last = now_us();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let node = leadership
            .guard_path()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        names_seen.push(node);
        our_terms.push(Term {
            who: "rust".into(),
            fencing: leadership.fencing_token(),
            start,
            last,
            ended: true,
        });
        leadership.resign().await;
    }
    done(&mut kazoo).await;

    let mut terms = kazoo_terms(&kazoo);
    assert_eq!(terms.len(), ROUNDS, "kazoo led {ROUNDS} times");
    terms.extend(our_terms);
    assert_no_overlap(&terms);
    // Strict alternation: each resignation hands over to the other library.
    terms.sort_by_key(|t| t.start);
    let order: Vec<&str> = terms.iter().map(|t| t.who.as_str()).collect();
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "no alternation: {order:?}");
    }
    // Our fencing tokens grow from each of our terms to the next.
    let ours: Vec<u64> = terms
        .iter()
        .filter(|t| t.who == "rust")
        .map(|t| t.fencing)
        .collect();
    assert!(ours.windows(2).all(|w| w[0] < w[1]), "fencing {ours:?}");
    // kazoo parses our contender znodes too: its contenders() lists us behind it.
    let seen_by_kazoo: Vec<String> = lines(&kazoo)
        .iter()
        .filter(|l| l.starts_with("CONTENDERS "))
        .map(|l| field(l, 1))
        .collect();
    assert_eq!(seen_by_kazoo.len(), ROUNDS);
    assert!(
        // From kazoo's 2nd term on, we re-queued right after resigning.
        seen_by_kazoo[1..].iter().all(|c| c == "kazoo,rust"),
        "kazoo's contenders(): {seen_by_kazoo:?}"
    );
    for l in lines(&kazoo).iter().filter(|l| l.starts_with("NODE ")) {
        names_seen.push(field(l, 1));
    }
    assert!(names_seen.len() > 2 * ROUNDS);
    for n in &names_seen {
        assert!(
            is_kazoo_contender_name(n),
            "not a kazoo contender name: {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_our_counter_increments_end_at_the_exact_sum() {
    require_kazoo();
    let cs = shared_connect("kz-counter");
    let s = ours(&cs).await;
    let go = log_path("kz-counter-go");
    const KAZOO_PEERS: usize = 2;
    const KAZOO_EACH: i64 = 150;
    const OUR_SESSIONS: usize = 3;
    const OUR_EACH: i64 = 100;
    let go_str = go.to_string_lossy().to_string();
    let mut peers: Vec<Proc> = (0..KAZOO_PEERS)
        .map(|i| {
            spawn_kazoo(
                &format!("kazoo-counter-{i}"),
                &["counter", &cs, "/counter", &KAZOO_EACH.to_string(), &go_str],
            )
        })
        .collect();
    for p in &peers {
        ready(p).await;
    }
    let mut sessions = Vec::new();
    for _ in 0..OUR_SESSIONS {
        sessions.push(ours(&cs).await);
    }
    std::fs::write(&go, b"go").unwrap();
    let our_start = now_us();
    let tasks: Vec<_> = sessions
        .iter()
        .map(|s| {
            let c = Counter::new(s.clone(), "/counter");
            tokio::spawn(async move {
                for _ in 0..OUR_EACH {
                    c.increment().await.expect("increment");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let our_end = now_us();
    for p in &mut peers {
        done(p).await;
    }
    let expected = KAZOO_PEERS as i64 * KAZOO_EACH + OUR_SESSIONS as i64 * OUR_EACH;
    assert_eq!(
        Counter::new(s.clone(), "/counter").get().await.unwrap(),
        expected
    );
    let (raw, _) = s.client().unwrap().get_data("/counter").await.unwrap();
    assert_eq!(
        raw,
        expected.to_string().as_bytes(),
        "kazoo's ASCII encoding"
    );
    // The increments really ran at the same time.
    for p in &peers {
        let start: u128 = field(
            &lines(p)
                .into_iter()
                .find(|l| l.starts_with("START"))
                .unwrap(),
            1,
        );
        let end: u128 = field(
            &lines(p)
                .into_iter()
                .find(|l| l.starts_with("VALUE"))
                .unwrap(),
            2,
        );
        assert!(
            start < our_end && our_start < end,
            "kazoo ran {start}..{end}, ours {our_start}..{our_end}: no overlap"
        );
    }
    let _ = std::fs::remove_file(&go);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_barrier_remove_releases_kazoo_wait() {
    require_kazoo();
    let cs = shared_connect("kz-barrier");
    let s = ours(&cs).await;
    let barrier = Barrier::new(s.clone(), "/barrier");
    barrier.create().await.unwrap();
    let mut kazoo = spawn_kazoo(
        "kazoo-barrier-wait",
        &["barrier-wait", &cs, "/barrier", "30"],
    );
    ready(&kazoo).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !lines(&kazoo).iter().any(|l| l.starts_with("RELEASED")),
        "kazoo passed a raised barrier:\n{}",
        kazoo.log_tail(10)
    );
    let removed_at = now_us();
    assert!(barrier.remove().await.unwrap());
    let released = wait_line(&kazoo, 0, Duration::from_secs(10), |l| {
        l.starts_with("RELEASED")
    })
    .await
    .unwrap_or_else(|| panic!("kazoo still waiting:\n{}", kazoo.log_tail(10)));
    assert_eq!(field::<String>(&released, 1), "True");
    assert!(field::<u128>(&released, 2) > removed_at);
    done(&mut kazoo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_barrier_create_and_remove_are_seen_by_ours() {
    require_kazoo();
    let cs = shared_connect("kz-barrier2");
    let s = ours(&cs).await;
    let go = log_path("kz-barrier-go");
    let mut kazoo = spawn_kazoo(
        "kazoo-barrier-create",
        &[
            "barrier-create-remove",
            &cs,
            "/barrier",
            &go.to_string_lossy(),
        ],
    );
    ready(&kazoo).await;
    let barrier = Barrier::new(s.clone(), "/barrier");
    let id = barrier
        .wait_next(None, Some(Duration::from_secs(20)))
        .await
        .expect("kazoo's barrier seen");
    assert!(wait_line(&kazoo, 0, Duration::from_secs(5), |l| l
        .starts_with("CREATED"))
    .await
    .is_some());
    assert_eq!(barrier.current().await.unwrap(), Some(id));
    let waiter = {
        let b = barrier.clone();
        tokio::spawn(async move { b.wait_removed(Some(Duration::from_secs(20))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "passed a raised barrier");
    std::fs::write(&go, b"go").unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("released in time")
        .unwrap()
        .expect("wait_removed");
    let removed = wait_line(&kazoo, 0, Duration::from_secs(5), |l| {
        l.starts_with("REMOVED")
    })
    .await
    .unwrap();
    assert_eq!(field::<String>(&removed, 1), "True");
    done(&mut kazoo).await;
    assert_eq!(barrier.current().await.unwrap(), None);
    let _ = std::fs::remove_file(&go);
}

/// A kazoo leader process dies (SIGKILL): our contender, queued behind kazoo's znode, leads
/// once ZooKeeper expires kazoo's session (4 s after kazoo's last ping, as kazoo asks here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_contender_takes_over_from_a_killed_kazoo_leader() {
    require_kazoo();
    let cs = shared_connect("kz-kill");
    let s = ours(&cs).await;
    let mut kazoo = spawn_kazoo(
        "kazoo-election-kill",
        &["election", &cs, "/election", "kazoo", "60000", "1"],
    );
    ready(&kazoo).await;
    let led = wait_line(&kazoo, 0, Duration::from_secs(10), |l| {
        l.starts_with("LEADER")
    })
    .await
    .unwrap_or_else(|| panic!("kazoo never led:\n{}", kazoo.log_tail(30)));
    let election = Election::new(s.clone(), "/election", "rust");
    let campaign = tokio::spawn(async move { election.campaign().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign.is_finished(), "led while kazoo leads");
    let killed_at = now_us();
    kazoo.kill();
    let leadership = tokio::time::timeout(Duration::from_secs(20), campaign)
        .await
        .expect("we lead after kazoo's session expires")
        .unwrap()
        .expect("campaign");
    let took_over = now_us();
    println!(
        "kazoo leader SIGKILL -> our contender leads after {} ms",
        (took_over - killed_at) / 1000
    );
    assert!(field::<u128>(&led, 1) < killed_at);
    assert!(leadership.is_held());
    leadership.resign().await;
}
