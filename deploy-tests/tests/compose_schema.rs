//! Both compose files validate against the Compose Specification JSON schema, after merge
//! keys are resolved and `.env.example` is interpolated (what `docker compose config` does
//! before it validates).

use std::path::PathBuf;

use testkit::compose::{compose_files, read_env_file, repo_root, ComposeFile};

/// The vendored schema (always there) and, when CI puts `shared/` beside the clone, that
/// copy too: the files must satisfy both.
fn schemas() -> Vec<(PathBuf, serde_json::Value)> {
    let root = repo_root();
    let mut paths = vec![root.join("deploy-tests/spec/compose-spec.json")];
    let beside = root.join("../shared/specs/compose-spec.json");
    if beside.is_file() {
        paths.push(beside);
    }
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, json)
        })
        .collect()
}

fn load_all() -> Vec<ComposeFile> {
    let vars = read_env_file(&repo_root().join(".env.example")).expect(".env.example");
    compose_files()
        .iter()
        .map(|p| ComposeFile::load(p, &vars).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn errors(schema: &serde_json::Value, instance: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("the compose schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn compose_files_validate_against_the_compose_spec() {
    let files = load_all();
    for (schema_path, schema) in schemas() {
        for file in &files {
            let instance = file.to_json().expect("compose file as JSON");
            let errs = errors(&schema, &instance);
            assert!(
                errs.is_empty(),
                "{} does not validate against {}:\n{}",
                file.path.display(),
                schema_path.display(),
                errs.join("\n")
            );
        }
    }
}

/// The validator really rejects what compose rejects (so a passing test means something):
/// an unknown service key, a wrongly typed field, a bad depends_on condition.
#[test]
fn the_schema_check_catches_mistakes() {
    let file = &load_all()[0];
    let (_, schema) = &schemas()[0];
    let good = file.to_json().expect("json");
    assert!(errors(schema, &good).is_empty());

    let mut unknown_key = good.clone();
    unknown_key["services"]["api"]["enviroment"] = serde_json::json!({"A": "1"});
    assert!(
        !errors(schema, &unknown_key).is_empty(),
        "typo 'enviroment' accepted"
    );

    let mut wrong_type = good.clone();
    wrong_type["services"]["redis"]["healthcheck"]["test"] = serde_json::json!({"cmd": "ping"});
    assert!(
        !errors(schema, &wrong_type).is_empty(),
        "healthcheck.test as a mapping accepted"
    );

    let mut bad_condition = good.clone();
    bad_condition["services"]["api"]["depends_on"]["redis"]["condition"] =
        serde_json::json!("service_ready");
    assert!(
        !errors(schema, &bad_condition).is_empty(),
        "condition service_ready accepted"
    );
}
