//! Cross-cutting HTTP concerns as layers, so handlers contain only their own logic.
//!
//! [`crate::app`] stacks them in one place. A request passes them top to bottom; the
//! answer comes back bottom to top:
//!
//! | layer | where | what it does | on failure |
//! |---|---|---|---|
//! | security headers | every route | `nosniff`; a CSP on HTML answers | — |
//! | [`http_layers::AccessLog`] | every route | one `access` log line: method, route pattern, status, latency (never the query string or headers: tokens travel there) | — |
//! | [`request_metrics`] (one [`http_layers::ObserveLayer`] with the access log) | every route | `sensor_api_http_requests_total{route,status}` and `sensor_api_http_request_duration_seconds{route,class}` | — |
//! | [`timeout`] | every route | bounds the whole request, body reading included (a slow body counts) | 503 JSON + `Retry-After` |
//! | [`json_errors`] | every route | axum's plain-text rejections become JSON in the called API's envelope | — |
//! | body limit | every route | 64 KiB ([`crate::BODY_LIMIT`]) | 413 JSON |
//! | [`auth`] | write routes only | `Authorization: Bearer <token>` (legacy `/nuevo`: or `?token=`), constant-time | 401 JSON + `WWW-Authenticate`, before the body is read or Redis is touched |
//! | concurrency limit | expensive reads only | at most `MAX_CONCURRENT_READS` at once; the rest wait | waiting counts against the timeout |
//!
//! The metrics and the access log label a request by the route *pattern* axum matched
//! (`/api/v1/averages/{round}`), or `unmatched` ([`http_layers::Route`]): never by the
//! raw path, so hostile URLs cannot grow the metric series or forge log fields. The access
//! log and the token comparison are shared with the dashboard ([`http_layers`]).

//!
//! Every layer is a plain [`tower::Layer`] whose future wraps the inner one (no
//! `axum::middleware::from_fn`, which clones the inner stack and boxes a service and a
//! future per request: on a 2-core machine the four such layers cost about a third of a
//! small request's CPU time).

pub mod auth;
pub mod json_errors;
pub mod request_metrics;
pub mod timeout;
