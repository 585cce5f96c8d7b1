//! The request timeout: a request (reading its body included) that runs longer than
//! [`crate::AppState::request_timeout`] is dropped and answered 503 with `Retry-After`, the
//! answer a Redis outage gets, so clients retry both the same way. Dropping the handler's
//! future cancels its Redis call; a script Redis already started still completes there, and
//! the idempotent ingest makes the client's retry safe.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Middleware (`from_fn_with_state` with the timeout): runs the rest of the stack within
/// `limit`, else answers [`ApiError::Unavailable`] and logs a warning naming the route.
pub async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = http_layers::Route::of(&req);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, %route, timeout_ms = limit.as_millis() as u64, "request timed out");
            ApiError::Unavailable.into_response()
        }
    }
}
