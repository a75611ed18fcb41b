//! Compact views of the Kubernetes objects the watcher reads: only the fields the topology
//! needs, taken out of the API objects as soon as they arrive so that no full object (with its
//! `managedFields`, status and spec) is kept. The state is proportional to the number of
//! objects, each a few hundred bytes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label EndpointSlices carry to name their service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the topology needs of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    /// Tells a pod from a later one of the same name (a StatefulSet pod recreated elsewhere).
    pub uid: String,
    /// `spec.nodeName`: absent until the scheduler binds the pod.
    pub node: Option<String>,
    /// The owning workload (see [`workload`]).
    pub workload: Option<String>,
    /// All labels: selectors match on any of them.
    pub labels: BTreeMap<String, String>,
    /// `status.phase` is `Succeeded` or `Failed`: the pod no longer runs anywhere.
    pub terminal: bool,
}

/// What the topology needs of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What the topology needs of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    /// `spec.selector`; absent or empty: the service selects no pods by itself.
    pub selector: Option<BTreeMap<String, String>>,
    pub labels: BTreeMap<String, String>,
}

/// What the topology needs of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceView {
    pub namespace: String,
    pub name: String,
    /// The service it belongs to (its `kubernetes.io/service-name` label).
    pub service: Option<String>,
    /// Pods named by endpoint `targetRef`s: name → uid (empty when the ref carries none).
    pub pods: BTreeMap<String, String>,
}

/// One watched object, any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Pod(PodView),
    Node(NodeView),
    Service(ServiceView),
    Slice(SliceView),
}

impl PodView {
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        let terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        PodView {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            workload: workload(pod),
            labels,
            terminal,
        }
    }
}

/// The workload that owns a pod: its controller owner, with a ReplicaSet resolved to its
/// Deployment by removing the `pod-template-hash` suffix (so that pods of successive rollouts
/// share a workload). Mirror pods (owned by their Node) and bare pods have none.
pub fn workload(pod: &Pod) -> Option<String> {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    match owner.kind.as_str() {
        "Node" => None,
        "ReplicaSet" => {
            let hash = meta
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            let deployment = hash
                .and_then(|h| owner.name.strip_suffix(h.as_str()))
                .and_then(|rest| rest.strip_suffix('-'))
                .filter(|d| !d.is_empty());
            Some(deployment.unwrap_or(&owner.name).to_string())
        }
        _ => Some(owner.name.clone()),
    }
}

impl NodeView {
    pub fn from_node(node: &Node) -> Self {
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

impl ServiceView {
    pub fn from_service(svc: &Service) -> Self {
        ServiceView {
            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
            name: svc.metadata.name.clone().unwrap_or_default(),
            selector: svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .filter(|s| !s.is_empty()),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
        }
    }

    /// Whether the service's selector selects a pod with these labels.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

impl SliceView {
    pub fn from_slice(slice: &EndpointSlice) -> Self {
        let meta = &slice.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let pods = slice
            .endpoints
            .iter()
            .filter_map(|e| e.target_ref.as_ref())
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            // A targetRef is in the slice's namespace; one that says otherwise is not ours.
            .filter(|r| r.namespace.as_deref().is_none_or(|ns| ns == namespace))
            .filter_map(|r| Some((r.name.clone()?, r.uid.clone().unwrap_or_default())))
            .collect();
        SliceView {
            name: meta.name.clone().unwrap_or_default(),
            service: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .cloned(),
            namespace,
            pods,
        }
    }

    /// Whether this slice lists that pod (the same pod: a uid, when known, must match).
    pub fn lists(&self, pod: &PodView) -> bool {
        self.pods
            .get(&pod.name)
            .is_some_and(|uid| uid.is_empty() || *uid == pod.uid)
    }

    /// Names of the pods listed.
    pub fn pod_names(&self) -> BTreeSet<&str> {
        self.pods.keys().map(String::as_str).collect()
    }
}

impl From<&Pod> for Object {
    fn from(p: &Pod) -> Self {
        Object::Pod(PodView::from_pod(p))
    }
}

impl From<&Node> for Object {
    fn from(n: &Node) -> Self {
        Object::Node(NodeView::from_node(n))
    }
}

impl From<&Service> for Object {
    fn from(s: &Service) -> Self {
        Object::Service(ServiceView::from_service(s))
    }
}

impl From<&EndpointSlice> for Object {
    fn from(s: &EndpointSlice) -> Self {
        Object::Slice(SliceView::from_slice(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn workload_of_a_deployment_pod_drops_the_template_hash() {
        let p = pod(serde_json::json!({
            "metadata": {
                "name": "checkout-7d9f8c6b5-x1x1x", "namespace": "shop", "uid": "u1",
                "labels": {"app": "checkout", "pod-template-hash": "7d9f8c6b5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "checkout-7d9f8c6b5", "uid": "rs1", "controller": true}]
            },
            "spec": {"containers": [], "nodeName": "node-a"},
            "status": {"phase": "Running"}
        }));
        let v = PodView::from_pod(&p);
        assert_eq!(v.workload.as_deref(), Some("checkout"));
        assert_eq!(v.node.as_deref(), Some("node-a"));
        assert!(!v.terminal);
    }

    #[test]
    fn workload_of_other_owners() {
        let owned = |kind: &str, name: &str, controller: bool| {
            pod(serde_json::json!({
                "metadata": {"name": "p", "ownerReferences": [{"apiVersion": "v1",
                    "kind": kind, "name": name, "uid": "o", "controller": controller}]},
            }))
        };
        assert_eq!(
            workload(&owned("StatefulSet", "cart", true)).as_deref(),
            Some("cart")
        );
        assert_eq!(
            workload(&owned("Job", "report-2891", true)).as_deref(),
            Some("report-2891")
        );
        assert_eq!(workload(&owned("Node", "node-a", true)), None);
        assert_eq!(workload(&owned("StatefulSet", "cart", false)), None);
        // A ReplicaSet without the hash label (made by hand) is its own workload.
        assert_eq!(
            workload(&owned("ReplicaSet", "rs-abc", true)).as_deref(),
            Some("rs-abc")
        );
    }

    #[test]
    fn selectors_need_every_key() {
        let svc = ServiceView {
            namespace: "shop".into(),
            name: "checkout".into(),
            selector: Some([("app".to_string(), "checkout".to_string())].into()),
            labels: BTreeMap::new(),
        };
        let labels = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(svc.selects(&labels(&[("app", "checkout"), ("tier", "web")])));
        assert!(!svc.selects(&labels(&[("app", "cart")])));
        let no_selector = ServiceView {
            selector: None,
            ..svc
        };
        assert!(!no_selector.selects(&labels(&[("app", "checkout")])));
    }
}
