//! The files under `grafana/` that Grafana provisions on start-up: they parse, the
//! dashboards only reference provisioned datasources, and every query in them is answered
//! by the running API (so the dashboard works on first start, with no clicking).

mod grafana_support;

use std::collections::BTreeSet;

use grafana_support::*;
use serde_json::{json, Value};

fn yaml(path: &str) -> Value {
    let path = repo_root().join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo_root().join("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every `{"uid": ...}` datasource reference in a dashboard (panels, targets, annotations).
fn datasource_uids(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(ds) = map.get("datasource") {
                if let Some(uid) = ds.get("uid").and_then(Value::as_str) {
                    out.insert(uid.to_string());
                }
            }
            map.values().for_each(|x| datasource_uids(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| datasource_uids(x, out)),
        _ => {}
    }
}

#[test]
fn datasources_have_fixed_uids_pointing_at_the_api() {
    let ds = yaml("grafana/provisioning/datasources/datasources.yaml");
    assert_eq!(ds["apiVersion"], json!(1));
    let list = ds["datasources"].as_array().expect("datasources");
    let find = |uid: &str| {
        list.iter()
            .find(|d| d["uid"] == uid)
            .unwrap_or_else(|| panic!("no datasource {uid}"))
    };
    let json_ds = find("sensors-json");
    assert_eq!(json_ds["type"], "simpod-json-datasource");
    assert_eq!(json_ds["url"], "http://api:8080/grafana");
    let prom = find("sensors-prom");
    assert_eq!(prom["type"], "prometheus");
    assert_eq!(prom["url"], "http://api:8080/prom");
    assert_eq!(
        list.iter().filter(|d| d["isDefault"] == true).count(),
        1,
        "exactly one default datasource"
    );

    let providers = yaml("grafana/provisioning/dashboards/dashboards.yaml");
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    assert_eq!(provider["options"]["path"], "/var/lib/grafana/dashboards");
}

#[test]
fn dashboards_reference_only_provisioned_datasources() {
    let ds = yaml("grafana/provisioning/datasources/datasources.yaml");
    let provisioned: BTreeSet<String> = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_string())
        .chain(["-- Grafana --".to_string()])
        .collect();
    let all = dashboards();
    assert!(
        all.iter().any(|(name, _)| name == "sensors.json"),
        "home dashboard exists"
    );
    let mut uids_seen = BTreeSet::new();
    for (name, d) in &all {
        assert!(
            uids_seen.insert(d["uid"].as_str().expect("uid").to_string()),
            "{name}: duplicate uid"
        );
        assert_eq!(d["refresh"], "5s", "{name}");
        let mut used = BTreeSet::new();
        datasource_uids(d, &mut used);
        assert!(!used.is_empty(), "{name}");
        for uid in used {
            assert!(
                provisioned.contains(&uid),
                "{name} uses unprovisioned datasource {uid}"
            );
        }
    }
    let (_, home) = all.iter().find(|(n, _)| n == "sensors.json").unwrap();
    let titles: Vec<&str> = home["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Average over time",
        "Readings per round",
        "Rounds per minute",
        "Latest value",
    ] {
        assert!(
            titles.contains(&wanted),
            "home dashboard lacks {wanted}: {titles:?}"
        );
    }
    // Rounds per minute must be counted over whole minutes: finer buckets around the
    // sampling period would make jitter look like outages.
    let rounds = home["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Rounds per minute")
        .unwrap();
    assert_eq!(rounds["interval"], "1m");
    assert_eq!(rounds["targets"][0]["payload"]["rate"], "per_minute");
    let annotations = home["annotations"]["list"].as_array().unwrap();
    assert!(annotations
        .iter()
        .any(|a| a["target"]["target"] == "leader_changes"));
}

/// Runs every query of every dashboard against the API with data in it.
#[tokio::test]
async fn every_dashboard_query_is_answered() {
    let app = App::start("dashboards").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let data: Vec<_> = (0..600_i64)
        .map(|i| {
            let leader = if i < 300 { "node-a" } else { "node-b" };
            average(
                i as u64 + 1,
                now - 3_600_000 + i * 6_000,
                20.0 + (i % 7) as f64,
                3,
                leader,
                1 + (i / 300) as u64,
            )
        })
        .collect();
    app.seed(&data).await;
    let (from, to) = (now - 3_600_000, now);
    for (name, d) in dashboards() {
        // (query, Grafana's intervalMs for it: the panel's minimum interval, else 5 s)
        let mut queries: Vec<(Value, u64)> = Vec::new();
        for panel in d["panels"].as_array().unwrap() {
            let interval_ms = match panel["interval"].as_str() {
                None => 5_000,
                Some("1m") => 60_000,
                Some(other) => panic!("{name}: add {other:?} to this test"),
            };
            for t in panel["targets"].as_array().unwrap() {
                let mut t = t.clone();
                if t["datasource"]["uid"].is_null() {
                    t["datasource"] = panel["datasource"].clone();
                }
                queries.push((t, interval_ms));
            }
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if a["datasource"]["uid"] == "sensors-json" {
                let mut t = a["target"].clone();
                t["datasource"] = a["datasource"].clone();
                queries.push((t, 5_000));
            }
        }
        assert!(!queries.is_empty(), "{name}");
        for (t, interval_ms) in queries {
            match t["datasource"]["uid"].as_str().unwrap() {
                "sensors-json" => {
                    let body = grafana_query(from, to, 1000, interval_ms, json!([t.clone()]));
                    let (status, answer) = app.post_json("/grafana/query", &body).await;
                    assert_eq!(status, 200, "{name} {t}: {answer}");
                    let result = &answer[0];
                    assert_eq!(result["refId"], t["refId"]);
                    let has_data = result["datapoints"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|x| !x[0].is_null()))
                        || result["rows"].as_array().is_some_and(|r| !r.is_empty());
                    assert!(has_data, "{name} {t}: no data in {result}");
                }
                "sensors-prom" => {
                    let expr = t["expr"].as_str().expect("expr");
                    let (status, answer) = if t["instant"] == true {
                        app.get(&format!(
                            "/prom/api/v1/query?query={expr}&time={}",
                            to / 1000
                        ))
                        .await
                    } else {
                        app.get(&format!(
                            "/prom/api/v1/query_range?query={expr}&start={}&end={}&step={}",
                            from / 1000,
                            to / 1000,
                            (interval_ms / 1000).max(30)
                        ))
                        .await
                    };
                    assert_eq!(status, 200, "{name} {t}: {answer}");
                    assert!(
                        !answer["data"]["result"].as_array().unwrap().is_empty(),
                        "{name} {t}: {answer}"
                    );
                }
                other => panic!("{name}: query on unexpected datasource {other}"),
            }
        }
    }
}
