//! The event timeline: what changed in the cluster, timestamped, newest last, bounded.
//!
//! Events are derived by comparing two consecutive pictures ([`diff`]) plus the session's
//! own state changes, so they are what the dashboard *saw*: a leader that came and went
//! between two reads is not in it. Memory is bounded by [`Timeline::capacity`]; a burst of
//! joins (a fleet of 1000 starting) is folded into one event per read.

use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;

use crate::ensemble::ServerInfo;
use crate::snapshot::Cluster;

/// Most joins/leaves named one by one in one read; more are folded into one event.
const MAX_NAMED: usize = 5;

/// What kind of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Sensors appeared under `/mediciones`.
    Join,
    /// Sensors disappeared.
    Leave,
    /// Another contender leads (or none does).
    Leader,
    /// A `/config/*` value changed.
    Config,
    /// Our ZooKeeper session changed state, or reads failed/recovered.
    Connection,
    /// A ZooKeeper server changed mode.
    Server,
    /// A round was set aside under `/rounds/conflicts`.
    Conflict,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Sequence number, increasing (the event stream's cursor).
    pub seq: u64,
    /// When it was seen (ms since the epoch).
    pub at_ms: i64,
    /// Kind.
    pub kind: Kind,
    /// Human-readable text (plain text; escaped when rendered).
    pub text: String,
    /// For [`Kind::Leader`]: the new leader's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// A bounded, ordered event log.
#[derive(Debug)]
pub struct Timeline {
    events: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
}

impl Timeline {
    /// An empty timeline keeping the last `capacity` events.
    pub fn new(capacity: usize) -> Timeline {
        Timeline {
            events: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            next_seq: 1,
        }
    }

    /// Appends an event, dropping the oldest beyond capacity.
    pub fn push(&mut self, at_ms: i64, kind: Kind, text: String, leader: Option<String>) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            seq: self.next_seq,
            at_ms,
            kind,
            text,
            leader,
        });
        self.next_seq += 1;
    }

    /// The events, oldest first.
    pub fn events(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.events.iter()
    }

    /// The events after sequence number `seq`.
    pub fn since(&self, seq: u64) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    /// The newest sequence number (0 if none yet).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// How many events are kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

fn named(ids: &[&String]) -> String {
    let mut shown: Vec<&str> = ids.iter().take(MAX_NAMED).map(|s| s.as_str()).collect();
    if ids.len() > MAX_NAMED {
        shown.push("…");
    }
    shown.join(", ")
}

/// The events between two reads of the cluster (`prev` = `None` at start-up: nothing).
pub fn diff(prev: Option<&Cluster>, next: &Cluster, at_ms: i64, out: &mut Timeline) {
    let Some(prev) = prev else {
        return;
    };
    let before: BTreeSet<&String> = prev.sensors.iter().map(|s| &s.id).collect();
    let after: BTreeSet<&String> = next.sensors.iter().map(|s| &s.id).collect();
    let joined: Vec<&String> = after.difference(&before).copied().collect();
    let left: Vec<&String> = before.difference(&after).copied().collect();
    if !joined.is_empty() {
        let text = match joined.len() {
            1 => format!("sensor {} joined", joined[0]),
            n => format!("{n} sensors joined: {}", named(&joined)),
        };
        out.push(at_ms, Kind::Join, text, None);
    }
    if !left.is_empty() {
        let text = match left.len() {
            1 => format!("sensor {} left", left[0]),
            n => format!("{n} sensors left: {}", named(&left)),
        };
        out.push(at_ms, Kind::Leave, text, None);
    }
    let leader_of = |c: &Cluster| c.leader.as_ref().map(|l| (l.id.clone(), l.fencing));
    if leader_of(prev) != leader_of(next) {
        let text = match (&prev.leader, &next.leader) {
            (Some(a), Some(b)) => format!(
                "leader {} (token {}) → {} (token {})",
                a.id, a.fencing, b.id, b.fencing
            ),
            (None, Some(b)) => format!("{} leads (token {})", b.id, b.fencing),
            (Some(a), None) => format!("leader {} gone; no contender left", a.id),
            (None, None) => String::new(),
        };
        out.push(
            at_ms,
            Kind::Leader,
            text,
            next.leader.as_ref().map(|l| l.id.clone()),
        );
    }
    for key in sensor_coord::status::ConfigKey::ALL {
        let (a, b) = (&prev.config.item(key).entry, &next.config.item(key).entry);
        if a.stored != b.stored {
            let show = |v: &Option<String>| {
                v.clone()
                    .unwrap_or_else(|| "(absent: nodes' default)".to_string())
            };
            out.push(
                at_ms,
                Kind::Config,
                format!(
                    "config {}: {} → {}",
                    key.name(),
                    show(&a.stored),
                    show(&b.stored)
                ),
                None,
            );
        }
    }
    if next.round.conflicts > prev.round.conflicts {
        let new: Vec<String> = next
            .round
            .conflict_rounds
            .iter()
            .filter(|r| !prev.round.conflict_rounds.contains(r))
            .map(u64::to_string)
            .collect();
        out.push(
            at_ms,
            Kind::Conflict,
            format!(
                "{} round(s) set aside as conflicts (the API holds another value){}",
                next.round.conflicts - prev.round.conflicts,
                if new.is_empty() {
                    String::new()
                } else {
                    format!(": {}", new.join(", "))
                }
            ),
            None,
        );
    }
}

/// Events for servers whose mode changed between two probes.
pub fn diff_servers(prev: &[ServerInfo], next: &[ServerInfo], at_ms: i64, out: &mut Timeline) {
    for n in next {
        if let Some(p) = prev.iter().find(|p| p.address == n.address) {
            if p.mode != n.mode {
                out.push(
                    at_ms,
                    Kind::Server,
                    format!("ZooKeeper {}: {} → {}", n.address, p.mode, n.mode),
                    None,
                );
            }
        }
    }
}
