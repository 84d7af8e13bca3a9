//! Inventory snapshots: a Kubernetes `List` as `kubectl get nodes,deploy,rs,pods -A -o yaml` (or `-o json`)
//! prints it, read into the records the inventory keeps.
//!
//! Items are reduced to records one at a time as the parser reaches them, so a 10,000-pod cluster's snapshot
//! never exists in memory as objects, only as its text and the records.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DeploymentInfo, NodeInfo, PodInfo};

/// Everything an inventory file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The pods.
    pub pods: Vec<PodInfo>,
    /// The Deployments.
    pub deployments: Vec<DeploymentInfo>,
    /// The Nodes.
    pub nodes: Vec<NodeInfo>,
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

/// Reads a snapshot file; see [`parse_list`].
pub fn load_file(path: &Path) -> Result<Snapshot, InventoryError> {
    let display = path.display().to_string();
    let text = crate::files::read_text(path, crate::files::SNAPSHOT_LIMIT).map_err(|source| {
        InventoryError::Read {
            path: display.clone(),
            source,
        }
    })?;
    parse_list(&text).map_err(|message| InventoryError::Invalid {
        path: display,
        message,
    })
}

const NOT_A_LIST: &str =
    "expected a Kubernetes List with items (kubectl get nodes,deploy,rs,pods -A -o yaml)";

/// Parses a Kubernetes `List` (or `PodList`) in JSON or YAML. ReplicaSets attribute pods to their Deployment;
/// kinds the adapter does not keep are skipped.
pub fn parse_list(text: &str) -> Result<Snapshot, String> {
    let mut records = Records::default();
    let kind = if text.trim_start().starts_with('{') {
        let mut json = serde_json::Deserializer::from_str(text);
        let kind = ListSeed(&mut records)
            .deserialize(&mut json)
            .map_err(|e| e.to_string())?;
        json.end().map_err(|e| e.to_string())?;
        kind
    } else {
        let mut options = serde_saphyr::Options::default();
        // YAML 1.2 booleans only: a namespace or label value `n`, `y`, `no` or `on` stays a string, as
        // Kubernetes reads it.
        options.strict_booleans = true;
        options.budget = Some(budget_for(text.len()));
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |yaml| {
            ListSeed(&mut records).deserialize(yaml)
        })
        .map_err(|e| e.to_string())?
    };
    match kind.as_deref() {
        Some("List") if records.untyped.is_none() => {}
        Some("List") => {
            let index = records.untyped.unwrap_or_default();
            return Err(format!("items[{index}] has no kind"));
        }
        Some("PodList") => {}
        _ => return Err(NOT_A_LIST.into()),
    }
    Ok(records.finish())
}

/// The parser's limits grow with the input: a snapshot of a large cluster is large but plain. Aliases, the
/// means of a small file that expands without bound, keep the default limits.
fn budget_for(bytes: usize) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = budget.max_events.max(bytes);
    budget.max_nodes = budget.max_nodes.max(bytes);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(bytes);
    budget
}

/// Records gathered so far; pods wait for every ReplicaSet before they are attributed to a Deployment.
#[derive(Default)]
struct Records {
    pods: Vec<(PodInfo, Option<String>)>,
    deployments: Vec<DeploymentInfo>,
    nodes: Vec<NodeInfo>,
    /// (namespace, ReplicaSet) → Deployment.
    owners: HashMap<(String, String), String>,
    /// The first item with no `kind`: a `PodList`'s items have none, a `List`'s must.
    untyped: Option<usize>,
    count: usize,
}

impl Records {
    fn add(&mut self, item: serde_json::Value) -> Result<(), String> {
        let index = self.count;
        self.count += 1;
        let kind = match item.get("kind").and_then(|k| k.as_str()) {
            Some(kind) => kind.to_owned(),
            None => {
                self.untyped.get_or_insert(index);
                "Pod".to_owned()
            }
        };
        let invalid = |e: serde_json::Error| format!("items[{index}] ({kind}): {e}");
        match kind.as_str() {
            "Pod" => {
                let pod: Pod = serde_json::from_value(item).map_err(invalid)?;
                let replica_set = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.kind == "ReplicaSet")
                    .map(|o| o.name.clone());
                let info = PodInfo::from_pod(&pod, |_| None)
                    .ok_or_else(|| format!("items[{index}] (Pod): needs a namespace and a name"))?;
                self.pods.push((info, replica_set));
            }
            "Deployment" => {
                let deployment: Deployment = serde_json::from_value(item).map_err(invalid)?;
                self.deployments.push(DeploymentInfo::from_deployment(&deployment).ok_or_else(
                    || format!("items[{index}] (Deployment): needs a namespace, a name and a valid spec.selector"),
                )?);
            }
            "Node" => {
                let node: Node = serde_json::from_value(item).map_err(invalid)?;
                self.nodes.extend(NodeInfo::from_node(&node));
            }
            "ReplicaSet" => {
                let rs: ReplicaSet = serde_json::from_value(item).map_err(invalid)?;
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
                    self.owners.insert((ns, name), deployment);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Snapshot {
        let owners = self.owners;
        let pods = self
            .pods
            .into_iter()
            .map(|(mut pod, replica_set)| {
                pod.deployment =
                    replica_set.and_then(|rs| owners.get(&(pod.namespace.clone(), rs)).cloned());
                pod
            })
            .collect();
        Snapshot {
            pods,
            deployments: self.deployments,
            nodes: self.nodes,
        }
    }
}

/// The top-level object: `kind` is returned, `items` go to the records as they are read, the rest is skipped.
struct ListSeed<'a>(&'a mut Records);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NOT_A_LIST)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        let mut items = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => kind = Some(map.next_value::<String>()?),
                "items" => {
                    map.next_value_seed(ItemsSeed(&mut *self.0))?;
                    items = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(kind.filter(|_| items))
    }
}

struct ItemsSeed<'a>(&'a mut Records);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of Kubernetes objects")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            self.0.add(item).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = include_str!("../../tests/fixtures/inventory-sidecar.yaml");

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
        assert_eq!(
            secondary.ips,
            ["10.42.0.11".parse::<std::net::IpAddr>().unwrap()]
        );
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
            [crate::inventory::ContainerHealth {
                name: "c".into(),
                restarts: 4,
                last_terminated: Some(1_767_226_170),
                waiting_reason: Some("CrashLoopBackOff".into()),
            }]
        );
    }

    #[test]
    fn kubectl_json_with_items_before_kind_parses_like_yaml() {
        let json = r#"{"apiVersion":"v1","items":[
            {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"status":{"phase":"Pending"}}],
            "kind":"List","metadata":{"resourceVersion":""}}"#;
        let snapshot = parse_list(json).unwrap();
        assert_eq!(snapshot.pods[0].phase, "Pending");
        assert!(!snapshot.pods[0].ready);
        assert_eq!(
            snapshot.nodes,
            [NodeInfo {
                name: "n1".into(),
                addresses: vec!["10.0.0.1".into()]
            }]
        );
    }

    #[test]
    fn a_pod_list_from_the_api_has_items_without_kind() {
        let json = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"p","namespace":"n"}}]}"#;
        assert_eq!(parse_list(json).unwrap().pods[0].name, "p");
        let list = r#"{"kind":"List","items":[{"metadata":{"name":"p","namespace":"n"}}]}"#;
        assert_eq!(parse_list(list).unwrap_err(), "items[0] has no kind");
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
        assert!(
            parse_list("{\"kind\": \"List\"}")
                .unwrap_err()
                .contains("expected a Kubernetes List")
        );
        let bad =
            "kind: List\nitems:\n- kind: Pod\n  metadata: {name: p, namespace: n, labels: [1]}\n";
        assert!(
            parse_list(bad).unwrap_err().contains("items[0] (Pod)"),
            "{}",
            parse_list(bad).unwrap_err()
        );
        assert!(parse_list("{\"kind\":\"List\",\"items\":[]} trailing").is_err());
    }

    #[test]
    fn the_yaml_budget_grows_with_the_input_but_aliases_stay_bounded() {
        // 300,000 nodes: over the parser's default budget of 250,000, well within this input's.
        let labels: String = (0..1000).map(|i| format!("l{i}: v\n      ")).collect();
        let items: String = (0..150)
            .map(|i| format!("- kind: Pod\n  metadata:\n    name: p{i}\n    namespace: n\n    labels:\n      {labels}\n"))
            .collect();
        let snapshot = parse_list(&format!("kind: List\nitems:\n{items}")).unwrap();
        assert_eq!(snapshot.pods.len(), 150);
        // A small file that expands without bound is still refused.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            bomb.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
        }
        bomb.push_str("kind: List\nitems: []\n");
        assert!(parse_list(&bomb).is_err());
    }
}
