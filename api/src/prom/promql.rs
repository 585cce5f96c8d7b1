//! The PromQL subset we answer: number arithmetic and plain vector selectors.
//!
//! Grammar (whitespace allowed between tokens):
//!
//! ```text
//! expr     := term (('+' | '-') term)*
//! term     := unary (('*' | '/' | '%') unary)*
//! unary    := ('+' | '-') unary | primary
//! primary  := number | '(' expr ')' | selector
//! selector := metric_name ['{' matchers '}'] | '{' matchers '}'
//! matchers := [matcher (',' matcher)* [',']]
//! matcher  := label_name ('=' | '!=' | '=~' | '!~') string
//! ```
//!
//! Arithmetic is only allowed between numbers (so Grafana's health check `1+1` works);
//! functions, aggregations, range selectors (`[5m]`), `offset`, `@` and arithmetic on
//! series are outside the subset and fail with a [`ParseError`] whose message says what is
//! unsupported. Regex matchers are fully anchored, as in Prometheus.
//!
//! # Limits (hostile input)
//! Every read endpoint is public, so the parser bounds its own cost: a query longer than
//! [`MAX_QUERY_BYTES`], nesting deeper than [`MAX_DEPTH`] (parentheses and unary signs
//! recurse), more than [`MAX_MATCHERS`] matchers in one selector, or a regex whose compiled
//! program exceeds [`REGEX_SIZE_LIMIT`] is refused with a [`ParseError`] (400 `bad_data`)
//! before any work is done. Parsing is thus O(query length) with a bounded stack, and one
//! matcher costs at most a small, fixed amount of memory and time.

use regex::{Regex, RegexBuilder};

/// Longest accepted query text in bytes (Grafana's queries here are a few dozen bytes).
pub const MAX_QUERY_BYTES: usize = 4096;
/// Deepest accepted nesting of parentheses and unary signs.
pub const MAX_DEPTH: usize = 64;
/// Most matchers one selector may carry (our series have two labels).
pub const MAX_MATCHERS: usize = 16;
/// Largest compiled program of one regex matcher, in bytes (the regex crate's
/// `size_limit`; its default is 10 MiB, which lets ``\w{200}`` cost seconds and megabytes).
pub const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// Why an expression is outside the supported subset (shown to Grafana users verbatim).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at char {position})")]
pub struct ParseError {
    /// What went wrong.
    pub message: String,
    /// Byte offset into the query where it went wrong.
    pub position: usize,
}

/// A parsed query.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A constant (result type `scalar`).
    Number(f64),
    /// A vector selector (result type `vector` or `matrix`).
    Selector(Selector),
}

/// A label matcher operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored regex)
    Regex,
    /// `!~` (anchored regex)
    NotRegex,
}

/// One `label op "value"` matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name (`__name__` for the metric name).
    pub label: String,
    /// Operator.
    pub op: MatchOp,
    /// The literal value (the regex source for regex operators).
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; compiles (anchored) regexes, failing on invalid ones.
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .nest_limit(MAX_DEPTH as u32)
                    .build()
                    .map_err(|e| match e {
                        regex::Error::CompiledTooBig(limit) => format!(
                            "regular expression {value:?} is too complex (compiled size limit {limit} bytes)"
                        ),
                        e => format!("invalid regular expression {value:?}: {e}"),
                    })?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a label value (empty string when the label is absent) satisfies this matcher.
    pub fn matches(&self, actual: &str) -> bool {
        let regex_hit = || self.regex.as_ref().is_some_and(|r| r.is_match(actual));
        match self.op {
            MatchOp::Equal => actual == self.value,
            MatchOp::NotEqual => actual != self.value,
            MatchOp::Regex => regex_hit(),
            MatchOp::NotRegex => !regex_hit(),
        }
    }
}

/// A vector selector: all matchers must hold (the metric name is a `__name__` matcher).
#[derive(Debug, Clone)]
pub struct Selector {
    /// The matchers, including `__name__="<metric>"` when a metric name was written.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Whether a series with these labels is selected. `labels` must include `__name__`.
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        self.matchers.iter().all(|m| {
            let actual = labels
                .iter()
                .find(|(name, _)| *name == m.label)
                .map_or("", |(_, v)| *v);
            m.matches(actual)
        })
    }
}

/// Parses a query into an [`Expr`], evaluating number arithmetic on the way. Refuses
/// queries over the limits in the module doc.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            message: format!(
                "query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
                query.len()
            ),
            position: MAX_QUERY_BYTES,
        });
    }
    let mut p = Parser {
        src: query,
        pos: 0,
        depth: 0,
    };
    let expr = p.expr()?;
    p.skip_ws();
    if p.pos < p.src.len() {
        return Err(p.error(format!("unexpected {:?}", p.rest_preview())));
    }
    Ok(expr)
}

/// Parses a `match[]` style series selector (no arithmetic allowed).
pub fn parse_selector(query: &str) -> Result<Selector, ParseError> {
    match parse(query)? {
        Expr::Selector(s) => Ok(s),
        Expr::Number(_) => Err(ParseError {
            message: "expected a series selector, got a number".into(),
            position: 0,
        }),
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Current recursion depth of [`Parser::unary`], bounded by [`MAX_DEPTH`].
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: String) -> ParseError {
        ParseError {
            message,
            position: self.pos,
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn rest_preview(&self) -> String {
        self.rest().chars().take(20).collect()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        loop {
            let trimmed = self.rest().trim_start();
            self.pos = self.src.len() - trimmed.len();
            // Comments run to the end of the line.
            if !trimmed.starts_with('#') {
                return;
            }
            self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        loop {
            let start = self.pos;
            let op = if self.eat("+") {
                '+'
            } else if self.eat("-") {
                '-'
            } else {
                return Ok(left);
            };
            let right = self.term()?;
            left = self.arith(left, op, right, start)?;
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let start = self.pos;
            let op = if self.eat("*") {
                '*'
            } else if self.eat("/") {
                '/'
            } else if self.eat("%") {
                '%'
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = self.arith(left, op, right, start)?;
        }
    }

    fn arith(&self, left: Expr, op: char, right: Expr, at: usize) -> Result<Expr, ParseError> {
        match (left, right) {
            (Expr::Number(a), Expr::Number(b)) => Ok(Expr::Number(match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                '/' => a / b,
                _ => a % b,
            })),
            _ => Err(ParseError {
                message: format!(
                    "arithmetic on series (`{op}`) is not supported; only plain selectors and number arithmetic are"
                ),
                position: at,
            }),
        }
    }

    /// Every recursion of the grammar (signs, parentheses) passes through here, so the
    /// depth check bounds the stack for any input.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("expression nests deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        if self.eat("-") {
            return match self.unary()? {
                Expr::Number(n) => Ok(Expr::Number(-n)),
                Expr::Selector(_) => Err(ParseError {
                    message: "negating a series is not supported".into(),
                    position: start,
                }),
            };
        }
        if self.eat("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err(self.error("unexpected end of query".into()));
        };
        if self.eat("(") {
            let inner = self.expr()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`".into()));
            }
            return self.no_suffix(inner);
        }
        if c.is_ascii_digit() || c == '.' {
            return self.number();
        }
        if c == '{' {
            let matchers = self.matchers()?;
            return self.selector(matchers);
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = self.pos;
            let name = self.ident(true);
            let lower = name.to_ascii_lowercase();
            if lower == "inf" || lower == "nan" {
                return Ok(Expr::Number(if lower == "inf" {
                    f64::INFINITY
                } else {
                    f64::NAN
                }));
            }
            self.skip_ws();
            if self.peek() == Some('(') {
                self.pos = start;
                return Err(
                    self.error(format!("function or aggregation `{name}` is not supported"))
                );
            }
            let mut matchers =
                vec![Matcher::new("__name__", MatchOp::Equal, name).map_err(|m| self.error(m))?];
            if self.peek() == Some('{') {
                matchers.extend(self.matchers()?);
            }
            return self.selector(matchers);
        }
        Err(self.error(format!("unexpected {:?}", self.rest_preview())))
    }

    /// Rejects what may follow an operand in PromQL but is outside the subset.
    fn no_suffix(&mut self, expr: Expr) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.peek() == Some('[') {
            return Err(
                self.error("range selectors and subqueries (`[...]`) are not supported".into())
            );
        }
        if self.peek() == Some('@') {
            return Err(self.error("the `@` modifier is not supported".into()));
        }
        let rest = self.rest();
        if rest.starts_with("offset")
            && !rest[6..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            return Err(self.error("the `offset` modifier is not supported".into()));
        }
        Ok(expr)
    }

    fn selector(&mut self, matchers: Vec<Matcher>) -> Result<Expr, ParseError> {
        if matchers.iter().all(|m| m.matches("")) {
            return Err(
                self.error("vector selector must contain at least one non-empty matcher".into())
            );
        }
        self.no_suffix(Expr::Selector(Selector { matchers }))
    }

    fn ident(&mut self, metric: bool) -> &'a str {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_alphabetic()
                    || c == '_'
                    || (metric && c == ':')
                    || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(rest.len(), |(i, _)| i);
        self.pos += len;
        &rest[..len]
    }

    fn number(&mut self) -> Result<Expr, ParseError> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| {
                let prev = rest[..i].chars().last();
                !(c.is_ascii_digit()
                    || c == '.'
                    || c == 'e'
                    || c == 'E'
                    || ((c == '+' || c == '-') && matches!(prev, Some('e' | 'E'))))
            })
            .map_or(rest.len(), |(i, _)| i);
        let text = &rest[..len];
        let value: f64 = text
            .parse()
            .map_err(|_| self.error(format!("invalid number {text:?}")))?;
        self.pos += len;
        self.skip_ws();
        if self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(self.error(
                "durations are only valid in range selectors, which are not supported".into(),
            ));
        }
        Ok(Expr::Number(value))
    }

    fn matchers(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let mut out = Vec::new();
        if !self.eat("{") {
            return Err(self.error("expected `{`".into()));
        }
        loop {
            if self.eat("}") {
                return Ok(out);
            }
            self.skip_ws();
            let label = self.ident(false);
            if label.is_empty() {
                return Err(self.error("expected a label name".into()));
            }
            let op = if self.eat("=~") {
                MatchOp::Regex
            } else if self.eat("!~") {
                MatchOp::NotRegex
            } else if self.eat("!=") {
                MatchOp::NotEqual
            } else if self.eat("=") {
                MatchOp::Equal
            } else {
                return Err(self.error("expected one of `=`, `!=`, `=~`, `!~`".into()));
            };
            let value = self.string()?;
            if out.len() >= MAX_MATCHERS {
                return Err(
                    self.error(format!("more than {MAX_MATCHERS} matchers in one selector"))
                );
            }
            out.push(Matcher::new(label, op, &value).map_err(|m| self.error(m))?);
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(out);
            }
            return Err(self.error("expected `,` or `}`".into()));
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let Some(quote) = self.peek().filter(|c| matches!(c, '"' | '\'' | '`')) else {
            return Err(self.error("expected a quoted string".into()));
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                out.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
        Err(self.error("unterminated string".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(q: &str) -> f64 {
        match parse(q).unwrap() {
            Expr::Number(n) => n,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn selector(q: &str) -> Selector {
        match parse(q) {
            Ok(Expr::Selector(s)) => s,
            other => panic!("{q}: {other:?}"),
        }
    }

    #[test]
    fn grafana_health_check_and_arithmetic() {
        assert_eq!(number("1+1"), 2.0);
        assert_eq!(number(&format!("{}1", "-".repeat(MAX_DEPTH - 1))), -1.0);
        assert_eq!(number("# comment\n# another\n 3"), 3.0);
        assert_eq!(number(&format!("{}1", "# c\n".repeat(1000))), 1.0);
        assert_eq!(number(" 2 * (3 + 4) - -1 "), 15.0);
        assert_eq!(number("1e3 / 4"), 250.0);
        assert_eq!(number("7 % 4"), 3.0);
    }

    #[test]
    fn selectors_and_matchers() {
        let avg = [("__name__", "sensor_average"), ("job", "zk-sensors")];
        let samples = [("__name__", "sensor_samples"), ("job", "zk-sensors")];
        let s = selector("sensor_average");
        assert!(s.matches(&avg) && !s.matches(&samples));
        let s = selector("sensor_average{}");
        assert!(s.matches(&avg));
        let s = selector(r#"sensor_average{job="zk-sensors", }"#);
        assert!(s.matches(&avg));
        let s = selector(r#"sensor_average{job!="zk-sensors"}"#);
        assert!(!s.matches(&avg));
        let s = selector(r#"{__name__=~"sensor_.*"}"#);
        assert!(s.matches(&avg) && s.matches(&samples));
        let s = selector(r#"{__name__=~"sensor_a"}"#);
        assert!(!s.matches(&avg), "regexes are anchored");
        let s = selector(r#"{__name__=~'sensor_(average|x)', job!~"other"}"#);
        assert!(s.matches(&avg) && !s.matches(&samples));
        let s = selector(r#"sensor_average{instance=""}"#);
        assert!(s.matches(&avg), "absent labels are empty");
    }

    #[test]
    fn unsupported_queries_fail_with_a_reason() {
        for (q, why) in [
            ("rate(sensor_average[5m])", "function"),
            ("sum(sensor_average)", "function"),
            ("sensor_average[5m]", "range selectors"),
            ("sensor_average offset 5m", "offset"),
            ("sensor_average @ 100", "`@`"),
            ("sensor_average * 2", "arithmetic"),
            ("-sensor_average", "negating"),
            ("{}", "non-empty matcher"),
            (r#"{job=~".*"}"#, "non-empty matcher"),
            (r#"sensor_average{job~"x"}"#, "expected one of"),
            (r#"sensor_average{job="x"#, "unterminated"),
            (r#"{__name__=~"("}"#, "invalid regular expression"),
            ("1 +", "end of query"),
            ("", "end of query"),
            ("5m", "durations"),
            ("sensor_average sensor_samples", "unexpected"),
            ("-".repeat(8000).as_str(), "bytes long"),
            (
                format!("{}1{}", "(".repeat(100), ")".repeat(100)).as_str(),
                "nests deeper",
            ),
            (
                format!("{}1", "-".repeat(MAX_DEPTH + 1)).as_str(),
                "nests deeper",
            ),
            (r#"{l1=~`\w{200}`}"#, "too complex"),
            (
                format!("{{{}}}", vec![r#"job="x""#; MAX_MATCHERS + 1].join(",")).as_str(),
                "matchers in one selector",
            ),
        ] {
            let err = parse(q).expect_err(q);
            assert!(err.message.contains(why), "{q}: {err}");
        }
    }
}
