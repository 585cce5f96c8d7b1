//! `GET /events`: the page's live feed (Server-Sent Events), sending changes only.
//!
//! Per client, the stream remembers what it already sent: each section's HTML, each
//! sensor's row data, and the last timeline sequence number. On every published snapshot
//! it sends only what differs, so a 1000-sensor cluster costs one `sensors` message per
//! round with the readings that changed, not the whole state every second.
//!
//! | event | data (JSON) | the script |
//! |---|---|---|
//! | `section` | `{"id": "sec-round", "html": "..."}` | replaces the element's content |
//! | `sensors` | `{"full": bool, "leader": id?, "total": n, "upsert": [{"id", "reading", "ms", "in_round"}], "remove": [id]}` | updates its sensor list and redraws the visible page |
//! | `timeline` | `{"seq", "kind", "at_ms", "text", "leader"?, "html"}` | prepends the entry |
//!
//! The first message after connecting carries every section and the full sensor list
//! (the page may be older than the stream); timeline entries after `?since=<seq>`.
//! Concurrent streams are bounded ([`MAX_STREAMS`]); past it `GET /events` answers 503 and
//! the browser's `EventSource` retries.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event as SseEvent;
use futures::Stream;
use serde_json::json;
use tokio::sync::{watch, OwnedSemaphorePermit};

use crate::monitor::Monitor;
use crate::snapshot::Snapshot;
use crate::view;

/// Most concurrent event streams.
pub const MAX_STREAMS: usize = 64;

struct Client {
    monitor: Monitor,
    rx: watch::Receiver<Arc<Snapshot>>,
    sections: BTreeMap<&'static str, String>,
    sensors: BTreeMap<String, serde_json::Value>,
    leader: Option<String>,
    last_seq: u64,
    first: bool,
    pending: VecDeque<SseEvent>,
    _permit: OwnedSemaphorePermit,
}

impl Client {
    fn diff(&mut self, snap: &Snapshot) {
        for (id, html) in view::sections(snap) {
            if self.sections.get(id) != Some(&html) {
                self.pending.push_back(
                    SseEvent::default()
                        .event("section")
                        .data(json!({"id": id, "html": html}).to_string()),
                );
                self.sections.insert(id, html);
            }
        }
        let cluster = snap.cluster.as_ref();
        let leader = cluster
            .and_then(|c| c.leader.as_ref())
            .map(|l| l.id.clone());
        let mut next: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for s in cluster.map(|c| c.sensors.as_slice()).unwrap_or_default() {
            next.insert(
                s.id.clone(),
                json!({
                    "id": s.id,
                    "reading": view::reading_text(s),
                    "ms": s.updated_ms.unwrap_or(0),
                    "in_round": s.in_round,
                }),
            );
        }
        let upsert: Vec<&serde_json::Value> = next
            .iter()
            .filter(|(id, v)| self.sensors.get(*id) != Some(*v))
            .map(|(_, v)| v)
            .collect();
        let remove: Vec<&String> = self
            .sensors
            .keys()
            .filter(|id| !next.contains_key(*id))
            .collect();
        if self.first || !upsert.is_empty() || !remove.is_empty() || leader != self.leader {
            self.pending.push_back(
                SseEvent::default().event("sensors").data(
                    json!({
                        "full": self.first,
                        "leader": leader,
                        "total": next.len(),
                        "upsert": upsert,
                        "remove": remove,
                    })
                    .to_string(),
                ),
            );
        }
        self.sensors = next;
        self.leader = leader;
        self.first = false;
        let events = self.monitor.with_timeline(|t| t.since(self.last_seq));
        for e in events {
            self.last_seq = e.seq;
            let mut data = serde_json::to_value(&e).unwrap_or_default();
            data["html"] = json!(view::event_html(&e));
            self.pending.push_back(
                SseEvent::default()
                    .event("timeline")
                    .id(e.seq.to_string())
                    .data(data.to_string()),
            );
        }
    }
}

/// The event stream of one client that has timeline entries up to `since`.
pub fn stream(
    monitor: Monitor,
    since: u64,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let rx = monitor.subscribe();
    let client = Client {
        monitor,
        rx,
        sections: BTreeMap::new(),
        sensors: BTreeMap::new(),
        leader: None,
        last_seq: since,
        first: true,
        pending: VecDeque::new(),
        _permit: permit,
    };
    futures::stream::unfold(client, |mut c| async move {
        loop {
            if let Some(ev) = c.pending.pop_front() {
                return Some((Ok(ev), c));
            }
            if c.first {
                let snap = c.rx.borrow_and_update().clone();
                c.diff(&snap);
                continue;
            }
            if c.rx.changed().await.is_err() {
                return None;
            }
            let snap = c.rx.borrow_and_update().clone();
            c.diff(&snap);
        }
    })
}
