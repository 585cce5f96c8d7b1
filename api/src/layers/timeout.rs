//! The request timeout: a request (reading its body included) that runs longer than
//! [`crate::AppState::request_timeout`] is dropped and answered 503 with `Retry-After`, the
//! answer a Redis outage gets, so clients retry both the same way. Dropping the handler's
//! future cancels its Redis call; a script Redis already started still completes there, and
//! the idempotent ingest makes the client's retry safe.
//!
//! A plain tower layer (the timer lives inside the request's future: nothing is boxed or
//! cloned per request).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use http_layers::Route;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::error::ApiError;

/// Answers [`ApiError::Unavailable`] (and logs a warning naming the route) when the rest
/// of the stack has not answered within `limit`.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// A layer bounding each request to `limit`.
    pub fn new(limit: Duration) -> TimeoutLayer {
        TimeoutLayer { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for Timeout<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = req.method().clone();
        let route = Route::of(&req);
        TimeoutFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.limit),
            limit: self.limit,
            method,
            route,
        }
    }
}

pin_project! {
    /// The future of [`Timeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        limit: Duration,
        method: Method,
        route: Route,
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        if this.sleep.poll(cx).is_ready() {
            tracing::warn!(method = %this.method, route = %this.route, timeout_ms = this.limit.as_millis() as u64, "request timed out");
            return Poll::Ready(Ok(ApiError::Unavailable.into_response()));
        }
        Poll::Pending
    }
}
