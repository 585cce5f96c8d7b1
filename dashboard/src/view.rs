//! The page's sections, rendered on the server (askama; every value HTML-escaped).
//!
//! Each section is its own small template, rendered to a string. The full page embeds them,
//! and the event stream sends a section again, whole, when its HTML differs from what the
//! client last got. Rendering is deterministic for a given snapshot: times are written
//! as absolute UTC (`<time class="age" data-ms=..>`), and the browser script turns them
//! into "12 s ago" and keeps them ticking, so a section is only re-sent when its data
//! changed. Without JavaScript the page is complete as served (UTC times; reload to
//! refresh).

use askama::Template;
use sensor_coord::status::{ConfigKey, ValueSource};

use crate::ensemble::ServerInfo;
use crate::snapshot::{Cluster, Sensor, Snapshot};
use crate::timeline::{Event, Kind};

/// Sensors per page of the server-rendered list (the script pages the same way).
pub const SENSORS_PER_PAGE: usize = 100;

/// `HH:MM:SS` UTC of a ms timestamp (`?` when out of range).
pub fn utc_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| "?".to_string())
}

/// A reading as shown (two decimals), or the raw text for a non-number.
pub fn reading_text(s: &Sensor) -> String {
    match s.reading {
        Some(v) => format!("{v:.2}"),
        None if s.raw.is_empty() => "—".to_string(),
        None => format!("“{}” (not a number)", s.raw),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".to_string())
}

// ---------------------------------------------------------------- status banner

#[derive(Template)]
#[template(path = "status.html")]
struct StatusSection {
    stale: bool,
    never_read: bool,
    session: String,
    error: String,
    since_ms: i64,
    since: String,
    read_at_ms: i64,
    read_at: String,
    serving: usize,
    servers: usize,
}

// ---------------------------------------------------------------- summary cards

#[derive(Template)]
#[template(path = "summary.html")]
struct SummarySection {
    leader: String,
    fencing: String,
    round: String,
    phase: String,
    received: String,
    live: usize,
    backlog: String,
    conflicts: usize,
    serving: usize,
    servers: usize,
    apis: usize,
}

// ---------------------------------------------------------------- picture

struct Box_ {
    x: i32,
    y: i32,
    label: String,
    sub: String,
    class: String,
}

#[derive(Template)]
#[template(path = "picture.html")]
struct PictureSection {
    height: i32,
    servers: Vec<Box_>,
    leader: Option<Box_>,
    others: Vec<Box_>,
    more: usize,
    apis: Vec<Box_>,
    description: String,
}

// ---------------------------------------------------------------- tables

struct ServerRow {
    address: String,
    mode: String,
    class: String,
    latency: String,
    outstanding: String,
    znodes: String,
    connections: String,
    error: String,
}

#[derive(Template)]
#[template(path = "ensemble.html")]
struct EnsembleSection {
    rows: Vec<ServerRow>,
}

#[derive(Template)]
#[template(path = "leader.html")]
struct LeaderSection {
    known: bool,
    leader: Option<(String, u64, i64, String, bool, i64, String)>,
    contenders: Vec<String>,
    more: usize,
}

/// Contenders listed by name in the leader section (all of them are in the JSON).
const LISTED_CONTENDERS: usize = 50;

#[derive(Template)]
#[template(path = "round.html")]
struct RoundSection {
    known: bool,
    number: String,
    phase: String,
    received: usize,
    live: usize,
    last_committed: String,
    last_delivered: String,
    outbox: usize,
    conflicts: usize,
    conflict_rounds: String,
    counter: String,
}

struct ConfigRow {
    key: String,
    znode: String,
    value: String,
    source: String,
    source_class: String,
    version: String,
    error: String,
}

#[derive(Template)]
#[template(path = "config_view.html")]
struct ConfigSection {
    known: bool,
    rows: Vec<ConfigRow>,
}

#[derive(Template)]
#[template(path = "apis.html")]
struct ApisSection {
    known: bool,
    rows: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "averages.html")]
struct AveragesSection {
    chart: Option<Chart>,
    error: String,
    source: String,
}

struct Chart {
    polyline: String,
    description: String,
    ticks: Vec<(f64, String)>,
    first: String,
    last: String,
    latest: String,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventItem<'a> {
    e: &'a Event,
    kind: &'static str,
    time: String,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Join => "join",
        Kind::Leave => "leave",
        Kind::Leader => "leader",
        Kind::Config => "config",
        Kind::Connection => "connection",
        Kind::Server => "server",
        Kind::Conflict => "conflict",
    }
}

/// One timeline entry as an `<li>`.
pub fn event_html(e: &Event) -> String {
    render(&EventItem {
        e,
        kind: kind_name(e.kind),
        time: utc_time(e.at_ms),
    })
}

fn render<T: Template>(t: &T) -> String {
    // Our templates only format owned strings and numbers: rendering cannot fail; an
    // error would be a template bug, shown in place rather than breaking the page.
    t.render()
        .unwrap_or_else(|e| format!("<p class=\"error\">render error: {e}</p>"))
}

fn mode_class(mode: &str) -> &'static str {
    match mode {
        "leader" => "m-leader",
        "follower" | "standalone" | "observer" => "m-ok",
        "not serving" => "m-warn",
        "down" => "m-down",
        _ => "m-unknown",
    }
}

/// The sections of the page, by DOM id, in page order.
pub const SECTIONS: [&str; 9] = [
    "sec-status",
    "sec-summary",
    "sec-picture",
    "sec-round",
    "sec-leader",
    "sec-ensemble",
    "sec-averages",
    "sec-config",
    "sec-apis",
];

/// Renders every section of `snap`, in [`SECTIONS`] order.
pub fn sections(snap: &Snapshot) -> Vec<(&'static str, String)> {
    let c = snap.cluster.as_ref();
    let serving = snap.ensemble.iter().filter(|s| s.serving()).count();
    vec![
        ("sec-status", status(snap, serving)),
        ("sec-summary", summary(snap, c, serving)),
        ("sec-picture", picture(&snap.ensemble, c)),
        ("sec-round", round(c)),
        ("sec-leader", leader(c)),
        ("sec-ensemble", ensemble(&snap.ensemble)),
        ("sec-averages", averages(snap)),
        ("sec-config", config(c)),
        ("sec-apis", apis(c)),
    ]
}

fn status(snap: &Snapshot, serving: usize) -> String {
    let zk = &snap.zookeeper;
    let since_ms = zk.stale_since_ms.unwrap_or(0);
    let read_at_ms = snap.cluster.as_ref().map_or(0, |c| c.read_at_ms);
    render(&StatusSection {
        stale: zk.stale,
        never_read: snap.cluster.is_none(),
        session: zk.session.clone(),
        error: zk.error.clone().unwrap_or_default(),
        since_ms,
        since: utc_time(since_ms),
        read_at_ms,
        read_at: utc_time(read_at_ms),
        serving,
        servers: snap.ensemble.len(),
    })
}

fn summary(snap: &Snapshot, c: Option<&Cluster>, serving: usize) -> String {
    let leader = c.and_then(|c| c.leader.as_ref());
    render(&SummarySection {
        leader: leader.map_or("none".to_string(), |l| l.id.clone()),
        fencing: leader.map_or(String::new(), |l| l.fencing.to_string()),
        round: opt(c.and_then(|c| c.round.number)),
        phase: c.map_or("unknown", |c| c.round.phase.name()).to_string(),
        received: c.map_or("—".to_string(), |c| c.round.received.to_string()),
        live: c.map_or(0, |c| c.sensors.len()),
        backlog: c.map_or("—".to_string(), |c| c.round.outbox.to_string()),
        conflicts: c.map_or(0, |c| c.round.conflicts),
        serving,
        servers: snap.ensemble.len(),
        apis: c.map_or(0, |c| c.api_instances.len()),
    })
}

/// Most contenders drawn in the picture (the rest are counted).
const PICTURE_CONTENDERS: usize = 12;

fn picture(servers: &[ServerInfo], c: Option<&Cluster>) -> String {
    let zk: Vec<Box_> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| Box_ {
            x: 20,
            y: 40 + 64 * i as i32,
            label: s.address.clone(),
            sub: s.mode.clone(),
            class: mode_class(&s.mode).to_string(),
        })
        .collect();
    let leader = c.and_then(|c| c.leader.as_ref()).map(|l| Box_ {
        x: 280,
        y: 40,
        label: l.id.clone(),
        sub: format!("leader · token {}", l.fencing),
        class: "n-leader".to_string(),
    });
    let contenders: Vec<&String> = c
        .map(|c| c.contenders.iter().skip(1).collect())
        .unwrap_or_default();
    let others: Vec<Box_> = contenders
        .iter()
        .take(PICTURE_CONTENDERS)
        .enumerate()
        .map(|(i, id)| Box_ {
            x: 280 + 112 * (i as i32 % 2),
            y: 104 + 38 * (i as i32 / 2),
            label: crate::snapshot::clip(id, 13),
            sub: (*id).clone(),
            class: "n-node".to_string(),
        })
        .collect();
    let more = contenders.len().saturating_sub(PICTURE_CONTENDERS);
    let apis: Vec<Box_> = c
        .map(|c| {
            c.api_instances
                .iter()
                .take(6)
                .enumerate()
                .map(|(i, a)| Box_ {
                    x: 550,
                    y: 40 + 64 * i as i32,
                    label: crate::snapshot::clip(&a.name, 22),
                    sub: crate::snapshot::clip(&a.url, 26),
                    class: "n-api".to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = [
        40 + zk.len() as i32 * 64,
        104 + 38 * ((others.len() as i32 + 1) / 2) + if more > 0 { 28 } else { 0 },
        40 + apis.len() as i32 * 64,
    ];
    let height = rows.into_iter().max().unwrap_or(0).max(104) + 8;
    let description = format!(
        "{} ZooKeeper server(s), {} serving; leader {}; {} other contender(s); {} API instance(s)",
        servers.len(),
        servers.iter().filter(|s| s.serving()).count(),
        leader.as_ref().map_or("none", |l| l.label.as_str()),
        contenders.len(),
        apis.len()
    );
    render(&PictureSection {
        height,
        servers: zk,
        leader,
        others,
        more,
        apis,
        description,
    })
}

fn ensemble(servers: &[ServerInfo]) -> String {
    let rows = servers
        .iter()
        .map(|s| ServerRow {
            address: s.address.clone(),
            mode: s.mode.clone(),
            class: mode_class(&s.mode).to_string(),
            latency: match (s.latency_avg_ms, s.latency_max_ms) {
                (Some(a), Some(m)) => format!("{a:.1} / {m:.0}"),
                _ => "—".to_string(),
            },
            outstanding: opt(s.outstanding),
            znodes: opt(s.znode_count),
            connections: opt(s.connections),
            error: s.error.clone().unwrap_or_default(),
        })
        .collect();
    render(&EnsembleSection { rows })
}

fn leader(c: Option<&Cluster>) -> String {
    render(&LeaderSection {
        known: c.is_some(),
        leader: c.and_then(|c| c.leader.as_ref()).map(|l| {
            (
                l.id.clone(),
                l.fencing,
                l.since_ms,
                utc_time(l.since_ms),
                l.since_observed,
                l.contender_since_ms,
                utc_time(l.contender_since_ms),
            )
        }),
        contenders: c
            .map(|c| {
                c.contenders
                    .iter()
                    .take(LISTED_CONTENDERS)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        more: c.map_or(0, |c| c.contenders.len().saturating_sub(LISTED_CONTENDERS)),
    })
}

fn round(c: Option<&Cluster>) -> String {
    let Some(c) = c else {
        return render(&RoundSection {
            known: false,
            number: String::new(),
            phase: String::new(),
            received: 0,
            live: 0,
            last_committed: String::new(),
            last_delivered: String::new(),
            outbox: 0,
            conflicts: 0,
            conflict_rounds: String::new(),
            counter: String::new(),
        });
    };
    let r = &c.round;
    render(&RoundSection {
        known: true,
        number: opt(r.number),
        phase: r.phase.name().to_string(),
        received: r.received,
        live: r.live,
        last_committed: opt(r.last_committed),
        last_delivered: opt(r.last_delivered),
        outbox: r.outbox,
        conflicts: r.conflicts,
        conflict_rounds: r
            .conflict_rounds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        counter: opt(r.counter),
    })
}

fn config(c: Option<&Cluster>) -> String {
    let rows = c
        .map(|c| {
            ConfigKey::ALL
                .iter()
                .map(|k| {
                    let item = c.config.item(*k);
                    let e = &item.entry;
                    let (source, class) = match e.source {
                        ValueSource::Zookeeper => ("znode".to_string(), "src-zk"),
                        ValueSource::Default => ("nodes' default".to_string(), "src-default"),
                        ValueSource::Invalid => ("invalid: ignored".to_string(), "src-bad"),
                    };
                    let value = match e.source {
                        ValueSource::Default => match &e.default {
                            Some(d) => format!(
                                "not set: each node uses its --{} / env value (built-in {d})",
                                k.flag()
                            ),
                            None => {
                                format!("not set: each node uses its --{} / env value", k.flag())
                            }
                        },
                        _ => e.stored.clone().unwrap_or_default(),
                    };
                    ConfigRow {
                        key: k.name().to_string(),
                        znode: k.znode().to_string(),
                        value,
                        source,
                        source_class: class.to_string(),
                        version: item.version.map_or("absent".to_string(), |v| v.to_string()),
                        error: e.error.clone().unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    render(&ConfigSection {
        known: c.is_some(),
        rows,
    })
}

fn apis(c: Option<&Cluster>) -> String {
    render(&ApisSection {
        known: c.is_some(),
        rows: c
            .map(|c| {
                c.api_instances
                    .iter()
                    .map(|a| (a.name.clone(), a.url.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Chart geometry (SVG user units).
const CW: f64 = 640.0;
const CH: f64 = 180.0;
const CL: f64 = 48.0;
const CT: f64 = 12.0;
const CB: f64 = 24.0;

fn averages(snap: &Snapshot) -> String {
    let a = &snap.averages;
    let chart = (a.points.len() >= 2).then(|| {
        let (lo, hi) = a.points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.value), hi.max(p.value))
        });
        let (lo, hi) = if hi - lo < 0.5 {
            (lo - 0.25, hi + 0.25)
        } else {
            (lo, hi)
        };
        let n = a.points.len() as f64 - 1.0;
        let y = |v: f64| CT + (hi - v) / (hi - lo) * (CH - CT - CB);
        let polyline = a
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "{:.1},{:.1}",
                    CL + i as f64 / n * (CW - CL - 8.0),
                    y(p.value)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let first = &a.points[0];
        let last = &a.points[a.points.len() - 1];
        Chart {
            polyline,
            description: format!(
                "Averages of rounds {} to {}, between {lo:.2} and {hi:.2}",
                first.round, last.round
            ),
            ticks: vec![(y(hi), format!("{hi:.1}")), (y(lo), format!("{lo:.1}"))],
            first: format!("round {}", first.round),
            last: format!("round {}", last.round),
            latest: format!("{:.2} (round {})", last.value, last.round),
        }
    });
    render(&AveragesSection {
        chart,
        error: a.error.clone().unwrap_or_default(),
        source: a.source.clone().unwrap_or_default(),
    })
}

/// One sensor row of the list, as the page and the script both draw it.
pub struct SensorRow {
    /// Node id.
    pub id: String,
    /// Reading text.
    pub reading: String,
    /// Written at (ms), 0 if unknown.
    pub ms: i64,
    /// Written at, UTC text.
    pub time: String,
    /// Read for the running round.
    pub in_round: bool,
    /// Leads.
    pub leader: bool,
}

/// The sensors matching `query` (substring of the id, case-insensitive), page `page`
/// (0-based) of [`SENSORS_PER_PAGE`], and the number of matches.
pub fn sensor_page(c: Option<&Cluster>, query: &str, page: usize) -> (Vec<SensorRow>, usize) {
    let Some(c) = c else {
        return (Vec::new(), 0);
    };
    let q = query.to_lowercase();
    let leader = c.leader.as_ref().map(|l| l.id.as_str());
    let matching: Vec<&Sensor> = c
        .sensors
        .iter()
        .filter(|s| q.is_empty() || s.id.to_lowercase().contains(&q))
        .collect();
    let total = matching.len();
    let rows = matching
        .into_iter()
        .skip(page * SENSORS_PER_PAGE)
        .take(SENSORS_PER_PAGE)
        .map(|s| SensorRow {
            id: s.id.clone(),
            reading: reading_text(s),
            ms: s.updated_ms.unwrap_or(0),
            time: s.updated_ms.map(utc_time).unwrap_or_default(),
            in_round: s.in_round,
            leader: leader == Some(s.id.as_str()),
        })
        .collect();
    (rows, total)
}
