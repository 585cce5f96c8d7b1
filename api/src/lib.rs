//! `sensor-api`: stores the sensor cluster's round averages in Redis and shows them.
//!
//! # How a value gets here and what happens to it
//! The elected leader node computes one *average* per round and POSTs it to
//! `/api/v1/averages` (one JSON object, or an array when it drains a backlog). The leader
//! may retry, crash and be replaced, and a deposed leader may still be talking: so ingest is
//! **idempotent on the round** (a repeat with the same value succeeds and stores nothing, a
//! different value for a stored round is 409) and **fenced** (a fencing token lower than the
//! highest one accepted is 409). Both checks and the write run in one Lua script inside
//! Redis ([`store`]), never as read-then-write from Rust, so two API instances sharing one
//! Redis stay correct. Old clients still call `GET /nuevo?dato=<value>` ([`routes::ingest`]):
//! such a *legacy point* is stored with the server's time as round 0, leader `"legacy"`,
//! samples 1, fencing 0, numbered by its own counter (so it never collides with node
//! rounds and is never deduplicated); it shows up in the history, the JSON list, the stats
//! and the Grafana endpoints like any other point, but not under `/api/v1/averages/{round}`.
//! With `ZOOKEEPER_HOSTS` set, the instance announces itself under `/services/api`
//! ([`registration`]) so nodes find live instances.
//!
//! Reads: a JSON API (`/api/v1/averages`, `/api/v1/averages/{round}`, `/api/v1/stats`,
//! [`routes::averages`]), the server-rendered history page at `/` ([`routes::history`]),
//! and operations endpoints `/healthz`, `/readyz`, `/metrics` ([`routes::health`]).
//! Every range query is O(log n + page) on a sorted set by time; aggregates come from
//! rollups maintained at ingest, so the page and the stats stay fast at 10 million points.
//!
//! # Failure behaviour
//! * Redis down or slow: every request that needs it answers 503 JSON (with `Retry-After`)
//!   within the Redis timeout; the process stays up and reconnects by itself.
//! * Bad input: 400 JSON `{"error", "field"}`; nothing is stored. Oversized bodies: 413.
//! * Requests running longer than the request timeout: 503.
//! * Hostile requests (see the README's "Limits"): every parser and loop is bounded by a
//!   constant or a setting, never by the request alone; refusals are 400 naming the input.
//!
//! The router is assembled in one place, [`app`], with its layers ([`layers`]: write
//! auth, access log, request metrics, timeout; plus body limit, JSON error bodies, the
//! concurrency limit on expensive reads, security headers): handlers contain only their own
//! logic. [`serve`] adds the connection-level limits (header-read timeout, connection cap).

pub mod config;
pub mod error;
pub mod fence;
pub mod fence_cmd;
pub mod grafana;
pub mod layers;
pub mod metrics;
pub mod prom;
pub mod registration;
pub mod retention;
pub mod routes;
pub mod series;
pub mod serve;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::fence::FenceCheck;
use crate::layers::auth::RequireToken;
use crate::layers::json_errors::JsonErrorsLayer;
use crate::layers::request_metrics::RequestMetrics;
use crate::layers::timeout::TimeoutLayer;
use crate::metrics::Metrics;
use crate::routes::ingest::Plausibility;
use crate::store::Store;
use http_layers::{AccessLog, ObserveLayer};
use sensor_common::Secret;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything a handler needs; cheap to clone (all fields are shared handles).
#[derive(Clone)]
pub struct AppState {
    /// The Redis store.
    pub store: Store,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Bearer token required for writes; `None` leaves writes open.
    pub api_token: Option<Arc<Secret>>,
    /// Host name of this instance (shown on the history page).
    pub hostname: Arc<str>,
    /// Requests running longer are answered 503.
    pub request_timeout: Duration,
    /// Most expensive reads running at once (see [`app`]).
    pub max_concurrent_reads: usize,
    /// Which `taken_at` times ingest accepts.
    pub plausibility: Plausibility,
    /// Refuses forged fencing tokens; `None` without ZooKeeper (tokens are trusted).
    pub fence: Option<FenceCheck>,
}

/// The router's state: the [`AppState`] behind one shared pointer, so handing it to a
/// request costs one reference count instead of one per field.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// State with fresh metrics, no token, this machine's host name and a 10 s timeout.
    pub fn new(store: Store) -> AppState {
        AppState {
            store,
            metrics: Arc::new(Metrics::new()),
            api_token: None,
            hostname: Arc::from(config::Config::hostname()),
            request_timeout: Duration::from_secs(10),
            max_concurrent_reads: 2,
            plausibility: Plausibility::default(),
            fence: None,
        }
    }

    /// Requires `Authorization: Bearer <token>` on writes (`None` = open; checked by
    /// [`layers::auth`]).
    pub fn with_token(mut self, token: Option<Secret>) -> AppState {
        self.api_token = token.map(Arc::new);
        self
    }
}

/// Content-Security-Policy of the HTML pages: only our own static script and stylesheet,
/// no inline code, no framing.
pub const HTML_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The whole HTTP application: every route, the JSON 404/405 fallbacks, and the layers
/// of [`layers`] in their order (see the table there).
///
/// Writes (`POST /api/v1/averages`, `GET /nuevo`) require the API token ([`layers::auth`]).
/// Expensive reads (`/grafana/*`, `/prom/*`, the history page, the JSON list and stats)
/// share one concurrency limit of [`AppState::max_concurrent_reads`]: excess requests wait
/// for a slot within the request timeout (then 503), while `/healthz`, `/readyz`,
/// `/metrics` and ingest never wait behind them.
pub fn app(state: AppState) -> Router {
    use axum::routing::{get, post};
    use routes::{averages, health, history, ingest};

    let token = state.api_token.clone();
    let writes = Router::new()
        .route("/api/v1/averages", post(ingest::post_averages))
        .route_layer(RequireToken::bearer(token.clone()))
        .merge(
            Router::new()
                .route("/nuevo", get(ingest::legacy))
                .route_layer(RequireToken::bearer_or_query(token)),
        );
    let reads = GlobalConcurrencyLimitLayer::new(state.max_concurrent_reads.max(1));
    let expensive = Router::new()
        .route("/", get(history::page))
        .route("/api/v1/averages", get(averages::list))
        .route("/api/v1/stats", get(averages::stats))
        .merge(grafana::router())
        .merge(prom::router())
        .route_layer(reads);
    Router::new()
        .route("/static/history.css", get(history::stylesheet))
        .route("/static/history.js", get(history::script))
        .route("/api/v1/averages/{round}", get(averages::one))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(writes)
        .merge(expensive)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(JsonErrorsLayer)
        .layer(TimeoutLayer::new(state.request_timeout))
        .layer(ObserveLayer::new((
            AccessLog,
            RequestMetrics(state.metrics.clone()),
        )))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            |response: &Response| {
                let html = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/html"));
                html.then(|| HeaderValue::from_static(HTML_CSP))
            },
        ))
        .with_state(Arc::new(state))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
