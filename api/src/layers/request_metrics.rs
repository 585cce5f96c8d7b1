//! Request metrics: every answered request is counted by route pattern and status, and
//! its latency observed by route pattern and status class, in the process's
//! [`Metrics`](crate::metrics::Metrics) (rendered at `/metrics`).
//!
//! Labels come from the matched route pattern only (see [`http_layers::Route`]), so the set
//! of series is bounded by the router, whatever URLs clients send.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::Metrics;

/// Middleware (`from_fn_with_state` with the metrics): records the answer's status and
/// the time until it was ready.
pub async fn request_metrics(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = http_layers::Route::of(&req);
    let response = next.run(req).await;
    metrics.observe_request(route.as_str(), response.status().as_u16(), start.elapsed());
    response
}
