//! deploy/kubernetes/collect/rbac.yaml grants exactly what the watcher reads, read-only.

use std::collections::BTreeSet;

use auspex_watch::{Membership, Resource, Scope, WatchConfig};
use serde::Deserialize;

fn manifests() -> Vec<serde_yaml::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/collect/rbac.yaml"
    );
    let text = std::fs::read_to_string(path).expect("rbac.yaml is in the repository");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("each document is YAML"))
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("rbac.yaml has a {kind}"))
}

fn strings(v: &serde_yaml::Value) -> BTreeSet<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// `(api group, resource)` of a watched resource.
fn api_resource(r: Resource) -> (&'static str, &'static str) {
    match r {
        Resource::EndpointSlice => ("discovery.k8s.io", r.as_str()),
        _ => ("", r.as_str()),
    }
}

#[test]
fn the_cluster_role_is_read_only_and_covers_every_watch() {
    let docs = manifests();
    assert_eq!(docs.len(), 3);
    let role = of_kind(&docs, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let verbs = strings(&rule["verbs"]);
        assert_eq!(
            verbs,
            ["get", "list", "watch"].map(String::from).into(),
            "read-only: {rule:?}"
        );
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                granted.insert((g.clone(), r));
            }
        }
    }
    // Everything any configuration watches, and nothing else.
    let mut needed = BTreeSet::new();
    for membership in [Membership::EndpointSlices, Membership::Selectors] {
        let cfg = WatchConfig {
            membership,
            ..WatchConfig::default()
        };
        for s in Scope::all_for(&cfg) {
            let (g, r) = api_resource(s.resource);
            needed.insert((g.to_string(), r.to_string()));
        }
    }
    assert_eq!(granted, needed);
}

#[test]
fn the_binding_gives_the_role_to_the_collect_account() {
    let docs = manifests();
    let sa = of_kind(&docs, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"].as_str(), Some("auspex-collect"));
    let binding = of_kind(&docs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(binding["roleRef"]["name"].as_str(), Some("auspex-collect"));
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(subject["name"].as_str(), Some("auspex-collect"));
    assert_eq!(subject["namespace"], sa["metadata"]["namespace"]);
}
