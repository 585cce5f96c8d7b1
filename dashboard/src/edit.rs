//! Changing the live config from the page: token check, the nodes' own validation, and a
//! write that never silently overwrites someone else's.
//!
//! The form carries the znode version it was rendered with. The write is a compare-and-
//! set on that version (`setData(path, data, version)`), or a `create` when the form saw
//! no znode; a concurrent change makes it fail, and the second editor sees the current
//! value instead. Validation is [`ConfigKey::validate`], the function `sensorctl config
//! set` uses (it calls the nodes' `parse_sampling_period` / `parse_api_url`), so the
//! dashboard cannot store a value the fleet would ignore, and its refusal reads like the
//! nodes' own log line.
//!
//! | outcome | [`EditError`] | HTTP |
//! |---|---|---|
//! | no admin token configured | `ReadOnly` | 403 |
//! | missing or wrong token | `Unauthorized` | 401 |
//! | unknown key, bad version field | `BadRequest` | 400 |
//! | value refused by the nodes' validation | `Invalid` | 422 |
//! | znode changed (or appeared/vanished) since the form was shown | `Conflict` | 409 |
//! | ZooKeeper unreachable or slow | `Unavailable` | 503 (nothing or everything written: reload) |

use std::time::Duration;

use axum::http::StatusCode;
use sensor_common::Secret;
use sensor_coord::config::ConfigError;
use sensor_coord::layout;
use sensor_coord::status::ConfigKey;
use sensor_coord::zk::{self, Session};
use zookeeper_client as zkc;

use crate::snapshot::{clip, MAX_TEXT};

/// Why a config edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The dashboard has no admin token: edits are off.
    #[error("this dashboard is read-only (started without DASHBOARD_ADMIN_TOKEN)")]
    ReadOnly,
    /// The token is missing or wrong.
    #[error("wrong or missing admin token")]
    Unauthorized,
    /// A form field other than the value is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The nodes' validation refused the value (their message).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// Someone else changed the znode since the form was shown.
    #[error("{key} was changed by someone else since this page was loaded: it is now {} (version {}); nothing was written", .current.as_deref().unwrap_or("absent (nodes use their default)"), .version.map_or("absent".to_string(), |v| v.to_string()))]
    Conflict {
        /// The key.
        key: &'static str,
        /// Its value now (`None` = absent).
        current: Option<String>,
        /// Its version now.
        version: Option<i32>,
    },
    /// ZooKeeper did not answer.
    #[error("ZooKeeper unavailable ({0}); the value may or may not be written: reload and check")]
    Unavailable(String),
}

impl EditError {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            EditError::ReadOnly => StatusCode::FORBIDDEN,
            EditError::Unauthorized => StatusCode::UNAUTHORIZED,
            EditError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EditError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EditError::Conflict { .. } => StatusCode::CONFLICT,
            EditError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Compares `given` with the configured token in constant time ([`Secret::matches`]).
/// Never logs either.
pub fn check_token(expected: Option<&Secret>, given: &str) -> Result<(), EditError> {
    let expected = expected.ok_or(EditError::ReadOnly)?;
    if expected.matches(given) {
        Ok(())
    } else {
        Err(EditError::Unauthorized)
    }
}

/// Parses the key field.
pub fn parse_key(raw: &str) -> Result<ConfigKey, EditError> {
    ConfigKey::ALL
        .into_iter()
        .find(|k| k.name() == raw)
        .ok_or_else(|| {
            EditError::BadRequest(format!(
                "unknown key {:?}: expected sampling_period or api_url",
                clip(raw, 40)
            ))
        })
}

/// Parses the version field: `absent` (the form saw no znode) or the version number.
pub fn parse_version(raw: &str) -> Result<Option<i32>, EditError> {
    match raw.trim() {
        "absent" => Ok(None),
        v => v
            .parse::<i32>()
            .ok()
            .filter(|v| *v >= 0)
            .map(Some)
            .ok_or_else(|| {
                EditError::BadRequest(format!(
                    "invalid version {:?}: expected a znode version or \"absent\"",
                    clip(raw, 40)
                ))
            }),
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The stored text (normalised by the validation).
    pub stored: String,
    /// The znode's new version.
    pub version: i32,
}

/// Validates `value` for `key` and writes it if the znode is still at `expected`
/// (`None` = still absent). One attempt, bounded by `timeout`: a write is never retried
/// blindly, since a lost answer could hide a success.
pub async fn write(
    session: &Session,
    key: ConfigKey,
    value: &str,
    expected: Option<i32>,
    timeout: Duration,
) -> Result<Written, EditError> {
    let stored = key.validate(value)?;
    let client = session
        .wait_connected_for(timeout)
        .await
        .map_err(|e| EditError::Unavailable(e.to_string()))?;
    let attempt = async {
        let data = stored.as_bytes();
        let result = match expected {
            None => {
                zk::ensure_path(&client, layout::CONFIG)
                    .await
                    .map_err(|e| EditError::Unavailable(e.to_string()))?;
                client
                    .create(key.znode(), data, &zk::persistent())
                    .await
                    .map(|(stat, _)| stat.version.max(0))
            }
            Some(v) => client
                .set_data(key.znode(), data, Some(v))
                .await
                .map(|stat| stat.version),
        };
        match result {
            Ok(version) => Ok(version),
            Err(zkc::Error::NodeExists | zkc::Error::BadVersion | zkc::Error::NoNode) => {
                let (current, version) = match client.get_data(key.znode()).await {
                    Ok((data, stat)) => (
                        Some(clip(String::from_utf8_lossy(&data).trim(), MAX_TEXT)),
                        Some(stat.version),
                    ),
                    Err(_) => (None, None),
                };
                Err(EditError::Conflict {
                    key: key.name(),
                    current,
                    version,
                })
            }
            Err(e) => Err(EditError::Unavailable(e.to_string())),
        }
    };
    let version = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| EditError::Unavailable(format!("no answer within {timeout:?}")))??;
    Ok(Written { stored, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_fields() {
        assert!(matches!(check_token(None, "x"), Err(EditError::ReadOnly)));
        assert!(matches!(
            check_token(Some(&Secret::new("secret")), "secreT"),
            Err(EditError::Unauthorized)
        ));
        assert!(matches!(
            check_token(Some(&Secret::new("secret")), ""),
            Err(EditError::Unauthorized)
        ));
        assert!(check_token(Some(&Secret::new("secret")), "secret").is_ok());
        assert_eq!(parse_version("absent").unwrap(), None);
        assert_eq!(parse_version("3").unwrap(), Some(3));
        assert!(parse_version("-1").is_err());
        assert!(parse_key("sampling_period").is_ok());
        assert!(parse_key("<b>").is_err());
    }
}
