//! Request metrics: every answered request is counted by route pattern and status, and
//! its latency observed by route pattern and status class, in the process's
//! [`Metrics`] (rendered at `/metrics`).
//!
//! Labels come from the matched route pattern only (see [`http_layers::Route`]), so the set
//! of series is bounded by the router, whatever URLs clients send. An
//! [`http_layers::Observer`]: stacked with the access log in one
//! [`http_layers::ObserveLayer`].

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use http_layers::{Observer, Route};

use crate::metrics::Metrics;

/// Records each answer's status and the time until it was ready.
#[derive(Clone, Debug)]
pub struct RequestMetrics(pub Arc<Metrics>);

impl Observer for RequestMetrics {
    fn observe(&self, _method: &Method, route: &Route, status: StatusCode, latency: Duration) {
        self.0
            .observe_request(route.as_str(), status.as_u16(), latency);
    }
}
