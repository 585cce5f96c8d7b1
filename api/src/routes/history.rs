//! `GET /`: the history page — newest averages first, paginated by cursor (so page 200 000
//! of 10 million points costs the same as page 1), with a server-rendered SVG chart of the
//! shown range, JSON/CSV download links, an auto-refresh the user can turn off, and the
//! serving instance's host name. Works without JavaScript; a tiny script only converts the
//! UTC times to the browser's local time. All stored strings are HTML-escaped by askama.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::params::{cursor_param, limit_param, ms_rfc3339, query_map};
use crate::store::{Positioned, StoreError};
use crate::{AppState, SharedState};

/// Rows per page unless `?limit=` says otherwise.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page the page offers.
pub const MAX_PAGE: usize = 500;
/// Seconds between automatic reloads of the newest page.
pub const REFRESH_SECS: u32 = 10;

/// One table row, preformatted.
pub struct Row {
    /// Epoch ms (the script turns it into local time).
    pub ms: i64,
    /// UTC time shown without JavaScript.
    pub utc: String,
    /// Round number, or "legacy".
    pub round: String,
    /// Value with up to 3 decimals.
    pub value: String,
    /// Sample count.
    pub samples: u32,
    /// Leader id (escaped by the template).
    pub leader: String,
    /// Fencing token.
    pub fencing: u64,
}

/// A horizontal grid line with its value label.
pub struct Tick {
    /// Pixel y.
    pub y: String,
    /// Value label.
    pub label: String,
}

/// The inline SVG chart of the shown points, in pixel coordinates.
pub struct Chart {
    /// `x,y x,y ...` for the polyline.
    pub polyline: String,
    /// Dots (only drawn when there are few points).
    pub dots: Vec<(String, String)>,
    /// Grid lines.
    pub ticks: Vec<Tick>,
    /// UTC label of the oldest shown point.
    pub start_label: String,
    /// UTC label of the newest shown point.
    pub end_label: String,
    /// Accessible description.
    pub description: String,
}

/// Chart geometry (SVG user units).
const W: f64 = 960.0;
const H: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 28.0;

#[derive(Template, WebTemplate)]
#[template(path = "history.html")]
struct HistoryPage {
    hostname: String,
    rows: Vec<Row>,
    chart: Option<Chart>,
    total: u64,
    first_index: u64,
    last_index: u64,
    newest_url: String,
    newer_url: Option<String>,
    older_url: Option<String>,
    oldest_url: String,
    json_url: Option<String>,
    csv_url: Option<String>,
    refresh_on: bool,
    refresh_secs: u32,
    refresh_toggle_url: Option<String>,
    page_sizes: Vec<(usize, String, bool)>,
    summary: Option<String>,
}

fn format_value(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn utc_label(ms: i64) -> String {
    // "2026-11-26T22:45:48.123Z" -> "2026-11-26 22:45:48 UTC"
    let iso = ms_rfc3339(ms);
    let trimmed = iso.split('.').next().unwrap_or(&iso).trim_end_matches('Z');
    format!("{} UTC", trimmed.replacen('T', " ", 1))
}

/// The smallest of 1, 2, 5 × 10^k that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * base)
}

/// Builds the chart for points given newest first. `None` for no points.
pub fn chart(points: &[Positioned]) -> Option<Chart> {
    if points.is_empty() {
        return None;
    }
    let asc: Vec<&Positioned> = points.iter().rev().collect();
    let (t0, t1) = (asc[0].cursor.ms, asc[asc.len() - 1].cursor.ms);
    let (mut lo, mut hi) = asc.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (
            lo.min(p.average.result.value),
            hi.max(p.average.result.value),
        )
    });
    if hi - lo < 1e-9 {
        lo -= 1.0;
        hi += 1.0;
    }
    // Round the axis to "nice" steps (1, 2, 5 × 10^k) so grid labels are short numbers.
    let step = nice_step((hi - lo) / 4.0);
    lo = (lo / step).floor() * step;
    hi = (hi / step).ceil() * step;
    if !(hi - lo).is_finite() || hi <= lo {
        return None; // values near f64::MAX: no sensible axis; the table still shows them
    }
    let ticks_n = ((hi - lo) / step).round().clamp(1.0, 10.0) as u32;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let n = asc.len();
    let x = |i: usize, ms: i64| -> f64 {
        if t1 > t0 {
            LEFT + plot_w * (ms - t0) as f64 / (t1 - t0) as f64
        } else if n > 1 {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let y = |v: f64| TOP + plot_h * (hi - v) / (hi - lo);
    let coords: Vec<(f64, f64)> = asc
        .iter()
        .enumerate()
        .map(|(i, p)| (x(i, p.cursor.ms), y(p.average.result.value)))
        .collect();
    let polyline = coords
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ");
    let dots = if n <= 120 {
        coords
            .iter()
            .map(|(x, y)| (format!("{x:.1}"), format!("{y:.1}")))
            .collect()
    } else {
        Vec::new()
    };
    let ticks = (0..=ticks_n)
        .map(|k| {
            let v = lo + step * f64::from(k);
            Tick {
                y: format!("{:.1}", y(v)),
                label: format_value(v),
            }
        })
        .collect();
    Some(Chart {
        polyline,
        dots,
        ticks,
        start_label: utc_label(t0),
        end_label: utc_label(t1),
        description: format!(
            "Line chart of {n} averages from {} to {}",
            utc_label(t0),
            utc_label(t1)
        ),
    })
}

fn unavailable_page() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "5")],
        Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"5\"><title>Sensor history: storage unavailable</title></head>\
             <body style=\"font-family:system-ui,sans-serif;margin:3rem\"><h1>Storage unavailable</h1>\
             <p>Redis cannot be reached right now. This page retries every 5 seconds.</p></body></html>",
        ),
    )
        .into_response()
}

/// `GET /?limit=&cursor=&after=&oldest=1&refresh=0|1`.
///
/// `cursor` shows the page older than that point, `after` the page newer than it, `oldest`
/// the last page. Auto-refresh is on for the newest page unless `refresh=0`.
pub async fn page(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(query)?;
    let limit = limit_param(&q, "limit", DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = cursor_param(&q, "cursor")?;
    let after = cursor_param(&q, "after")?;
    let oldest = q.get("oldest").is_some_and(|v| v == "1");
    let refresh_wanted = q.get("refresh").is_none_or(|v| v != "0");
    match render(&state, limit, cursor, after, oldest, refresh_wanted).await {
        Ok(page) => Ok(page.into_response()),
        Err(StoreError::Unavailable(e)) => {
            tracing::warn!(error = %e, "history page: redis unavailable");
            Ok(unavailable_page())
        }
        Err(e) => Err(e.into()),
    }
}

async fn render(
    state: &AppState,
    limit: usize,
    cursor: Option<crate::store::Cursor>,
    after: Option<crate::store::Cursor>,
    oldest: bool,
    refresh_wanted: bool,
) -> Result<HistoryPage, StoreError> {
    let store = &state.store;
    let (min, max) = (i64::MIN / 2, i64::MAX / 2);
    let total = store.count().await?;
    let mut items = if oldest {
        let mut asc = store.page_asc(min, max, None, limit).await?;
        asc.reverse();
        asc
    } else if let Some(after) = &after {
        let mut asc = store.page_asc(min, max, Some(after), limit).await?;
        if asc.len() < limit {
            // Near the top: show the full newest page instead of a short one.
            store.page_desc(min, max, None, limit).await?
        } else {
            asc.reverse();
            asc
        }
    } else {
        store.page_desc(min, max, cursor.as_ref(), limit).await?
    };
    items.truncate(limit);
    let first_index = match items.first() {
        Some(p) => store.count_newer(&p.cursor).await?,
        None => 0,
    };
    let shown = items.len() as u64;
    let is_newest = first_index == 0;
    let refresh_on = refresh_wanted && is_newest;
    let keep = if refresh_wanted { "" } else { "&refresh=0" };
    let newer_url = (first_index > 0)
        .then(|| items.first())
        .flatten()
        .map(|p| format!("/?after={}&limit={limit}{keep}", p.cursor.encode()));
    let older_url = (first_index + shown < total)
        .then(|| items.last())
        .flatten()
        .map(|p| format!("/?cursor={}&limit={limit}{keep}", p.cursor.encode()));
    let range = match (items.last(), items.first()) {
        (Some(o), Some(n)) => Some((o.cursor.ms, n.cursor.ms)),
        _ => None,
    };
    let download = |fmt: &str| {
        range.map(|(from, to)| {
            format!("/api/v1/averages?from={from}&to={to}&limit=10000&format={fmt}")
        })
    };
    let summary = (!items.is_empty()).then(|| {
        let values: Vec<f64> = items.iter().map(|p| p.average.result.value).collect();
        let mn = values.iter().copied().fold(f64::MAX, f64::min);
        let mx = values.iter().copied().fold(f64::MIN, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        format!(
            "min {} · mean {} · max {}",
            format_value(mn),
            format_value(mean),
            format_value(mx)
        )
    });
    let refresh_toggle_url = is_newest.then(|| {
        if refresh_on {
            format!("/?limit={limit}&refresh=0")
        } else {
            format!("/?limit={limit}")
        }
    });
    let page_sizes = [25, 50, 100, 250, 500]
        .into_iter()
        .map(|n| (n, format!("/?limit={n}{keep}"), n == limit))
        .collect();
    let chart = chart(&items);
    let rows = items
        .iter()
        .map(|p| {
            let a = &p.average;
            Row {
                ms: p.cursor.ms,
                utc: utc_label(p.cursor.ms),
                round: if p.cursor.member.starts_with("l:") {
                    "legacy".to_string()
                } else {
                    a.result.round.to_string()
                },
                value: format_value(a.result.value),
                samples: a.result.samples,
                leader: a.result.leader.clone(),
                fencing: a.result.fencing,
            }
        })
        .collect();
    Ok(HistoryPage {
        hostname: state.hostname.to_string(),
        rows,
        chart,
        total,
        first_index: first_index + 1,
        last_index: first_index + shown,
        newest_url: format!("/?limit={limit}{keep}"),
        newer_url,
        older_url,
        oldest_url: format!("/?oldest=1&limit={limit}{keep}"),
        json_url: download("json"),
        csv_url: download("csv"),
        refresh_on,
        refresh_secs: REFRESH_SECS,
        refresh_toggle_url,
        page_sizes,
        summary,
    })
}

/// The history page's stylesheet (served, not inline, so the page's CSP forbids inline
/// styles).
pub const STYLESHEET: &str = include_str!("../../static/history.css");

/// The history page's script (local times); served so the CSP forbids inline scripts.
pub const SCRIPT: &str = include_str!("../../static/history.js");

/// `GET /static/history.css`.
pub async fn stylesheet() -> Response {
    static_asset("text/css; charset=utf-8", STYLESHEET)
}

/// `GET /static/history.js`.
pub async fn script() -> Response {
    static_asset("text/javascript; charset=utf-8", SCRIPT)
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, content_type),
            (axum::http::header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
