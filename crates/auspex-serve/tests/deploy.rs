//! deploy/'s Kustomize base and overlay, Prometheus rules for auspex itself, its Grafana
//! dashboards and the Alertmanager routing example, checked with the real tools
//! (`kubectl kustomize`, `kubernetes-validate`, `promtool`, `prometheus`, `amtool`;
//! `.ci/install` installs what is missing): the overlay renders objects that fit together and
//! the config they ship, and every rendered object validates against the Kubernetes 1.32 schemas
//! (strict); the rules load and their unit tests (deploy/prometheus/auspex-rules.test.yml)
//! pass; every dashboard query is valid PromQL; rules and dashboards name only metrics auspex
//! exports; a real Prometheus scraping a live `/metrics` answers every dashboard query and
//! evaluates the rules; every prediction kind and service alert reaches its receiver.

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

/// The label that tells serve's objects from collect's; every rendered object carries it.
const COMPONENT: &str = "app.kubernetes.io/component";

/// The component an object belongs to (its label; `at` cannot walk a key with a `/`).
fn component(d: &serde_yaml::Value) -> &str {
    d["metadata"]["labels"][COMPONENT]
        .as_str()
        .unwrap_or_else(|| panic!("no {COMPONENT} label on {d:?}"))
}

/// The one object of `kind` in `component`.
fn one<'a>(docs: &'a [serde_yaml::Value], comp: &str, kind: &str) -> &'a serde_yaml::Value {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| s(d, "kind") == kind && component(d) == comp)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} of {comp} in {docs:?}");
    found[0]
}

/// The object of `kind` called `name`.
fn named<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| s(d, "kind") == kind && s(d, "metadata/name") == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 2] = ["ClusterRole", "ClusterRoleBinding"];

/// Whether an equality selector (`matchLabels`, or a Service's `selector`) picks `labels`; an
/// empty or absent selector picks nothing here (in Kubernetes it would pick everything).
fn selects(selector: &serde_yaml::Value, labels: &serde_yaml::Value) -> bool {
    let (Some(sel), Some(labels)) = (selector.as_mapping(), labels.as_mapping()) else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The production overlay renders every object serve needs, and they agree with each other and
/// with the configuration they ship: the config loads as serve loads it, the probes hit the
/// port it listens on, the files it names are mounted, the grace period covers its drain, and
/// the Service, PodDisruptionBudget and ServiceMonitor select what the Deployment runs.
#[test]
fn the_kustomize_overlay_renders_a_serve_deployment_that_fits_its_config() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    let kind = |k: &str| one(&docs, "serve", k);
    for d in &docs {
        if CLUSTER_SCOPED.contains(&s(d, "kind")) {
            assert!(at(d, "metadata/namespace").is_null(), "{d:?}");
        } else {
            assert_eq!(s(d, "metadata/namespace"), "auspex", "{d:?}");
        }
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
    let pod_labels = at(pod, "metadata/labels");
    assert!(selects(at(dep, "spec/selector/matchLabels"), pod_labels));
    let svc = kind("Service");
    assert!(selects(at(svc, "spec/selector"), pod_labels));
    assert_eq!(s(svc, "spec/ports/0/targetPort"), "http");
    assert!(selects(
        at(kind("PodDisruptionBudget"), "spec/selector/matchLabels"),
        pod_labels
    ));
    let sm = kind("ServiceMonitor");
    let svc_labels = at(svc, "metadata/labels");
    assert!(selects(at(sm, "spec/selector/matchLabels"), svc_labels));
    assert_eq!(s(sm, "spec/endpoints/0/port"), "http");
    assert_eq!(s(sm, "spec/endpoints/0/path"), "/metrics");
    // The job label the rules expect (`up{job="auspex"}`).
    let job_label = s(sm, "spec/jobLabel");
    assert_eq!(svc_labels[job_label].as_str(), Some("auspex"));
    // serve needs no Kubernetes API: no token in the pod.
    assert_eq!(
        at(pod, "spec/automountServiceAccountToken").as_bool(),
        Some(false)
    );
}

/// What the production overlay renders, by component and kind: serve's objects and collect's
/// (receivers, watcher and the watcher's RBAC), and nothing else.
#[test]
fn the_overlay_renders_serve_and_collect_and_nothing_else() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    let mut got = std::collections::BTreeMap::new();
    for d in &docs {
        *got.entry((component(d).to_string(), s(d, "kind").to_string()))
            .or_insert(0) += 1;
    }
    let want: std::collections::BTreeMap<_, _> = [
        ("serve", "ServiceAccount", 1),
        ("serve", "ConfigMap", 1),
        ("serve", "Deployment", 1),
        ("serve", "Service", 1),
        ("serve", "PodDisruptionBudget", 1),
        ("serve", "ServiceMonitor", 1),
        // The receivers' account (no token) and the watcher's (bound to the ClusterRole).
        ("collect", "ServiceAccount", 2),
        ("collect", "ClusterRole", 1),
        ("collect", "ClusterRoleBinding", 1),
        // collect.toml and watch.toml.
        ("collect", "ConfigMap", 1),
        // Receivers and watcher.
        ("collect", "Deployment", 2),
        // Remote write to the receivers; the watcher's /metrics.
        ("collect", "Service", 2),
        // The receivers'; one replica of the watcher gets none.
        ("collect", "PodDisruptionBudget", 1),
        ("collect", "ServiceMonitor", 1),
    ]
    .into_iter()
    .map(|(c, k, n)| ((c.to_string(), k.to_string()), n))
    .collect();
    assert_eq!(got, want);
}

/// Everything wrong with who selects whom in the rendered objects: each Deployment's selector
/// picks its own pods and no other Deployment's; each Service and PodDisruptionBudget picks the
/// pods of exactly one Deployment, of its own component; each ServiceMonitor picks Services of
/// its own component only, and every Service is scraped by exactly one ServiceMonitor.
fn selector_problems(docs: &[serde_yaml::Value]) -> Vec<String> {
    let of_kind = |k: &str| -> Vec<&serde_yaml::Value> {
        docs.iter().filter(|d| s(d, "kind") == k).collect()
    };
    let name = |d: &serde_yaml::Value| format!("{} {}", s(d, "kind"), s(d, "metadata/name"));
    let deployments = of_kind("Deployment");
    let pods = |d: &serde_yaml::Value| at(d, "spec/template/metadata/labels").clone();
    let mut problems = Vec::new();
    for d in &deployments {
        for other in &deployments {
            let picks = selects(at(d, "spec/selector/matchLabels"), &pods(other));
            if std::ptr::eq(*d, *other) && !picks {
                problems.push(format!("{} does not select its own pods", name(d)));
            } else if !std::ptr::eq(*d, *other) && picks {
                problems.push(format!("{} selects the pods of {}", name(d), name(other)));
            }
        }
    }
    for (kind, path) in [
        ("Service", "spec/selector"),
        ("PodDisruptionBudget", "spec/selector/matchLabels"),
    ] {
        for x in of_kind(kind) {
            let picked: Vec<_> = deployments
                .iter()
                .filter(|d| selects(at(x, path), &pods(d)))
                .collect();
            if picked.len() != 1 {
                let names: Vec<_> = picked.iter().map(|d| name(d)).collect();
                problems.push(format!(
                    "{} selects the pods of {names:?}, not one Deployment's",
                    name(x)
                ));
            }
            for d in picked.iter().filter(|d| component(d) != component(x)) {
                problems.push(format!("{} selects the pods of {}", name(x), name(d)));
            }
        }
    }
    let services = of_kind("Service");
    let monitors = of_kind("ServiceMonitor");
    for sm in &monitors {
        for svc in &services {
            if selects(
                at(sm, "spec/selector/matchLabels"),
                at(svc, "metadata/labels"),
            ) && component(svc) != component(sm)
            {
                problems.push(format!("{} scrapes {}", name(sm), name(svc)));
            }
        }
    }
    for svc in &services {
        let scraped = monitors
            .iter()
            .filter(|sm| {
                selects(
                    at(sm, "spec/selector/matchLabels"),
                    at(svc, "metadata/labels"),
                )
            })
            .count();
        if scraped != 1 {
            problems.push(format!(
                "{} is scraped by {scraped} ServiceMonitors",
                name(svc)
            ));
        }
    }
    problems
}

/// serve's and collect's selectors never reach into each other's pods or Services, and the
/// receivers' never into the watcher's.
#[test]
fn selectors_pick_their_own_components_pods_only() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    assert_eq!(selector_problems(&docs), Vec::<String>::new());
}

/// The selector check finds what it is there to find: a Service that lost the role label
/// (it would send remote write to the watcher too), a ServiceMonitor that lost the component
/// label (it would scrape collect under serve's job), and a PodDisruptionBudget that lost both.
#[test]
fn the_selector_check_catches_overlapping_selectors() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    let find = |docs: &mut Vec<serde_yaml::Value>, kind: &str, name: &str| -> usize {
        docs.iter()
            .position(|d| s(d, "kind") == kind && s(d, "metadata/name") == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let remove = |v: &mut serde_yaml::Value, key: &str| {
        v.as_mapping_mut()
            .expect("a selector")
            .remove(key)
            .unwrap_or_else(|| panic!("{key} in the selector"));
    };
    let mut broken = docs.clone();
    let i = find(&mut broken, "Service", "auspex-collect");
    remove(&mut broken[i]["spec"]["selector"], "auspex/role");
    let problems = selector_problems(&broken);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("Service auspex-collect selects the pods of")),
        "{problems:?}"
    );

    let mut broken = docs.clone();
    let i = find(&mut broken, "ServiceMonitor", "auspex-serve");
    remove(&mut broken[i]["spec"]["selector"]["matchLabels"], COMPONENT);
    let problems = selector_problems(&broken);
    assert!(
        problems.contains(&"ServiceMonitor auspex-serve scrapes Service auspex-collect".into()),
        "{problems:?}"
    );

    let mut broken = docs;
    let i = find(&mut broken, "PodDisruptionBudget", "auspex-collect");
    let sel = &mut broken[i]["spec"]["selector"]["matchLabels"];
    remove(sel, "auspex/role");
    remove(sel, COMPONENT);
    let problems = selector_problems(&broken);
    assert!(
        problems.contains(
            &"PodDisruptionBudget auspex-collect selects the pods of Deployment auspex-serve"
                .into()
        ),
        "{problems:?}"
    );
}

/// A value standing in for a Secret's: what the pod would get in the variable.
fn from_secret(e: &serde_yaml::Value) -> String {
    format!(
        "from-secret-{}-{}",
        s(e, "valueFrom/secretKeyRef/name"),
        s(e, "valueFrom/secretKeyRef/key")
    )
}

/// A collect Deployment's configuration as `auspex collect` would load it in the pod: the file
/// its `--config` names, from the rendered ConfigMap, then its container's environment (a
/// Secret's value replaced by [`from_secret`]) with collect's prefix, through the same layered
/// loader and validation the binary uses (crates/auspex/src/collect.rs; its prefix is pinned by
/// crates/auspex/tests/collect_cli.rs).
fn collect_config(
    docs: &[serde_yaml::Value],
    dep: &serde_yaml::Value,
) -> auspex_collect::CollectConfig {
    let c = at(dep, "spec/template/spec/containers/0");
    let args: Vec<&str> = at(c, "args")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "collect", "{args:?}");
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    // The file lies on the config mount, and that volume is the rendered ConfigMap.
    let (dir, file) = config_path.rsplit_once('/').unwrap();
    let mount = at(c, "volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| s(m, "mountPath") == dir)
        .unwrap_or_else(|| panic!("{config_path} is on no mount"));
    let volume = at(dep, "spec/template/spec/volumes")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| s(v, "name") == s(mount, "name"))
        .unwrap();
    let cm = named(docs, "ConfigMap", s(volume, "configMap/name"));
    let text = cm["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {file}"));
    let env: Vec<(String, String)> = at(c, "env")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match e.get("value") {
                Some(v) => v.as_str().unwrap().to_string(),
                None => from_secret(e),
            };
            (s(e, "name").to_string(), value)
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(file);
    std::fs::write(&path, text).unwrap();
    auspex_serve::config::load_layered(
        Some(&path),
        env,
        "AUSPEX_COLLECT__",
        &[],
        auspex_collect::CollectConfig::validate,
    )
    .unwrap_or_else(|e| panic!("{}'s {file}: {e:#}", s(dep, "metadata/name")))
}

/// collect's objects fit each other, their configuration and serve's: each Deployment's config
/// loads and validates as `auspex collect` loads it (file plus environment); the SASL password
/// and the remote-write token reach their keys from Secrets; the CA file is mounted; probes hit
/// the port it listens on; the grace period covers the drain; exactly one Deployment runs the
/// watcher, in one replica, under the one account the read-only ClusterRole is bound to, while
/// the receivers carry no token; the topics collect writes are the ones serve reads.
#[test]
fn the_kustomize_overlay_renders_collect_deployments_that_fit_their_config() {
    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    // serve's configuration, as serve loads it.
    let tmp = tempfile::tempdir().unwrap();
    let serve_file = tmp.path().join("auspex.toml");
    let serve_cm = one(&docs, "serve", "ConfigMap");
    std::fs::write(&serve_file, s(serve_cm, "data/auspex.toml")).unwrap();
    let serve = auspex_serve::config::ServeConfig::load(Some(&serve_file), Vec::new(), &[])
        .unwrap_or_else(|e| panic!("the ConfigMap's auspex.toml: {e:#}"));

    let binding = one(&docs, "collect", "ClusterRoleBinding");
    let role = one(&docs, "collect", "ClusterRole");
    let deployments: Vec<_> = docs
        .iter()
        .filter(|d| s(d, "kind") == "Deployment" && component(d) == "collect")
        .collect();
    assert_eq!(deployments.len(), 2);
    let mut watchers = 0;
    for dep in &deployments {
        let name = s(dep, "metadata/name");
        let cfg = collect_config(&docs, dep);
        let pod = at(dep, "spec/template");
        let c = at(pod, "spec/containers/0");
        assert_eq!(s(c, "image"), "registry.example.com/auspex:0.1.0", "{name}");
        // Secrets reach the keys collect reads them from, not just some variable.
        let env = at(c, "env").as_sequence().unwrap();
        let secret_env = |var: &str| {
            env.iter()
                .find(|e| s(e, "name") == var && at(e, "valueFrom/secretKeyRef").is_mapping())
                .unwrap_or_else(|| panic!("{name}: no {var} from a Secret in {env:?}"))
        };
        let password = secret_env("AUSPEX_COLLECT__KAFKA__PROPERTIES__SASL_PASSWORD");
        assert_eq!(
            cfg.kafka.properties.get("sasl.password"),
            Some(&from_secret(password)),
            "{name}"
        );
        let token = secret_env("AUSPEX_COLLECT__HTTP__BEARER_TOKEN");
        assert_eq!(cfg.http.bearer_token, Some(from_secret(token)), "{name}");
        // Probes and the port on what collect listens on.
        let port: u64 = cfg.http.listen.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(
            at(c, "ports/0/containerPort").as_u64(),
            Some(port),
            "{name}"
        );
        assert_eq!(s(c, "ports/0/name"), "http");
        for (probe, path) in [
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
            ("startupProbe", "/healthz"),
        ] {
            assert_eq!(s(c, &format!("{probe}/httpGet/path")), path, "{name}");
            assert_eq!(s(c, &format!("{probe}/httpGet/port")), "http", "{name}");
        }
        for r in ["requests/cpu", "requests/memory", "limits/memory"] {
            assert!(at(c, &format!("resources/{r}")).is_string(), "{name}: {r}");
        }
        assert_eq!(
            at(c, "securityContext/readOnlyRootFilesystem").as_bool(),
            Some(true)
        );
        assert_eq!(
            at(pod, "spec/securityContext/runAsNonRoot").as_bool(),
            Some(true)
        );
        // The Kafka CA file lies on a Secret's mount.
        let ca = &cfg.kafka.properties["ssl.ca.location"];
        let mount = at(c, "volumeMounts")
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| ca.starts_with(&format!("{}/", s(m, "mountPath"))))
            .unwrap_or_else(|| panic!("{name}: {ca} is on no mount"));
        let volume = at(pod, "spec/volumes")
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| s(v, "name") == s(mount, "name"))
            .unwrap();
        assert!(at(volume, "secret").is_mapping(), "{name}: {volume:?}");
        // What collect writes is what serve reads: same brokers, samples and topology topics.
        assert!(cfg.kafka.enabled(), "{name}");
        assert_eq!(cfg.kafka.brokers, serve.kafka.brokers, "{name}");
        assert_eq!(cfg.kafka.samples_topic, serve.kafka.samples_topic, "{name}");
        assert_eq!(
            cfg.kafka.topology_topic, serve.kafka.topology_topic,
            "{name}"
        );
        // SIGTERM: the HTTP server stops (up to 10 s), the last buckets wait for Kafka
        // (delivery_timeout_ms), the producer closes (up to 10 s); the watcher's events first
        // (up to 30 s) where it runs (crates/auspex-collect/src/lib.rs, Collector::stop).
        let grace = at(pod, "spec/terminationGracePeriodSeconds")
            .as_u64()
            .unwrap();
        let watcher_drain = if cfg.watch.is_some() { 30_000 } else { 0 };
        assert!(
            grace * 1000 >= 20_000 + cfg.kafka.delivery_timeout_ms + watcher_drain,
            "{name}: grace {grace} s"
        );
        // Only the watcher holds a Kubernetes API token, under the account the role is bound to.
        let account = s(pod, "spec/serviceAccountName");
        let sa = named(&docs, "ServiceAccount", account);
        let bound = binding["subjects"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|sub| s(sub, "kind") == "ServiceAccount" && s(sub, "name") == account);
        let automount = at(pod, "spec/automountServiceAccountToken").as_bool();
        if cfg.watch.is_some() {
            watchers += 1;
            assert_eq!(at(dep, "spec/replicas").as_u64(), Some(1), "{name}");
            assert!(
                bound,
                "{name}: account {account} is not bound to the ClusterRole"
            );
            assert_eq!(automount, Some(true), "{name}");
            assert_ne!(
                at(sa, "automountServiceAccountToken").as_bool(),
                Some(false)
            );
        } else {
            assert!(!bound, "{name}: the receivers need no Kubernetes API");
            assert_eq!(automount, Some(false), "{name}");
            assert_eq!(
                at(sa, "automountServiceAccountToken").as_bool(),
                Some(false)
            );
            // Remote write reaches the receivers through a Service on their port. A pod's series
            // must all meet in one replica (its sums are per process): with more than one,
            // each client sticks to one.
            let svc = named(&docs, "Service", name);
            assert!(selects(
                at(svc, "spec/selector"),
                at(pod, "metadata/labels")
            ));
            assert_eq!(s(svc, "spec/ports/0/targetPort"), "http");
            if at(dep, "spec/replicas").as_u64().unwrap() > 1 {
                assert_eq!(s(svc, "spec/sessionAffinity"), "ClientIP", "{name}");
            }
        }
    }
    assert_eq!(watchers, 1, "the watcher runs in exactly one Deployment");
    // The binding: collect's ClusterRole, to an account rendered in the overlay's namespace.
    assert_eq!(s(binding, "roleRef/kind"), "ClusterRole");
    assert_eq!(s(binding, "roleRef/name"), s(role, "metadata/name"));
    let subjects = binding["subjects"].as_sequence().unwrap();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    let sa = named(&docs, "ServiceAccount", s(&subjects[0], "name"));
    assert_eq!(component(sa), "collect");
    assert_eq!(s(&subjects[0], "namespace"), "auspex");
    assert_eq!(s(sa, "metadata/namespace"), "auspex");
    // Read-only: get, list and watch, on named resources.
    for rule in role["rules"].as_sequence().unwrap() {
        let strings = |k: &str| -> Vec<&str> {
            rule[k]
                .as_sequence()
                .unwrap_or_else(|| panic!("{k} in {rule:?}"))
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect()
        };
        let verbs = strings("verbs");
        assert!(
            !verbs.is_empty() && verbs.iter().all(|v| ["get", "list", "watch"].contains(v)),
            "{rule:?}"
        );
        assert!(!strings("resources").contains(&"*"), "{rule:?}");
        assert!(!strings("apiGroups").contains(&"*"), "{rule:?}");
    }
    // Its own ServiceMonitor, under jobs other than serve's "auspex" (the rules' `up{job}`).
    let sm = one(&docs, "collect", "ServiceMonitor");
    assert_eq!(s(sm, "spec/endpoints/0/port"), "http");
    assert_eq!(s(sm, "spec/endpoints/0/path"), "/metrics");
    for svc in docs.iter().filter(|d| {
        s(d, "kind") == "Service"
            && selects(
                at(sm, "spec/selector/matchLabels"),
                at(d, "metadata/labels"),
            )
    }) {
        let job = match sm["spec"].get("jobLabel") {
            Some(l) => svc["metadata"]["labels"][l.as_str().unwrap()]
                .as_str()
                .unwrap(),
            None => s(svc, "metadata/name"),
        };
        assert_ne!(job, "auspex", "{svc:?}");
    }
}

/// deploy/prometheus/remote-write.yml is a valid Prometheus configuration that writes to the
/// receivers' Service with the token collect checks, keeps every series collect maps, and
/// sends batches no later than collect waits for them.
#[test]
fn the_remote_write_example_targets_the_collect_service() {
    let dir = deploy().join("prometheus");
    run("promtool", &["check", "config", "remote-write.yml"], &dir);
    let text = std::fs::read_to_string(dir.join("remote-write.yml")).unwrap();
    let prom: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let rw = at(&prom, "remote_write/0");

    let docs = kustomize(&deploy().join("kubernetes/overlays/prod"));
    let receivers = named(&docs, "Deployment", "auspex-collect");
    let svc = named(&docs, "Service", "auspex-collect");
    assert!(selects(
        at(svc, "spec/selector"),
        at(receivers, "spec/template/metadata/labels")
    ));
    let want = format!(
        "http://{}.{}.svc:{}/api/v1/write",
        s(svc, "metadata/name"),
        s(svc, "metadata/namespace"),
        at(svc, "spec/ports/0/port").as_u64().unwrap()
    );
    assert_eq!(s(rw, "url"), want);
    // The token file is the receivers' token Secret as prometheus-operator mounts it.
    let token = at(receivers, "spec/template/spec/containers/0/env")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| s(e, "name") == "AUSPEX_COLLECT__HTTP__BEARER_TOKEN")
        .expect("the receivers check a token");
    assert_eq!(s(rw, "authorization/type"), "Bearer");
    assert_eq!(
        s(rw, "authorization/credentials_file"),
        format!(
            "/etc/prometheus/secrets/{}/{}",
            s(token, "valueFrom/secretKeyRef/name"),
            s(token, "valueFrom/secretKeyRef/key")
        )
    );
    // The keep regex (anchored, as Prometheus anchors it) lets every mapped name through and
    // not Prometheus's own series. RE2 and Python agree on this regex's syntax.
    let relabel = at(rw, "write_relabel_configs/0");
    assert_eq!(s(relabel, "action"), "keep");
    assert_eq!(s(relabel, "source_labels/0"), "__name__");
    let mut args = vec![
        "-c".to_string(),
        "import re, sys; r = re.compile(sys.argv[1]); \
         print(' '.join(n for n in sys.argv[2:] if not r.fullmatch(n)))"
            .to_string(),
        s(relabel, "regex").to_string(),
    ];
    args.extend(
        auspex_collect::mapping::KNOWN_METRICS
            .iter()
            .map(|n| n.to_string()),
    );
    args.extend(["up", "scrape_duration_seconds", "container_fs_reads_total"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dropped = run("python3", &args, &dir);
    assert_eq!(
        dropped.trim(),
        "up scrape_duration_seconds container_fs_reads_total"
    );
    // batch_send_deadline <= mapping.flush_after_ms, or a bucket may be published before its
    // last samples arrive.
    let collect = collect_config(&docs, receivers);
    let deadline = s(rw, "queue_config/batch_send_deadline");
    let secs: u64 = deadline.strip_suffix('s').unwrap().parse().unwrap();
    assert!(
        secs * 1000 <= collect.mapping.flush_after_ms,
        "batch_send_deadline {deadline}"
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

/// Every object serve's base, collect's base and the production overlay (both) render
/// validates against the Kubernetes schemas with unknown fields rejected
/// (`kubernetes-validate --strict`); the ServiceMonitors, a CRD those schemas lack, against the
/// CRD's fields.
#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    // Per directory: the components it renders, and how many objects besides ServiceMonitors
    // (serve: 5; collect: 10, see the_overlay_renders_serve_and_collect_and_nothing_else).
    for (dir, components, objects) in [
        ("kubernetes/base", &["serve"][..], 5),
        ("kubernetes/collect", &["collect"][..], 10),
        ("kubernetes/overlays/prod", &["collect", "serve"][..], 15),
    ] {
        let docs = kustomize(&deploy().join(dir));
        let tmp = tempfile::tempdir().unwrap();
        let mut core = Vec::new();
        // One ServiceMonitor per component.
        let mut monitors = Vec::new();
        for d in &docs {
            if s(d, "kind") == "ServiceMonitor" {
                check_service_monitor(d);
                monitors.push(component(d));
            } else {
                core.push(serde_yaml::to_string(d).unwrap());
            }
        }
        monitors.sort();
        assert_eq!(monitors, components, "{dir}");
        assert_eq!(core.len(), objects, "{dir}");
        std::fs::write(tmp.path().join("rendered.yaml"), core.join("---\n")).unwrap();
        // As a module: a console script pip puts under pyenv needs a rehash to be on PATH.
        let out = run(
            "python3",
            &[
                "-m",
                "kubernetes_validate",
                "--strict",
                "-k",
                KUBERNETES,
                "rendered.yaml",
            ],
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
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate"])
        .args(["--strict", "-k", KUBERNETES, "bad.yaml"])
        .current_dir(tmp.path())
        .output()
        .expect("kubernetes-validate runs (`.ci/install` installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("automountServiceAcountToken"), "{text}");
}

// --- a live Prometheus scraping a live /metrics ---

mod live {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use auspex_ingest::simulator::SimulatorSource;
    use auspex_ingest::{NdjsonSink, Paced, Pacing};
    use auspex_nn::NnDevice;
    use auspex_serve::http::{self, HttpConfig};
    use auspex_serve::{Engine, EngineConfig, Shared, model, pipeline};
    use auspex_sim::{FaultKind, ScheduledFault, SimConfig};
    use serde_json::Value;

    use super::{deploy, queries};

    /// A free loopback port (bound, read, released).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A Prometheus process, killed (by its own id) when dropped.
    struct Prometheus {
        child: Child,
        base: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Prometheus {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Prometheus {
        /// Scrapes `target` every second as job `auspex` and evaluates deploy/'s rules.
        async fn start(target: &str, client: &reqwest::Client) -> Prometheus {
            let dir = tempfile::tempdir().unwrap();
            let rules = deploy()
                .join("prometheus/auspex-rules.yml")
                .canonicalize()
                .unwrap();
            let config = format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 rule_files: [ {rules:?} ]\n\
                 scrape_configs:\n  - job_name: auspex\n    static_configs: [ {{ targets: ['{target}'] }} ]\n"
            );
            std::fs::write(dir.path().join("p.yml"), config).unwrap();
            let port = free_port();
            let child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("p.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
                .spawn()
                .expect("prometheus runs (`.ci/install` installs it)");
            let p = Prometheus {
                child,
                base: format!("http://127.0.0.1:{port}"),
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let ready = client.get(format!("{}/-/ready", p.base)).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return p;
                }
                assert!(Instant::now() < deadline, "prometheus not ready in 20 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        async fn api(&self, client: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Value {
            let resp = client
                .get(format!("{}{path}", self.base))
                .query(query)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap();
            assert!(status.is_success(), "{path} {query:?}: {status} {body}");
            body
        }

        /// An instant query's result vector (asserting `status: success`).
        async fn query(&self, client: &reqwest::Client, expr: &str) -> Vec<Value> {
            let body = self.api(client, "/api/v1/query", &[("query", expr)]).await;
            assert_eq!(body["status"], "success", "{expr}: {body}");
            body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    }

    /// A small cluster for 40 minutes with a memory leak forced at minute 15, so alerts fire and
    /// some still fire at the end.
    fn sim() -> SimConfig {
        SimConfig {
            seed: 7,
            duration_ms: 2_400_000,
            nodes: 2,
            services: 3,
            replicas: 2,
            rolling_deploys_per_hour: 0.0,
            reschedules_per_hour: 0.0,
            warmup_ms: 900_000,
            faults: Some(vec![ScheduledFault::new(FaultKind::MemoryLeak, 900_000)]),
            ..SimConfig::default()
        }
    }

    /// serve's HTTP API (the embedded pipeline feeding the statistical scorer) on a free port,
    /// scraped each second by a real Prometheus that also evaluates deploy/'s rules: every panel
    /// query of every dashboard succeeds, the key panels (throughput, scoring time, alerts by
    /// kind, and the predictions dashboard's) have data, and every rule evaluates healthy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_prometheus_answers_every_dashboard_query_and_evaluates_the_rules() {
        let started = Instant::now();
        let mut config = EngineConfig::default();
        let scorer = model::open(None, NnDevice::Cpu, &mut config, false).unwrap();
        let shared = Arc::new(Shared::new(Engine::new(config, scorer).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let router = http::router(
            Arc::clone(&shared),
            http::install_recorder(),
            None,
            &HttpConfig::default(),
        );
        let (shut, shut_down) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, router, async move {
            let _ = shut_down.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let prom = Prometheus::start(&target, &client).await;
        // Prometheus hands new targets to its scrapers about 5 s after start: feed once it scrapes.
        let deadline = Instant::now() + Duration::from_secs(20);
        while prom
            .query(&client, "up{job=\"auspex\"} == 1")
            .await
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "prometheus never scraped {target}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Event time at 300 x wall time, stopped as soon as an alert fires, so that it still fires
        // while Prometheus scrapes (the leak's alert resolves before the 40 minutes are over).
        let stop = Arc::new(AtomicBool::new(false));
        let stop_feed = Arc::clone(&stop);
        let feeder = Arc::clone(&shared);
        let feed = std::thread::spawn(move || {
            let mut source = Paced::new(
                SimulatorSource::new(sim()).unwrap(),
                Pacing::RealTime { speed: 300.0 },
            )
            .unwrap();
            let mut alerts = NdjsonSink::new("alerts", Vec::<u8>::new());
            let mut dead = NdjsonSink::new("dead letters", Vec::<u8>::new());
            pipeline::run(
                &feeder,
                &mut source,
                &mut alerts,
                &mut dead,
                Some(stop_feed),
            )
            .unwrap()
        });
        while !feed.is_finished() {
            if !shared.engine().active_alerts().is_empty() {
                stop.store(true, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let counts = feed.join().unwrap();
        let fed = started.elapsed();
        let firing = shared.engine().active_alerts().len();
        assert!(
            counts.alerts_firing.values().sum::<u64>() > 0 && firing > 0,
            "the run fires alerts and some still fire: {counts:?}"
        );
        // Three more scrapes and rule evaluations after the run.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let mut empty = Vec::new();
        let mut asked = 0;
        for (name, dash) in super::dashboards() {
            for q in queries(&dash, "30s") {
                asked += 1;
                if prom.query(&client, &q.expr).await.is_empty() {
                    empty.push(format!("{name}: {:?}: {}", q.panel, q.expr));
                }
            }
        }
        // Panels with nothing to show in this run: no Kafka (lag, pauses, partitions, offsets,
        // producer, and the watermark and alert latency only the Kafka loop records), no Alertmanager sink, no
        // reload, no dead letter, and no alert resolved yet.
        let quiet = [
            "auspex_consumer_lag_messages",
            "auspex_consumer_paused",
            "auspex_assigned_partitions",
            "auspex_offsets_stored_total",
            "auspex_producer_in_flight",
            "auspex_alert_latency_seconds",
            "auspex_watermark_seconds",
            "auspex_alertmanager_",
            "auspex_model_reloads_total",
            "auspex_dead_letters_total",
            "auspex_parse_errors_total",
            "state=\"resolved\"",
        ];
        let unexpected: Vec<&String> = empty
            .iter()
            .filter(|e| !quiet.iter().any(|m| e.contains(m)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "panels without data after a run that fired {firing} alerts:\n{unexpected:#?}"
        );
        // The key panels, named: throughput, scoring time, alerts by kind, top entities.
        for expr in [
            "sum by (instance) (rate(auspex_samples_total[30s]))",
            "histogram_quantile(0.99, sum by (branch, le) (rate(auspex_score_duration_seconds_bucket[30s])))",
            "sum by (kind, state) (increase(auspex_alerts_total[1h]))",
            "auspex_alert_probability",
            "sum by (kind, namespace) (auspex_alerts_firing)",
            "auspex_alert_lead_time_seconds_count",
        ] {
            assert!(
                !prom.query(&client, expr).await.is_empty(),
                "{expr}: no data"
            );
        }
        // Throughput was seen moving, not only the final counter.
        let peak = prom
            .query(
                &client,
                "max_over_time(sum(rate(auspex_samples_total[5s]))[1m:1s])",
            )
            .await;
        let peak: f64 = peak[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!(peak > 0.0, "samples/s seen by Prometheus: {peak}");
        // What Prometheus holds of the top-entities family equals what serve fires.
        let shown = prom.query(&client, "auspex_alert_probability").await.len();
        assert_eq!(shown, firing.min(HttpConfig::default().metrics_top_alerts));

        // The rules, loaded through `rule_files`, evaluate without error.
        let rules = prom.api(&client, "/api/v1/rules", &[]).await;
        let mut evaluated = 0;
        for g in rules["data"]["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                assert_eq!(r["health"], "ok", "{r}");
                assert!(
                    !r["lastEvaluation"]
                        .as_str()
                        .unwrap_or("0001")
                        .starts_with("0001"),
                    "never evaluated: {r}"
                );
                evaluated += 1;
            }
        }
        assert_eq!(evaluated, 8, "{rules}");
        // The rules see a healthy instance: none of the service alerts fires.
        let alerts = prom.api(&client, "/api/v1/alerts", &[]).await;
        let firing_rules: Vec<&Value> = alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .collect();
        assert!(firing_rules.is_empty(), "{firing_rules:?}");

        shut.send(()).unwrap();
        server.await.unwrap().unwrap();
        eprintln!(
            "live check: {asked} dashboard queries, fed in {:.1} s, {:.1} s in all",
            fed.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
}
