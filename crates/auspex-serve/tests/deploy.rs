//! deploy/'s Prometheus rules for auspex itself, its Grafana dashboards and the Alertmanager
//! routing example, checked with the real tools (`promtool`, `amtool`; `.ci/install` installs
//! them): the rules load and their unit tests (deploy/prometheus/auspex-rules.test.yml) pass,
//! every dashboard query is valid PromQL, rules and dashboards name only metrics auspex
//! exports, and every prediction kind and service alert reaches its receiver.

use std::path::PathBuf;
use std::process::Command;

use auspex_model::AnomalyKind;
use auspex_serve::{alertmanager, telemetry};

fn deploy() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../deploy")
}

/// Runs `tool args` in `dir`; panics with its output unless it succeeds.
fn run(tool: &str, args: &[&str], dir: &PathBuf) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (`.ci/install` installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
    text
}

#[test]
fn the_service_rules_load_and_their_unit_tests_pass() {
    let dir = deploy().join("prometheus");
    let checked = run("promtool", &["check", "rules", "auspex-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    run(
        "promtool",
        &["test", "rules", "auspex-rules.test.yml"],
        &dir,
    );
}

/// The `auspex_*` names in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut named = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("auspex_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        named.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    named
}

/// Panics on a name (histogram series suffixes aside) auspex does not export.
fn assert_exported(named: &[String], what: &str) {
    let unknown: Vec<_> = named
        .iter()
        .filter(|n| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            !telemetry::ALL.contains(&base)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} names metrics auspex does not export: {unknown:?}"
    );
}

#[test]
fn the_rules_name_only_metrics_auspex_exports() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/auspex-rules.yml")).unwrap();
    let named = metric_names(&rules);
    assert!(named.len() >= 8, "the rules name auspex metrics: {named:?}");
    assert_exported(&named, "auspex-rules.yml");
}

/// Every dashboard parses, every panel has a query, every query is valid PromQL (promtool
/// parses them as recording rules, Grafana's `$__rate_interval` set to 5m) and names only
/// metrics auspex exports; between them the dashboards use most of what auspex exports.
#[test]
fn the_dashboards_query_what_auspex_exports() {
    let dir = deploy().join("grafana");
    let mut used = std::collections::BTreeSet::new();
    let mut dashboards = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let name = path.display().to_string();
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            dash["uid"].is_string() && dash["title"].is_string(),
            "{name}"
        );
        let panels = dash["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}");
        let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
        for (i, p) in panels.iter().enumerate() {
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                !targets.is_empty(),
                "{name}: panel {:?} has no query",
                p["title"]
            );
            for (j, t) in targets.iter().enumerate() {
                let expr = t["expr"].as_str().expect("a PromQL expr");
                let named = metric_names(expr);
                assert!(!named.is_empty(), "{name}: {expr}");
                assert_exported(&named, &name);
                used.extend(named);
                let expr = expr.replace("$__rate_interval", "5m");
                rules.push_str(&format!(
                    "      - record: dashboard:panel{i}_{j}\n        expr: {}\n",
                    serde_json::to_string(&expr).unwrap()
                ));
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("queries.yml"), rules).unwrap();
        run(
            "promtool",
            &["check", "rules", "queries.yml"],
            &tmp.path().to_path_buf(),
        );
    }
    assert!(dashboards >= 1, "no dashboard in {}", dir.display());
    let base: std::collections::BTreeSet<&str> = used
        .iter()
        .map(|n| n.strip_suffix("_bucket").unwrap_or(n))
        .collect();
    let missing: Vec<_> = telemetry::ALL
        .iter()
        .filter(|m| !base.contains(**m))
        .collect();
    assert!(missing.is_empty(), "no dashboard shows {missing:?}");
}

/// `amtool config routes test` for one label set: the receiver it reaches.
fn receiver(labels: &[String]) -> String {
    let mut args = vec![
        "config".to_string(),
        "routes".into(),
        "test".into(),
        "--config.file=auspex-route.yml".into(),
    ];
    args.extend(labels.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("amtool", &args, &deploy().join("alertmanager"))
        .lines()
        .filter(|l| !l.starts_with("Warning"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

#[test]
fn the_alertmanager_example_routes_every_prediction_and_service_alert() {
    let dir = deploy().join("alertmanager");
    let checked = run("amtool", &["check-config", "auspex-route.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    // Every kind's alertname as the sink sets it reaches the application receivers.
    for kind in AnomalyKind::ALL {
        let name = format!("alertname={}", alertmanager::alertname(kind));
        let critical = receiver(&[
            name.clone(),
            "severity=critical".into(),
            "namespace=shop".into(),
        ]);
        assert_eq!(critical, "app-pager", "{name}");
        let warning = receiver(&[
            name.clone(),
            "severity=warning".into(),
            "namespace=shop".into(),
        ]);
        assert_eq!(warning, "app-chat", "{name}");
    }
    // Every alert of the service rules reaches the platform receivers.
    let rules = std::fs::read_to_string(deploy().join("prometheus/auspex-rules.yml")).unwrap();
    // (alertname, severity) of each rule, in file order.
    let mut alerts: Vec<(&str, &str)> = Vec::new();
    for line in rules.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("- alert: ") {
            alerts.push((a, ""));
        } else if let (Some(s), Some(last)) = (line.strip_prefix("severity: "), alerts.last_mut()) {
            last.1 = s;
        }
    }
    assert_eq!(alerts.len(), 8, "{alerts:?}");
    for (a, severity) in alerts {
        let want = match severity {
            "critical" => "platform-pager",
            "warning" => "platform-chat",
            other => panic!("{a}: severity {other:?}"),
        };
        let got = receiver(&[format!("alertname={a}"), format!("severity={severity}")]);
        assert_eq!(got, want, "{a}");
    }
}
