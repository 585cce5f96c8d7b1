//! Reading our compose files the way `docker compose` does, for tests that check them
//! without a Docker engine.
//!
//! [`ComposeFile::load`] parses YAML, resolves merge keys (`<<: *anchor`, nested ones too),
//! and interpolates `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
//! `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, `$VAR` and `$$` in every string value with
//! variables from a `.env`-style file ([`read_env_file`], normally `.env.example`).
//!
//! One deliberate difference: compose replaces an unset `${VAR}` without a default by an
//! empty string (with a warning); here it is an error, so a compose file can never depend on
//! a variable that `.env.example` does not document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

/// What can go wrong reading a compose file or an env file.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse, or a merge key is malformed.
    #[error("yaml {path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A `${...}` expression cannot be resolved (unset variable, `:?` error, bad syntax).
    #[error("interpolation in {text:?}: {problem}")]
    Interpolation {
        /// The string being interpolated.
        text: String,
        /// What is wrong.
        problem: String,
    },
    /// A line of an env file is not `NAME=value`.
    #[error("{path}:{line}: not NAME=value")]
    EnvLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The document does not have the shape compose requires (e.g. `services` missing).
    #[error("{0}")]
    Shape(String),
}

/// The repository root (the directory holding the workspace `Cargo.toml` and the compose
/// files), found from this crate's location at compile time.
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The compose files we ship: `docker-compose.yml` and `docker-compose-cluster.yml`.
pub fn compose_files() -> Vec<PathBuf> {
    let root = repo_root();
    vec![
        root.join("docker-compose.yml"),
        root.join("docker-compose-cluster.yml"),
    ]
}

/// Parses a `.env` file: `NAME=value` lines; blank lines and `#` comments are skipped; an
/// optional `export ` prefix is allowed; a value in matching single or double quotes is
/// unquoted; an unquoted value ends at ` #` (inline comment).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, ComposeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ComposeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut vars = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(ComposeError::EnvLine {
                path: path.to_path_buf(),
                line: i + 1,
            });
        };
        let name = name.trim();
        if !is_var_name(name) {
            return Err(ComposeError::EnvLine {
                path: path.to_path_buf(),
                line: i + 1,
            });
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            value[1..value.len() - 1].to_string()
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        vars.insert(name.to_string(), value);
    }
    Ok(vars)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Interpolates one string the way compose does (see the module docs for the syntax and
/// the one deliberate difference).
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, ComposeError> {
    let fail = |problem: String| ComposeError::Interpolation {
        text: text.to_string(),
        problem,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            // Find the matching `}` (defaults may contain nested `${...}`).
            let mut depth = 1usize;
            let mut end = None;
            let bytes = body_and_tail.as_bytes();
            let mut j = 0;
            while j < bytes.len() {
                match bytes[j] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let Some(end) = end else {
                return Err(fail("unclosed ${".to_string()));
            };
            out.push_str(&expand(&body_and_tail[..end], vars).map_err(fail)?);
            rest = &body_and_tail[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            if !is_var_name(name) {
                return Err(fail(
                    "a lone '$' (write $$ for a literal dollar)".to_string(),
                ));
            }
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(fail(format!("{name} is not set and has no default"))),
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands the inside of one `${...}`.
fn expand(body: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(len);
    if !is_var_name(name) {
        return Err(format!("bad variable name in ${{{body}}}"));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let nested = |arg: &str| interpolate(arg, vars).map_err(|e| e.to_string());
    let (op, arg) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|p| op.strip_prefix(p).map(|arg| (*p, arg)))
        .unwrap_or((op, ""));
    match op {
        "" => value
            .cloned()
            .ok_or_else(|| format!("{name} is not set and has no default")),
        ":-" if non_empty => Ok(value.cloned().unwrap_or_default()),
        ":-" => nested(arg),
        "-" if set => Ok(value.cloned().unwrap_or_default()),
        "-" => nested(arg),
        ":?" if non_empty => Ok(value.cloned().unwrap_or_default()),
        "?" if set => Ok(value.cloned().unwrap_or_default()),
        ":?" | "?" => Err(format!("{name}: {arg}")),
        ":+" if non_empty => nested(arg),
        "+" if set => nested(arg),
        ":+" | "+" => Ok(String::new()),
        other => Err(format!("unsupported operator {other:?} in ${{{body}}}")),
    }
}

/// A compose file after merge keys and interpolation: what `docker compose config` would
/// work with.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The resolved document (merge keys applied, strings interpolated).
    pub document: Value,
    /// The document as written (merge keys applied, strings *not* interpolated), to check
    /// that secrets come from variables rather than literals.
    pub raw: Value,
}

/// One service of a compose file, with the parts our tests look at normalised.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service name (also its host name on the compose network).
    pub name: String,
    /// `image:`, if any.
    pub image: Option<String>,
    /// Whether the service runs the image of our Dockerfile: `build:` present, or its
    /// `image:` is the one another service of the file builds. One of ours.
    pub built_here: bool,
    /// `command:` as argv (a string command is split on whitespace).
    pub command: Vec<String>,
    /// `environment:` (map or `NAME=value` list form; a bare `NAME` maps to "").
    pub environment: BTreeMap<String, String>,
    /// `healthcheck.test` as written (`["CMD", ...]`, `["CMD-SHELL", "..."]`, or a string).
    pub healthcheck: Vec<String>,
    /// `depends_on` targets with their condition (`service_started` for the list form).
    pub depends_on: BTreeMap<String, String>,
    /// The service's YAML, resolved.
    pub yaml: Value,
}

impl ComposeFile {
    /// Reads `path`, resolves merge keys and interpolates with `vars`.
    pub fn load(path: &Path, vars: &BTreeMap<String, String>) -> Result<ComposeFile, ComposeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ComposeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut raw: Value =
            serde_yaml_ng::from_str(&text).map_err(|source| ComposeError::Yaml {
                path: path.to_path_buf(),
                source,
            })?;
        // serde_yaml_ng resolves one level of `<<` per pass (a merged mapping that itself
        // holds `<<` keeps it): repeat until none is left.
        for _ in 0..16 {
            if !has_merge_key(&raw) {
                break;
            }
            raw.apply_merge().map_err(|source| ComposeError::Yaml {
                path: path.to_path_buf(),
                source,
            })?;
        }
        if has_merge_key(&raw) {
            return Err(ComposeError::Shape(format!(
                "{}: merge keys nested too deep",
                path.display()
            )));
        }
        let mut document = raw.clone();
        interpolate_value(&mut document, vars)?;
        Ok(ComposeFile {
            path: path.to_path_buf(),
            document,
            raw,
        })
    }

    /// Every service, in file order.
    pub fn services(&self) -> Result<Vec<Service>, ComposeError> {
        let services = self
            .document
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or_else(|| {
                ComposeError::Shape(format!("{}: no services mapping", self.path.display()))
            })?;
        let mut out = services
            .iter()
            .map(|(name, yaml)| {
                let name = name.as_str().ok_or_else(|| {
                    ComposeError::Shape(format!("{}: non-string service name", self.path.display()))
                })?;
                Service::from_yaml(name, yaml)
            })
            .collect::<Result<Vec<Service>, ComposeError>>()?;
        // A service that only names the image another service builds runs it too.
        let built: BTreeSet<String> = out
            .iter()
            .filter(|s| s.built_here)
            .filter_map(|s| s.image.clone())
            .collect();
        for s in &mut out {
            if s.image.as_ref().is_some_and(|i| built.contains(i)) {
                s.built_here = true;
            }
        }
        Ok(out)
    }

    /// The services built from our Dockerfile (they run our binaries).
    pub fn our_services(&self) -> Result<Vec<Service>, ComposeError> {
        Ok(self
            .services()?
            .into_iter()
            .filter(|s| s.built_here)
            .collect())
    }

    /// The service called `name`, if any.
    pub fn service(&self, name: &str) -> Result<Option<Service>, ComposeError> {
        Ok(self.services()?.into_iter().find(|s| s.name == name))
    }

    /// The document as JSON (for schema validation).
    pub fn to_json(&self) -> Result<serde_json::Value, ComposeError> {
        serde_json::to_value(&self.document).map_err(|e| ComposeError::Shape(e.to_string()))
    }
}

impl Service {
    fn from_yaml(name: &str, yaml: &Value) -> Result<Service, ComposeError> {
        let shape = |what: &str| ComposeError::Shape(format!("service {name}: {what}"));
        let command = match yaml.get("command") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| scalar(v).ok_or_else(|| shape("non-scalar command item")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(shape("command must be a string or a list")),
        };
        let mut environment = BTreeMap::new();
        match yaml.get("environment") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(map)) => {
                for (k, v) in map {
                    let k = k.as_str().ok_or_else(|| shape("non-string env name"))?;
                    let v = match v {
                        Value::Null => String::new(),
                        other => scalar(other).ok_or_else(|| shape("non-scalar env value"))?,
                    };
                    environment.insert(k.to_string(), v);
                }
            }
            Some(Value::Sequence(items)) => {
                for item in items {
                    let s = item.as_str().ok_or_else(|| shape("non-string env item"))?;
                    let (k, v) = s.split_once('=').unwrap_or((s, ""));
                    environment.insert(k.to_string(), v.to_string());
                }
            }
            Some(_) => return Err(shape("environment must be a mapping or a list")),
        }
        let healthcheck = match yaml.get("healthcheck").and_then(|h| h.get("test")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| scalar(v).ok_or_else(|| shape("non-scalar healthcheck item")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(shape("healthcheck.test must be a string or a list")),
        };
        let mut depends_on = BTreeMap::new();
        match yaml.get("depends_on") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for item in items {
                    let s = item
                        .as_str()
                        .ok_or_else(|| shape("non-string depends_on"))?;
                    depends_on.insert(s.to_string(), "service_started".to_string());
                }
            }
            Some(Value::Mapping(map)) => {
                for (k, v) in map {
                    let k = k.as_str().ok_or_else(|| shape("non-string depends_on"))?;
                    let condition = v
                        .get("condition")
                        .and_then(Value::as_str)
                        .unwrap_or("service_started");
                    depends_on.insert(k.to_string(), condition.to_string());
                }
            }
            Some(_) => return Err(shape("depends_on must be a list or a mapping")),
        }
        Ok(Service {
            name: name.to_string(),
            image: yaml
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_string),
            built_here: yaml.get("build").is_some(),
            command,
            environment,
            healthcheck,
            depends_on,
            yaml: yaml.clone(),
        })
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn has_merge_key(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m.contains_key("<<") || m.values().any(has_merge_key),
        Value::Sequence(s) => s.iter().any(has_merge_key),
        Value::Tagged(t) => has_merge_key(&t.value),
        _ => false,
    }
}

fn interpolate_value(v: &mut Value, vars: &BTreeMap<String, String>) -> Result<(), ComposeError> {
    match v {
        Value::String(s) => *s = interpolate(s, vars)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_value(item, vars)?;
            }
        }
        Value::Mapping(map) => interpolate_mapping(map, vars)?,
        Value::Tagged(t) => interpolate_value(&mut t.value, vars)?,
        _ => {}
    }
    Ok(())
}

fn interpolate_mapping(
    map: &mut Mapping,
    vars: &BTreeMap<String, String>,
) -> Result<(), ComposeError> {
    for (_, value) in map.iter_mut() {
        interpolate_value(value, vars)?;
    }
    Ok(())
}

/// The env var names a clap `--help` text documents (`[env: NAME=...]` or `[env: NAME]`).
pub fn env_names_in_help(help: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = help;
    while let Some(i) = rest.find("[env: ") {
        rest = &rest[i + "[env: ".len()..];
        let end = rest.find(['=', ']']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        if is_var_name(name) {
            names.insert(name.to_string());
        }
    }
    names
}

/// Process-wide variables every binary honours without documenting them per flag
/// (`RUST_LOG` filters `tracing`); allowed on any service.
pub const GLOBAL_ENV: &[&str] = &["RUST_LOG", "RUST_BACKTRACE"];

/// Runs `exe` the way compose would run `service`, but with `--check-config` appended and
/// with exactly the service's environment (nothing inherited), and checks that
///
/// * the binary accepts the configuration (exit 0);
/// * every env var the service sets is one the binary documents in `--help`
///   (`[env: NAME]`), or one of [`GLOBAL_ENV`] — so a misspelt name fails here instead of
///   being silently ignored in production;
/// * a `["CMD", <this binary>, args...]` healthcheck names a real subcommand (`args... --help`
///   exits 0).
///
/// Returns the `--check-config` output, or a message saying what is wrong.
pub fn check_service_config(exe: &Path, service: &Service) -> Result<String, String> {
    let run = |args: &[String]| -> Result<std::process::Output, String> {
        std::process::Command::new(exe)
            .args(args)
            .env_clear()
            .envs(&service.environment)
            .output()
            .map_err(|e| format!("{}: cannot run {}: {e}", service.name, exe.display()))
    };
    let args: Vec<String> = service.command.iter().skip(1).cloned().collect();

    let help = run(&["--help".to_string()])?;
    if !help.status.success() {
        return Err(format!(
            "{}: `{} --help` failed: {}",
            service.name,
            exe.display(),
            String::from_utf8_lossy(&help.stderr)
        ));
    }
    let documented = env_names_in_help(&String::from_utf8_lossy(&help.stdout));
    for name in service.environment.keys() {
        if !documented.contains(name) && !GLOBAL_ENV.contains(&name.as_str()) {
            return Err(format!(
                "{}: sets {name}, which `{} --help` does not document (typo?); documented: {documented:?}",
                service.name,
                exe.display()
            ));
        }
    }

    let mut check_args = args;
    check_args.push("--check-config".to_string());
    let out = run(&check_args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{}: `{} {}` rejected the configuration ({}):\n{}{}",
            service.name,
            exe.display(),
            check_args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    let exe_name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if service.healthcheck.first().map(String::as_str) == Some("CMD")
        && service.healthcheck.get(1).map(String::as_str) == Some(exe_name)
    {
        let mut probe: Vec<String> = service.healthcheck.iter().skip(2).cloned().collect();
        probe.push("--help".to_string());
        let out = run(&probe)?;
        if !out.status.success() {
            return Err(format!(
                "{}: healthcheck `{}` is not a valid command line: {}",
                service.name,
                service.healthcheck[1..].join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(stdout)
}

/// Every service, in both compose files (interpolated with `.env.example`), whose command
/// runs the binary `bin`; as `(file name, service)`.
pub fn services_running(bin: &str) -> Result<Vec<(String, Service)>, ComposeError> {
    let vars = read_env_file(&repo_root().join(".env.example"))?;
    let mut found = Vec::new();
    for path in compose_files() {
        let file = ComposeFile::load(&path, &vars)?;
        let label = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        for s in file.our_services()? {
            if s.command.first().map(String::as_str) == Some(bin) {
                found.push((label.clone(), s));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "1"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interpolation_follows_compose() {
        let v = vars();
        let i = |t: &str| interpolate(t, &v);
        assert_eq!(i("x${A}y$A").unwrap(), "x1y1");
        assert_eq!(
            i("${B:-d}|${EMPTY:-d}|${EMPTY-d}|${B-d}").unwrap(),
            "d|d||d"
        );
        assert_eq!(i("${A:?boom}").unwrap(), "1");
        assert!(i("${EMPTY:?boom}")
            .unwrap_err()
            .to_string()
            .contains("boom"));
        assert_eq!(i("${EMPTY?boom}").unwrap(), "");
        assert_eq!(
            i("${A:+alt}|${EMPTY:+alt}|${EMPTY+alt}").unwrap(),
            "alt||alt"
        );
        assert_eq!(i("$$A ${B:-${A}}").unwrap(), "$A 1");
        assert!(i("${B}").is_err());
        assert!(i("$B").is_err());
        assert!(i("${A").is_err());
    }

    #[test]
    fn help_env_names() {
        let help =
            "  --id <ID>  Node id [env: NODE_ID=]\n  --token [env: API_TOKEN]\n  --x [env: X_Y=5]";
        let names: Vec<_> = env_names_in_help(help).into_iter().collect();
        assert_eq!(names, ["API_TOKEN", "NODE_ID", "X_Y"]);
    }
}
