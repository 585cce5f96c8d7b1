//! Validation of the values operators set: the live config (`/config/sampling_period`,
//! `/config/api_url`), the ZooKeeper connect string and node ids. One function per value,
//! used by `sensor-node` (flags and live config), `sensorctl` (before it writes) and the
//! dashboard (before it writes), so no writer can store a value the fleet would ignore.

use std::time::Duration;

/// Longest accepted sampling period (one hour): longer is almost certainly a typo (ms?).
pub const MAX_SAMPLING_PERIOD: Duration = Duration::from_secs(3600);
/// Shortest accepted sampling period: below 1 ms the value rounds to nothing.
pub const MIN_SAMPLING_PERIOD: Duration = Duration::from_millis(1);
/// Sampling period used when neither the flag/env nor ZooKeeper say otherwise.
pub const DEFAULT_SAMPLING_PERIOD: Duration = Duration::from_secs(5);

/// A setting with an unusable value. Names the setting so the operator knows what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `value` is not acceptable for `field` (e.g. `sampling_period`, `api_url`, `id`, `zk`).
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The setting, as operators know it (`sampling_period`, `api_url`, `id`, `zk`, ...).
        field: &'static str,
        /// The rejected value, verbatim.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No `--id`/`NODE_ID` was given and the hostname could not be read or is not a valid id.
    #[error("no node id: set --id or NODE_ID ({0})")]
    NoNodeId(String),
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `field`.
    pub fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// The setting this error is about (`id` for [`ConfigError::NoNodeId`]).
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Invalid { field, .. } => field,
            ConfigError::NoNodeId(_) => "id",
        }
    }
}

/// Parses a sampling period in seconds, ASCII decimal (`5`, `0.5`, `12.25`), as written in
/// `/config/sampling_period` or given as `--sampling-period`.
///
/// Accepts finite values in [0.001, 3600]; rejects `abc`, `-1`, `0`, `NaN`, `inf`, empty.
pub fn parse_sampling_period(raw: &str) -> Result<Duration, ConfigError> {
    const FIELD: &str = "sampling_period";
    let text = raw.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "empty; expected seconds, e.g. 5 or 0.5",
        ));
    }
    let secs: f64 = text.parse().map_err(|_| {
        ConfigError::invalid(FIELD, raw, "not a number; expected seconds, e.g. 5 or 0.5")
    })?;
    if !secs.is_finite() {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "must be a finite number of seconds",
        ));
    }
    if secs <= 0.0 {
        return Err(ConfigError::invalid(FIELD, raw, "must be greater than 0"));
    }
    if secs > MAX_SAMPLING_PERIOD.as_secs_f64() {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "must be at most 3600 seconds",
        ));
    }
    let period = Duration::from_secs_f64(secs);
    if period < MIN_SAMPLING_PERIOD {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "must be at least 0.001 seconds",
        ));
    }
    Ok(period)
}

/// Parses the API's base URL (`http://api:8080`, `https://x.example/prefix`), as written in
/// `/config/api_url`, `/services/api/*` or given as `--api-url`.
///
/// Requires an `http` or `https` scheme and a host; no query or fragment (paths are appended
/// to it). Returns the URL in normal form without trailing `/`, so
/// `format!("{base}/api/v1/averages")` is always well-formed.
pub fn parse_api_url(raw: &str) -> Result<String, ConfigError> {
    const FIELD: &str = "api_url";
    let text = raw.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "empty; expected e.g. http://api:8080",
        ));
    }
    let url = url::Url::parse(text).map_err(|e| {
        ConfigError::invalid(FIELD, raw, format!("{e}; expected e.g. http://api:8080"))
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "scheme must be http or https",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(FIELD, raw, "no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "must not have a query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Validates a node id: it becomes the znode name `/mediciones/<id>`, so it must be
/// non-empty, at most 128 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn parse_node_id(raw: &str) -> Result<String, ConfigError> {
    const FIELD: &str = "id";
    if raw.is_empty() {
        return Err(ConfigError::invalid(FIELD, raw, "empty"));
    }
    if raw.len() > 128 {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "longer than 128 characters",
        ));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            format!("character {bad:?} not allowed; use only A-Z a-z 0-9 . _ -"),
        ));
    }
    if raw == "." || raw == ".." {
        return Err(ConfigError::invalid(FIELD, raw, "not a valid znode name"));
    }
    Ok(raw.to_string())
}

/// Validates a ZooKeeper connect string: `host:port[,host:port...][/chroot]`.
///
/// Hosts are names or IPv4 addresses (`[v6]` in brackets), ports 1..=65535; the optional
/// chroot is an absolute path without empty, `.` or `..` segments.
pub fn parse_zk_hosts(raw: &str) -> Result<String, ConfigError> {
    const FIELD: &str = "zk";
    let text = raw.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(
            FIELD,
            raw,
            "empty; expected host:port[,host:port][/chroot]",
        ));
    }
    let (hosts, chroot) = match text.find('/') {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    for entry in hosts.split(',') {
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(ConfigError::invalid(
                FIELD,
                raw,
                format!("{entry:?} is not host:port"),
            ));
        };
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            !v6.is_empty()
                && v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        } else {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        };
        if !host_ok {
            return Err(ConfigError::invalid(
                FIELD,
                raw,
                format!("bad host {host:?} in {entry:?}"),
            ));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return Err(ConfigError::invalid(
                    FIELD,
                    raw,
                    format!("bad port {port:?} in {entry:?}"),
                ))
            }
        }
    }
    if let Some(root) = chroot {
        if root != "/" {
            let bad = root[1..]
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..");
            if bad {
                return Err(ConfigError::invalid(
                    FIELD,
                    raw,
                    format!("bad chroot {root:?}: empty, '.' or '..' segment"),
                ));
            }
        }
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_period_accepts_decimals_and_rejects_nonsense() {
        assert_eq!(parse_sampling_period("5").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_sampling_period(" 0.5\n").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_sampling_period("3600").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in [
            "abc",
            "-1",
            "0",
            "0.0",
            "NaN",
            "inf",
            "",
            "3600.5",
            "0.0000001",
            "5s",
        ] {
            let err = parse_sampling_period(bad).unwrap_err();
            assert_eq!(err.field(), "sampling_period", "{bad}");
            assert!(err.to_string().contains("sampling_period"), "{err}");
        }
    }

    #[test]
    fn api_url_needs_scheme_and_host() {
        assert_eq!(
            parse_api_url("http://api:8080/").unwrap(),
            "http://api:8080"
        );
        assert_eq!(
            parse_api_url("https://x.example/p").unwrap(),
            "https://x.example/p"
        );
        for bad in [
            "api:8080",
            "localhost",
            "ftp://x",
            "http://",
            "",
            "http://a/?q=1",
        ] {
            let err = parse_api_url(bad).unwrap_err();
            assert_eq!(err.field(), "api_url", "{bad}");
        }
    }

    #[test]
    fn node_id_is_a_znode_name() {
        assert_eq!(parse_node_id("node-1.a_b").unwrap(), "node-1.a_b");
        for bad in ["", "a/b", "a b", ".", "..", "é"] {
            assert_eq!(parse_node_id(bad).unwrap_err().field(), "id", "{bad}");
        }
    }

    #[test]
    fn zk_hosts_syntax() {
        for good in [
            "127.0.0.1:2181",
            "zk1:2181,zk2:2181,zk3:2181",
            "zk1:2181/app/x",
            "[::1]:2181",
            "zk:2181/",
        ] {
            assert_eq!(parse_zk_hosts(good).unwrap(), good);
        }
        for bad in [
            "",
            "zk1",
            "zk1:",
            "zk1:0",
            "zk1:99999",
            ":2181",
            "a:1,,b:2",
            "a:1/x//y",
            "a:1/x/",
        ] {
            assert_eq!(parse_zk_hosts(bad).unwrap_err().field(), "zk", "{bad}");
        }
    }
}
