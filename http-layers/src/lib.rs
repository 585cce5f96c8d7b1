//! The HTTP concerns `sensor-api` and `sensor-dashboard` share, written once: the access
//! log and reading a bearer token (the comparison is `sensor_common::Secret::matches`, the
//! one constant-time comparison).
//!
//! Each service stacks its own layers (its auth rule, timeout answer and metrics differ:
//! see `sensor_api::layers` and `sensor_dashboard::layers`); what is identical lives here.
//! Everything labels a request by the route *pattern* the router matched ([`Route`]),
//! never by the raw path: a client chooses the path, and a path label would let it grow
//! the metric series or forge log fields.

#![warn(missing_docs)]

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap};

pub mod observe;

pub use observe::{AccessLog, ObserveLayer, Observer};

/// The route pattern the router matched for a request (e.g. `/api/v1/averages/{round}`),
/// or `unmatched` (404s). Available to layers added with `Router::layer`/`route_layer`,
/// which axum runs after routing. Cheap: it shares the router's string, no copy.
#[derive(Clone, Debug)]
pub struct Route(Option<MatchedPath>);

impl Route {
    /// The route of `req`.
    pub fn of(req: &Request) -> Route {
        Route(req.extensions().get::<MatchedPath>().cloned())
    }

    /// The pattern, or `unmatched`.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one. The scheme
/// is case-insensitive (RFC 7235); surrounding spaces are ignored; the token is not
/// altered otherwise.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(auth).expect("header"),
        );
        h
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(&headers("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(
            bearer_token(&headers(" bEaReR   abc ")).as_deref(),
            Some("abc")
        );
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
