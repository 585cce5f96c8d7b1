//! The observe layer: something that must see every answered request once (the access
//! log, request metrics), as a plain tower layer.
//!
//! Written as a [`tower::Service`] whose future wraps the inner one, rather than with
//! `axum::middleware::from_fn`: that clones the whole inner stack and boxes a service and
//! a future on every request, which measured as a large share of a small request's CPU
//! time on a 2-core machine (`bench/api/run.sh`). This layer allocates nothing per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::Route;

/// What an [`ObserveLayer`] reports each answered request to. Called once per response,
/// on the thread that produced it: keep it short (a counter, a log line).
pub trait Observer: Clone + Send + Sync + 'static {
    /// `method` of a request to `route` was answered with `status` after `latency` (until
    /// the response head: a streamed body is not waited for).
    fn observe(&self, method: &Method, route: &Route, status: StatusCode, latency: Duration);
}

/// Both observers, in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn observe(&self, method: &Method, route: &Route, status: StatusCode, latency: Duration) {
        self.0.observe(method, route, status, latency);
        self.1.observe(method, route, status, latency);
    }
}

/// Reports every answered request to an [`Observer`]. Add it with `Router::layer` (so
/// the matched route is known) and outside any timeout layer, so timed-out requests are
/// observed too.
#[derive(Clone, Debug)]
pub struct ObserveLayer<O> {
    observer: O,
}

impl<O> ObserveLayer<O> {
    /// A layer reporting to `observer`.
    pub fn new(observer: O) -> Self {
        ObserveLayer { observer }
    }
}

impl<S, O: Clone> Layer<S> for ObserveLayer<O> {
    type Service = Observe<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> Service<Request> for Observe<S, O>
where
    S: Service<Request, Response = Response>,
    O: Observer,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = req.method().clone();
        let route = Route::of(&req);
        ObserveFuture {
            inner: self.inner.call(req),
            start: Instant::now(),
            method,
            route,
            observer: self.observer.clone(),
        }
    }
}

pin_project! {
    /// The future of [`Observe`]: the inner response, reported when it is ready.
    pub struct ObserveFuture<F, O> {
        #[pin]
        inner: F,
        start: Instant,
        method: Method,
        route: Route,
        observer: O,
    }
}

impl<F, E, O> Future for ObserveFuture<F, O>
where
    F: Future<Output = Result<Response, E>>,
    O: Observer,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.observer.observe(
                this.method,
                this.route,
                response.status(),
                this.start.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}

/// The access log: one line per request, target `access`, at `info`, with `method`,
/// `route` ([`Route`]), `status` and `latency_ms`.
///
/// Deliberately absent: the raw path and query string (tokens travel in `?token=`, and a
/// hostile client chooses both), every header (`Authorization`) and the body (forms carry
/// tokens).
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLog;

impl Observer for AccessLog {
    fn observe(&self, method: &Method, route: &Route, status: StatusCode, latency: Duration) {
        tracing::info!(
            target: "access",
            %method,
            %route,
            status = status.as_u16(),
            latency_ms = latency.as_micros() as f64 / 1000.0,
            "request"
        );
    }
}
