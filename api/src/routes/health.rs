//! Operations endpoints: liveness, readiness, Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::SharedState;

/// How long `/metrics` waits for Redis before reporting it down (a scrape must stay quick).
const METRICS_PING_TIMEOUT: Duration = Duration::from_millis(500);

/// `GET /healthz`: 200 while the process serves HTTP (no Redis check: a Redis outage must
/// not get the API restarted).
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when Redis answers PING, 503 otherwise.
pub async fn readyz(State(state): State<SharedState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text format. Always 200, also while Redis is down
/// (`sensor_api_redis_up 0` then).
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let redis_up = matches!(
        tokio::time::timeout(METRICS_PING_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    if redis_up {
        // Keep the last-round gauge right across restarts and with several instances.
        if let Ok(Ok(round)) =
            tokio::time::timeout(METRICS_PING_TIMEOUT, state.store.last_round()).await
        {
            if round > 0 {
                state.metrics.saw_round(round);
            }
        }
    }
    let body = state.metrics.render(state.store.latency(), redis_up);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
