//! deploy/'s Kustomize base and overlay, Prometheus rules for auspex itself, its Grafana
//! dashboards and the Alertmanager routing example, checked with the real tools
//! (`kubectl kustomize`, `kubernetes-validate`, `promtool`, `amtool`;
//! `.ci/install` installs what is missing): the overlay renders objects that fit together and
//! the config they ship, and every rendered object validates against the Kubernetes 1.32 schemas
//! (strict); the rules load and their unit tests (deploy/prometheus/auspex-rules.test.yml)
//! pass; every dashboard query is valid PromQL; rules and dashboards name only metrics auspex
//! exports; every prediction kind and service alert reaches its receiver.

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
/// parses them as recording rules, Grafana's `$__rate_interval` set to 5m, template variables
/// to `.*`) and names only metrics auspex exports; between them the dashboards show all of it.
#[test]
fn the_dashboards_query_what_auspex_exports() {
    let mut used = std::collections::BTreeSet::new();
    let all = dashboards();
    let uids: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|(_, d)| d["uid"].as_str()).collect();
    assert_eq!(uids.len(), all.len(), "dashboard uids are unique");
    for (name, dash) in &all {
        assert!(
            dash["uid"].is_string() && dash["title"].is_string(),
            "{name}"
        );
        let panels = dash["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}");
        let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
        for p in panels {
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                !targets.is_empty(),
                "{name}: panel {:?} has no query",
                p["title"]
            );
        }
        for (i, q) in queries(dash, "5m").iter().enumerate() {
            let named = metric_names(&q.raw);
            assert!(!named.is_empty(), "{name}: {}", q.raw);
            assert_exported(&named, name);
            used.extend(named);
            rules.push_str(&format!(
                "      - record: dashboard:query{i}\n        expr: {}\n",
                serde_json::to_string(&q.expr).unwrap()
            ));
        }
        // Template variables (`label_values(metric, label)`) name exported metrics too.
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(def) = v["definition"].as_str() {
                assert_exported(&metric_names(def), name);
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
    assert!(all.len() >= 2, "the service and predictions dashboards");
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

/// One panel query, as Grafana would send it.
struct Query {
    panel: String,
    /// As written in the dashboard.
    raw: String,
    /// With Grafana's variables substituted: `$__rate_interval` by `rate_interval`, the
    /// interval variables by fixed values, every template variable by `.*` (what "All" sends).
    expr: String,
}

/// Every panel query of a dashboard, variables substituted.
fn queries(dash: &serde_json::Value, rate_interval: &str) -> Vec<Query> {
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] != "datasource")
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let raw = t["expr"].as_str().expect("a PromQL expr").to_string();
            let mut expr = raw
                .replace("$__rate_interval", rate_interval)
                .replace("$__interval", "15s")
                .replace("$__range", "1h");
            for v in &vars {
                for form in [format!("${{{v}}}"), format!("[[{v}]]"), format!("${v}")] {
                    expr = expr.replace(&form, ".*");
                }
            }
            assert!(!expr.contains('$'), "a variable left in {raw}");
            out.push(Query {
                panel: p["title"].as_str().unwrap_or_default().to_string(),
                raw,
                expr,
            });
        }
    }
    out
}

/// The dashboards under deploy/grafana, by file name.
fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let dash = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, dash));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
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

/// The documents `kubectl kustomize dir` renders.
fn kustomize(dir: &std::path::Path) -> Vec<serde_yaml::Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs (it carries kustomize)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect()
}

/// `v` at a `/`-separated path of keys and indices.
fn at<'a>(v: &'a serde_yaml::Value, path: &str) -> &'a serde_yaml::Value {
    path.split('/').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn s<'a>(v: &'a serde_yaml::Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path}: not a string in {v:?}"))
}

/// The production overlay renders every object serve needs, and they agree with each other and
/// with the configuration they ship: the config loads as serve loads it, the probes hit the
/// port it listens on, the files it names are mounted, the grace period covers its drain, and
/// the Service, PodDisruptionBudget and ServiceMonitor select what the Deployment runs.
#[test]
fn the_kustomize_overlay_renders_a_serve_deployment_that_fits_its_config() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    let kind = |k: &str| {
        let found: Vec<_> = docs.iter().filter(|d| s(d, "kind") == k).collect();
        assert_eq!(found.len(), 1, "one {k} in {docs:?}");
        found[0]
    };
    for d in &docs {
        assert_eq!(s(d, "metadata/namespace"), "auspex", "{d:?}");
    }
    // The shipped configuration, as serve would load it from the ConfigMap.
    let cm = kind("ConfigMap");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("auspex.toml");
    std::fs::write(&file, s(cm, "data/auspex.toml")).unwrap();
    let cfg = auspex_serve::config::ServeConfig::load(Some(&file), Vec::new(), &[])
        .unwrap_or_else(|e| panic!("the ConfigMap's auspex.toml: {e:#}"));
    let port: u64 = cfg.http.listen.rsplit(':').next().unwrap().parse().unwrap();

    let dep = kind("Deployment");
    assert_eq!(at(dep, "spec/replicas").as_u64(), Some(6));
    let pod = at(dep, "spec/template");
    let c = at(pod, "spec/containers/0");
    assert_eq!(s(c, "image"), "registry.example.com/auspex:0.1.0");
    assert_eq!(at(c, "ports/0/containerPort").as_u64(), Some(port));
    assert_eq!(s(c, "ports/0/name"), "http");
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(s(c, &format!("{probe}/httpGet/path")), path);
        assert_eq!(s(c, &format!("{probe}/httpGet/port")), "http");
    }
    // Every file the config names lies under a mount; the config itself under the ConfigMap's.
    let mounts: Vec<(&str, &str)> = at(c, "volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (s(m, "name"), s(m, "mountPath")))
        .collect();
    let volume = |name: &str| {
        at(pod, "spec/volumes")
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| s(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mounted = |path: &str| {
        mounts
            .iter()
            .find(|(_, m)| path.starts_with(&format!("{m}/")))
            .map(|(n, _)| *n)
            .unwrap_or_else(|| panic!("{path} is on no mount: {mounts:?}"))
    };
    let args: Vec<&str> = at(c, "args")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert!(config_path.ends_with("/auspex.toml"), "{config_path}");
    let config_volume = volume(mounted(config_path));
    assert_eq!(
        s(config_volume, "configMap/name"),
        s(cm, "metadata/name"),
        "the config volume is the rendered ConfigMap"
    );
    let token = cfg.http.bearer_token_file.as_ref().expect("a token file");
    assert!(at(volume(mounted(token.to_str().unwrap())), "secret").is_mapping());
    let ca = &cfg.kafka.properties["ssl.ca.location"];
    assert!(at(volume(mounted(ca)), "secret").is_mapping());
    // The SASL password comes from a Secret, under the name serve reads it by.
    let env = at(c, "env").as_sequence().unwrap();
    assert!(
        env.iter().any(
            |e| s(e, "name") == "AUSPEX__KAFKA__PROPERTIES__SASL_PASSWORD"
                && at(e, "valueFrom/secretKeyRef").is_mapping()
        ),
        "{env:?}"
    );
    // SIGTERM: about 1.25 x drain_timeout_ms + 12 s (auspex.toml's comment) fit the grace.
    let grace = at(pod, "spec/terminationGracePeriodSeconds")
        .as_u64()
        .unwrap();
    assert!(
        grace * 1000 >= cfg.kafka.drain_timeout_ms * 5 / 4 + 12_000,
        "grace {grace} s for drain_timeout_ms {}",
        cfg.kafka.drain_timeout_ms
    );
    // Selectors: Service, PDB and the Deployment pick the pods; the ServiceMonitor the Service.
    let pod_labels = at(pod, "metadata/labels").as_mapping().unwrap();
    let selects = |selector: &serde_yaml::Value, labels: &serde_yaml::Mapping| {
        let sel = selector.as_mapping().expect("a selector");
        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects(at(dep, "spec/selector/matchLabels"), pod_labels));
    let svc = kind("Service");
    assert!(selects(at(svc, "spec/selector"), pod_labels));
    assert_eq!(s(svc, "spec/ports/0/targetPort"), "http");
    assert!(selects(
        at(kind("PodDisruptionBudget"), "spec/selector/matchLabels"),
        pod_labels
    ));
    let sm = kind("ServiceMonitor");
    let svc_labels = at(svc, "metadata/labels").as_mapping().unwrap();
    assert!(selects(at(sm, "spec/selector/matchLabels"), svc_labels));
    assert_eq!(s(sm, "spec/endpoints/0/port"), "http");
    assert_eq!(s(sm, "spec/endpoints/0/path"), "/metrics");
    // The job label the rules expect (`up{job="auspex"}`).
    let job_label = s(sm, "spec/jobLabel");
    assert_eq!(
        svc_labels.get(job_label).and_then(|v| v.as_str()),
        Some("auspex")
    );
    // serve needs no Kubernetes API: no token in the pod.
    assert_eq!(
        at(pod, "spec/automountServiceAccountToken").as_bool(),
        Some(false)
    );
}

/// The Kubernetes version the rendered objects are validated for (kubectl 1.32 renders them;
/// kubernetes-validate ships schemas 1.32 to 1.37).
const KUBERNETES: &str = "1.32.0";

/// Properties of a ServiceMonitor's `spec` and of one of its `endpoints`, from the
/// prometheus-operator CRD (monitoring.coreos.com_servicemonitors.yaml, operator v0.84.1):
/// the ServiceMonitor has no schema in kubernetes-validate, so its shape is checked here.
const SERVICE_MONITOR_SPEC: [&str; 22] = [
    "attachMetadata",
    "bodySizeLimit",
    "convertClassicHistogramsToNHCB",
    "endpoints",
    "fallbackScrapeProtocol",
    "jobLabel",
    "keepDroppedTargets",
    "labelLimit",
    "labelNameLengthLimit",
    "labelValueLengthLimit",
    "namespaceSelector",
    "nativeHistogramBucketLimit",
    "nativeHistogramMinBucketFactor",
    "podTargetLabels",
    "sampleLimit",
    "scrapeClass",
    "scrapeClassicHistograms",
    "scrapeProtocols",
    "selector",
    "selectorMechanism",
    "targetLabels",
    "targetLimit",
];
const SERVICE_MONITOR_ENDPOINT: [&str; 25] = [
    "authorization",
    "basicAuth",
    "bearerTokenFile",
    "bearerTokenSecret",
    "enableHttp2",
    "filterRunning",
    "followRedirects",
    "honorLabels",
    "honorTimestamps",
    "interval",
    "metricRelabelings",
    "noProxy",
    "oauth2",
    "params",
    "path",
    "port",
    "proxyConnectHeader",
    "proxyFromEnvironment",
    "proxyUrl",
    "relabelings",
    "scheme",
    "scrapeTimeout",
    "targetPort",
    "tlsConfig",
    "trackTimestampsStaleness",
];

/// The keys of a mapping that `allowed` lacks.
fn unknown_keys(v: &serde_yaml::Value, allowed: &[&str]) -> Vec<String> {
    v.as_mapping()
        .expect("a mapping")
        .keys()
        .map(|k| k.as_str().expect("a string key").to_string())
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect()
}

/// The ServiceMonitor as the CRD would admit it: required fields present, no field the CRD
/// lacks, a Prometheus duration for the interval.
fn check_service_monitor(sm: &serde_yaml::Value) {
    assert_eq!(s(sm, "apiVersion"), "monitoring.coreos.com/v1");
    let unknown = unknown_keys(sm, &["apiVersion", "kind", "metadata", "spec"]);
    assert!(unknown.is_empty(), "ServiceMonitor: {unknown:?}");
    assert!(!s(sm, "metadata/name").is_empty());
    let spec = at(sm, "spec");
    let unknown = unknown_keys(spec, &SERVICE_MONITOR_SPEC);
    assert!(unknown.is_empty(), "ServiceMonitor spec: {unknown:?}");
    // Required by the CRD: selector and endpoints.
    assert!(at(spec, "selector").is_mapping(), "{spec:?}");
    let unknown = unknown_keys(at(spec, "selector"), &["matchLabels", "matchExpressions"]);
    assert!(unknown.is_empty(), "ServiceMonitor selector: {unknown:?}");
    let endpoints = at(spec, "endpoints").as_sequence().expect("endpoints");
    assert!(!endpoints.is_empty());
    for e in endpoints {
        let unknown = unknown_keys(e, &SERVICE_MONITOR_ENDPOINT);
        assert!(unknown.is_empty(), "ServiceMonitor endpoint: {unknown:?}");
        if let Some(i) = e.get("interval") {
            let i = i.as_str().expect("interval is a string");
            let digits = i.trim_end_matches(['s', 'm', 'h']);
            assert!(
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
                "interval {i:?} is not a Prometheus duration"
            );
        }
    }
}

/// Every object the base and the production overlay render validates against the Kubernetes
/// schemas with unknown fields rejected (`kubernetes-validate --strict`); the ServiceMonitor,
/// a CRD those schemas lack, against the CRD's fields.
#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    for dir in ["kubernetes/base", "kubernetes/overlays/prod"] {
        let docs = kustomize(&deploy().join(dir));
        let tmp = tempfile::tempdir().unwrap();
        let mut core = Vec::new();
        let mut monitors = 0;
        for d in &docs {
            if s(d, "kind") == "ServiceMonitor" {
                check_service_monitor(d);
                monitors += 1;
            } else {
                core.push(serde_yaml::to_string(d).unwrap());
            }
        }
        assert_eq!(monitors, 1, "{dir}");
        assert!(core.len() >= 5, "{dir}: {} objects", core.len());
        std::fs::write(tmp.path().join("rendered.yaml"), core.join("---\n")).unwrap();
        let out = run(
            "kubernetes-validate",
            &["--strict", "-k", KUBERNETES, "rendered.yaml"],
            &tmp.path().to_path_buf(),
        );
        // One "passed" line per object: none skipped for want of a schema.
        let passed = out.lines().filter(|l| l.contains(" passed for ")).count();
        assert_eq!(passed, core.len(), "{dir}:\n{out}");
        assert!(!out.contains("WARN"), "{dir}:\n{out}");
    }
}

/// The validator rejects what it should: an unknown field in a pod spec fails `--strict`.
#[test]
fn the_schema_check_rejects_an_unknown_field() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    let mut dep = docs
        .into_iter()
        .find(|d| s(d, "kind") == "Deployment")
        .expect("a Deployment");
    dep["spec"]["template"]["spec"]["automountServiceAcountToken"] = false.into();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        serde_yaml::to_string(&dep).unwrap(),
    )
    .unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES, "bad.yaml"])
        .current_dir(tmp.path())
        .output()
        .expect("kubernetes-validate runs (`.ci/install` installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("automountServiceAcountToken"), "{text}");
}
