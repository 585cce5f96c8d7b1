//! Grafana "JSON" datasource (`simpod-json-datasource`) endpoints, under `/grafana`.
//!
//! Grafana's plugin calls these when a dashboard renders: `GET /grafana` for "Save & test",
//! `POST /grafana/metrics` and friends to fill the query editor, and `POST /grafana/query`
//! for the data. Queries are **downsampled on the server**: the time range is cut into at
//! most `maxDataPoints` epoch-aligned buckets ([`grid`]), the store answers one aggregate
//! per non-empty bucket from its rollups, and every bucket becomes one point ([`crate::series`]),
//! `null` where no round was stored, so outages show as gaps. The cost of a query thus
//! depends on the number of pixels, not on the length of the history.
//!
//! Failure behaviour: a request we cannot answer gets a non-2xx status with
//! `{"message": "..."}`, which Grafana shows on the panel: 400 for a bad query (unknown
//! metric, unsupported aggregation, malformed body or range), 503 when Redis is
//! unreachable, 500 for unexpected data in Redis. A 200 always carries the array the
//! spec describes.

mod catalog;
pub mod grid;
pub mod protocol;
mod query;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::store::StoreError;
use crate::SharedState;

/// The `/grafana` routes; merge into the application router.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/grafana", get(catalog::health))
        .route("/grafana/", get(catalog::health))
        .route("/grafana/metrics", post(catalog::metrics))
        .route(
            "/grafana/metric-payload-options",
            post(catalog::metric_payload_options),
        )
        .route("/grafana/variable", post(catalog::variable))
        .route("/grafana/tag-keys", post(catalog::tag_keys))
        .route("/grafana/tag-values", post(catalog::tag_values))
        .route("/grafana/query", post(query::query))
}

/// Why a datasource request failed; rendered as `{"message": ...}` for Grafana to show.
#[derive(Debug, thiserror::Error)]
pub enum GrafanaError {
    /// The request is malformed or asks for something we do not offer (400).
    #[error("{0}")]
    BadRequest(String),
    /// Redis could not answer (503; Grafana retries on the next refresh), or answered
    /// something unexpected (500).
    #[error("sensor store: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for GrafanaError {
    fn into_response(self) -> Response {
        let status = match &self {
            GrafanaError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // A read the query planner refuses (too costly): the message says what to ask.
            GrafanaError::Store(StoreError::InvalidArgument(_)) => StatusCode::BAD_REQUEST,
            GrafanaError::Store(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, "grafana query failed: store unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            GrafanaError::Store(error) => {
                tracing::error!(%error, "grafana query failed: store error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = serde_json::json!({ "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

/// Parses a JSON request body leniently: an empty body is the type's default, unknown
/// fields are ignored, and any content type is accepted (some Grafana versions omit it).
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, GrafanaError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| GrafanaError::BadRequest(format!("invalid JSON request body: {e}")))
}
