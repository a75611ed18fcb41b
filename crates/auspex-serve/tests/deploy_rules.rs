//! deploy/'s Prometheus rules for auspex itself and the Alertmanager routing example, checked
//! with the real tools (`promtool`, `amtool`; `.ci/install` installs them): the rules load,
//! their unit tests (deploy/prometheus/auspex-rules.test.yml) pass, every metric they name is
//! one auspex exports, and every prediction kind and service alert reaches its receiver.

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

#[test]
fn the_rules_name_only_metrics_auspex_exports() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/auspex-rules.yml")).unwrap();
    let mut named = Vec::new();
    let mut rest = rules.as_str();
    while let Some(i) = rest.find("auspex_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        named.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    assert!(named.len() >= 8, "the rules name auspex metrics: {named:?}");
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
    assert!(unknown.is_empty(), "not exported by auspex: {unknown:?}");
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
