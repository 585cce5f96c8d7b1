//! The access log: one line per request, target `access`, at `info`.
//!
//! Fields: `method`, `route` (the matched pattern, e.g. `/api/v1/averages/{round}`, or
//! `unmatched`), `status`, `latency_ms` (until the response head; a streamed body is not
//! waited for). Deliberately absent: the raw path and query string (the legacy `/nuevo`
//! carries the API token in `?token=`, and a hostile client chooses the path) and every
//! header (`Authorization`).

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Middleware (`from_fn`): logs the request once its answer is ready.
pub async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = super::route_of(&req);
    let response = next.run(req).await;
    tracing::info!(
        target: "access",
        %method,
        %route,
        status = response.status().as_u16(),
        latency_ms = start.elapsed().as_micros() as f64 / 1000.0,
        "request"
    );
    response
}
