//! Entities (pods, nodes, services, containers) and their identity.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What an entity is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Pod,
    Node,
    Service,
    Container,
}

impl EntityKind {
    pub const ALL: [EntityKind; 4] = [
        EntityKind::Pod,
        EntityKind::Node,
        EntityKind::Service,
        EntityKind::Container,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Pod => "pod",
            EntityKind::Node => "node",
            EntityKind::Service => "service",
            EntityKind::Container => "container",
        }
    }

    /// Nodes are cluster-scoped; everything else lives in a namespace.
    pub fn is_namespaced(self) -> bool {
        self != EntityKind::Node
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EntityKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ModelError::UnknownEntityKind(s.to_string()))
    }
}

/// The identity of an entity: enough to name it, nothing more.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct EntityRef {
    pub kind: EntityKind,
    /// Kubernetes namespace; absent for nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name (for a container: `<pod>/<container>`).
    #[schemars(length(min = 1))]
    pub name: String,
}

impl EntityRef {
    pub fn new(kind: EntityKind, namespace: Option<&str>, name: &str) -> Self {
        EntityRef {
            kind,
            namespace: if kind.is_namespaced() {
                namespace.map(str::to_string)
            } else {
                None
            },
            name: name.to_string(),
        }
    }

    pub fn node(name: &str) -> Self {
        EntityRef::new(EntityKind::Node, None, name)
    }

    pub fn pod(namespace: &str, name: &str) -> Self {
        EntityRef::new(EntityKind::Pod, Some(namespace), name)
    }

    pub fn service(namespace: &str, name: &str) -> Self {
        EntityRef::new(EntityKind::Service, Some(namespace), name)
    }

    /// The canonical string key: `kind/namespace/name`, or `node/name`.
    pub fn id(&self) -> EntityId {
        EntityId::from_parts(self.kind, self.namespace.as_deref(), &self.name)
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// An entity as it appears on a sample or a topology event: its identity plus where it runs and
/// what owns it. Samples carry these fields so that the live graph can be built from samples
/// alone when no topology feed exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Entity {
    pub kind: EntityKind,
    /// Kubernetes namespace; absent for nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name (for a container: `<pod>/<container>`).
    #[schemars(length(min = 1))]
    pub name: String,
    /// The node a pod or container runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The service a pod belongs to (selects it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The owning workload (Deployment / StatefulSet / DaemonSet name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Free-form Kubernetes labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Entity {
    /// An entity with identity only.
    pub fn new(kind: EntityKind, namespace: Option<&str>, name: &str) -> Self {
        let r = EntityRef::new(kind, namespace, name);
        Entity {
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
            node: None,
            service: None,
            workload: None,
            labels: BTreeMap::new(),
        }
    }

    pub fn reference(&self) -> EntityRef {
        EntityRef {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    pub fn id(&self) -> EntityId {
        EntityId::from_parts(self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// Canonical, cheap-to-clone entity key: `kind/namespace/name` (`node/name` for nodes).
/// Used as the key of windows, graph nodes and alerts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(Arc<str>);

impl EntityId {
    pub fn from_parts(kind: EntityKind, namespace: Option<&str>, name: &str) -> Self {
        let s = match (kind.is_namespaced(), namespace) {
            (true, Some(ns)) => format!("{}/{}/{}", kind.as_str(), ns, name),
            (true, None) => format!("{}//{}", kind.as_str(), name),
            (false, _) => format!("{}/{}", kind.as_str(), name),
        };
        EntityId(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The entity kind, read from the key's prefix.
    pub fn kind(&self) -> EntityKind {
        let prefix = self.0.split('/').next().unwrap_or("");
        prefix
            .parse()
            .expect("EntityId is only built from a valid EntityKind")
    }

    /// Parses a key written by [`EntityId::as_str`] back into a reference.
    pub fn parse(s: &str) -> Result<EntityRef, ModelError> {
        let mut parts = s.splitn(3, '/');
        let kind: EntityKind = parts.next().unwrap_or("").parse()?;
        let bad = || ModelError::Invalid {
            what: "entity id",
            reason: format!("{s:?} is not kind/namespace/name or node/name"),
        };
        if kind.is_namespaced() {
            let ns = parts.next().ok_or_else(bad)?;
            let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
            Ok(EntityRef::new(kind, (!ns.is_empty()).then_some(ns), name))
        } else {
            let rest: Vec<&str> = parts.collect();
            let name = rest.join("/");
            if name.is_empty() {
                return Err(bad());
            }
            Ok(EntityRef::node(&name))
        }
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&EntityRef> for EntityId {
    fn from(r: &EntityRef) -> Self {
        r.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips() {
        for r in [
            EntityRef::pod("shop", "cart-7d9-x2"),
            EntityRef::node("ip-10-0-0-1"),
            EntityRef::service("shop", "cart"),
            EntityRef::new(EntityKind::Container, Some("shop"), "cart-7d9-x2/server"),
        ] {
            assert_eq!(EntityId::parse(r.id().as_str()).unwrap(), r);
            assert_eq!(r.id().kind(), r.kind);
            assert_eq!(r.to_string(), r.id().to_string());
        }
        assert!(EntityId::parse("pod/ns/").is_err());
        assert!(EntityId::parse("volume/x").is_err());
    }

    #[test]
    fn nodes_drop_namespace() {
        let r = EntityRef::new(EntityKind::Node, Some("ignored"), "n1");
        assert_eq!(r.namespace, None);
        assert_eq!(r.id().as_str(), "node/n1");
    }
}
