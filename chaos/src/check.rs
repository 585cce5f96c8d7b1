//! The checker: what the API stored, what ZooKeeper holds and what the nodes logged must
//! agree with the delivery guarantees. Each invariant gives a [`Verdict`]; any failed one
//! is a bug in the system (the suite's exit status says so).
//!
//! Evidence comes from the nodes' JSON logs (`RUST_LOG=info,sensor_node=debug,sensor_coord=debug`):
//! * `round committed` (leader): round, value, samples, fencing — one line per commit;
//! * `round readings averaged` (leader, debug): round, barrier (czxid of the round's last
//!   barrier), since (zxid of the previous commit) and the sensors `included`;
//! * `reading taken` (every sensor, debug): barrier it was taken for, value.
//!
//! A sensor's reading counts for round `r` iff it was written under a barrier of round `r`:
//! those have czxids in `[since, barrier]` of the leader's line (a barrier is created by the
//! previous commit — then its czxid is `since` — or after it, and a reading is written only
//! while its barrier is up). A SIGKILL
//! between a write and its log line destroys that evidence: such a round is counted as
//! unverifiable (and listed), never passed silently, and only when the killed process is
//! the one whose line is missing and the kill was near the round.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::faults::Injected;
use crate::observe::Stored;

/// One invariant's result.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The invariant.
    pub name: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// Evidence: what was checked, or what is wrong.
    pub detail: String,
}

/// A leader's commit line.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// Leader id.
    pub node: String,
    /// Round.
    pub round: u64,
    /// Average.
    pub value: f64,
    /// Readings averaged.
    pub samples: u64,
    /// Fencing token.
    pub fencing: u64,
}

/// A leader's per-round list of counted sensors.
#[derive(Clone, Debug)]
pub struct Averaged {
    /// Leader id.
    pub node: String,
    /// Round.
    pub round: u64,
    /// czxid of the round's (last) barrier.
    pub barrier: i64,
    /// zxid of the previous round's commit.
    pub since: i64,
    /// Sensors counted.
    pub included: Vec<String>,
    /// Their readings as the leader averaged them (same order), when logged.
    pub values: Option<Vec<f64>>,
}

impl Averaged {
    /// Whether a barrier with czxid `b` belongs to this round: created by the previous
    /// round's commit (czxid `since`) or after it, up to the round's last barrier.
    pub fn has_barrier(&self, b: i64) -> bool {
        b >= self.since && b <= self.barrier
    }
}

/// A sensor's published reading.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Barrier it was taken for.
    pub barrier: i64,
    /// Value.
    pub value: f64,
}

/// Everything the nodes logged that the checker uses.
#[derive(Default)]
pub struct Logs {
    /// Commit lines, in file order per node.
    pub commits: Vec<Commit>,
    /// Commit attempts (`round commit sent`, logged before the answer), in file order.
    pub attempts: Vec<Commit>,
    /// Per-round readings of a leader, keyed by (leader, round): from `round readings
    /// averaged`, or from its last `round commit sent` when the answer never came.
    pub averaged: HashMap<(String, u64), Averaged>,
    /// Readings per sensor, in file order.
    pub readings: HashMap<String, Vec<Reading>>,
    /// Barriers for which a sensor's publish failed with an unknown outcome (the write may
    /// have landed unlogged), per sensor.
    pub publish_failed: HashMap<String, Vec<i64>>,
    /// Deliveries the API refused for a stale fencing token (a deposed leader fenced off).
    pub stale_refused: usize,
    /// Readings dropped because their round had closed before they could be written.
    pub late_readings: usize,
}

impl Logs {
    /// Parses the JSON log of node `node` (appended across its restarts).
    pub fn add_file(&mut self, node: &str, path: &Path) -> std::io::Result<()> {
        let text = std::fs::read_to_string(path)?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let f = &v["fields"];
            match f["message"].as_str() {
                Some("round committed") => {
                    if let (Some(round), Some(value), Some(samples), Some(fencing)) = (
                        f["round"].as_u64(),
                        f["value"].as_f64(),
                        f["samples"].as_u64(),
                        f["fencing"].as_u64(),
                    ) {
                        self.commits.push(Commit {
                            node: node.to_string(),
                            round,
                            value,
                            samples,
                            fencing,
                        });
                    }
                }
                Some(m @ ("round readings averaged" | "round commit sent")) => {
                    if m == "round commit sent" {
                        if let (Some(round), Some(value), Some(samples), Some(fencing)) = (
                            f["round"].as_u64(),
                            f["value"].as_f64(),
                            f["samples"].as_u64(),
                            f["fencing"].as_u64(),
                        ) {
                            self.attempts.push(Commit {
                                node: node.to_string(),
                                round,
                                value,
                                samples,
                                fencing,
                            });
                        }
                    }
                    let included = f["included"]
                        .as_str()
                        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok());
                    if let (Some(round), Some(barrier), Some(since), Some(included)) = (
                        f["round"].as_u64(),
                        f["barrier"].as_i64(),
                        f["since"].as_i64(),
                        included,
                    ) {
                        self.averaged.insert(
                            (node.to_string(), round),
                            Averaged {
                                node: node.to_string(),
                                round,
                                barrier,
                                since,
                                included,
                                values: f["values"]
                                    .as_str()
                                    .and_then(|s| serde_json::from_str::<Vec<f64>>(s).ok()),
                            },
                        );
                    }
                }
                Some("reading taken") => {
                    if let (Some(barrier), Some(value)) =
                        (f["barrier"].as_i64(), f["value"].as_f64())
                    {
                        self.readings
                            .entry(node.to_string())
                            .or_default()
                            .push(Reading { barrier, value });
                    }
                }
                Some("publishing the reading failed") => {
                    if let Some(barrier) = f["barrier"].as_i64() {
                        self.publish_failed
                            .entry(node.to_string())
                            .or_default()
                            .push(barrier);
                    }
                }
                Some(m) if m.starts_with("API rejected our fencing token") => {
                    self.stale_refused += 1
                }
                Some(m) if m.starts_with("reading too late") => self.late_readings += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `sensor` had a publish fail with an unknown outcome in the round of `avg`.
    fn publish_failed_in(&self, sensor: &str, avg: &Averaged) -> bool {
        self.publish_failed
            .get(sensor)
            .is_some_and(|b| b.iter().any(|b| avg.has_barrier(*b)))
    }

    /// The value `sensor` published for the round `avg` describes: its last reading
    /// taken under a barrier of that round.
    fn reading_for(&self, sensor: &str, avg: &Averaged) -> Option<f64> {
        self.readings
            .get(sensor)?
            .iter()
            .rev()
            .find(|r| avg.has_barrier(r.barrier))
            .map(|r| r.value)
    }
}

/// ZooKeeper's round bookkeeping at the end of the run (after the drain).
#[derive(Clone, Debug)]
pub struct ZkEnd {
    /// `/rounds/last`.
    pub last_committed: Option<u64>,
    /// Children of `/rounds/outbox`.
    pub outbox: Option<usize>,
    /// Children of `/rounds/conflicts`.
    pub conflicts: Option<usize>,
}

/// Inputs of the checker.
pub struct Evidence<'a> {
    /// The API's stored history (any order).
    pub history: &'a [Stored],
    /// The nodes' logs.
    pub logs: &'a Logs,
    /// ZooKeeper at the end.
    pub zk: &'a ZkEnd,
    /// Faults injected (to excuse log lines a SIGKILL destroyed).
    pub faults: &'a [Injected],
    /// Exits nobody caused: (process, how, log tail).
    pub crashes: &'a [(String, String, String)],
    /// Faults after whose heal no new round was stored within the bound.
    pub stalled: &'a [String],
}

/// Rounds whose evidence was lost (a SIGKILL, or a write whose answer never came), by invariant.
#[derive(Default, Debug)]
pub struct Unverifiable {
    /// Stored rounds without their leader's commit line.
    pub commit_lines: Vec<u64>,
    /// Stored rounds with a counted reading its sensor did not log (killed, or answer lost).
    pub readings: Vec<u64>,
}

/// Whether `node` was SIGKILLed within `[from_ms, to_ms]`.
fn killed_near(faults: &[Injected], node: &str, from_ms: i64, to_ms: i64) -> bool {
    faults.iter().any(|f| {
        f.node_killed && f.node.as_deref() == Some(node) && (from_ms..=to_ms).contains(&f.at_ms)
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// "3, 7-9, 12" (at most 20 items, then "…").
fn ranges(rounds: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < rounds.len() {
        let start = rounds[i];
        let mut end = start;
        while i + 1 < rounds.len() && rounds[i + 1] == end + 1 {
            i += 1;
            end = rounds[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.len() > 20 {
        out.truncate(20);
        out.push("…".into());
    }
    out.join(", ")
}

/// Runs every invariant.
pub fn check(ev: &Evidence<'_>) -> (Vec<Verdict>, Unverifiable) {
    let mut verdicts = Vec::new();
    let mut unverifiable = Unverifiable::default();
    let mut by_round: BTreeMap<u64, Vec<&Stored>> = BTreeMap::new();
    for s in ev.history {
        by_round.entry(s.round).or_default().push(s);
    }

    // 1. Contiguous from the first round (round 1 on a fresh ensemble) to the last.
    let rounds: Vec<u64> = by_round.keys().copied().collect();
    let (first, last) = (
        rounds.first().copied().unwrap_or(0),
        rounds.last().copied().unwrap_or(0),
    );
    let missing: Vec<u64> = (first.max(1)..=last)
        .filter(|r| !by_round.contains_key(r))
        .collect();
    let ok = !rounds.is_empty() && first == 1 && missing.is_empty();
    verdicts.push(Verdict {
        name: "rounds contiguous",
        ok,
        detail: if rounds.is_empty() {
            "nothing stored".into()
        } else if ok {
            format!("rounds 1..={last} all stored")
        } else {
            format!(
                "stored {first}..={last}; missing: {}{}",
                ranges(&missing),
                if first != 1 {
                    " (and the history does not start at round 1)"
                } else {
                    ""
                }
            )
        },
    });

    // 2. Each round stored exactly once.
    let dups: Vec<u64> = by_round
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(r, _)| *r)
        .collect();
    verdicts.push(Verdict {
        name: "each round stored once",
        ok: dups.is_empty(),
        detail: if dups.is_empty() {
            format!(
                "{} entries, {} distinct rounds",
                ev.history.len(),
                rounds.len()
            )
        } else {
            format!("stored more than once: {}", ranges(&dups))
        },
    });

    // 3. No write from a deposed leader: tokens non-decreasing by round, each stored round
    //    is the one commit a leader logged for it, and no round was committed twice.
    let mut problems: Vec<String> = Vec::new();
    let mut prev: Option<&Stored> = None;
    for entries in by_round.values() {
        let s = entries[0];
        if let Some(p) = prev {
            if s.fencing < p.fencing {
                problems.push(format!(
                    "round {} has token {} ({}) below round {}'s {} ({})",
                    s.round, s.fencing, s.leader, p.round, p.fencing, p.leader
                ));
            }
        }
        prev = Some(s);
    }
    let mut answer_lost: Vec<u64> = Vec::new();
    let mut commits: HashMap<u64, Vec<&crate::check::Commit>> = HashMap::new();
    for c in &ev.logs.commits {
        commits.entry(c.round).or_default().push(c);
    }
    for (round, cs) in &commits {
        let first = cs[0];
        if cs
            .iter()
            .any(|c| c.node != first.node || c.fencing != first.fencing)
        {
            problems.push(format!(
                "round {round} committed by more than one leader: {}",
                cs.iter()
                    .map(|c| format!("{} (token {}, value {})", c.node, c.fencing, c.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for entries in by_round.values() {
        let s = entries[0];
        match commits.get(&s.round) {
            Some(cs) => {
                if !cs.iter().any(|c| {
                    c.node == s.leader
                        && c.fencing == s.fencing
                        && close(c.value, s.value)
                        && c.samples == u64::from(s.samples)
                }) {
                    problems.push(format!(
                        "round {} stored as ({}, token {}, value {}, {} samples) but committed as {}",
                        s.round,
                        s.leader,
                        s.fencing,
                        s.value,
                        s.samples,
                        cs.iter()
                            .map(|c| format!(
                                "({}, token {}, value {}, {} samples)",
                                c.node, c.fencing, c.value, c.samples
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            None if ev.logs.attempts.iter().any(|c| {
                c.round == s.round
                    && c.node == s.leader
                    && c.fencing == s.fencing
                    && close(c.value, s.value)
                    && c.samples == u64::from(s.samples)
            }) =>
            {
                // The commit applied but its answer never reached the leader (connection
                // lost, SIGTERM/SIGKILL): its attempt line says what it sent.
                answer_lost.push(s.round);
            }
            None if killed_near(
                ev.faults,
                &s.leader,
                s.taken_at_ms - 1_000,
                s.taken_at_ms + 5_000,
            ) =>
            {
                unverifiable.commit_lines.push(s.round);
            }
            None => problems.push(format!(
                "round {} stored from {} (token {}) but no leader logged committing it",
                s.round, s.leader, s.fencing
            )),
        }
    }
    for (round, cs) in &commits {
        if !by_round.contains_key(round) && *round <= last {
            problems.push(format!(
                "round {round} committed by {} but not stored",
                cs[0].node
            ));
        }
    }
    verdicts.push(Verdict {
        name: "no write from a deposed leader stored",
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "{} stored rounds match their leader's commit (tokens non-decreasing, {} leaderships){}{}",
                rounds.len() - unverifiable.commit_lines.len(),
                {
                    let mut t: Vec<u64> = ev.history.iter().map(|s| s.fencing).collect();
                    t.sort_unstable();
                    t.dedup();
                    t.len()
                },
                if unverifiable.commit_lines.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; leader SIGKILLed before logging the commit of {}",
                        ranges(&unverifiable.commit_lines)
                    )
                },
                if answer_lost.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; matched to the leader's commit attempt (answer lost) for {}",
                        ranges(&answer_lost)
                    )
                }
            )
        } else {
            problems.join("\n      ")
        },
    });

    // 4. Every stored average is the mean of the readings its leader logged counting, and
    //    each of those is the reading its sensor logged publishing for that round.
    let mut problems: Vec<String> = Vec::new();
    let mut checked = 0usize;
    for entries in by_round.values() {
        let s = entries[0];
        let Some(avg) = ev.logs.averaged.get(&(s.leader.clone(), s.round)) else {
            if !unverifiable.commit_lines.contains(&s.round) {
                problems.push(format!(
                    "round {}: leader {} logged no list of counted readings",
                    s.round, s.leader
                ));
            }
            continue;
        };
        if avg.included.len() != s.samples as usize
            || avg
                .values
                .as_ref()
                .is_some_and(|v| v.len() != avg.included.len())
        {
            problems.push(format!(
                "round {}: {} samples stored, leader counted {:?} with values {:?}",
                s.round, s.samples, avg.included, avg.values
            ));
            continue;
        }
        // The sensors' side: what each counted sensor logged publishing for this round.
        let mut from_sensors = Vec::new();
        let mut unconfirmed = false;
        for (k, sensor) in avg.included.iter().enumerate() {
            let leader_value = avg.values.as_ref().map(|v| v[k]);
            let excused = ev.logs.publish_failed_in(sensor, avg)
                || killed_near(
                    ev.faults,
                    sensor,
                    s.taken_at_ms - 10_000,
                    s.taken_at_ms + 1_000,
                );
            match ev.logs.reading_for(sensor, avg) {
                Some(v) if leader_value.is_none_or(|l| close(l, v)) => from_sensors.push(v),
                _ if excused => unconfirmed = true,
                Some(v) => problems.push(format!(
                    "round {}: leader {} counted {} for {sensor}, which published {v} for it",
                    s.round,
                    s.leader,
                    leader_value.unwrap_or(f64::NAN)
                )),
                None => problems.push(format!(
                    "round {}: leader {} counted {sensor}, which published no reading for it (barriers {}..={})",
                    s.round, s.leader, avg.since, avg.barrier
                )),
            }
        }
        if unconfirmed {
            unverifiable.readings.push(s.round);
        }
        let values = match &avg.values {
            Some(v) => v.clone(),
            None if from_sensors.len() == avg.included.len() => from_sensors,
            None => continue,
        };
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        if !close(mean, s.value) {
            problems.push(format!(
                "round {}: stored {} but the readings {:?} of {:?} average {mean}",
                s.round, s.value, values, avg.included
            ));
        }
        checked += 1;
    }
    verdicts.push(Verdict {
        name: "average = mean of the leader's readings",
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "{checked} rounds recomputed from the leader's logged readings, each matched to its sensor's{}",
                if unverifiable.readings.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; a sensor's own line lost (SIGKILL, or a write whose answer was lost) in {}",
                        ranges(&unverifiable.readings)
                    )
                }
            )
        } else {
            problems.join("\n      ")
        },
    });

    // 5. ZooKeeper and the API agree at the end: every committed round delivered.
    let z = ev.zk;
    let ok = z.last_committed == Some(last) && z.outbox == Some(0) && z.conflicts == Some(0);
    verdicts.push(Verdict {
        name: "every committed round delivered",
        ok,
        detail: format!(
            "/rounds/last = {:?}, last stored = {last}, outbox = {:?}, conflicts = {:?}",
            z.last_committed, z.outbox, z.conflicts
        ),
    });

    // 6. Progress after every fault.
    verdicts.push(Verdict {
        name: "progress after every fault",
        ok: ev.stalled.is_empty(),
        detail: if ev.stalled.is_empty() {
            format!(
                "a new round was stored after each of {} faults",
                ev.faults.len()
            )
        } else {
            format!("no new round stored after: {}", ev.stalled.join("; "))
        },
    });

    // 7. No process exited that we did not take down.
    verdicts.push(Verdict {
        name: "no process exited unless killed",
        ok: ev.crashes.is_empty(),
        detail: if ev.crashes.is_empty() {
            "every exit was one we caused".into()
        } else {
            ev.crashes
                .iter()
                .map(|(p, how, tail)| format!("{p}: {how}; log tail:\n{tail}"))
                .collect::<Vec<_>>()
                .join("\n      ")
        },
    });
    (verdicts, unverifiable)
}

#[cfg(test)]
mod tests {
    //! The checker must catch each kind of violation: every test breaks one thing in an
    //! otherwise consistent run and expects exactly that invariant to fail.

    use super::*;

    const LEADER_LOG: &str = r#"{"timestamp":"2026-11-29T00:46:13.545961Z","level":"DEBUG","fields":{"message":"reading taken","node":"n1","barrier":100,"value":20.18,"mzxid":-1},"target":"sensor_node::round"}
{"timestamp":"2026-11-29T00:46:13.883430Z","level":"DEBUG","fields":{"message":"round readings averaged","node":"n1","round":1,"barrier":100,"since":0,"included":"[\"n1\", \"n2\"]"},"target":"sensor_node::round"}
{"timestamp":"2026-11-29T00:46:13.883538Z","level":"INFO","fields":{"message":"round committed","node":"n1","role":"leader","round":1,"value":21.0,"samples":2,"fencing":7},"target":"sensor_node::round"}
{"timestamp":"2026-11-29T00:46:14.045961Z","level":"DEBUG","fields":{"message":"reading taken","node":"n1","barrier":110,"value":30.0,"mzxid":-1},"target":"sensor_node::round"}
{"timestamp":"2026-11-29T00:46:14.383430Z","level":"DEBUG","fields":{"message":"round readings averaged","node":"n1","round":2,"barrier":110,"since":105,"included":"[\"n1\", \"n2\"]","values":"[30.0, 20.0]"},"target":"sensor_node::round"}
{"timestamp":"2026-11-29T00:46:14.383538Z","level":"INFO","fields":{"message":"round committed","node":"n1","role":"leader","round":2,"value":25.0,"samples":2,"fencing":7},"target":"sensor_node::round"}
not json: a panic message, ignored
"#;
    const FOLLOWER_LOG: &str = r#"{"timestamp":"2026-11-29T00:46:13.5Z","level":"DEBUG","fields":{"message":"reading taken","node":"n2","barrier":100,"value":21.82,"mzxid":-1},"target":"sensor_node::round"}
{"timestamp":"2026-11-29T00:46:14.0Z","level":"DEBUG","fields":{"message":"reading taken","node":"n2","barrier":110,"value":20.0,"mzxid":-1},"target":"sensor_node::round"}
"#;

    fn logs() -> Logs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut logs = Logs::default();
        for (node, text) in [("n1", LEADER_LOG), ("n2", FOLLOWER_LOG)] {
            let path = dir.path().join(format!("{node}.log"));
            std::fs::write(&path, text).expect("write log");
            logs.add_file(node, &path).expect("parse log");
        }
        logs
    }

    fn stored(round: u64, value: f64, fencing: u64) -> Stored {
        Stored {
            round,
            value,
            samples: 2,
            leader: "n1".into(),
            fencing,
            taken_at_ms: 1_000_000 + round as i64 * 500,
        }
    }

    fn good_history() -> Vec<Stored> {
        vec![stored(2, 25.0, 7), stored(1, 21.0, 7)]
    }

    fn zk_end(last: u64) -> ZkEnd {
        ZkEnd {
            last_committed: Some(last),
            outbox: Some(0),
            conflicts: Some(0),
        }
    }

    /// Names of the failed invariants.
    fn failed(history: &[Stored], logs: &Logs, zk: &ZkEnd, faults: &[Injected]) -> Vec<String> {
        let (verdicts, _) = check(&Evidence {
            history,
            logs,
            zk,
            faults,
            crashes: &[],
            stalled: &[],
        });
        verdicts
            .iter()
            .filter(|v| !v.ok)
            .map(|v| format!("{}: {}", v.name, v.detail))
            .collect()
    }

    #[test]
    fn a_consistent_run_passes() {
        let f = failed(&good_history(), &logs(), &zk_end(2), &[]);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn a_missing_round_breaks_contiguity() {
        let mut logs = logs();
        // Round 3 committed and logged, but the API lost it while storing round 4.
        logs.commits.push(Commit {
            node: "n1".into(),
            round: 3,
            value: 1.0,
            samples: 2,
            fencing: 7,
        });
        let mut h = good_history();
        let mut r4 = stored(4, 25.0, 7);
        r4.samples = 2;
        h.push(r4);
        let f = failed(&h, &logs, &zk_end(4), &[]);
        assert!(
            f.iter()
                .any(|v| v.starts_with("rounds contiguous") && v.contains("missing: 3")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|v| v.contains("round 3 committed by n1 but not stored")),
            "{f:?}"
        );
    }

    #[test]
    fn a_round_stored_twice_is_caught() {
        let mut h = good_history();
        h.push(stored(2, 25.0, 7));
        let f = failed(&h, &logs(), &zk_end(2), &[]);
        assert!(
            f.iter().any(|v| v.starts_with("each round stored once")),
            "{f:?}"
        );
    }

    #[test]
    fn a_deposed_leaders_write_is_caught() {
        // Round 2 stored with an older token than round 1 (and not what n1 committed).
        let h = vec![stored(1, 21.0, 7), stored(2, 25.0, 5)];
        let f = failed(&h, &logs(), &zk_end(2), &[]);
        assert!(
            f.iter()
                .any(|v| v.starts_with("no write from a deposed leader")
                    && v.contains("token 5 (n1) below round 1's 7")),
            "{f:?}"
        );
    }

    #[test]
    fn a_round_nobody_logged_committing_is_caught_unless_its_leader_was_killed() {
        let mut h = good_history();
        h.push(stored(3, 22.0, 9));
        let f = failed(&h, &logs(), &zk_end(3), &[]);
        assert!(
            f.iter()
                .any(|v| v.contains("no leader logged committing it")),
            "{f:?}"
        );
        let killed = Injected {
            at: 0.0,
            at_ms: h[2].taken_at_ms + 100,
            what: "SIGKILL leader n1".into(),
            node: Some("n1".into()),
            node_killed: true,
            recovered_in: Some(1.0),
        };
        let f = failed(&h, &logs(), &zk_end(3), &[killed]);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn an_average_that_is_not_the_mean_of_the_readings_is_caught() {
        let mut logs = logs();
        // The leader committed and the API stored 26.0, but n1 read 30.0 and n2 20.0.
        for c in logs.commits.iter_mut().filter(|c| c.round == 2) {
            c.value = 26.0;
        }
        let h = vec![stored(1, 21.0, 7), stored(2, 26.0, 7)];
        let f = failed(&h, &logs, &zk_end(2), &[]);
        assert!(
            f.iter()
                .any(|v| v.starts_with("average = mean") && v.contains("average 25")),
            "{f:?}"
        );
    }

    #[test]
    fn a_reading_from_another_round_does_not_count() {
        let mut logs = logs();
        // n2's reading of round 2 is missing: its round-1 reading must not stand in.
        logs.readings.get_mut("n2").expect("n2").pop();
        let f = failed(&good_history(), &logs, &zk_end(2), &[]);
        assert!(
            f.iter()
                .any(|v| v.contains("counted n2, which published no reading for it")),
            "{f:?}"
        );
    }

    #[test]
    fn a_leader_counting_another_value_than_its_sensor_published_is_caught() {
        let mut logs = logs();
        // The leader says n2 read 21.0 in round 2 and averaged accordingly; n2 published 20.0.
        let avg = logs
            .averaged
            .get_mut(&("n1".to_string(), 2))
            .expect("round 2 line");
        avg.values = Some(vec![30.0, 21.0]);
        for c in logs.commits.iter_mut().filter(|c| c.round == 2) {
            c.value = 25.5;
        }
        let h = vec![stored(1, 21.0, 7), stored(2, 25.5, 7)];
        let f = failed(&h, &logs, &zk_end(2), &[]);
        assert!(
            f.iter()
                .any(|v| v.contains("counted 21 for n2, which published 20 for it")),
            "{f:?}"
        );
        // A publish of n2 in round 2 whose answer was lost excuses it (its write may have
        // landed unlogged): the round is then listed as not confirmed by the sensor.
        logs.publish_failed.insert("n2".into(), vec![110]);
        let (verdicts, unverifiable) = check(&Evidence {
            history: &h,
            logs: &logs,
            zk: &zk_end(2),
            faults: &[],
            crashes: &[],
            stalled: &[],
        });
        assert!(verdicts.iter().all(|v| v.ok), "{verdicts:?}");
        assert_eq!(unverifiable.readings, vec![2]);
    }

    #[test]
    fn a_commit_whose_answer_was_lost_is_matched_to_the_attempt_and_only_to_it() {
        let attempt = r#"{"level":"DEBUG","fields":{"message":"round commit sent","node":"n1","round":3,"barrier":120,"since":115,"value":24.0,"samples":2,"fencing":7,"included":"[\"n1\", \"n2\"]","values":"[28.0, 20.0]"}}
{"level":"DEBUG","fields":{"message":"reading taken","node":"n1","barrier":120,"value":28.0,"mzxid":-1}}
"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n1b.log");
        std::fs::write(&path, attempt).expect("write");
        let mut logs = logs();
        logs.add_file("n1", &path).expect("parse");
        logs.readings.get_mut("n2").expect("n2").push(Reading {
            barrier: 120,
            value: 20.0,
        });
        let mut h = good_history();
        h.push(stored(3, 24.0, 7));
        let f = failed(&h, &logs, &zk_end(3), &[]);
        assert!(f.is_empty(), "{f:?}");
        // Stored with another value than the attempt: not explained by it.
        h[2].value = 24.5;
        let f = failed(&h, &logs, &zk_end(3), &[]);
        assert!(
            f.iter().any(|v| v
                .contains("round 3 stored from n1 (token 7) but no leader logged committing it")),
            "{f:?}"
        );
    }

    #[test]
    fn an_undrained_outbox_is_caught() {
        let mut zk = zk_end(2);
        zk.outbox = Some(1);
        let f = failed(&good_history(), &logs(), &zk, &[]);
        assert!(
            f.iter()
                .any(|v| v.starts_with("every committed round delivered")),
            "{f:?}"
        );
    }
}
