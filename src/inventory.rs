//! The pod inventory: pods (with labels, IP, phase, readiness and owning Deployment) indexed by namespace,
//! fed by a kube-rs watcher or loaded from a `kubectl get deploy,rs,pods -A -o yaml` snapshot.
//!
//! The index itself is plain data, tested by feeding it objects; only [`watch`] talks to a cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use crate::selector::LabelSelector;

/// What the adapter knows of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// The namespace.
    pub namespace: String,
    /// The pod name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The pod IP, once assigned.
    pub ip: Option<String>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `deletionTimestamp` is set.
    pub terminating: bool,
    /// The Deployment owning the pod's ReplicaSet, when known.
    pub deployment: Option<String>,
}

impl PodInfo {
    /// Builds the record from a Pod; `deployment_of` resolves a ReplicaSet name to its Deployment.
    pub fn from_pod(pod: &Pod, deployment_of: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let replica_set = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "ReplicaSet");
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            labels: meta.labels.clone().unwrap_or_default(),
            ip: status.and_then(|s| s.pod_ip.clone()),
            phase: status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            terminating: meta.deletion_timestamp.is_some(),
            deployment: replica_set.and_then(|rs| deployment_of(&rs.name)),
        })
    }

    /// A pod whose metrics the HPA would use: not terminating, not finished (`../shared/reference/kubernetes-contract.md` §10.3).
    pub fn is_live(&self) -> bool {
        !self.terminating && self.phase != "Succeeded" && self.phase != "Failed"
    }
}

/// Why an inventory file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a Kubernetes List of valid objects.
    #[error("inventory {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Pods by namespace and name; safe to share between the watcher and request handlers.
#[derive(Debug, Default)]
pub struct PodInventory {
    pods: RwLock<HashMap<String, BTreeMap<String, Arc<PodInfo>>>>,
    synced: AtomicBool,
}

impl PodInventory {
    /// An empty, not yet synced inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a pod.
    pub fn upsert(&self, pod: PodInfo) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        pods.entry(pod.namespace.clone())
            .or_default()
            .insert(pod.name.clone(), Arc::new(pod));
    }

    /// Removes a pod.
    pub fn remove(&self, namespace: &str, name: &str) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if let Some(in_namespace) = pods.get_mut(namespace) {
            in_namespace.remove(name);
            if in_namespace.is_empty() {
                pods.remove(namespace);
            }
        }
    }

    /// Replaces everything (a watcher re-list, or a file load) and marks the inventory synced.
    pub fn replace_all(&self, all: impl IntoIterator<Item = PodInfo>) {
        let mut fresh: HashMap<String, BTreeMap<String, Arc<PodInfo>>> = HashMap::new();
        for pod in all {
            fresh
                .entry(pod.namespace.clone())
                .or_default()
                .insert(pod.name.clone(), Arc::new(pod));
        }
        *self.pods.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Marks the inventory synced (the watcher's initial list is complete).
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    /// True once the first full list has been applied; readiness waits for it.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Live pods of `namespace` matching `selector`, sorted by name.
    pub fn select(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<PodInfo>> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        pods.get(namespace)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|p| p.is_live() && selector.matches(&p.labels))
            .cloned()
            .collect()
    }

    /// One pod, live or not.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        pods.get(namespace).and_then(|m| m.get(name)).cloned()
    }

    /// Namespaces that have at least one pod, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<_> = pods.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Reads pods from a Kubernetes `List` (YAML or JSON) as `kubectl get deploy,rs,pods -A -o yaml` prints it.
/// ReplicaSets attribute pods to their Deployment; other kinds are ignored.
pub fn load_file(path: &Path) -> Result<Vec<PodInfo>, InventoryError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: display.clone(),
        source,
    })?;
    parse_list(&text).map_err(|message| InventoryError::Invalid {
        path: display,
        message,
    })
}

/// Parses the text of an inventory file; see [`load_file`].
pub fn parse_list(text: &str) -> Result<Vec<PodInfo>, String> {
    // JSON is YAML, so one parser serves both `-o json` and `-o yaml`.
    let list: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let kind = list
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    let items = match (kind, list.get("items")) {
        ("List" | "PodList", Some(serde_json::Value::Array(items))) => items,
        _ => {
            return Err(
                "expected a Kubernetes List with items (kubectl get deploy,rs,pods -A -o yaml)"
                    .into(),
            );
        }
    };
    let mut owners = HashMap::new();
    let mut pods = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_kind = item
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or(if kind == "PodList" { "Pod" } else { "" });
        let invalid = |e: serde_json::Error| format!("items[{index}] ({item_kind}): {e}");
        match item_kind {
            "Pod" => pods.push(serde_json::from_value::<Pod>(item.clone()).map_err(invalid)?),
            "ReplicaSet" => {
                let rs = serde_json::from_value::<ReplicaSet>(item.clone()).map_err(invalid)?;
                let deployment = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.kind == "Deployment")
                    .map(|o| o.name.clone());
                if let (Some(ns), Some(name), Some(deployment)) =
                    (rs.metadata.namespace, rs.metadata.name, deployment)
                {
                    owners.insert((ns, name), deployment);
                }
            }
            _ => {}
        }
    }
    pods.iter()
        .enumerate()
        .map(|(index, pod)| {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            PodInfo::from_pod(pod, |rs| {
                owners.get(&(namespace.clone(), rs.to_owned())).cloned()
            })
            .ok_or_else(|| format!("pod #{index} has no namespace or name"))
        })
        .collect()
}

/// Keeps `inventory` in step with the cluster's pods (in `namespaces`, or all) until the stream ends.
///
/// Deployment attribution is not resolved in this mode yet; the file mode resolves it from ReplicaSets.
pub async fn watch(client: kube::Client, namespaces: Vec<String>, inventory: Arc<PodInventory>) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};

    let apis: Vec<kube::Api<Pod>> = if namespaces.is_empty() {
        vec![kube::Api::all(client)]
    } else {
        namespaces
            .iter()
            .map(|ns| kube::Api::namespaced(client.clone(), ns))
            .collect()
    };
    let streams = apis
        .into_iter()
        .map(|api| watcher::watcher(api, watcher::Config::default()).boxed());
    let mut events = futures::stream::select_all(streams);
    let mut initial = Vec::new();
    let mut pending_streams = namespaces.len().max(1);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(pod)) => {
                if let Some(info) = PodInfo::from_pod(&pod, |_| None) {
                    inventory.upsert(info);
                }
            }
            Ok(Event::Delete(pod)) => {
                if let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) {
                    inventory.remove(ns, name);
                }
            }
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(pod)) => initial.extend(PodInfo::from_pod(&pod, |_| None)),
            Ok(Event::InitDone) => {
                for pod in initial.drain(..) {
                    inventory.upsert(pod);
                }
                pending_streams = pending_streams.saturating_sub(1);
                if pending_streams == 0 {
                    inventory.mark_synced();
                }
            }
            Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = include_str!("../tests/fixtures/inventory-sidecar.yaml");

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: None,
            phase: "Running".into(),
            ready: true,
            terminating: false,
            deployment: None,
        }
    }

    #[test]
    fn a_kubectl_snapshot_yields_pods_with_their_deployment() {
        let pods = parse_list(SNAPSHOT).unwrap();
        let names: Vec<_> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "security-server-sidecar-primary-0",
                "security-server-sidecar-secondary-7d9f8-abcde",
                "security-server-sidecar-secondary-7d9f8-fghij",
                "security-server-sidecar-secondary-7d9f8-klmno",
            ]
        );
        let secondary = &pods[1];
        assert_eq!(
            secondary.deployment.as_deref(),
            Some("security-server-sidecar-secondary")
        );
        assert_eq!(secondary.ip.as_deref(), Some("10.42.0.11"));
        assert!(secondary.ready);
        assert_eq!(secondary.labels["run"], "security-server-sidecar-secondary");
    }

    #[test]
    fn a_json_list_parses_like_yaml() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"status":{"phase":"Pending"}}]}"#;
        let pods = parse_list(json).unwrap();
        assert_eq!(pods[0].phase, "Pending");
        assert!(!pods[0].ready);
    }

    #[test]
    fn files_that_are_not_lists_are_refused_clearly() {
        assert!(
            parse_list("kind: Pod\nmetadata: {name: p}\n")
                .unwrap_err()
                .contains("expected a Kubernetes List")
        );
        let bad =
            "kind: List\nitems:\n- kind: Pod\n  metadata: {name: p, namespace: n, labels: [1]}\n";
        assert!(parse_list(bad).unwrap_err().starts_with("items[0] (Pod)"));
    }

    #[test]
    fn select_returns_live_matching_pods_of_one_namespace_by_name() {
        let inventory = PodInventory::new();
        let run = [("run", "secondary")];
        inventory.replace_all([
            pod("sidecar", "b", &run),
            pod("sidecar", "a", &run),
            pod("sidecar", "other", &[("run", "primary")]),
            pod("elsewhere", "c", &run),
            PodInfo {
                terminating: true,
                ..pod("sidecar", "leaving", &run)
            },
            PodInfo {
                phase: "Failed".into(),
                ..pod("sidecar", "failed", &run)
            },
        ]);
        let selector: LabelSelector = "run=secondary".parse().unwrap();
        let names: Vec<_> = inventory
            .select("sidecar", &selector)
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(inventory.select("nowhere", &selector).is_empty());
        assert_eq!(inventory.namespaces(), ["elsewhere", "sidecar"]);
    }

    #[test]
    fn upsert_and_remove_keep_the_index_current() {
        let inventory = PodInventory::new();
        assert!(!inventory.is_synced());
        inventory.upsert(pod("sidecar", "a", &[]));
        inventory.upsert(PodInfo {
            ready: false,
            ..pod("sidecar", "a", &[])
        });
        assert!(!inventory.get("sidecar", "a").unwrap().ready);
        inventory.remove("sidecar", "a");
        assert!(inventory.get("sidecar", "a").is_none());
        assert!(inventory.namespaces().is_empty());
        inventory.mark_synced();
        assert!(inventory.is_synced());
    }
}
