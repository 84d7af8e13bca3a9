//! The pod inventory: pods (with labels, IP, phase, readiness and owning Deployment) indexed by namespace,
//! fed by a kube-rs watcher or loaded from a `kubectl get deploy,rs,pods -A -o yaml` snapshot.
//!
//! The index itself is plain data, tested by feeding it objects; only [`watch`] talks to a cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
    /// `creationTimestamp`, Unix seconds.
    pub created: Option<i64>,
    /// When the `Ready` condition last changed, Unix seconds.
    pub ready_changed: Option<i64>,
    /// Per-container restart and waiting state.
    pub containers: Vec<ContainerHealth>,
}

/// What the pod status says about one container's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHealth {
    /// The container name.
    pub name: String,
    /// `restartCount`.
    pub restarts: i32,
    /// When the previous instance terminated (`lastState.terminated.finishedAt`), Unix seconds.
    pub last_terminated: Option<i64>,
    /// `state.waiting.reason`, e.g. `CrashLoopBackOff`.
    pub waiting_reason: Option<String>,
}

fn seconds(time: &Time) -> i64 {
    time.0.as_second()
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
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready");
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            labels: meta.labels.clone().unwrap_or_default(),
            ip: status.and_then(|s| s.pod_ip.clone()),
            phase: status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            ready: ready.is_some_and(|c| c.status == "True"),
            terminating: meta.deletion_timestamp.is_some(),
            deployment: replica_set.and_then(|rs| deployment_of(&rs.name)),
            created: meta.creation_timestamp.as_ref().map(seconds),
            ready_changed: ready
                .and_then(|c| c.last_transition_time.as_ref())
                .map(seconds),
            containers: status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .map(|c| ContainerHealth {
                    name: c.name.clone(),
                    restarts: c.restart_count,
                    last_terminated: c
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.finished_at.as_ref())
                        .map(seconds),
                    waiting_reason: c
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone()),
                })
                .collect(),
        })
    }

    /// A pod whose metrics the HPA would use: not terminating, not finished (`../shared/reference/kubernetes-contract.md` §10.3).
    pub fn is_live(&self) -> bool {
        !self.terminating && self.phase != "Succeeded" && self.phase != "Failed"
    }
}

/// A Deployment: its pod selector and desired replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentInfo {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `spec.selector`.
    pub selector: LabelSelector,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
}

impl DeploymentInfo {
    /// Builds the record from a Deployment; `None` when it lacks a name or has an unusable selector.
    pub fn from_deployment(deployment: &Deployment) -> Option<Self> {
        let spec = &deployment.spec;
        Some(Self {
            namespace: deployment.metadata.namespace.clone()?,
            name: deployment.metadata.name.clone()?,
            selector: LabelSelector::from_k8s(&spec.selector).ok()?,
            replicas: spec.replicas.unwrap_or(1),
        })
    }
}

/// Everything an inventory file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The pods.
    pub pods: Vec<PodInfo>,
    /// The Deployments.
    pub deployments: Vec<DeploymentInfo>,
    /// Node names and their addresses.
    pub nodes: Vec<(String, Vec<String>)>,
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
    deployments: RwLock<HashMap<(String, String), Arc<DeploymentInfo>>>,
    /// Node name → its addresses (InternalIP, ExternalIP, Hostname), for series labelled `IP:port`.
    nodes: RwLock<BTreeMap<String, Vec<String>>>,
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

    /// Replaces everything with a snapshot and marks the inventory synced.
    pub fn load(&self, snapshot: Snapshot) {
        for deployment in snapshot.deployments {
            self.upsert_deployment(deployment);
        }
        for (name, addresses) in snapshot.nodes {
            self.upsert_node(name, addresses);
        }
        self.replace_all(snapshot.pods);
    }

    /// Adds or replaces a node's addresses.
    pub fn upsert_node(&self, name: String, addresses: Vec<String>) {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, addresses);
    }

    /// Removes a node.
    pub fn remove_node(&self, name: &str) {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// The node a series label value names: the node of that name, or the node with that address, the value
    /// read as `IP`, `IP:port`, `[IPv6]:port` or `host:port` (node-exporter's `instance` label). `None` when
    /// no known node matches.
    pub fn node_for(&self, value: &str) -> Option<String> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        if nodes.contains_key(value) {
            return Some(value.to_owned());
        }
        let host = match value.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
            None => match value.rsplit_once(':') {
                // One colon: host:port. More: a bare IPv6 address.
                Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
                _ => value,
            },
        };
        nodes
            .iter()
            .find(|(name, addresses)| *name == host || addresses.iter().any(|a| a == host))
            .map(|(name, _)| name.clone())
    }

    /// Adds or replaces a Deployment.
    pub fn upsert_deployment(&self, deployment: DeploymentInfo) {
        let key = (deployment.namespace.clone(), deployment.name.clone());
        self.deployments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(deployment));
    }

    /// Removes a Deployment.
    pub fn remove_deployment(&self, namespace: &str, name: &str) {
        self.deployments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// One Deployment.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<DeploymentInfo>> {
        self.deployments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
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

/// `security-server-sidecar-secondary-7d9f8` → `security-server-sidecar-secondary`: the Deployment controller
/// names ReplicaSets `<deployment>-<pod-template-hash>`.
fn deployment_of_replica_set(replica_set: &str) -> Option<String> {
    replica_set
        .rsplit_once('-')
        .map(|(deployment, _)| deployment.to_owned())
}

/// Reads pods from a Kubernetes `List` (YAML or JSON) as `kubectl get deploy,rs,pods -A -o yaml` prints it.
/// ReplicaSets attribute pods to their Deployment; other kinds are ignored.
pub fn load_file(path: &Path) -> Result<Snapshot, InventoryError> {
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
pub fn parse_list(text: &str) -> Result<Snapshot, String> {
    // JSON is YAML, so one parser serves both `-o json` and `-o yaml`. YAML 1.2 booleans only: read untyped,
    // a namespace or label value `n`, `y`, `no` or `on` must stay a string (Kubernetes reads it as one).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let list: serde_json::Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())?;
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
    let mut deployments = Vec::new();
    let mut nodes = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_kind = item
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or(if kind == "PodList" { "Pod" } else { "" });
        let invalid = |e: serde_json::Error| format!("items[{index}] ({item_kind}): {e}");
        match item_kind {
            "Pod" => pods.push(serde_json::from_value::<Pod>(item.clone()).map_err(invalid)?),
            "Deployment" => {
                let deployment =
                    serde_json::from_value::<Deployment>(item.clone()).map_err(invalid)?;
                deployments.push(DeploymentInfo::from_deployment(&deployment).ok_or_else(|| {
                    format!("items[{index}] (Deployment): needs a namespace, a name and a valid spec.selector")
                })?);
            }
            "Node" => {
                let node = serde_json::from_value::<Node>(item.clone()).map_err(invalid)?;
                if let Some(entry) = node_addresses(&node) {
                    nodes.push(entry);
                }
            }
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
    let pods = pods
        .iter()
        .enumerate()
        .map(|(index, pod)| {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            PodInfo::from_pod(pod, |rs| {
                owners.get(&(namespace.clone(), rs.to_owned())).cloned()
            })
            .ok_or_else(|| format!("pod #{index} has no namespace or name"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Snapshot {
        pods,
        deployments,
        nodes,
    })
}

/// A node's name and addresses.
fn node_addresses(node: &Node) -> Option<(String, Vec<String>)> {
    let name = node.metadata.name.clone()?;
    let addresses = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| a.address.clone())
        .collect();
    Some((name, addresses))
}

/// Keeps the inventory's node addresses in step with the cluster (for resource metrics whose node label holds
/// `IP:port`).
pub async fn watch_nodes(client: kube::Client, inventory: Arc<PodInventory>) {
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};

    let api: kube::Api<Node> = kube::Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(node) | Event::InitApply(node)) => {
                if let Some((name, addresses)) = node_addresses(&node) {
                    inventory.upsert_node(name, addresses);
                }
            }
            Ok(Event::Delete(node)) => {
                if let Some(name) = &node.metadata.name {
                    inventory.remove_node(name);
                }
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, "node watch failed; retrying"),
        }
    }
}

type WatchEvents<K> = futures::stream::SelectAll<
    futures::stream::BoxStream<
        'static,
        kube::runtime::watcher::Result<kube::runtime::watcher::Event<K>>,
    >,
>;

/// One merged watch over `namespaces` (all namespaces when empty).
fn watch_all<K>(client: kube::Client, namespaces: &[String]) -> WatchEvents<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::watcher;
    let apis: Vec<kube::Api<K>> = if namespaces.is_empty() {
        vec![kube::Api::all(client)]
    } else {
        namespaces
            .iter()
            .map(|ns| kube::Api::namespaced(client.clone(), ns))
            .collect()
    };
    futures::stream::select_all(
        apis.into_iter()
            .map(|api| watcher::watcher(api, watcher::Config::default()).boxed()),
    )
}

/// Keeps `inventory` in step with the cluster's Deployments (in `namespaces`, or all).
pub async fn watch_deployments(
    client: kube::Client,
    namespaces: Vec<String>,
    inventory: Arc<PodInventory>,
) {
    use futures::StreamExt;
    use kube::runtime::watcher::Event;

    let mut events = watch_all::<Deployment>(client, &namespaces);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(d) | Event::InitApply(d)) => {
                if let Some(info) = DeploymentInfo::from_deployment(&d) {
                    inventory.upsert_deployment(info);
                }
            }
            Ok(Event::Delete(d)) => {
                if let (Some(ns), Some(name)) = (&d.metadata.namespace, &d.metadata.name) {
                    inventory.remove_deployment(ns, name);
                }
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, "deployment watch failed; retrying"),
        }
    }
}

/// Keeps `inventory` in step with the cluster's pods (in `namespaces`, or all) until the stream ends.
///
/// Pods are attributed to Deployments through the ReplicaSet name (`<deployment>-<pod-template-hash>`),
/// which the Deployment controller always produces.
pub async fn watch(client: kube::Client, namespaces: Vec<String>, inventory: Arc<PodInventory>) {
    use futures::StreamExt;
    use kube::runtime::watcher::Event;

    let mut events = watch_all::<Pod>(client, &namespaces);
    let mut initial = Vec::new();
    let mut pending_streams = namespaces.len().max(1);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(pod)) => {
                if let Some(info) = PodInfo::from_pod(&pod, deployment_of_replica_set) {
                    inventory.upsert(info);
                }
            }
            Ok(Event::Delete(pod)) => {
                if let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) {
                    inventory.remove(ns, name);
                }
            }
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(pod)) => {
                initial.extend(PodInfo::from_pod(&pod, deployment_of_replica_set))
            }
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
            created: None,
            ready_changed: None,
            containers: vec![],
        }
    }

    #[test]
    fn node_label_values_map_to_node_names_by_name_or_address() {
        let inventory = PodInventory::new();
        inventory.upsert_node(
            "ip-10-0-1-2.eu-north-1.compute.internal".into(),
            vec![
                "10.0.1.2".into(),
                "fd00::2".into(),
                "ip-10-0-1-2.eu-north-1.compute.internal".into(),
            ],
        );
        let node = Some("ip-10-0-1-2.eu-north-1.compute.internal".to_owned());
        for value in [
            "ip-10-0-1-2.eu-north-1.compute.internal",
            "10.0.1.2",
            "10.0.1.2:9100",
            "[fd00::2]:9100",
            "fd00::2",
            "ip-10-0-1-2.eu-north-1.compute.internal:10250",
        ] {
            assert_eq!(inventory.node_for(value), node, "{value}");
        }
        assert_eq!(inventory.node_for("10.0.9.9:9100"), None);
        inventory.remove_node("ip-10-0-1-2.eu-north-1.compute.internal");
        assert_eq!(inventory.node_for("10.0.1.2"), None);
    }

    #[test]
    fn a_kubectl_snapshot_yields_pods_with_their_deployment() {
        let snapshot = parse_list(SNAPSHOT).unwrap();
        let pods = snapshot.pods;
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
        let deployment = &snapshot.deployments[0];
        assert_eq!(
            (deployment.name.as_str(), deployment.replicas),
            ("security-server-sidecar-secondary", 3)
        );
        assert_eq!(
            deployment.selector.to_string(),
            "run=security-server-sidecar-secondary"
        );
    }

    #[test]
    fn container_restarts_waiting_reasons_and_times_are_read() {
        let yaml = "kind: List\nitems:\n- kind: Pod\n  metadata: {name: p, namespace: ns, creationTimestamp: '2026-01-01T00:00:00Z'}\n  status:\n    phase: Running\n    conditions: [{type: Ready, status: 'False', lastTransitionTime: '2026-01-01T00:10:00Z'}]\n    containerStatuses:\n    - name: c\n      image: i\n      imageID: ''\n      ready: false\n      restartCount: 4\n      state: {waiting: {reason: CrashLoopBackOff}}\n      lastState: {terminated: {exitCode: 1, finishedAt: '2026-01-01T00:09:30Z'}}\n";
        let pod = &parse_list(yaml).unwrap().pods[0];
        assert_eq!(pod.created, Some(1_767_225_600));
        assert_eq!(pod.ready_changed, Some(1_767_226_200));
        assert_eq!(
            pod.containers,
            [ContainerHealth {
                name: "c".into(),
                restarts: 4,
                last_terminated: Some(1_767_226_170),
                waiting_reason: Some("CrashLoopBackOff".into()),
            }]
        );
    }

    #[test]
    fn a_json_list_parses_like_yaml() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"status":{"phase":"Pending"}}]}"#;
        let pods = parse_list(json).unwrap().pods;
        assert_eq!(pods[0].phase, "Pending");
        assert!(!pods[0].ready);
    }

    #[test]
    fn yaml_1_1_boolean_words_stay_strings() {
        let yaml = "kind: List\nitems:\n- kind: Pod\n  metadata: {name: y, namespace: n, labels: {on: off}}\n";
        let pod = &parse_list(yaml).unwrap().pods[0];
        assert_eq!((pod.name.as_str(), pod.namespace.as_str()), ("y", "n"));
        assert_eq!(pod.labels["on"], "off");
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
