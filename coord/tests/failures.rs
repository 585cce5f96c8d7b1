//! The recipes under real failures: SIGKILL / SIGSTOP of client processes, killing the
//! ensemble's leader server, losing quorum, restarting a server, and session expiry.
//!
//! Tests whose fault hits only a client share one ZooKeeper (separate chroots); tests that
//! kill servers start their own. Sessions use 2 s timeouts (test servers tick every 200 ms),
//! so every test takes seconds. Timings are printed (`--nocapture`) and asserted only with
//! generous bounds derived from the session timeout; outcomes are asserted exactly.

mod support;

use std::time::{Duration, Instant};

use sensor_coord::zk::{
    self, Barrier, ChildrenWatch, ConnState, Counter, DataWatch, NodeData, Session, SessionConfig,
};
use support::{
    assert_no_overlap, connected, contender_terms, field, lines, now_us, spawn_contender,
    wait_line, InProcContender,
};
use testkit::{Proc, ZkEnsemble, ZkServer};

/// Waits up to `secs` for a `watch` receiver's value to satisfy a predicate.
macro_rules! until {
    ($rx:expr, $secs:expr, $pred:expr) => {{
        let _ = tokio::time::timeout(Duration::from_secs($secs), $rx.wait_for($pred))
            .await
            .expect(concat!(
                "in time: ",
                stringify!($rx),
                " ",
                stringify!($pred)
            ))
            .expect("watch channel open");
    }};
}

const SESSION: Duration = Duration::from_secs(2);

fn shared_connect(tag: &str) -> String {
    format!(
        "{}{}",
        testkit::shared_zk().connect_string(),
        testkit::unique_chroot(tag)
    )
}

/// Index of the single process that printed `LEADER` after line `skip[i]`, waiting up to
/// `timeout`; panics if two did.
async fn wait_single_leader(procs: &[Proc], skip: &[usize], timeout: Duration) -> usize {
    let mut found = Vec::new();
    testkit::wait_until_async(timeout, || {
        found = procs
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                lines(p)
                    .iter()
                    .skip(skip[*i])
                    .any(|l| l.starts_with("LEADER"))
            })
            .map(|(i, _)| i)
            .collect();
        std::future::ready(!found.is_empty())
    })
    .await;
    assert_eq!(
        found.len(),
        1,
        "expected exactly one new leader, got {found:?}; logs:\n{}",
        procs
            .iter()
            .map(|p| format!("--- {}\n{}", p.name(), p.log_tail(30)))
            .collect::<String>()
    );
    found[0]
}

fn all_terms(procs: &[Proc]) -> Vec<support::Term> {
    procs.iter().flat_map(contender_terms).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_process_is_replaced_after_its_session_times_out() {
    let connect = shared_connect("kill");
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| spawn_contender(&connect, &format!("kill-{i}"), &[]))
        .collect();
    let leader = wait_single_leader(&procs, &[0, 0, 0], Duration::from_secs(30)).await;
    // Let the others line up behind it.
    for p in &procs {
        assert!(wait_line(p, 0, Duration::from_secs(20), |l| l
            .starts_with("STATE Connected"))
        .await
        .is_some());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old_fencing: u64 = field(
        &wait_line(&procs[leader], 0, Duration::from_secs(1), |l| {
            l.starts_with("LEADER")
        })
        .await
        .unwrap(),
        1,
    );
    let skip: Vec<usize> = procs.iter().map(|p| lines(p).len()).collect();
    let killed_at = now_us();
    procs[leader].kill();
    let mut rest: Vec<Proc> = Vec::new();
    let mut rest_skip = Vec::new();
    let killed = procs.remove(leader);
    for (i, p) in procs.into_iter().enumerate() {
        rest_skip.push(skip[if i >= leader { i + 1 } else { i }]);
        rest.push(p);
    }
    let next = wait_single_leader(&rest, &rest_skip, SESSION * 5).await;
    let line = wait_line(&rest[next], rest_skip[next], Duration::from_secs(1), |l| {
        l.starts_with("LEADER")
    })
    .await
    .unwrap();
    let failover_ms = (field::<u128>(&line, 2) - killed_at) / 1000;
    println!("leader SIGKILL -> new leader in {failover_ms} ms (session timeout 2000 ms)");
    assert!(field::<u64>(&line, 1) > old_fencing, "fencing token grows");
    // The new leader cannot appear before the server expired the dead session, and should
    // appear soon after: expiry runs on 200 ms ticks.
    assert!(
        failover_ms < 2 * SESSION.as_millis(),
        "new leader only after {failover_ms} ms"
    );
    let mut all = all_terms(&rest);
    all.extend(contender_terms(&killed));
    assert_no_overlap(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_leader_knows_it_lost_before_acting_after_sigcont() {
    let connect = shared_connect("stop");
    let procs: Vec<Proc> = (0..2)
        .map(|i| spawn_contender(&connect, &format!("stop-{i}"), &[]))
        .collect();
    let leader = wait_single_leader(&procs, &[0, 0], Duration::from_secs(30)).await;
    let other = 1 - leader;
    let (l, o) = (&procs[leader], &procs[other]);
    // Leading and acting.
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || std::future::ready(
            lines(l).iter().filter(|x| x.starts_with("ACT")).count() >= 3
        ))
        .await
    );
    assert!(wait_line(o, 0, Duration::from_secs(20), |x| x
        .starts_with("STATE Connected"))
    .await
    .is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;

    l.pause();
    let paused_at = now_us();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let frozen = lines(l).len();
    let line = wait_line(o, 0, SESSION * 5, |x| x.starts_with("LEADER"))
        .await
        .unwrap_or_else(|| panic!("no new leader; log:\n{}", o.log_tail(30)));
    println!(
        "leader SIGSTOP -> new leader in {} ms",
        (field::<u128>(&line, 2) - paused_at) / 1000
    );
    // The new leader acts for a while before the old one wakes up.
    let acts = |p: &Proc| lines(p).iter().filter(|x| x.starts_with("ACT")).count();
    let before = acts(o);
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || std::future::ready(
            acts(o) >= before + 3
        ))
        .await
    );
    let resumed_at = now_us();
    l.resume();
    let lost = wait_line(l, frozen, Duration::from_secs(10), |x| {
        x.starts_with("LOST")
    })
    .await
    .unwrap_or_else(|| panic!("old leader never reported LOST; log:\n{}", l.log_tail(30)));
    println!(
        "SIGCONT -> old leader reports LOST after {} ms",
        (field::<u128>(&lost, 2).saturating_sub(resumed_at)) / 1000
    );
    // Everything it printed after waking, up to LOST: only actions decided before the freeze
    // (a line can be half-way out when SIGSTOP lands), never one decided after SIGCONT.
    let woke: Vec<String> = lines(l)
        .into_iter()
        .skip(frozen)
        .filter(|x| !x.starts_with("STATE"))
        .collect();
    for x in woke.iter().take_while(|x| !x.starts_with("LOST")) {
        assert!(
            x.starts_with("ACT") && field::<u128>(x, 2) < paused_at,
            "acted as leader after SIGCONT before knowing it lost: {x:?}\n{woke:#?}"
        );
    }
    // It rebuilds its session (generation 2) and queues behind the new leader.
    assert!(
        wait_line(l, frozen, Duration::from_secs(15), |x| x
            .starts_with("STATE Connected 2 "))
        .await
        .is_some(),
        "no new session after expiry; log:\n{}",
        l.log_tail(30)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !lines(l)
            .iter()
            .skip(frozen)
            .any(|x| x.starts_with("LEADER")),
        "old leader took over again while the new one leads"
    );
    assert!(contender_terms(o).last().is_some_and(|t| !t.ended));
    assert_no_overlap(&all_terms(&procs));
}

/// Kills the ensemble's leader server: sessions survive (or recover), a DataWatch sees a
/// change made after the kill, and the election ends with exactly one leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_leader_kill_keeps_sessions_watches_and_one_leader() {
    let mut ens = ZkEnsemble::start(3).expect("ensemble");
    let cs = ens.connect_string();
    let timeout = Duration::from_secs(4);
    let s1 = connected(&cs, timeout).await;
    let s2 = connected(&cs, timeout).await;
    let s3 = connected(&cs, timeout).await;
    let (c1, _t1) = InProcContender::start(s1.clone(), "/election", "c1");
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || std::future::ready(c1.leading()))
            .await
    );
    let (c2, _t2) = InProcContender::start(s2.clone(), "/election", "c2");
    let child = spawn_contender(&cs, "ens-child", &[("ZK_SESSION_TIMEOUT_MS", "4000")]);
    assert!(wait_line(&child, 0, Duration::from_secs(20), |x| x
        .starts_with("STATE Connected"))
    .await
    .is_some());

    let writer = s1.client().unwrap();
    zk::ensure_path(&writer, "/cfg").await.unwrap();
    let mut data = DataWatch::start(&s3, "/cfg");
    let mut kids = ChildrenWatch::start(&s3, "/cfg");
    writer.set_data("/cfg", b"before", None).await.unwrap();
    until!(data, 10, |d| d.text().as_deref() == Some("before"));
    drop(writer);
    let gens: Vec<u64> = [&s1, &s2, &s3]
        .iter()
        .map(|s| s.current_status().generation)
        .collect();

    let li = ens
        .wait_leader(Duration::from_secs(10))
        .expect("a leader server");
    let t0 = Instant::now();
    ens.servers[li].kill();
    assert!(ens.wait_all_running_serving(Duration::from_secs(30)));
    // A change made after the kill reaches the watch.
    zk::retrying(&s1, Duration::from_secs(30), |c| async move {
        c.set_data("/cfg", b"after", None)
            .await
            .map(|_| ())
            .map_err(|e| zk::ZkError::zk("set", "/cfg", e))
    })
    .await
    .expect("write after the kill");
    zk::retrying(&s2, Duration::from_secs(30), |c| async move {
        match c.create("/cfg/eph", b"", &zk::ephemeral()).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
            Err(e) => Err(zk::ZkError::zk("create", "/cfg/eph", e)),
        }
    })
    .await
    .expect("create after the kill");
    until!(data, 20, |d| d.text().as_deref() == Some("after"));
    until!(kids, 20, |c| c.names == ["eph"]);
    let watch_latency = t0.elapsed();
    for s in [&s1, &s2, &s3] {
        s.wait_connected_for(Duration::from_secs(20)).await.unwrap();
    }
    let gens_after: Vec<u64> = [&s1, &s2, &s3]
        .iter()
        .map(|s| s.current_status().generation)
        .collect();
    println!(
        "ensemble leader kill: the watch saw a write made after the kill {watch_latency:?} \
         after the kill; session generations {gens:?} -> {gens_after:?}"
    );
    // Exactly one leader among the three contenders once things settle.
    let one_leader = || {
        let child_leads = contender_terms(&child).last().is_some_and(|t| !t.ended);
        [c1.leading(), c2.leading(), child_leads]
            .iter()
            .filter(|b| **b)
            .count()
            == 1
    };
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || std::future::ready(one_leader()))
            .await
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(one_leader(), "leadership flapped or doubled");
    let mut terms = c1.terms();
    terms.extend(c2.terms());
    terms.extend(contender_terms(&child));
    assert_no_overlap(&terms);
}

/// `zk-gone.invalid` never resolves; the session connects through the other host and
/// survives a SIGKILL + restart of the server, and a barrier wait that was pending across
/// the restart is released when the barrier is removed afterwards (the kazoo bug, §3.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_host_in_connect_string_connects_and_survives_server_restart() {
    let mut server = ZkServer::start().expect("zookeeper");
    let cs = format!("zk-gone.invalid:2181,{}", server.connect_string());
    let timeout = Duration::from_secs(8);
    let s = connected(&cs, timeout).await;
    let other = connected(&cs, timeout).await;
    let client = s.client().unwrap();
    client.create("/eph", b"x", &zk::ephemeral()).await.unwrap();
    drop(client);
    let b_other = Barrier::new(other.clone(), "/barrier");
    b_other.create().await.unwrap();
    let waiter = {
        let b = Barrier::new(s.clone(), "/barrier");
        tokio::spawn(async move { b.wait_removed(Some(Duration::from_secs(60))).await })
    };
    let mut data = DataWatch::start(&s, "/cfg");
    until!(data, 10, |d| *d == NodeData::Missing);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());

    server.kill();
    let mut status = s.status();
    until!(status, 10, |st| st.state == ConnState::Suspended);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    server.restart().expect("restart");
    s.wait_connected_for(Duration::from_secs(30)).await.unwrap();
    println!(
        "standalone restart: reconnected {:?} after relaunch",
        t0.elapsed()
    );
    assert_eq!(
        s.current_status().generation,
        1,
        "same session after the restart"
    );
    assert!(
        s.client()
            .unwrap()
            .check_stat("/eph")
            .await
            .unwrap()
            .is_some(),
        "ephemeral survived with its session"
    );
    assert!(!waiter.is_finished(), "barrier still up");
    assert!(zk::retrying(&other, Duration::from_secs(20), |_| async {
        b_other.remove().await
    })
    .await
    .unwrap());
    within(10, waiter)
        .await
        .unwrap()
        .expect("barrier wait released after the restart");
    let c = other
        .wait_connected_for(Duration::from_secs(20))
        .await
        .unwrap();
    c.create("/cfg", b"7", &zk::persistent()).await.unwrap();
    until!(data, 10, |d| d.text().as_deref() == Some("7"));
}

/// The server goes away for less than the session timeout: both sessions survive, the
/// leader is revoked on suspension (Curator's rule) and must not leave its old contender
/// znode behind, or it would block itself and everyone else forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_leader_steps_down_and_the_election_recovers_after_reconnect() {
    let mut server = ZkServer::start().expect("zookeeper");
    let cs = server.connect_string();
    let timeout = Duration::from_secs(8);
    let s1 = connected(&cs, timeout).await;
    let s2 = connected(&cs, timeout).await;
    let (c1, _t1) = InProcContender::start(s1.clone(), "/election", "c1");
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || std::future::ready(c1.leading()))
            .await
    );
    let (c2, _t2) = InProcContender::start(s2.clone(), "/election", "c2");
    let child = spawn_contender(&cs, "susp-child", &[("ZK_SESSION_TIMEOUT_MS", "8000")]);
    assert!(wait_line(&child, 0, Duration::from_secs(20), |x| x
        .starts_with("STATE Connected"))
    .await
    .is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.kill();
    assert!(
        testkit::wait_until_async(Duration::from_secs(5), || std::future::ready(!c1.leading()))
            .await,
        "leader still leads while disconnected"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.restart().expect("restart");
    for s in [&s1, &s2] {
        s.wait_connected_for(Duration::from_secs(30)).await.unwrap();
        assert_eq!(s.current_status().generation, 1, "session survived");
    }
    let one_leader = || {
        let child_leads = contender_terms(&child).last().is_some_and(|t| !t.ended);
        [c1.leading(), c2.leading(), child_leads]
            .iter()
            .filter(|b| **b)
            .count()
            == 1
    };
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || std::future::ready(one_leader()))
            .await,
        "no leader after the reconnect: contenders {:?}",
        s1.client().unwrap().list_children("/election").await
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(one_leader(), "leadership flapped or doubled");
    // Only live contenders' znodes remain: one per contender.
    let names = s1
        .client()
        .unwrap()
        .list_children("/election")
        .await
        .unwrap();
    assert_eq!(names.len(), 3, "stale contender znodes: {names:?}");
    let mut terms = c1.terms();
    terms.extend(c2.terms());
    terms.extend(contender_terms(&child));
    assert_no_overlap(&terms);
}

/// A process that starts while ZooKeeper is down does not fail: the session, a data watch
/// and a counter increment all wait and complete once the server comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_started_while_zookeeper_is_down_connects_when_it_comes_up() {
    let mut server = ZkServer::start().expect("zookeeper");
    server.kill();
    let cs = format!("zk-gone.invalid:2181,{}", server.connect_string());
    let s = Session::start(SessionConfig::new(cs, SESSION));
    let mut data = DataWatch::start(&s, "/cfg");
    let inc = {
        let c = Counter::new(s.clone(), "/counter");
        tokio::spawn(async move { c.increment().await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.current_status().state, ConnState::Connecting);
    assert_eq!(*data.borrow(), NodeData::Unknown);
    assert!(!inc.is_finished());
    let t0 = Instant::now();
    server.restart().expect("restart");
    s.wait_connected_for(Duration::from_secs(30)).await.unwrap();
    println!(
        "late ZooKeeper: session established {:?} after the server came up",
        t0.elapsed()
    );
    assert_eq!(s.current_status().generation, 1);
    assert_eq!(within(20, inc).await.unwrap().unwrap(), 1);
    until!(data, 10, |d| *d == NodeData::Missing);
    s.client()
        .unwrap()
        .create("/cfg", b"up", &zk::persistent())
        .await
        .unwrap();
    until!(data, 10, |d| d.text().as_deref() == Some("up"));
}

/// Increments in flight while the ensemble's leader server dies: the counter ends at exactly
/// the number of increments that reported success (none lost, none counted twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_increments_across_ensemble_leader_kill_are_exact() {
    let mut ens = ZkEnsemble::start(3).expect("ensemble");
    let cs = ens.connect_string();
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(connected(&cs, Duration::from_secs(4)).await);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = sessions
        .iter()
        .map(|s| {
            let c = Counter::new(s.clone(), "/counter");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ok = 0i64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.increment().await.expect("increment");
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let li = ens
        .wait_leader(Duration::from_secs(10))
        .expect("leader server");
    ens.servers[li].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += within(30, t).await.unwrap();
    }
    let value = Counter::new(sessions[0].clone(), "/counter")
        .get()
        .await
        .unwrap();
    println!("counter across leader kill: {total} increments reported, value {value}");
    assert_eq!(value, total);
}

/// The (standalone) server freezes (SIGSTOP, like a long GC pause) for twice the session
/// timeout: the leader stops believing it leads within its lease, and after SIGCONT the
/// sessions recover (kept or rebuilt) and exactly one contender leads, never two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_revokes_leadership_and_the_election_recovers() {
    let server = ZkServer::start().expect("zookeeper");
    let cs = server.connect_string();
    let s1 = connected(&cs, SESSION).await;
    let s2 = connected(&cs, SESSION).await;
    let (c1, _t1) = InProcContender::start(s1.clone(), "/election", "c1");
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || std::future::ready(c1.leading()))
            .await
    );
    let (c2, _t2) = InProcContender::start(s2.clone(), "/election", "c2");
    let mut data = DataWatch::start(&s2, "/cfg");
    until!(data, 10, |d| *d == NodeData::Missing);
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.pause();
    let t0 = Instant::now();
    let bound = sensor_coord::zk::election::lease_length(SESSION) + Duration::from_millis(500);
    assert!(
        testkit::wait_until_async(bound, || std::future::ready(!c1.leading())).await,
        "leader still believes it leads {:?} into the freeze",
        t0.elapsed()
    );
    println!(
        "frozen server: leader stepped down after {:?}",
        t0.elapsed()
    );
    tokio::time::sleep(SESSION * 2).await;
    server.resume();
    let t1 = Instant::now();
    let one_leader = || [c1.leading(), c2.leading()].iter().filter(|b| **b).count() == 1;
    assert!(
        testkit::wait_until_async(Duration::from_secs(20), || std::future::ready(one_leader()))
            .await,
        "no leader after the server woke up"
    );
    println!(
        "frozen server: a leader again {:?} after SIGCONT; generations {} {}",
        t1.elapsed(),
        s1.current_status().generation,
        s2.current_status().generation
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(one_leader(), "leadership flapped or doubled");
    let mut terms = c1.terms();
    terms.extend(c2.terms());
    assert_no_overlap(&terms);
    let c = s1
        .wait_connected_for(Duration::from_secs(20))
        .await
        .unwrap();
    c.create("/cfg", b"awake", &zk::persistent()).await.unwrap();
    until!(data, 10, |d| d.text().as_deref() == Some("awake"));
}

/// Two of three servers down for twice the session timeout: nobody believes it leads during
/// the outage; afterwards a leader exists again, counters count and watches deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_revokes_leadership_and_everything_recovers() {
    let mut ens = ZkEnsemble::start(3).expect("ensemble");
    let cs = ens.connect_string();
    let s_lead = connected(&cs, SESSION).await;
    let s_work = connected(&cs, SESSION).await;
    let (inproc, _task) = InProcContender::start(s_lead.clone(), "/election-a", "inproc");
    let child = spawn_contender(&cs, "quorum-child", &[]);
    assert!(
        testkit::wait_until_async(Duration::from_secs(10), || std::future::ready(
            inproc.leading()
        ))
        .await
    );
    let first = wait_line(&child, 0, Duration::from_secs(30), |x| {
        x.starts_with("LEADER")
    })
    .await
    .unwrap_or_else(|| panic!("child never led:\n{}", child.log_tail(30)));
    let counter = Counter::new(s_work.clone(), "/counter");
    assert_eq!(counter.increment().await.unwrap(), 1);
    let mut data = DataWatch::start(&s_work, "/cfg");
    let mut kids = ChildrenWatch::start(&s_work, "/members");
    until!(data, 10, |d| *d == NodeData::Missing);

    let li = ens
        .wait_leader(Duration::from_secs(10))
        .expect("leader server");
    let down = [li, (li + 1) % 3];
    let skip = lines(&child).len();
    let outage_start = now_us();
    let t0 = Instant::now();
    for i in down {
        ens.servers[i].kill();
    }
    // In-process leader: is_held() turns false at once on suspension, and at the latest when
    // the lease (2/3 of the session timeout) runs out; 500 ms slack for a loaded machine.
    let bound = sensor_coord::zk::election::lease_length(SESSION) + Duration::from_millis(500);
    assert!(
        testkit::wait_until_async(bound, || std::future::ready(!inproc.leading())).await,
        "in-process leader still believes it leads {:?} into the outage",
        t0.elapsed()
    );
    let inproc_lost = t0.elapsed().as_millis();
    let lost = wait_line(&child, skip, SESSION * 2, |x| x.starts_with("LOST"))
        .await
        .unwrap_or_else(|| panic!("child leader never reported LOST:\n{}", child.log_tail(30)));
    let child_lost = (field::<u128>(&lost, 2) as f64 - outage_start as f64) / 1000.0;
    println!(
        "quorum loss: in-process leader saw is_held() false {inproc_lost} ms into the outage, \
         child reported LOST after {child_lost:.0} ms"
    );
    // Keep quorum away for twice the session timeout, watching that nobody leads.
    while t0.elapsed() < SESSION * 2 {
        assert!(
            !inproc.leading(),
            "in-process contender leads without quorum"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outage_end = now_us();
    for i in down {
        ens.servers[i].start_again().expect("restart");
    }
    assert!(ens.wait_all_running_serving(Duration::from_secs(60)));
    let t1 = Instant::now();
    // Everyone's terms: none during the outage.
    for t in inproc.terms().iter().chain(contender_terms(&child).iter()) {
        assert!(
            t.last < outage_start + SESSION.as_micros() || t.start > outage_end,
            "leadership believed during the outage: {t:?}"
        );
    }
    // Recovery: leaders again (fencing grows), counter counts, watches deliver.
    assert!(
        testkit::wait_until_async(Duration::from_secs(30), || std::future::ready(
            inproc.leading()
        ))
        .await
    );
    let again = wait_line(&child, skip, Duration::from_secs(30), |x| {
        x.starts_with("LEADER")
    })
    .await
    .unwrap_or_else(|| panic!("child never led again:\n{}", child.log_tail(30)));
    assert!(field::<u64>(&again, 1) > field::<u64>(&first, 1));
    let leaders_back = t1.elapsed();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), counter.increment())
            .await
            .expect("increment in time")
            .unwrap(),
        2
    );
    let c = s_work
        .wait_connected_for(Duration::from_secs(30))
        .await
        .unwrap();
    zk::ensure_path(&c, "/members").await.unwrap();
    c.create("/members/m1", b"", &zk::ephemeral())
        .await
        .unwrap();
    c.create("/cfg", b"back", &zk::persistent()).await.unwrap();
    until!(data, 10, |d| d.text().as_deref() == Some("back"));
    until!(kids, 10, |k| k.names == ["m1"]);
    println!(
        "quorum back: leaders again {leaders_back:?} after all servers served; generations \
         lead={} work={}",
        s_lead.current_status().generation,
        s_work.current_status().generation
    );
    // Separate elections: check each on its own.
    assert_no_overlap(&inproc.terms());
    assert_no_overlap(&contender_terms(&child));
}

/// Expires our session for real: a proxy cuts it off from the server (a partition) for
/// twice the session timeout while another session carries on. The Session builds a new one
/// (generation 2), watches deliver the current state (including changes made while we were
/// cut off), and a barrier wait pending across the expiry returns when the barrier is
/// removed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_builds_a_new_session_and_recipes_recover() {
    let chroot = testkit::unique_chroot("expiry");
    let server = testkit::shared_zk();
    let proxy = support::Partition::start(server.port()).await;
    let cs = format!("{}{chroot}", proxy.connect_string());
    let s = connected(&cs, SESSION).await;
    let other = connected(&format!("{}{chroot}", server.connect_string()), SESSION).await;
    let oc = other.client().unwrap();
    zk::ensure_path(&oc, "/members").await.unwrap();
    oc.create("/cfg", b"v1", &zk::persistent()).await.unwrap();
    let b_other = Barrier::new(other.clone(), "/barrier");
    b_other.create().await.unwrap();
    let mut data = DataWatch::start(&s, "/cfg");
    let mut kids = ChildrenWatch::start(&s, "/members");
    until!(data, 10, |d| d.text().as_deref() == Some("v1"));
    until!(kids, 10, |k| k.known && k.names.is_empty());
    let waiter = {
        let b = Barrier::new(s.clone(), "/barrier");
        tokio::spawn(async move { b.wait_removed(Some(Duration::from_secs(60))).await })
    };
    let mine = s.client().unwrap();
    mine.create("/members/mine", b"", &zk::ephemeral())
        .await
        .unwrap();
    drop(mine);
    until!(kids, 10, |k| k.names == ["mine"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    let mut status = s.status();
    let old_id = s.current_status().session_id;

    // Partition: the server expires our session (its ephemeral goes) while we are away.
    proxy.cut();
    let cut_at = Instant::now();
    let oc2 = oc.clone();
    assert!(
        testkit::wait_until_async(SESSION * 5, || {
            let oc = oc2.clone();
            async move { oc.check_stat("/members/mine").await.ok() == Some(None) }
        })
        .await,
        "server did not expire the partitioned session"
    );
    println!(
        "partition: server expired our session {:?} after the cut",
        cut_at.elapsed()
    );
    // Changes while our session is gone.
    oc.set_data("/cfg", b"v2", None).await.unwrap();
    oc.create("/members/a", b"", &zk::persistent())
        .await
        .unwrap();
    proxy.heal();
    until!(status, 10, |st| st.state == ConnState::Connected
        && st.generation > 1);
    let st = s.current_status();
    assert_eq!(st.generation, 2, "a new session was built");
    assert_ne!(st.session_id, old_id);
    // Current state after recovery, then later changes.
    until!(data, 10, |d| d.text().as_deref() == Some("v2"));
    until!(kids, 10, |k| k.names == ["a"]);
    oc.set_data("/cfg", b"v3", None).await.unwrap();
    until!(data, 10, |d| d.text().as_deref() == Some("v3"));
    assert!(!waiter.is_finished(), "barrier still up");
    assert!(b_other.remove().await.unwrap());
    within(10, waiter)
        .await
        .unwrap()
        .expect("barrier wait released after the new session");
    // Our session is usable for writes again.
    let c = s.client().unwrap();
    c.create("/members/b", b"", &zk::ephemeral()).await.unwrap();
    until!(kids, 10, |k| k.names == ["a", "b"]);
}

async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("condition reached in time")
}
