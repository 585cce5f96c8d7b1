//! HTTP delivery of committed rounds to sensor-api, with API discovery and back-off.
//!
//! [`Delivery::deliver`] makes **one attempt** to hand a batch of rounds to the API: it
//! POSTs the batch to each candidate instance in order until one answers. Retrying (with
//! [`Backoff`]) is the caller's job — the outbox loop, which also decides what to do with
//! each [`DeliveryError`]:
//!
//! | answer | error | what the caller does |
//! |---|---|---|
//! | 2xx whose JSON [`BatchAnswer`] has one result per item sent, same rounds, each `stored` or `duplicate` | — | the batch is stored (or was already: the API is idempotent on round); delete it from the outbox |
//! | any other 2xx (no JSON, `{}`, missing, extra, reordered or rejected items) | next candidate, then [`DeliveryError::Unavailable`] | keep the batch; retry later (this is not an API that stored it) |
//! | 3xx (never followed) | next candidate, then [`DeliveryError::Unavailable`] naming the `Location` | fix `API_URL`; keep the batch |
//! | 409 with an item `stale_leader` | [`DeliveryError::StaleLeader`] | stop acting as leader |
//! | 409 with an item `conflict` (or no typed results) | [`DeliveryError::Conflict`] | set the round aside (or retry later if unattributed) |
//! | 401 / 403 | [`DeliveryError::Unauthorized`] | fix the token; retry later |
//! | 400 / 413 / 422 | [`DeliveryError::Rejected`] | the payload is refused (e.g. batch too large) |
//! | 5xx, 404, connect error, timeout | next candidate, then [`DeliveryError::Unavailable`] | retry later |
//!
//! Redirects are not followed: reqwest would turn a redirected POST into a GET of the
//! `Location`, and a public page answering 200 to that GET would read as "delivered" while
//! nothing was stored. Answers are decoded into the shared wire types of [`crate::result`]
//! ([`BatchAnswer`], [`ErrorBody`], [`ItemStatus`]); no error text is searched.
//!
//! Candidates, in order: the live `/config/api_url` (or the `--api-url` default while that
//! znode is absent), then the instances registered under `/services/api` (ephemeral znodes
//! whose data is a base URL), without duplicates. A candidate that fails is skipped for this
//! attempt only; the next attempt starts again from the first, so a preferred API that comes
//! back is used again at once.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::{parse_api_url, LiveConfig};
use crate::layout;
use crate::result::{BatchAnswer, ErrorBody, ItemStatus};
use crate::zk::{ChildrenWatch, Session};
use crate::RoundResult;
pub use sensor_common::backoff::Backoff;
use sensor_common::Secret;

/// Path of the ingest endpoint, appended to a base URL.
pub const AVERAGES_PATH: &str = "/api/v1/averages";
/// Default per-request timeout (connect + send + answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the discovered instances' data is re-read even without a membership change.
const DISCOVERY_REFRESH: Duration = Duration::from_secs(10);

/// Why a delivery attempt did not store the batch.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The API holds a higher fencing token: we are a deposed leader. Stop leading.
    #[error("API at {url} rejected our fencing token (stale leader): {message}")]
    StaleLeader {
        /// The instance that answered.
        url: String,
        /// The API's error message.
        message: String,
    },
    /// The API stores a round of this batch with a different value. Retrying cannot help;
    /// it means two leaders committed the same round differently (a protocol bug) or the
    /// API's store was written by someone else.
    #[error("API at {url} holds a different value for round {round:?}: {message}")]
    Conflict {
        /// The conflicting round, when the API says which one.
        round: Option<u64>,
        /// The instance that answered.
        url: String,
        /// The API's error message.
        message: String,
    },
    /// 401/403: missing or wrong `API_TOKEN`. Other instances share the token, so they are
    /// not tried.
    #[error("API at {url} refused our token (HTTP {status})")]
    Unauthorized {
        /// The instance that answered.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The API refused the payload itself (400, 413, 422, ...): a bug, a batch too large, or
    /// (field `taken_at`) a round time the API finds implausible: a clock is wrong
    /// ([`DeliveryError::is_taken_at`]).
    #[error("API at {url} rejected the batch (HTTP {status}{}): {message}", .field.as_deref().map(|f| format!(", field {f}")).unwrap_or_default())]
    Rejected {
        /// The instance that answered.
        url: String,
        /// The status code.
        status: u16,
        /// The input the API blames, when it says.
        field: Option<String>,
        /// The API's error message.
        message: String,
    },
    /// No candidate stored the batch (down, 5xx, timeout) or there is no candidate at all.
    /// Retry later with back-off.
    #[error("no API instance available ({})", describe_failures(.failures))]
    Unavailable {
        /// `(base URL, reason)` per candidate tried; empty when there was no candidate.
        failures: Vec<(String, String)>,
    },
}

fn describe_failures(failures: &[(String, String)]) -> String {
    if failures.is_empty() {
        return "no API URL configured and none registered under /services/api".to_string();
    }
    failures
        .iter()
        .map(|(url, why)| format!("{url}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DeliveryError {
    /// Whether the same batch may succeed later without anyone fixing anything
    /// ([`DeliveryError::Unavailable`] only).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Unavailable { .. })
    }

    /// Whether the API refused a round's `taken_at` (400 naming that field, e.g. "more than
    /// 300 s ahead of the server's clock"): clock skew between whoever stamped the round and
    /// the API. Told apart by the typed `field` of the API's answer (the field may be
    /// `taken_at` or `[3].taken_at` for an item of a batch), never by the message.
    pub fn is_taken_at(&self) -> bool {
        matches!(self, DeliveryError::Rejected { field: Some(f), .. }
            if f == "taken_at" || f.ends_with(".taken_at"))
    }
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Base URL of the instance that stored the batch (empty for an empty batch).
    pub url: String,
    /// Number of rounds delivered.
    pub rounds: usize,
    /// The HTTP status (200 or 201 from sensor-api; 0 for an empty batch).
    pub status: u16,
}

/// Delivers batches of [`RoundResult`]s to sensor-api. Cheap to share by reference; holds a
/// pooled HTTP client (rustls) and a background discovery task that ends when the
/// `Delivery` is dropped or the session is closed.
pub struct Delivery {
    http: reqwest::Client,
    token: Option<Secret>,
    live: watch::Receiver<LiveConfig>,
    discovered: watch::Receiver<Vec<String>>,
}

impl Delivery {
    /// A delivery client sending `token` as bearer (if any), preferring the live config's
    /// API URL and falling back to instances discovered under `/services/api`. Must be
    /// called inside a tokio runtime. Fails only if the HTTP client cannot be built (TLS
    /// backend initialisation).
    pub fn new(
        token: Option<Secret>,
        live: watch::Receiver<LiveConfig>,
        session: &Session,
    ) -> Result<Delivery, reqwest::Error> {
        Self::with_timeout(token, live, session, REQUEST_TIMEOUT)
    }

    /// [`Delivery::new`] with another per-request timeout.
    pub fn with_timeout(
        token: Option<Secret>,
        live: watch::Receiver<LiveConfig>,
        session: &Session,
        timeout: Duration,
    ) -> Result<Delivery, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            // A followed redirect turns the POST into a GET of the target (see module doc).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (tx, discovered) = watch::channel(Vec::new());
        tokio::spawn(discover(session.clone(), tx));
        Ok(Delivery {
            http,
            token,
            live,
            discovered,
        })
    }

    /// The base URLs a delivery would try now, in order.
    pub fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(url) = self.live.borrow().api_url.clone() {
            out.push(url);
        }
        for url in self.discovered.borrow().iter() {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
        out
    }

    /// The instances currently registered under `/services/api` (valid URLs only, in
    /// znode-name order).
    pub fn discovered(&self) -> Vec<String> {
        self.discovered.borrow().clone()
    }

    /// One delivery attempt of `batch` (sent as one JSON array): tries each candidate once,
    /// in order, until one answers with something other than "unavailable". An empty batch
    /// succeeds without a request. See the module doc for the error mapping.
    pub async fn deliver(&self, batch: &[RoundResult]) -> Result<Delivered, DeliveryError> {
        if batch.is_empty() {
            return Ok(Delivered {
                url: String::new(),
                rounds: 0,
                status: 0,
            });
        }
        let first = batch.first().map(|r| r.round).unwrap_or_default();
        let last = batch.last().map(|r| r.round).unwrap_or_default();
        let mut failures = Vec::new();
        for base in self.candidates() {
            match self.post(&base, batch).await {
                Ok(status) => {
                    tracing::debug!(url = %base, first, last, rounds = batch.len(), status, "batch delivered");
                    return Ok(Delivered {
                        url: base,
                        rounds: batch.len(),
                        status,
                    });
                }
                Err(Attempt::Next(why)) => {
                    tracing::debug!(url = %base, first, last, reason = %why, "API instance unavailable; trying the next");
                    failures.push((base, why));
                }
                Err(Attempt::Final(err)) => return Err(err),
            }
        }
        Err(DeliveryError::Unavailable { failures })
    }

    async fn post(&self, base: &str, batch: &[RoundResult]) -> Result<u16, Attempt> {
        let mut req = self.http.post(format!("{base}{AVERAGES_PATH}")).json(batch);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await.map_err(|e| Attempt::Next(describe(&e)))?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_else(|| "(no Location header)".to_string());
            tracing::warn!(url = %base, status = status.as_u16(), location = %location, "API URL answers with a redirect; not following it (fix API_URL)");
            return Err(Attempt::Next(format!(
                "HTTP {} redirect to {location} (not followed: fix the API URL)",
                status.as_u16()
            )));
        }
        // A body we cannot read is treated as empty: the status alone then decides.
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return confirmation(status.as_u16(), &body, batch).map_err(Attempt::Next);
        }
        Err(classify(base, status.as_u16(), &body))
    }
}

/// Checks a 2xx answer: it must be the API's [`BatchAnswer`] confirming every round sent.
/// Anything else is not a delivery (the reason says why).
fn confirmation(status: u16, body: &[u8], batch: &[RoundResult]) -> Result<u16, String> {
    let answer: BatchAnswer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "HTTP {status} without the API's per-round answer ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        )
    })?;
    answer
        .confirms(batch)
        .map(|()| status)
        .map_err(|why| format!("HTTP {status} does not confirm the batch: {why}"))
}

/// What one candidate's failure means for the attempt.
enum Attempt {
    /// Try the next candidate (this one is down or not an API).
    Next(String),
    /// Stop: the answer is about the batch or about us, not about this instance.
    Final(DeliveryError),
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    }
}

/// Maps a non-2xx, non-3xx answer. The API's error body is an [`ErrorBody`]; on 409 its
/// `results` say which round was rejected and how. A 409 without typed results (not our
/// API, or a garbled answer) is a [`DeliveryError::Conflict`] with no round: the caller
/// retries later rather than guess.
fn classify(base: &str, status: u16, body: &[u8]) -> Attempt {
    let decoded: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let message = decoded
        .as_ref()
        .map(|b| b.error.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let url = base.to_string();
    match status {
        409 => {
            let body = decoded.unwrap_or_default();
            if body.first_with(ItemStatus::StaleLeader).is_some() {
                return Attempt::Final(DeliveryError::StaleLeader { url, message });
            }
            let round = body.first_with(ItemStatus::Conflict).map(|r| r.round);
            Attempt::Final(DeliveryError::Conflict {
                round,
                url,
                message,
            })
        }
        401 | 403 => Attempt::Final(DeliveryError::Unauthorized { url, status }),
        400 | 413 | 422 => Attempt::Final(DeliveryError::Rejected {
            url,
            status,
            field: decoded.and_then(|b| b.field),
            message,
        }),
        _ => Attempt::Next(format!("HTTP {status}: {message}")),
    }
}

/// Reads the base URL of each registration; `None` if ZooKeeper could not be asked (the
/// caller keeps what it had). Vanished znodes and invalid URLs are skipped.
async fn read_registrations(session: &Session, names: &[String]) -> Option<Vec<String>> {
    let client = session.client().ok()?;
    let mut urls = Vec::with_capacity(names.len());
    for name in names {
        let path = layout::api_instance(name);
        let read = tokio::time::timeout(Duration::from_secs(5), client.get_data(&path));
        let data = match read.await {
            Ok(Ok((data, _))) => data,
            Ok(Err(zookeeper_client::Error::NoNode)) => continue,
            Ok(Err(e)) => {
                tracing::debug!(znode = %path, error = %e, "cannot read API registration");
                return None;
            }
            Err(_) => return None,
        };
        let text = String::from_utf8_lossy(&data);
        match parse_api_url(&text) {
            Ok(url) if !urls.contains(&url) => urls.push(url),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(znode = %path, value = %text, error = %e, "ignoring API registration with an invalid URL")
            }
        }
    }
    Some(urls)
}

/// Keeps `tx` filled with the valid base URLs registered under `/services/api`, re-reading
/// their data on every membership change and every [`DISCOVERY_REFRESH`]. Invalid data is
/// skipped (debug log).
async fn discover(session: Session, tx: watch::Sender<Vec<String>>) {
    let mut children = ChildrenWatch::start(&session, layout::SERVICES_API);
    let closed = session.closed();
    tokio::pin!(closed);
    loop {
        let listing = children.borrow_and_update().clone();
        // While disconnected or unsure, keep the last known instances rather than none.
        if listing.known {
            if let Some(urls) = read_registrations(&session, &listing.names).await {
                tx.send_if_modified(|cur| {
                    if *cur == urls {
                        return false;
                    }
                    tracing::info!(instances = ?urls, "API instances discovered under /services/api");
                    *cur = urls;
                    true
                });
            }
        }
        tokio::select! {
            r = children.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(DISCOVERY_REFRESH) => {}
            _ = tx.closed() => return,
            _ = &mut closed => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_told_apart_by_typed_status() {
        let stale = br#"{"error":"fencing token 3 is older than 5","field":"round","results":[{"round":7,"status":"stale_leader"}]}"#;
        assert!(matches!(
            classify("u", 409, stale),
            Attempt::Final(DeliveryError::StaleLeader { .. })
        ));
        let conflict = br#"{"error":"round 7 stored with another value","field":"round","results":[{"round":6,"status":"duplicate"},{"round":7,"status":"conflict"}]}"#;
        assert!(matches!(
            classify("u", 409, conflict),
            Attempt::Final(DeliveryError::Conflict { round: Some(7), .. })
        ));
        // Words in the message decide nothing: without typed results it is an
        // unattributed conflict (retried later), never "stale leader".
        let untyped = br#"{"error":"stale leader: fencing","field":"fencing"}"#;
        assert!(matches!(
            classify("u", 409, untyped),
            Attempt::Final(DeliveryError::Conflict { round: None, .. })
        ));
        let skew = br#"{"error":"taken_at is more than 300 s ahead of the server's clock","field":"[0].taken_at"}"#;
        match classify("u", 400, skew) {
            Attempt::Final(e) => assert!(e.is_taken_at(), "{e}"),
            Attempt::Next(why) => panic!("not final: {why}"),
        }
        let other = br#"{"error":"value must be finite","field":"[0].value"}"#;
        match classify("u", 400, other) {
            Attempt::Final(e) => assert!(!e.is_taken_at(), "{e}"),
            Attempt::Next(why) => panic!("not final: {why}"),
        }
        assert!(matches!(classify("u", 503, b""), Attempt::Next(_)));
        assert!(matches!(classify("u", 404, b"nope"), Attempt::Next(_)));
        assert!(matches!(
            classify("u", 401, b""),
            Attempt::Final(DeliveryError::Unauthorized { status: 401, .. })
        ));
    }

    #[test]
    fn a_success_status_alone_is_not_a_delivery() {
        let batch = [RoundResult {
            round: 4,
            value: 1.0,
            samples: 1,
            leader: "n1".into(),
            fencing: 1,
            taken_at: "2026-01-01T00:00:00Z".into(),
            cluster: Default::default(),
        }];
        assert!(confirmation(200, b"<html>list</html>", &batch).is_err());
        assert!(confirmation(200, b"{}", &batch).is_err());
        let ok = br#"{"stored":1,"duplicates":0,"results":[{"round":4,"status":"stored"}]}"#;
        assert_eq!(confirmation(201, ok, &batch), Ok(201));
    }
}
