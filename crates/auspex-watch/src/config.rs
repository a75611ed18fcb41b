//! The watcher's configuration (TOML), its defaults and its validation. Validation errors name
//! the key at fault, so an operator can find it in the file.

use serde::{Deserialize, Serialize};

/// Where pod → service membership (`belongs_to` edges) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// EndpointSlices (`discovery.k8s.io/v1`): the endpoints' `targetRef` pods, as kube-proxy
    /// sees them. Exact, also for services whose endpoints are managed by hand.
    #[default]
    EndpointSlices,
    /// Service `spec.selector` matched against pod labels. Cheaper (no EndpointSlice watch,
    /// which churns on every readiness change) but blind to selector-less services.
    Selectors,
}

/// Configuration of the topology watcher.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Namespaces to watch pods, services and EndpointSlices in; empty: the whole cluster.
    /// Nodes are cluster-scoped and always watched.
    pub namespaces: Vec<String>,
    /// Label selector for pods (Kubernetes syntax, e.g. `team=shop,tier!=batch`); absent: all.
    pub pod_selector: Option<String>,
    /// Label selector for services; absent: all.
    pub service_selector: Option<String>,
    /// Label selector for nodes; absent: all.
    pub node_selector: Option<String>,
    /// Where `belongs_to` (pod → service) comes from: `endpoint_slices` or `selectors`.
    pub membership: Membership,
    /// Pod labels copied onto pod entities (others are dropped: they cost memory downstream).
    /// `pod-template-hash` names a pod's revision: remediation reads it to recommend a
    /// rollback to the previous one (it changes once per rollout, not per pod).
    pub pod_labels: Vec<String>,
    /// Node labels copied onto node entities.
    pub node_labels: Vec<String>,
    /// Service labels copied onto service entities.
    pub service_labels: Vec<String>,
    /// Objects per list page during a (re-)list; bounds the memory a re-list takes at once.
    pub page_size: u32,
    // Call edges are configured by `CallsConfig` (mesh.rs) where their series arrive, in the
    // remote-write collector (`[calls]`), not here: the watcher never sees them.
}

impl Default for WatchConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        WatchConfig {
            namespaces: Vec::new(),
            pod_selector: None,
            service_selector: None,
            node_selector: None,
            membership: Membership::default(),
            pod_labels: strings(&[
                "app",
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
                "app.kubernetes.io/part-of",
                "version",
                "pod-template-hash",
            ]),
            node_labels: strings(&[
                "topology.kubernetes.io/region",
                "topology.kubernetes.io/zone",
                "node.kubernetes.io/instance-type",
                "kubernetes.io/arch",
            ]),
            service_labels: strings(&[
                "app",
                "app.kubernetes.io/name",
                "app.kubernetes.io/part-of",
            ]),
            page_size: 500,
        }
    }
}

/// A configuration that cannot be used; `key` is its dotted path in the TOML table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("watch config: `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl WatchConfig {
    /// Parses a TOML table (the `[watch]` section's body) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let value: toml::Value = toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .map_err(|e| ConfigError::new("(syntax)", e.message().to_string()))?;
        // serde_path_to_error names the key of a wrong type or an unknown field.
        let cfg: WatchConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::new(key, e.into_inner().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, ns) in self.namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                return Err(ConfigError::new(
                    format!("namespaces[{i}]"),
                    format!("{ns:?} is not a namespace name (lowercase DNS label, 1-63 chars)"),
                ));
            }
            if self.namespaces[..i].contains(ns) {
                return Err(ConfigError::new(
                    format!("namespaces[{i}]"),
                    format!("{ns:?} is listed twice"),
                ));
            }
        }
        for (key, sel) in [
            ("pod_selector", &self.pod_selector),
            ("service_selector", &self.service_selector),
            ("node_selector", &self.node_selector),
        ] {
            if let Some(s) = sel {
                check_selector(s).map_err(|reason| ConfigError::new(key, reason))?;
            }
        }
        for (key, labels) in [
            ("pod_labels", &self.pod_labels),
            ("node_labels", &self.node_labels),
            ("service_labels", &self.service_labels),
        ] {
            for (i, l) in labels.iter().enumerate() {
                if !is_label_key(l) {
                    return Err(ConfigError::new(
                        format!("{key}[{i}]"),
                        format!("{l:?} is not a Kubernetes label key"),
                    ));
                }
            }
        }
        if !(1..=10_000).contains(&self.page_size) {
            return Err(ConfigError::new(
                "page_size",
                format!("{} is outside 1..=10000", self.page_size),
            ));
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `[prefix/]name`: prefix a DNS subdomain, name 1-63 of `[A-Za-z0-9._-]`, alphanumeric ends.
fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    name_ok && prefix_ok
}

/// A light check of label-selector syntax: the API server has the last word, but an empty or
/// obviously broken selector is caught before any request is made.
fn check_selector(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("is empty; leave the key out to select everything".into());
    }
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("{s:?} has an unbalanced ')'"));
        }
    }
    if depth != 0 {
        return Err(format!("{s:?} has an unbalanced '('"));
    }
    if s.split(',').any(|term| term.trim().is_empty()) && !s.contains('(') {
        return Err(format!("{s:?} has an empty term"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_table_gives_them() {
        assert_eq!(WatchConfig::from_toml("").unwrap(), WatchConfig::default());
    }

    #[test]
    fn a_full_table_parses() {
        let cfg = WatchConfig::from_toml(
            r#"
            namespaces = ["shop", "payments"]
            pod_selector = "team=shop"
            membership = "selectors"
            pod_labels = ["app"]
            page_size = 200
            "#,
        )
        .unwrap();
        assert_eq!(cfg.namespaces, ["shop", "payments"]);
        assert_eq!(cfg.membership, Membership::Selectors);
        assert_eq!(cfg.page_size, 200);
    }

    #[test]
    fn errors_name_the_key() {
        let key = |t: &str| WatchConfig::from_toml(t).unwrap_err().key;
        assert_eq!(key(r#"namespaces = ["shop", "Shop"]"#), "namespaces[1]");
        assert_eq!(key(r#"namespaces = ["shop", "shop"]"#), "namespaces[1]");
        assert_eq!(key(r#"pod_selector = " ""#), "pod_selector");
        assert_eq!(key(r#"node_labels = ["ok", "-bad"]"#), "node_labels[1]");
        assert_eq!(key("page_size = 0"), "page_size");
        let unknown = WatchConfig::from_toml("namespace = []").unwrap_err();
        assert!(unknown.reason.contains("namespace"), "{unknown}");
    }

    #[test]
    fn label_keys() {
        for ok in ["app", "app.kubernetes.io/name", "a_b-c.d", "x/y"] {
            assert!(is_label_key(ok), "{ok}");
        }
        for bad in ["", "/x", "x/", "-a", "a-", "Ex ample/x", "a/b/c"] {
            assert!(!is_label_key(bad), "{bad}");
        }
    }
}
