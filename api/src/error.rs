//! The one error type of every handler, and how it becomes an HTTP response.
//!
//! Every error answer is JSON: `{"error": "<what is wrong>", "field": "<which input>"}`
//! (`field` only when one input is to blame), so clients never parse HTML or plain text.
//! The shape is the wire contract's [`ErrorBody`], the type the nodes decode it into.
//! Errors our handlers never see (axum's extractor rejections: bad path parameters,
//! oversized bodies, wrong content types) are rewritten to JSON by
//! [`crate::layers::json_errors`], in the
//! envelope of the API they hit (`/prom` Prometheus', `/grafana` the datasource's).
//!
//! Every 503 carries `Retry-After`: Redis unreachable, slow, or refusing for a transient
//! server-side reason (OOM under `noeviction`, READONLY replica, BUSY script, LOADING,
//! MASTERDOWN: see `store::StoreError`), and requests over the request timeout.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sensor_coord::wire::{ErrorBody, ItemResult};

use crate::store::StoreError;

/// Why a request failed. Each variant maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the input is malformed or out of range; `field` names it.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending input (query parameter, JSON field or `body`).
        field: String,
    },
    /// 401: a write without the right bearer token.
    #[error("missing or wrong API token")]
    Unauthorized,
    /// 404: unknown route or record.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a round stored with another value, or a stale fencing token. `detail` carries
    /// the per-item outcome for batches.
    #[error("{message}")]
    Conflict {
        /// What conflicted.
        message: String,
        /// The per-item outcome, in request order (the wire contract's statuses, which
        /// the leader decodes to tell a conflict from a stale leader).
        results: Vec<ItemResult>,
    },
    /// 413: the body exceeds the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// 503: Redis is down or slow, or the request took too long; the client should retry.
    #[error("storage unavailable, retry later")]
    Unavailable,
    /// 500: a bug or corrupt data; details are logged, not sent.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// Shorthand for [`ApiError::BadRequest`].
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: field.to_string(),
        }
    }

    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(err) => {
                tracing::warn!(error = %err, "redis unavailable");
                ApiError::Unavailable
            }
            StoreError::InvalidArgument(msg) => ApiError::bad("query", msg),
            StoreError::Corrupt(msg) => {
                tracing::error!(error = %msg, "unexpected data in redis");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let blamed = |field: &str| Some(field.to_string());
        let body = match &self {
            ApiError::BadRequest { message, field } => ErrorBody {
                error: message.clone(),
                field: blamed(field),
                results: Vec::new(),
            },
            ApiError::TooLarge(_) => ErrorBody {
                error: self.to_string(),
                field: blamed("body"),
                results: Vec::new(),
            },
            ApiError::Conflict { message, results } => ErrorBody {
                error: message.clone(),
                field: blamed("round"),
                results: results.clone(),
            },
            other => ErrorBody {
                error: other.to_string(),
                ..ErrorBody::default()
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
