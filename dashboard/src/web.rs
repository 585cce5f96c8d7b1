//! HTTP: the page, the JSON state, the event stream, the config form, static files.
//!
//! | route | what |
//! |---|---|
//! | `GET /` (`?q=&page=`) | the page, complete without JavaScript; `q` filters sensors by id, pages of 100 |
//! | `GET /api/v1/cluster` | the [`Snapshot`](crate::snapshot::Snapshot) as JSON |
//! | `GET /events` (`?since=`) | Server-Sent Events ([`crate::sse`]) |
//! | `POST /config` | form: `key`, `value`, `version`, `token`, `editor` ([`crate::edit`]) |
//! | `GET /static/dashboard.{js,css}` | the script and the style sheet |
//! | `GET /healthz` | 200 while the server runs (the body says whether ZooKeeper is current) |
//!
//! Layers, in one place ([`app`]; table in [`crate::layers`]): the admin token on config
//! edits, request timeout (408), body limit (16 KiB), access log, and security headers:
//! `nosniff`, a CSP that allows scripts and styles only from this origin's files (no
//! inline script), no framing, no referrer.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response, Sse};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::edit::{self, EditError};
use crate::monitor::Monitor;
use crate::snapshot::clip;
use crate::view::{self, SensorRow, SENSORS_PER_PAGE};
use sensor_common::Secret;
use sensor_coord::status::{ConfigKey, ValueSource};
use sensor_coord::zk::Session;

/// Largest request body (the config form is a few hundred bytes).
pub const BODY_LIMIT: usize = 16 * 1024;
/// Timeline entries on the page.
const EVENTS_SHOWN: usize = 100;
/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SCRIPT: &str = include_str!("../static/dashboard.js");
const STYLE: &str = include_str!("../static/dashboard.css");

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The live state.
    pub monitor: Monitor,
    /// The session config writes go through.
    pub session: Session,
    /// Settings.
    pub settings: Arc<Settings>,
    streams: Arc<Semaphore>,
}

/// The web settings.
pub struct Settings {
    /// Admin token; `None` = read-only.
    pub admin_token: Option<Secret>,
    /// Link to the API's history page (public URL), if known.
    pub api_public_url: Option<String>,
    /// Link to Grafana, if configured.
    pub grafana_url: Option<String>,
    /// Bound on one ZooKeeper write.
    pub zk_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
}

impl AppState {
    /// State over a running monitor.
    pub fn new(monitor: Monitor, session: Session, settings: Settings) -> AppState {
        AppState {
            monitor,
            session,
            settings: Arc::new(settings),
            streams: Arc::new(Semaphore::new(crate::sse::MAX_STREAMS)),
        }
    }
}

/// The router with its layers.
pub fn app(state: AppState) -> Router {
    let timeout = state.settings.request_timeout;
    Router::new()
        .route("/", get(page))
        .route("/api/v1/cluster", get(cluster_json))
        .route("/events", get(events))
        .route(
            "/config",
            post(post_config).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::layers::require_admin,
            )),
        )
        .route("/static/dashboard.js", get(script))
        .route("/static/dashboard.css", get(style))
        .route("/healthz", get(healthz))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(http_layers::ObserveLayer::new(http_layers::AccessLog))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let snap = state.monitor.snapshot();
    Json(serde_json::json!({
        "status": "ok",
        "zookeeper": snap.zookeeper,
    }))
    .into_response()
}

async fn cluster_json(State(state): State<AppState>) -> Response {
    let snap = state.monitor.snapshot();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(snap.as_ref().clone()),
    )
        .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    since: Option<u64>,
}

async fn events(State(state): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many event streams",
        )
            .into_response();
    };
    let stream = crate::sse::stream(state.monitor.clone(), q.since.unwrap_or(0), permit);
    Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct EditForm {
    key: &'static str,
    znode: &'static str,
    version: String,
    version_text: String,
    value: String,
    hint: &'static str,
}

#[derive(Template)]
#[template(path = "page.html")]
struct Page {
    rendered_ms: i64,
    rendered_at: String,
    history_url: Option<String>,
    grafana_url: Option<String>,
    flash: Option<(&'static str, String)>,
    sections: Vec<(&'static str, String)>,
    sensors: Vec<SensorRow>,
    sensor_total: usize,
    matching: usize,
    first: usize,
    last: usize,
    query: String,
    prev_url: Option<String>,
    next_url: Option<String>,
    events: Vec<String>,
    last_seq: u64,
    read_only: bool,
    forms: Vec<EditForm>,
}

#[derive(Deserialize, Default)]
struct PageQuery {
    q: Option<String>,
    page: Option<usize>,
    saved: Option<String>,
}

fn page_url(q: &str, page: usize) -> String {
    let mut url = format!("/?page={page}");
    if !q.is_empty() {
        url.push_str("&q=");
        url.extend(form_encode(q));
    }
    url
}

fn form_encode(s: &str) -> impl Iterator<Item = String> + '_ {
    s.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        }
    })
}

fn render_page(
    state: &AppState,
    q: &PageQuery,
    flash: Option<(&'static str, String)>,
) -> Result<String, askama::Error> {
    let snap = state.monitor.snapshot();
    let cluster = snap.cluster.as_ref();
    let query = clip(q.q.as_deref().unwrap_or("").trim(), 64);
    let total_pages_hint = usize::MAX / SENSORS_PER_PAGE;
    let page = q.page.unwrap_or(0).min(total_pages_hint);
    let (sensors, matching) = view::sensor_page(cluster, &query, page);
    let first = page * SENSORS_PER_PAGE + 1;
    let last = page * SENSORS_PER_PAGE + sensors.len();
    let (events, last_seq) = state.monitor.with_timeline(|t| {
        (
            t.events()
                .rev()
                .take(EVENTS_SHOWN)
                .map(view::event_html)
                .collect(),
            t.last_seq(),
        )
    });
    let forms = cluster
        .map(|c| {
            ConfigKey::ALL
                .iter()
                .map(|k| {
                    let item = c.config.item(*k);
                    let value = match item.entry.source {
                        ValueSource::Default => item.entry.default.clone().unwrap_or_default(),
                        _ => item.entry.stored.clone().unwrap_or_default(),
                    };
                    EditForm {
                        key: k.name(),
                        znode: k.znode(),
                        version: item.version.map_or("absent".to_string(), |v| v.to_string()),
                        version_text: item.version.map_or("absent".to_string(), |v| v.to_string()),
                        value,
                        hint: match k {
                            ConfigKey::SamplingPeriod => "seconds, e.g. 5 or 0.5",
                            ConfigKey::ApiUrl => "http(s) URL, e.g. http://api:8080",
                        },
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let api = state
        .settings
        .api_public_url
        .clone()
        .or_else(|| snap.averages.source.clone());
    let now = crate::snapshot::now_ms();
    let saved_flash = q.saved.as_deref().and_then(|k| {
        edit::parse_key(k)
            .ok()
            .map(|k| ("b-ok", format!("Saved {}.", k.name())))
    });
    Page {
        rendered_ms: now,
        rendered_at: view::utc_time(now),
        history_url: api.map(|a| format!("{a}/")),
        grafana_url: state.settings.grafana_url.clone(),
        flash: flash.or(saved_flash),
        sections: view::sections(&snap),
        sensor_total: cluster.map_or(0, |c| c.sensors.len()),
        prev_url: (page > 0).then(|| page_url(&query, page - 1)),
        next_url: (last < matching).then(|| page_url(&query, page + 1)),
        sensors,
        matching,
        first,
        last,
        query,
        events,
        last_seq,
        read_only: state.settings.admin_token.is_none(),
        forms,
    }
    .render()
}

fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(b) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            b,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page render failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "render error").into_response()
        }
    }
}

async fn page(
    State(state): State<AppState>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query (page=abc) shows the first page rather than an error.
    let q = q.map(|Query(q)| q).unwrap_or_default();
    html(StatusCode::OK, render_page(&state, &q, None))
}

#[derive(Deserialize)]
struct ConfigForm {
    key: String,
    value: String,
    version: String,
    #[serde(default)]
    editor: String,
}

/// `POST /config`, once [`crate::layers::require_admin`] has checked the admin token.
async fn post_config(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<ConfigForm>,
) -> Response {
    let editor = printable(form.editor.trim(), 64);
    let result = async {
        let key = edit::parse_key(&form.key)?;
        let expected = edit::parse_version(&form.version)?;
        let old = state
            .monitor
            .snapshot()
            .cluster
            .as_ref()
            .and_then(|c| c.config.item(key).entry.stored.clone());
        let written = edit::write(
            &state.session,
            key,
            &form.value,
            expected,
            state.settings.zk_timeout,
        )
        .await?;
        tracing::info!(
            editor = %editor,
            peer = %peer,
            key = key.name(),
            old = ?old,
            new = %written.stored,
            version = written.version,
            "config written from the dashboard"
        );
        Ok::<_, EditError>((key, written))
    }
    .await;
    match result {
        Ok((key, written)) => {
            // Show the new value (and version) on the page we redirect to.
            state.monitor.refresh_now();
            let mut rx = state.monitor.subscribe();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                rx.wait_for(|s| {
                    s.cluster
                        .as_ref()
                        .is_some_and(|c| c.config.item(key).version >= Some(written.version))
                }),
            )
            .await;
            Redirect::to(&format!("/?saved={}", key.name())).into_response()
        }
        Err(e) => refused(&state, Some(peer), &form.editor, &form.key, &e),
    }
}

/// Free text from the form goes into log lines: no control characters (no forged lines),
/// at most `max` characters.
fn printable(s: &str, max: usize) -> String {
    clip(&s.replace(char::is_control, " "), max)
}

/// A refused config edit (by the admin layer or the handler): logged once, with the
/// peer, the key and the editor's name (never the token), and answered with the page
/// showing why, in the refusal's status.
pub(crate) fn refused(
    state: &AppState,
    peer: Option<std::net::SocketAddr>,
    editor: &str,
    key: &str,
    e: &EditError,
) -> Response {
    tracing::warn!(
        editor = %printable(editor.trim(), 64),
        peer = %peer.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        key = %printable(key, 40),
        error = %e,
        "config edit refused"
    );
    html(
        e.status(),
        render_page(
            state,
            &PageQuery::default(),
            Some(("b-error", e.to_string())),
        ),
    )
}
