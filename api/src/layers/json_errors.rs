//! JSON errors everywhere: rewrites every plain-text (or empty) error response into JSON in
//! the envelope of the API that was called, and adds `Retry-After` to any 503 lacking it.
//! JSON and HTML error responses (the history page's own 503 page) pass unchanged.
//!
//! The errors this catches are the ones our handlers never see: axum's extractor
//! rejections (bad path parameters, oversized bodies, wrong content types). A successful
//! response passes with no work; only a plain-text error has its (short) body read.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use sensor_coord::wire::ErrorBody;
use serde_json::json;
use tower::{Layer, Service};

/// Longest rejection text kept when rewriting a plain-text error (axum's are one line).
const REJECTION_TEXT_LIMIT: usize = 4096;

/// Which error shape the called API speaks, from the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Envelope {
    /// `/prom/*`: Prometheus' `{"status":"error","errorType":..,"error":..}`.
    Prometheus,
    /// `/grafana`, `/grafana/*`: the JSON datasource's `{"message":..}`.
    Grafana,
    /// Everything else: our [`ErrorBody`].
    Api,
}

impl Envelope {
    fn of(path: &str) -> Envelope {
        if path.starts_with("/prom/") {
            Envelope::Prometheus
        } else if path == "/grafana" || path.starts_with("/grafana/") {
            Envelope::Grafana
        } else {
            Envelope::Api
        }
    }
}

/// The layer (add it with `Router::layer`, inside the timeout).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonErrorsLayer;

impl<S> Layer<S> for JsonErrorsLayer {
    type Service = JsonErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors { inner }
    }
}

/// The service of [`JsonErrorsLayer`].
#[derive(Clone, Debug)]
pub struct JsonErrors<S> {
    inner: S,
}

impl<S> Service<Request> for JsonErrors<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = JsonErrorsFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let envelope = Envelope::of(req.uri().path());
        JsonErrorsFuture::Inner {
            inner: self.inner.call(req),
            envelope,
        }
    }
}

type Rewrite = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    /// The future of [`JsonErrors`]: the inner response, then (errors in plain text
    /// only) its rewrite.
    #[project = JsonErrorsProj]
    pub enum JsonErrorsFuture<F, E> {
        /// Waiting for the inner service.
        Inner { #[pin] inner: F, envelope: Envelope },
        /// Reading a plain-text error's body to rewrite it.
        Rewrite { rewrite: Rewrite, error: std::marker::PhantomData<E> },
    }
}

impl<F, E> Future for JsonErrorsFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                JsonErrorsProj::Inner { inner, envelope } => {
                    let envelope = *envelope;
                    let mut response = ready!(inner.poll(cx))?;
                    let status = response.status();
                    if !(status.is_client_error() || status.is_server_error()) {
                        return Poll::Ready(Ok(response));
                    }
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        response
                            .headers_mut()
                            .entry(header::RETRY_AFTER)
                            .or_insert(HeaderValue::from_static("1"));
                    }
                    let plain = response
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_none_or(|v| v.starts_with("text/plain"));
                    if !plain {
                        return Poll::Ready(Ok(response));
                    }
                    self.set(JsonErrorsFuture::Rewrite {
                        rewrite: Box::pin(rewrite(envelope, response)),
                        error: std::marker::PhantomData,
                    });
                }
                JsonErrorsProj::Rewrite { rewrite, .. } => {
                    return Poll::Ready(Ok(ready!(rewrite.as_mut().poll(cx))));
                }
            }
        }
    }
}

/// The JSON version of a plain-text error response, in `envelope`'s shape.
async fn rewrite(envelope: Envelope, response: Response) -> Response {
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, REJECTION_TEXT_LIMIT)
        .await
        .unwrap_or_default();
    let mut text = String::from_utf8_lossy(&bytes).trim().to_string();
    if text.is_empty() {
        text = status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string();
    }
    let body = match envelope {
        Envelope::Prometheus => {
            let kind = match status {
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                s if s.is_client_error() => "bad_data",
                _ => "internal",
            };
            json!({"status": "error", "errorType": kind, "error": text})
        }
        Envelope::Grafana => json!({ "message": text }),
        Envelope::Api
            if matches!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE
            ) =>
        {
            json!(ErrorBody {
                error: text,
                field: Some("body".to_string()),
                results: Vec::new(),
            })
        }
        Envelope::Api => json!(ErrorBody {
            error: text,
            ..ErrorBody::default()
        }),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_by_path() {
        assert_eq!(Envelope::of("/prom/api/v1/query"), Envelope::Prometheus);
        assert_eq!(Envelope::of("/grafana"), Envelope::Grafana);
        assert_eq!(Envelope::of("/grafana/query"), Envelope::Grafana);
        assert_eq!(Envelope::of("/grafanax"), Envelope::Api);
        assert_eq!(Envelope::of("/api/v1/averages"), Envelope::Api);
    }
}
