//! The dashboard's cross-cutting HTTP concerns as layers; [`crate::web::app`] stacks them.
//!
//! | layer | where | what | on failure |
//! |---|---|---|---|
//! | security headers | every route | `nosniff`, CSP, no framing, no referrer | — |
//! | [`http_layers::AccessLog`] (shared with sensor-api) | every route | one `access` line: method, route pattern, status, latency (never the query string, the form or headers) | — |
//! | request timeout | every route | until the response head (an event stream then runs on) | 408 |
//! | body limit | every route | 16 KiB ([`crate::web::BODY_LIMIT`]) | 413 |
//! | [`require_admin`] | `POST /config` only | the admin token, constant-time ([`edit::check_token`]) | the page with the refusal: 403 read-only, 401 wrong or missing token; nothing parsed, ZooKeeper untouched |

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::edit;
use crate::web::{self, AppState, BODY_LIMIT};

/// Middleware (`route_layer` with the [`AppState`]) on config edits: the request passes
/// only with the admin token, from an `Authorization: Bearer <token>` header (scripts)
/// or else the form's `token` field (the page). A dashboard without a token refuses every
/// edit (403). The refusal is the page with the reason, logged with the peer, the key and
/// the editor's name, never the token.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let bearer = http_layers::bearer_token(req.headers());
    // The form is at most BODY_LIMIT bytes (the outer limit refuses more); read it once
    // here and hand the same bytes on to the handler.
    let (parts, body) = req.into_parts();
    let Ok(form) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "form too large or unreadable",
        )
            .into_response();
    };
    let field = |name: &str| {
        form_urlencoded::parse(&form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let presented = bearer.unwrap_or_else(|| field("token"));
    match edit::check_token(state.settings.admin_token.as_ref(), &presented) {
        Ok(()) => next.run(Request::from_parts(parts, Body::from(form))).await,
        Err(e) => web::refused(&state, peer, &field("editor"), &field("key"), &e),
    }
}
