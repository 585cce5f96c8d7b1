//! The fault kinds, the seeded schedule, and how each fault is injected and healed.
//!
//! The schedule is drawn from the seed alone: the order of fault kinds and every random
//! parameter (hold times, SIGKILL or SIGTERM, which follower). Targets that depend on the
//! run — who leads now, which ZooKeeper server leads — are resolved when the fault fires.
//! Faults run one at a time and each is healed before the next, so at most one ZooKeeper
//! server is ever down, except during the one deliberate quorum loss.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::stack::{describe, Stack, Timing};

/// Whom a node fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The node ZooKeeper's election names leader at that moment.
    Leader,
    /// Another node, the `k`-th of the followers (modulo their number).
    Follower(usize),
}

/// One fault with its parameters (all drawn from the seed). `role`: whom it hits; `down`:
/// how long the process stays down before its restart; `hold`: how long the fault lasts
/// before it is healed; `kill`: SIGKILL (true) or SIGTERM (false).
#[allow(missing_docs)] // the fields are described above, once
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// SIGKILL a sensor-node, restart it after `down`.
    NodeKill { role: Role, down: Duration },
    /// SIGTERM a sensor-node (it must exit 0), restart it after `down`.
    NodeTerm { role: Role, down: Duration },
    /// SIGSTOP a sensor-node for `hold`, then SIGCONT (longer than the session timeout:
    /// a leader comes back deposed).
    NodePause { role: Role, hold: Duration },
    /// Cut a node's ZooKeeper connections for `hold`, then heal.
    Partition { role: Role, hold: Duration },
    /// Take one ZooKeeper server down for `down`: the ensemble leader when `leader`.
    ZkRestart {
        leader: bool,
        kill: bool,
        down: Duration,
    },
    /// Take two of the three servers (the ensemble leader among them) down for `down`:
    /// no quorum.
    QuorumLoss { down: Duration },
    /// Take Redis down for `down`.
    RedisRestart { kill: bool, down: Duration },
    /// Take the API down for `down`.
    ApiRestart { kill: bool, down: Duration },
}

impl Fault {
    /// Short name of the kind, for the coverage list.
    pub fn kind(&self) -> String {
        let role = |r: &Role| match r {
            Role::Leader => "leader",
            Role::Follower(_) => "follower",
        };
        match self {
            Fault::NodeKill { role: r, .. } => format!("SIGKILL {}", role(r)),
            Fault::NodeTerm { role: r, .. } => format!("SIGTERM {}", role(r)),
            Fault::NodePause { role: r, .. } => format!("SIGSTOP {}", role(r)),
            Fault::Partition { role: r, .. } => format!("partition {}", role(r)),
            Fault::ZkRestart { leader, .. } => {
                format!(
                    "restart ZooKeeper {}",
                    if *leader { "leader" } else { "follower" }
                )
            }
            Fault::QuorumLoss { .. } => "ZooKeeper quorum loss".into(),
            Fault::RedisRestart { .. } => "Redis restart".into(),
            Fault::ApiRestart { .. } => "API restart".into(),
        }
    }
}

/// One injected fault as it happened.
#[derive(Clone, Debug)]
pub struct Injected {
    /// Seconds since the run started, at injection.
    pub at: f64,
    /// Wall-clock ms at injection (to relate to `taken_at`).
    pub at_ms: i64,
    /// What was done (`SIGKILL leader n3, restarted after 1.2 s`).
    pub what: String,
    /// Node hit, if a node was.
    pub node: Option<String>,
    /// Whether it was a SIGKILL of a node (its last log lines may be lost).
    pub node_killed: bool,
    /// Seconds from the heal until the API stored a new round (`None`: not within the bound).
    pub recovered_in: Option<f64>,
}

/// The seeded schedule: every kind the suite must cover, in a random order, then random
/// faults (no second quorum loss) for as long as the run lasts.
pub struct Schedule {
    rng: StdRng,
    deck: Vec<Fault>,
    timing: Timing,
}

impl Schedule {
    /// The schedule of `seed`.
    pub fn new(seed: u64, timing: Timing) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = timing.session;
        let mut deck = Vec::new();
        for leader in [true, false] {
            let role = |rng: &mut StdRng| {
                if leader {
                    Role::Leader
                } else {
                    Role::Follower(rng.random_range(0..4))
                }
            };
            let r = role(&mut rng);
            deck.push(Fault::NodeKill {
                role: r,
                down: secs(&mut rng, 0.3, 2.0),
            });
            let r = role(&mut rng);
            deck.push(Fault::NodeTerm {
                role: r,
                down: secs(&mut rng, 0.3, 2.0),
            });
            let r = role(&mut rng);
            // Longer than the session timeout: the session expires while frozen.
            deck.push(Fault::NodePause {
                role: r,
                hold: s.mul_f64(rng.random_range(1.5..2.5)),
            });
            deck.push(Fault::ZkRestart {
                leader,
                kill: rng.random_bool(0.7),
                down: secs(&mut rng, 1.0, 4.0),
            });
        }
        deck.push(Fault::NodePause {
            role: Role::Leader,
            hold: s.mul_f64(rng.random_range(0.2..0.6)),
        });
        deck.push(Fault::Partition {
            role: Role::Leader,
            hold: s.mul_f64(rng.random_range(1.5..2.5)),
        });
        deck.push(Fault::QuorumLoss {
            down: secs(&mut rng, 2.0, 5.0),
        });
        deck.push(Fault::RedisRestart {
            kill: rng.random_bool(0.5),
            down: secs(&mut rng, 0.5, 3.0),
        });
        deck.push(Fault::ApiRestart {
            kill: rng.random_bool(0.5),
            down: secs(&mut rng, 0.5, 3.0),
        });
        deck.shuffle(&mut rng);
        deck.reverse(); // popped from the end
        Schedule { rng, deck, timing }
    }

    /// The next fault: the covering deck first, then random ones.
    pub fn next_fault(&mut self) -> Fault {
        if let Some(f) = self.deck.pop() {
            return f;
        }
        let rng = &mut self.rng;
        let s = self.timing.session;
        let role = if rng.random_bool(0.5) {
            Role::Leader
        } else {
            Role::Follower(rng.random_range(0..4))
        };
        match rng.random_range(0..8) {
            0 => Fault::NodeKill {
                role,
                down: secs(rng, 0.3, 2.0),
            },
            1 => Fault::NodeTerm {
                role,
                down: secs(rng, 0.3, 2.0),
            },
            2 => Fault::NodePause {
                role,
                hold: s.mul_f64(rng.random_range(0.2..2.5)),
            },
            3 => Fault::Partition {
                role,
                hold: s.mul_f64(rng.random_range(0.3..2.5)),
            },
            4 => Fault::ZkRestart {
                leader: rng.random_bool(0.5),
                kill: rng.random_bool(0.7),
                down: secs(rng, 1.0, 4.0),
            },
            5 => Fault::RedisRestart {
                kill: rng.random_bool(0.5),
                down: secs(rng, 0.5, 3.0),
            },
            6 => Fault::ApiRestart {
                kill: rng.random_bool(0.5),
                down: secs(rng, 0.5, 3.0),
            },
            _ => Fault::NodeKill {
                role,
                down: secs(rng, 0.3, 2.0),
            },
        }
    }

    /// Pause between two faults (after the previous one healed).
    pub fn gap(&mut self) -> Duration {
        secs(&mut self.rng, 0.5, 2.0)
    }

    /// Kinds the covering deck still holds (not yet injected).
    pub fn uncovered(&self) -> Vec<String> {
        self.deck.iter().map(Fault::kind).collect()
    }
}

fn secs(rng: &mut StdRng, lo: f64, hi: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(lo..hi))
}

/// Wall-clock ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Resolves a role to a node index, given the current leader's id.
fn target(stack: &Stack, role: Role, leader: Option<&str>) -> Option<usize> {
    let leader_idx = leader.and_then(|l| stack.nodes.iter().position(|n| n.name == l));
    match role {
        Role::Leader => leader_idx,
        Role::Follower(k) => {
            let followers: Vec<usize> = (0..stack.nodes.len())
                .filter(|i| Some(*i) != leader_idx)
                .collect();
            followers.get(k % followers.len().max(1)).copied()
        }
    }
}

/// Injects `fault`, holds it, heals it. Returns a description and the node it hit, or an
/// error when the stack could not be healed (a harness failure, e.g. a server that does
/// not come back). `leader` is the current leader's node id.
pub fn inject(
    stack: &mut Stack,
    fault: &Fault,
    leader: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    let role_name = |r: Role| match r {
        Role::Leader => "leader",
        Role::Follower(_) => "follower",
    };
    let sleep = std::thread::sleep;
    match *fault {
        Fault::NodeKill { role, down } => {
            let i = target(stack, role, leader).ok_or_else(no_leader)?;
            Stack::kill(&mut stack.nodes[i]);
            sleep(down);
            stack.start_node(i)?;
            let name = stack.nodes[i].name.clone();
            Ok((
                format!(
                    "SIGKILL {} {name}, restarted after {:.1} s",
                    role_name(role),
                    down.as_secs_f64()
                ),
                Some(name),
            ))
        }
        Fault::NodeTerm { role, down } => {
            let i = target(stack, role, leader).ok_or_else(no_leader)?;
            let status = Stack::terminate(&mut stack.nodes[i], Duration::from_secs(15));
            let name = stack.nodes[i].name.clone();
            let how = status.map(describe).unwrap_or_else(|| "no exit".into());
            if how != "exit 0" {
                stack.crashes.push((
                    name.clone(),
                    format!("on SIGTERM: {how} (a clean shutdown exits 0)"),
                    testkit::log_tail(&stack.nodes[i].log, 15),
                ));
            }
            sleep(down);
            stack.start_node(i)?;
            Ok((
                format!(
                    "SIGTERM {} {name} ({how}), restarted after {:.1} s",
                    role_name(role),
                    down.as_secs_f64()
                ),
                Some(name),
            ))
        }
        Fault::NodePause { role, hold } => {
            let i = target(stack, role, leader).ok_or_else(no_leader)?;
            let node = &stack.nodes[i];
            if let Some(p) = &node.proc {
                p.pause();
                sleep(hold);
                p.resume();
            }
            Ok((
                format!(
                    "SIGSTOP {} {} for {:.1} s ({} the session timeout), SIGCONT",
                    role_name(role),
                    node.name,
                    hold.as_secs_f64(),
                    if hold > stack_session(stack) {
                        "longer than"
                    } else {
                        "within"
                    }
                ),
                Some(node.name.clone()),
            ))
        }
        Fault::Partition { role, hold } => {
            let i = target(stack, role, leader).ok_or_else(no_leader)?;
            stack.partition(i, true);
            sleep(hold);
            stack.partition(i, false);
            Ok((
                format!(
                    "partition {} {} from ZooKeeper for {:.1} s",
                    role_name(role),
                    stack.nodes[i].name,
                    hold.as_secs_f64()
                ),
                Some(stack.nodes[i].name.clone()),
            ))
        }
        Fault::ZkRestart {
            leader: zk_leader,
            kill,
            down,
        } => {
            let li = stack
                .zk
                .wait_leader(Duration::from_secs(30))
                .ok_or_else(|| anyhow::anyhow!("no ZooKeeper leader"))?;
            let i = if zk_leader {
                li
            } else {
                (li + 1) % stack.zk.servers.len()
            };
            let s = &mut stack.zk.servers[i];
            if kill {
                s.kill();
            } else {
                s.stop();
            }
            sleep(down);
            s.restart()?;
            Ok((
                format!(
                    "{} ZooKeeper server {} ({}), restarted after {:.1} s",
                    if kill { "SIGKILL" } else { "SIGTERM" },
                    i + 1,
                    if zk_leader {
                        "ensemble leader"
                    } else {
                        "follower"
                    },
                    down.as_secs_f64()
                ),
                None,
            ))
        }
        Fault::QuorumLoss { down } => {
            let li = stack.zk.wait_leader(Duration::from_secs(30)).unwrap_or(0);
            // The leader and one follower: the survivor alone cannot serve.
            let pair = [li, (li + 1) % 3];
            for &i in &pair {
                stack.zk.servers[i].kill();
            }
            sleep(down);
            for &i in &pair {
                stack.zk.servers[i].start_again()?;
            }
            for &i in &pair {
                stack.zk.servers[i].wait_serving(Duration::from_secs(60))?;
            }
            Ok((
                format!(
                    "quorum loss: SIGKILL ZooKeeper servers {} and {} for {:.1} s",
                    pair[0] + 1,
                    pair[1] + 1,
                    down.as_secs_f64()
                ),
                None,
            ))
        }
        Fault::RedisRestart { kill, down } => {
            if kill {
                stack.redis.kill();
            } else {
                stack.redis.stop();
            }
            sleep(down);
            stack.redis.restart()?;
            Ok((
                format!(
                    "{} Redis, restarted after {:.1} s",
                    if kill { "SIGKILL" } else { "SIGTERM" },
                    down.as_secs_f64()
                ),
                None,
            ))
        }
        Fault::ApiRestart { kill, down } => {
            let how = if kill {
                Stack::kill(&mut stack.api);
                "SIGKILL".to_string()
            } else {
                let status = Stack::terminate(&mut stack.api, Duration::from_secs(15));
                let how = status.map(describe).unwrap_or_else(|| "no exit".into());
                if how != "exit 0" {
                    stack.crashes.push((
                        "api".into(),
                        format!("on SIGTERM: {how} (a clean shutdown exits 0)"),
                        testkit::log_tail(&stack.api.log, 15),
                    ));
                }
                format!("SIGTERM ({how})")
            };
            sleep(down);
            stack.start_api()?;
            Ok((
                format!("{how} API, restarted after {:.1} s", down.as_secs_f64()),
                None,
            ))
        }
    }
}

fn stack_session(stack: &Stack) -> Duration {
    stack.timing().session
}

fn no_leader() -> anyhow::Error {
    anyhow::anyhow!("no leader to target (none elected within the wait)")
}
