//! Durations in flags and env vars: `500ms`, `10s`, `5m`, `2h`, `30d`, compound forms such
//! as `1m30s` (parsed by humantime, limited to these five units), a decimal with one unit
//! (`1.5s`), or a bare number of seconds (`10`, `0.5`).

use std::time::Duration;

/// The units a duration flag may name.
const UNITS: [&str; 5] = ["ms", "s", "m", "h", "d"];

/// Parses a duration flag (see the module doc).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let hint = "(e.g. 500ms, 10s, 5m, 2h, 30d)";
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
    }
    // Only the units the flags always took (humantime also knows years, months, ...).
    for unit in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|u| !u.is_empty())
    {
        if !UNITS.contains(&unit) {
            return Err(format!(
                "unknown duration unit {unit:?} in {text:?} (use ms, s, m, h, d)"
            ));
        }
    }
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(d);
    }
    // A decimal with one unit (`1.5s`, `0.5h`): humantime takes integers only, so scale
    // the unit it names.
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration {hint}"))?;
    let unit = humantime::parse_duration(&format!("1{}", unit.trim()))
        .map_err(|_| format!("unknown duration unit {:?} {hint}", unit.trim()))?;
    Duration::try_from_secs_f64(n * unit.as_secs_f64()).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses a positive number of seconds (`1`, `0.5`) up to one hour: the `SECONDS` flags
/// (timeouts, refresh intervals).
pub fn parse_seconds(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "invalid duration {raw:?}: expected seconds in (0, 3600], e.g. 1 or 0.5"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_the_flags_accepted_still_parses() {
        let ms = |n| Duration::from_millis(n);
        for (text, want) in [
            ("250ms", ms(250)),
            ("10s", ms(10_000)),
            ("5m", ms(300_000)),
            ("2h", ms(7_200_000)),
            ("30d", ms(2_592_000_000)),
            ("10", ms(10_000)),
            ("0.5", ms(500)),
            ("1.5s", ms(1_500)),
            ("0.5m", ms(30_000)),
            (" 3s ", ms(3_000)),
            ("1m30s", ms(90_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "abc", "5x", "5y", "2min", "-1s", "1.5.2s", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_flags_are_bounded() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "3601", "NaN", "inf", "1s", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
