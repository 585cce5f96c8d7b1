//! Request parameters of the Prometheus HTTP API: times, durations, and the merge of
//! URL query and form body (Grafana sends GET or form-encoded POST, by configuration).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// All parameters of one request, URL query first, then the form body. Repeated keys
/// (`match[]`) keep every occurrence.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required parameter, or a message naming it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("missing parameter {key:?}"))
    }
}

/// Parses a Prometheus timestamp: Unix seconds (fractions allowed) or RFC 3339.
/// Returns epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && seconds.abs() < 1e14 {
            return Ok((seconds * 1000.0).round() as i64);
        }
        return Err(format!("cannot parse {text:?} to a valid timestamp"));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| format!("cannot parse {text:?} to a valid timestamp"))
}

/// Parses a Prometheus duration: seconds as a number (`15`, `0.5`) or units (`1m30s`,
/// `250ms`, `1h`, `2d`, `1w`, `1y`). Returns milliseconds (> 0).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bad = || format!("cannot parse {text:?} to a valid duration");
    if let Ok(seconds) = text.parse::<f64>() {
        let ms = (seconds * 1000.0).round();
        if !(1.0..1e15).contains(&ms) {
            return Err(bad());
        }
        return Ok(ms as i64);
    }
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    if total <= 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Formats epoch milliseconds as Prometheus' float seconds (`1700000000.5`).
pub fn seconds(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        serde_json::Value::from(ms / 1000)
    } else {
        serde_json::Value::from(ms as f64 / 1000.0)
    }
}

/// Formats a sample value the way Prometheus does: a string, `NaN`/`+Inf`/`-Inf` spelled out.
pub fn sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("4").unwrap(), 4000);
        assert_eq!(parse_time("1700000000.123").unwrap(), 1_700_000_000_123);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5+00:00").unwrap(),
            1_700_000_000_500
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.25").unwrap(), 250);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
        for bad in ["", "0", "-5", "1x", "m", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn value_formatting() {
        assert_eq!(seconds(4000), serde_json::json!(4));
        assert_eq!(seconds(4500), serde_json::json!(4.5));
        assert_eq!(sample_value(2.0), "2");
        assert_eq!(sample_value(21.25), "21.25");
        assert_eq!(sample_value(f64::NAN), "NaN");
        assert_eq!(sample_value(f64::INFINITY), "+Inf");
    }
}
