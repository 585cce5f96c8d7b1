//! Secrets in configuration (`API_TOKEN`, the dashboard's `ADMIN_TOKEN`): a type that
//! cannot leak through a log line or a `{:?}`, and the one token comparison.

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret value. `Debug` and `Display` print `<redacted>`; the value is reachable only
/// through [`Secret::expose`], so every use of it is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: only to send it or compare it ([`Secret::matches`]).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared in constant time ([`ct_eq`]).
    pub fn matches(&self, given: &str) -> bool {
        ct_eq(self.0.as_bytes(), given.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

/// Compares two byte strings in time independent of where they differ (`subtle`); the
/// length is not hidden (a token's length is not secret enough to matter).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_compare_exactly() {
        let s = Secret::new("s3cret-token-0123456789");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert!(!format!("{:?}", Some(&s)).contains("s3cret"));
        assert!(s.matches("s3cret-token-0123456789"));
        assert!(!s.matches("s3cret-token-012345678"));
        assert!(!s.matches("s3cret-token-0123456780"));
        assert!(!s.matches(""));
        assert_eq!(s.expose(), "s3cret-token-0123456789");
    }
}
