//! Write authorization: the one place the API token is checked.
//!
//! Applied with `route_layer` to the write routes only (`POST /api/v1/averages`,
//! `GET /nuevo`); reads stay public. The check runs before the handler, so a refused
//! write never has its body read, never reaches Redis and stores nothing.
//!
//! | request | answer |
//! |---|---|
//! | no token configured | passes (writes open; start-up logs it) |
//! | `Authorization: Bearer <token>` (scheme in any case) | passes |
//! | `GET /nuevo?...&token=<token>` (the old clients' way; no `Authorization` header) | passes |
//! | missing, wrong, or `?token=` on any other route | 401 `{"error": "missing or wrong API token"}`, `WWW-Authenticate: Bearer` |
//!
//! The comparison is constant-time ([`Secret::matches`]), so response times do
//! not reveal how much of a guess was right. Neither token is ever logged.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use http_layers::bearer_token;
use sensor_common::Secret;
use tower::{Layer, Service};

use crate::error::ApiError;

/// What a group of write routes requires. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RequireToken {
    expected: Option<Arc<Secret>>,
    query_param: bool,
}

impl RequireToken {
    /// `Authorization: Bearer <expected>`; `None` leaves the routes open.
    pub fn bearer(expected: Option<Arc<Secret>>) -> RequireToken {
        RequireToken {
            expected,
            query_param: false,
        }
    }

    /// Same, or `?token=<expected>` when the request has no bearer token (only for the
    /// legacy endpoint, whose clients cannot set headers).
    pub fn bearer_or_query(expected: Option<Arc<Secret>>) -> RequireToken {
        RequireToken {
            expected,
            query_param: true,
        }
    }

    /// Whether a request with these headers and query string may pass.
    pub fn admits(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let Some(expected) = &self.expected else {
            return true;
        };
        let query = query.filter(|_| self.query_param);
        let presented = bearer_token(headers).or_else(|| {
            // The last `token=` wins, as in the query extractor's map.
            form_urlencoded::parse(query?.as_bytes())
                .filter(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .last()
        });
        presented.is_some_and(|p| expected.matches(&p))
    }
}

/// A [`RequireToken`] is the layer (add it with `route_layer`): requests it does not
/// admit are refused with [`ApiError::Unauthorized`] before the handler runs.
impl<S> Layer<S> for RequireToken {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorized {
            inner,
            rule: self.clone(),
        }
    }
}

/// The service of the [`RequireToken`] layer.
#[derive(Clone, Debug)]
pub struct Authorized<S> {
    inner: S,
    rule: RequireToken,
}

impl<S> Service<Request> for Authorized<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if self.rule.admits(req.headers(), req.uri().query()) {
            Either::Left(self.inner.call(req))
        } else {
            Either::Right(ready(Ok(ApiError::Unauthorized.into_response())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn bearer_token_rules() {
        let token = Some(Arc::new(Secret::new("0123456789abcdef")));
        let auth = RequireToken::bearer(token.clone());
        assert!(auth.admits(&headers(Some("Bearer 0123456789abcdef")), None));
        assert!(auth.admits(&headers(Some("bEaReR  0123456789abcdef ")), None));
        assert!(!auth.admits(&headers(Some("Bearer 0123456789ABCDEF")), None));
        assert!(!auth.admits(&headers(Some("Bearer 0123456789abcde")), None));
        assert!(!auth.admits(&headers(Some("Basic 0123456789abcdef")), None));
        assert!(!auth.admits(&headers(None), None));
        assert!(
            !auth.admits(&headers(None), Some("token=0123456789abcdef")),
            "no query token on bearer-only routes"
        );
        let legacy = RequireToken::bearer_or_query(token);
        assert!(legacy.admits(&headers(None), Some("dato=1&token=0123456789abcdef")));
        assert!(legacy.admits(&headers(None), Some("token=x&token=0123456789abcdef")));
        assert!(!legacy.admits(&headers(None), Some("dato=1&token=nope")));
        assert!(
            !legacy.admits(
                &headers(Some("Bearer wrong")),
                Some("token=0123456789abcdef")
            ),
            "a bearer header, when present, is the credential"
        );
        let open = RequireToken::bearer(None);
        assert!(open.admits(&headers(None), None));
    }
}
