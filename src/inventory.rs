//! The inventory: what the adapter knows of the cluster's pods, Deployments and Nodes, as plain data indexed by
//! namespace and name, fed by watch streams with the semantics of kube-runtime's reflector or loaded from a
//! snapshot file.
//!
//! This module does no I/O: [`watch`] turns the cluster's watch events into [`Change`]s, [`snapshot`] reads
//! files, and both feed the index here. Tests feed it objects directly.

pub mod snapshot;
pub mod streams;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::selector::LabelSelector;

pub use snapshot::{InventoryError, Snapshot, load_file, parse_list};
pub use streams::{StreamId, Streams};

/// What the adapter knows of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// The namespace.
    pub namespace: String,
    /// The pod name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The pod's addresses once assigned (`status.podIPs`: one per family on a dual-stack cluster), the
    /// primary first.
    pub ips: Vec<IpAddr>,
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

/// `status.podIPs`, or `status.podIP` where only that is set, parsed; an address that doesn't parse is left
/// out (kube-apiserver validates them, so only a hand-written snapshot could hold one).
fn pod_ips(status: &k8s_openapi::api::core::v1::PodStatus) -> Vec<IpAddr> {
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    let mut ips: Vec<IpAddr> = listed.filter_map(|ip| ip.parse().ok()).collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    ips
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
            ips: status.map(pod_ips).unwrap_or_default(),
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

    /// A pod whose metrics the HPA would use: not terminating, not finished (the controller leaves out pods
    /// being deleted and failed pods: <https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details>).
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

impl PodInfo {
    /// The pod as the HPA controller reads it (its creation standing in for `status.startTime`).
    pub fn as_hpa_pod(&self) -> crate::hpa::Pod {
        crate::hpa::Pod {
            name: self.name.clone(),
            phase: self.phase.clone(),
            deleting: self.terminating,
            ready: Some(crate::hpa::calculator::ReadyCondition {
                status: self.ready,
                changed: self.ready_changed.unwrap_or_default(),
            }),
            started: self.created,
        }
    }
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

/// A Node's name and its addresses (InternalIP, ExternalIP, Hostname), for series labelled `IP:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node name.
    pub name: String,
    /// `status.addresses[*].address`.
    pub addresses: Vec<String>,
}

impl NodeInfo {
    /// Builds the record from a Node; `None` when it has no name.
    pub fn from_node(node: &Node) -> Option<Self> {
        Some(Self {
            name: node.metadata.name.clone()?,
            addresses: node
                .status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .map(|a| a.address.clone())
                .collect(),
        })
    }
}

/// Where one watch stream looks: one namespace, or the whole cluster (and cluster-scoped kinds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every namespace.
    Cluster,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    /// One scope per namespace, or the cluster when `namespaces` is empty (the flags' "default: all").
    pub fn of(namespaces: &[String]) -> Vec<Scope> {
        if namespaces.is_empty() {
            vec![Scope::Cluster]
        } else {
            let mut unique: Vec<_> = namespaces.to_vec();
            unique.sort();
            unique.dedup();
            unique.into_iter().map(Scope::Namespace).collect()
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => f.write_str("the cluster"),
            Scope::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

/// A kind of record the inventory keeps, and where.
pub trait Kept: Sized + Send + Sync + 'static {
    /// The Kubernetes resource, as metrics and messages name it (`pods`).
    const RESOURCE: &'static str;
    /// Namespace (empty for cluster-scoped kinds) and name.
    fn key(&self) -> (&str, &str);
    /// The inventory's index of this kind.
    fn index(inventory: &PodInventory) -> &RwLock<Index<Self>>;
    /// The labels selectors are matched against; none for kinds no selector picks from the inventory.
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

impl Kept for PodInfo {
    const RESOURCE: &'static str = "pods";
    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
    fn index(inventory: &PodInventory) -> &RwLock<Index<Self>> {
        &inventory.pods
    }
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.labels)
    }
}

impl Kept for DeploymentInfo {
    const RESOURCE: &'static str = "deployments";
    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
    fn index(inventory: &PodInventory) -> &RwLock<Index<Self>> {
        &inventory.deployments
    }
}

impl Kept for NodeInfo {
    const RESOURCE: &'static str = "nodes";
    fn key(&self) -> (&str, &str) {
        ("", &self.name)
    }
    fn index(inventory: &PodInventory) -> &RwLock<Index<Self>> {
        &inventory.nodes
    }
}

/// Records of one kind by namespace, then name: a request reads one namespace without scanning the cluster.
#[derive(Debug)]
pub struct Index<T> {
    by_namespace: HashMap<String, Namespace<T>>,
    /// Counts changes, so that what is derived from the records can be kept until they change.
    generation: u64,
}

/// One namespace's records, by name and by label pair.
#[derive(Debug)]
struct Namespace<T> {
    by_name: BTreeMap<String, Arc<T>>,
    /// Label key, then value, then the records that carry the pair, by name: a selector's equality terms read
    /// the records they name, however many others the namespace holds.
    by_label: HashMap<String, HashMap<String, BTreeMap<String, Arc<T>>>>,
}

impl<T> Default for Namespace<T> {
    fn default() -> Self {
        Self {
            by_name: BTreeMap::new(),
            by_label: HashMap::new(),
        }
    }
}

impl<T: Kept> Namespace<T> {
    fn insert(&mut self, name: String, record: Arc<T>) {
        self.remove(&name);
        for (key, value) in record.labels().into_iter().flatten() {
            self.by_label
                .entry(key.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(name.clone(), record.clone());
        }
        self.by_name.insert(name, record);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            self.unlabel(&old);
        }
    }

    /// Takes `record`'s name out of the lists of its label pairs.
    fn unlabel(&mut self, record: &T) {
        let name = record.key().1;
        for (key, value) in record.labels().into_iter().flatten() {
            let Some(values) = self.by_label.get_mut(key) else {
                continue;
            };
            if let Some(names) = values.get_mut(value) {
                names.remove(name);
                if names.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.by_label.remove(key);
            }
        }
    }

    /// The records that can match `selector`, by name: those carrying the pair of its equality terms with the
    /// fewest records, or all; `None` when a pair has none. True when every candidate matches: the selector
    /// is that one pair.
    fn candidates(&self, selector: &LabelSelector) -> Option<(&BTreeMap<String, Arc<T>>, bool)> {
        let mut shortest = &self.by_name;
        let mut from_pair = false;
        for (key, value) in selector.required_pairs() {
            let records = self.by_label.get(key)?.get(value)?;
            if records.len() < shortest.len() || !from_pair {
                (shortest, from_pair) = (records, true);
            }
        }
        Some((shortest, from_pair && selector.requirements().len() == 1))
    }
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Self {
            by_namespace: HashMap::new(),
            generation: 0,
        }
    }
}

impl<T: Kept> Index<T> {
    /// Adds or replaces one record.
    pub fn apply(&mut self, record: T) {
        self.generation += 1;
        let (namespace, name) = record.key();
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.by_namespace
            .entry(namespace)
            .or_default()
            .insert(name, Arc::new(record));
    }

    /// Removes one record.
    pub fn delete(&mut self, namespace: &str, name: &str) {
        self.generation += 1;
        if let Some(records) = self.by_namespace.get_mut(namespace) {
            records.remove(name);
            if records.by_name.is_empty() {
                self.by_namespace.remove(namespace);
            }
        }
    }

    /// Makes `records` the whole content of `scope`: what is not among them is gone.
    pub fn replace(&mut self, scope: &Scope, records: Vec<T>) {
        self.generation += 1;
        match scope {
            Scope::Cluster => self.by_namespace.clear(),
            Scope::Namespace(namespace) => {
                self.by_namespace.remove(namespace);
            }
        }
        for record in records {
            self.apply(record);
        }
    }

    /// One record.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<T>> {
        self.by_namespace.get(namespace)?.by_name.get(name)
    }

    /// The records of one namespace, by name.
    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = &Arc<T>> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flat_map(|m| m.by_name.values())
    }

    /// The records of one namespace whose labels `selector` matches, by name; equality terms are answered
    /// from the label index.
    pub fn select(&self, namespace: &str, selector: &LabelSelector) -> Vec<&Arc<T>> {
        let Some((candidates, exact)) = self
            .by_namespace
            .get(namespace)
            .and_then(|records| records.candidates(selector))
        else {
            return Vec::new();
        };
        candidates
            .values()
            .filter(|r| exact || r.labels().is_none_or(|labels| selector.matches(labels)))
            .collect()
    }

    /// Every record.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<T>> {
        self.by_namespace.values().flat_map(|m| m.by_name.values())
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.by_namespace.values().map(|m| m.by_name.len()).sum()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_namespace.is_empty()
    }
}

/// One event of one watch stream, as kube-runtime's `watcher::Event` reports it, with the object already
/// reduced to the record the adapter keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// A (re-)list begins.
    Init,
    /// One object of the list.
    InitApply(T),
    /// The list is complete: it is now the whole truth for the stream's scope.
    InitDone,
    /// An object was added or changed.
    Apply(T),
    /// An object was deleted.
    Delete {
        /// Its namespace (empty for cluster-scoped kinds).
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// What one [`Change`] did to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Kept for the end of the list; the index is unchanged.
    Buffered,
    /// One record was added, changed or removed.
    Changed,
    /// A complete list replaced the stream's scope.
    Listed,
}

/// Applies one stream's changes to an index with the semantics of kube-runtime's reflector: a list is buffered
/// and replaces the stream's scope whole when it completes, so objects deleted while the stream was
/// disconnected are gone after the re-list, and a half-read list never shows.
///
/// Not kube-runtime's `Store` itself: the adapter keeps a projection of each object (no specs, no
/// `managedFields`), reads one namespace at a time without scanning the cluster, and lets several namespace
/// streams share one index, each replacing only its own namespace.
#[derive(Debug)]
pub struct StreamIndexer<T> {
    scope: Scope,
    listing: Option<Vec<T>>,
}

impl<T: Kept> StreamIndexer<T> {
    /// An indexer for the stream watching `scope`.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            listing: None,
        }
    }

    /// The scope this stream owns.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Applies `change` to `index`; the lock is taken only when the index changes.
    pub fn apply(&mut self, change: Change<T>, index: &RwLock<Index<T>>) -> Applied {
        let write = || index.write().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Init => {
                self.listing = Some(Vec::new());
                Applied::Buffered
            }
            Change::InitApply(record) => {
                self.listing.get_or_insert_with(Vec::new).push(record);
                Applied::Buffered
            }
            Change::InitDone => {
                let records = self.listing.take().unwrap_or_default();
                write().replace(&self.scope, records);
                Applied::Listed
            }
            Change::Apply(record) => {
                write().apply(record);
                Applied::Changed
            }
            Change::Delete { namespace, name } => {
                write().delete(&namespace, &name);
                Applied::Changed
            }
        }
    }
}

/// Pods, Deployments and Nodes by namespace and name; shared between the watch streams and request handlers.
#[derive(Debug, Default)]
pub struct PodInventory {
    pods: RwLock<Index<PodInfo>>,
    deployments: RwLock<Index<DeploymentInfo>>,
    nodes: RwLock<Index<NodeInfo>>,
    streams: Streams,
    /// Loaded whole from a snapshot: nothing to wait for.
    loaded: AtomicBool,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl PodInventory {
    /// An empty inventory with no streams: not synced until a snapshot is loaded or streams are registered
    /// and listed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The watch streams feeding this inventory, and their health.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Adds or replaces a pod.
    pub fn upsert(&self, pod: PodInfo) {
        write(&self.pods).apply(pod);
    }

    /// Removes a pod.
    pub fn remove(&self, namespace: &str, name: &str) {
        write(&self.pods).delete(namespace, name);
    }

    /// Replaces everything with a snapshot and marks the inventory synced.
    pub fn load(&self, snapshot: Snapshot) {
        write(&self.deployments).replace(&Scope::Cluster, snapshot.deployments);
        write(&self.nodes).replace(&Scope::Cluster, snapshot.nodes);
        write(&self.pods).replace(&Scope::Cluster, snapshot.pods);
        self.loaded.store(true, Ordering::SeqCst);
    }

    /// Adds or replaces a Deployment.
    pub fn upsert_deployment(&self, deployment: DeploymentInfo) {
        write(&self.deployments).apply(deployment);
    }

    /// Adds or replaces a node.
    pub fn upsert_node(&self, node: NodeInfo) {
        write(&self.nodes).apply(node);
    }

    /// The node a series label value names: the node of that name, or the node with that address, the value
    /// read as `IP`, `IP:port`, `[IPv6]:port` or `host:port` (node-exporter's `instance` label). `None` when
    /// no known node matches.
    pub fn node_for(&self, value: &str) -> Option<String> {
        let nodes = read(&self.nodes);
        if nodes.get("", value).is_some() {
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
            .in_namespace("")
            .find(|node| node.name == host || node.addresses.iter().any(|a| a == host))
            .map(|node| node.name.clone())
    }

    /// One Deployment.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<DeploymentInfo>> {
        read(&self.deployments).get(namespace, name).cloned()
    }

    /// True once a snapshot is loaded, or every registered stream has completed its first list; readiness
    /// waits for it.
    pub fn is_synced(&self) -> bool {
        self.loaded.load(Ordering::SeqCst) || self.streams.all_listed()
    }

    /// Live pods of `namespace` matching `selector`, sorted by name.
    pub fn select(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<PodInfo>> {
        read(&self.pods)
            .select(namespace, selector)
            .into_iter()
            .filter(|p| p.is_live())
            .cloned()
            .collect()
    }

    /// The sum of `value` over the live pods of `namespace` that have one, with the pods' generation: the
    /// same generation means the same pods. `None` when no pod has a value.
    pub fn sum_live(
        &self,
        namespace: &str,
        value: impl Fn(&str) -> Option<f64>,
    ) -> (Option<f64>, u64) {
        let pods = read(&self.pods);
        let sum = pods
            .in_namespace(namespace)
            .filter(|p| p.is_live())
            .filter_map(|p| value(&p.name))
            .fold(None, |sum: Option<f64>, v| Some(sum.unwrap_or(0.0) + v));
        (sum, pods.generation)
    }

    /// The pods' generation: it changes whenever a pod is added, changed or removed.
    pub fn pod_generation(&self) -> u64 {
        read(&self.pods).generation
    }

    /// One pod, live or not.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        read(&self.pods).get(namespace, name).cloned()
    }

    /// Namespaces that have at least one pod, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<_> = read(&self.pods).by_namespace.keys().cloned().collect();
        names.sort();
        names
    }

    /// How many pods, Deployments and Nodes are indexed, by resource.
    pub fn counts(&self) -> [(&'static str, usize); 3] {
        [
            (PodInfo::RESOURCE, read(&self.pods).len()),
            (DeploymentInfo::RESOURCE, read(&self.deployments).len()),
            (NodeInfo::RESOURCE, read(&self.nodes).len()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dual_stack_pod_keeps_both_addresses_primary_first() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "sidecar", "name": "p"},
            "status": {"podIP": "10.244.1.5",
                       "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}]}
        }))
        .unwrap();
        let info = PodInfo::from_pod(&pod, |_| None).unwrap();
        let expected: Vec<IpAddr> = vec![
            "10.244.1.5".parse().unwrap(),
            "fd00:10:244:1::5".parse().unwrap(),
        ];
        assert_eq!(info.ips, expected);
        let only_pod_ip: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "sidecar", "name": "p"},
            "status": {"podIP": "fd00:10:244:1::6"}
        }))
        .unwrap();
        let info = PodInfo::from_pod(&only_pod_ip, |_| None).unwrap();
        assert_eq!(info.ips, ["fd00:10:244:1::6".parse::<IpAddr>().unwrap()]);
    }

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ips: Vec::new(),
            phase: "Running".into(),
            ready: true,
            terminating: false,
            deployment: None,
            created: None,
            ready_changed: None,
            containers: vec![],
        }
    }

    /// What `select` must give: every live pod of the namespace the selector matches, by name.
    fn scanned(inventory: &PodInventory, namespace: &str, selector: &LabelSelector) -> Vec<String> {
        read(&inventory.pods)
            .in_namespace(namespace)
            .filter(|p| p.is_live() && selector.matches(&p.labels))
            .map(|p| p.name.clone())
            .collect()
    }

    #[test]
    fn selects_through_the_label_index_what_a_scan_would_find_across_changes() {
        let inventory = PodInventory::new();
        let selected = |selector: &str| -> Vec<String> {
            let selector: LabelSelector = selector.parse().unwrap();
            let indexed: Vec<String> = inventory
                .select("ns", &selector)
                .iter()
                .map(|p| p.name.clone())
                .collect();
            assert_eq!(indexed, scanned(&inventory, "ns", &selector), "{selector}");
            indexed
        };
        for i in 0..30 {
            let app = format!("app-{}", i % 3);
            let tier = if i % 2 == 0 { "web" } else { "db" };
            inventory.upsert(pod(
                "ns",
                &format!("p{i:02}"),
                &[("app", &app), ("tier", tier)],
            ));
        }
        assert_eq!(selected("app=app-1,tier=web").len(), 5);
        assert_eq!(selected("app in (app-2)").len(), 10);
        assert_eq!(selected("app=app-1,tier!=web").len(), 5);
        assert!(selected("app=nothing").is_empty());
        assert_eq!(selected("app notin (app-0)").len(), 20);

        // A pod whose labels change leaves its old pairs' lists; a deleted pod leaves every list.
        inventory.upsert(pod("ns", "p01", &[("app", "app-0"), ("tier", "web")]));
        inventory.remove("ns", "p04");
        inventory.upsert(pod("ns", "p05", &[]));
        assert_eq!(
            selected("app=app-1"),
            ["p07", "p10", "p13", "p16", "p19", "p22", "p25", "p28"]
        );
        assert_eq!(selected("app=app-0,tier=web").len(), 6);
        assert!(!selected("tier=db").contains(&"p05".to_owned()));

        // A re-list replaces the namespace's lists with the new records'.
        write(&inventory.pods).replace(
            &Scope::Namespace("ns".into()),
            vec![pod("ns", "q", &[("app", "app-1")])],
        );
        assert_eq!(selected("app=app-1"), ["q"]);
        assert!(selected("tier=web").is_empty());
    }

    fn names(inventory: &PodInventory, namespace: &str) -> Vec<String> {
        inventory
            .select(namespace, &LabelSelector::everything())
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    fn list(indexer: &mut StreamIndexer<PodInfo>, inventory: &PodInventory, pods: Vec<PodInfo>) {
        indexer.apply(Change::Init, &inventory.pods);
        for pod in pods {
            indexer.apply(Change::InitApply(pod), &inventory.pods);
        }
        assert_eq!(
            indexer.apply(Change::InitDone, &inventory.pods),
            Applied::Listed
        );
    }

    #[test]
    fn a_relist_drops_pods_deleted_while_the_watch_was_down() {
        let inventory = PodInventory::new();
        let mut stream = StreamIndexer::new(Scope::Cluster);
        list(
            &mut stream,
            &inventory,
            vec![pod("sidecar", "a", &[]), pod("sidecar", "b", &[])],
        );
        // The watch breaks, `b` is deleted, the history expires (410) and the watcher lists again.
        list(&mut stream, &inventory, vec![pod("sidecar", "a", &[])]);
        assert_eq!(names(&inventory, "sidecar"), ["a"]);
    }

    #[test]
    fn a_half_read_list_is_never_served() {
        let inventory = PodInventory::new();
        let mut stream = StreamIndexer::new(Scope::Namespace("sidecar".into()));
        list(&mut stream, &inventory, vec![pod("sidecar", "old", &[])]);
        stream.apply(Change::Init, &inventory.pods);
        stream.apply(
            Change::InitApply(pod("sidecar", "new", &[])),
            &inventory.pods,
        );
        assert_eq!(names(&inventory, "sidecar"), ["old"], "until InitDone");
        stream.apply(Change::InitDone, &inventory.pods);
        assert_eq!(names(&inventory, "sidecar"), ["new"]);
    }

    #[test]
    fn a_namespace_relist_leaves_other_namespaces_alone() {
        let inventory = PodInventory::new();
        let mut a = StreamIndexer::new(Scope::Namespace("a".into()));
        let mut b = StreamIndexer::new(Scope::Namespace("b".into()));
        list(&mut a, &inventory, vec![pod("a", "a1", &[])]);
        // `b` is mid-list while `a` lists again.
        b.apply(Change::Init, &inventory.pods);
        b.apply(Change::InitApply(pod("b", "b1", &[])), &inventory.pods);
        list(&mut a, &inventory, vec![pod("a", "a2", &[])]);
        b.apply(Change::InitApply(pod("b", "b2", &[])), &inventory.pods);
        b.apply(Change::InitDone, &inventory.pods);
        assert_eq!(names(&inventory, "a"), ["a2"]);
        assert_eq!(names(&inventory, "b"), ["b1", "b2"]);
    }

    #[test]
    fn watch_events_add_change_and_delete_between_lists() {
        let inventory = PodInventory::new();
        let mut stream = StreamIndexer::new(Scope::Cluster);
        list(&mut stream, &inventory, vec![pod("sidecar", "a", &[])]);
        stream.apply(Change::Apply(pod("sidecar", "b", &[])), &inventory.pods);
        stream.apply(
            Change::Apply(PodInfo {
                ready: false,
                ..pod("sidecar", "a", &[])
            }),
            &inventory.pods,
        );
        assert!(!inventory.get("sidecar", "a").unwrap().ready);
        stream.apply(
            Change::Delete {
                namespace: "sidecar".into(),
                name: "a".into(),
            },
            &inventory.pods,
        );
        assert_eq!(names(&inventory, "sidecar"), ["b"]);
        stream.apply(
            Change::Delete {
                namespace: "sidecar".into(),
                name: "b".into(),
            },
            &inventory.pods,
        );
        assert!(inventory.namespaces().is_empty());
        assert_eq!(inventory.counts()[0], ("pods", 0));
    }

    #[test]
    fn node_label_values_map_to_node_names_by_name_or_address() {
        let inventory = PodInventory::new();
        let name = "ip-10-0-1-2.eu-north-1.compute.internal";
        inventory.upsert_node(NodeInfo {
            name: name.into(),
            addresses: vec!["10.0.1.2".into(), "fd00::2".into(), name.into()],
        });
        for value in [
            name,
            "10.0.1.2",
            "10.0.1.2:9100",
            "[fd00::2]:9100",
            "fd00::2",
            "ip-10-0-1-2.eu-north-1.compute.internal:10250",
        ] {
            assert_eq!(inventory.node_for(value).as_deref(), Some(name), "{value}");
        }
        assert_eq!(inventory.node_for("10.0.9.9:9100"), None);
        let mut nodes = StreamIndexer::new(Scope::Cluster);
        nodes.apply(Change::Init, &inventory.nodes);
        nodes.apply(Change::InitDone, &inventory.nodes);
        assert_eq!(inventory.node_for("10.0.1.2"), None, "gone after a relist");
    }

    #[test]
    fn select_returns_live_matching_pods_of_one_namespace_by_name() {
        let inventory = PodInventory::new();
        let run = [("run", "secondary")];
        inventory.load(Snapshot {
            pods: vec![
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
            ],
            ..Snapshot::default()
        });
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
    fn synced_means_a_loaded_snapshot_or_every_stream_listed() {
        let inventory = PodInventory::new();
        assert!(!inventory.is_synced());
        inventory.load(Snapshot::default());
        assert!(inventory.is_synced());

        let watched = PodInventory::new();
        let id = StreamId {
            resource: "pods",
            scope: Scope::Cluster,
        };
        watched.streams().register(&id);
        assert!(!watched.is_synced());
        watched.streams().progressed(&id, true);
        assert!(watched.is_synced());
    }
}
