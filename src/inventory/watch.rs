//! The cluster side of the inventory: one kube-runtime watcher per resource and namespace, each with its own
//! backoff, turning watch events into [`Change`]s for the pure index.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};

use super::{
    Applied, Change, DeploymentInfo, Kept, NodeInfo, PodInfo, PodInventory, Scope, StreamId,
    StreamIndexer,
};

/// Objects per list page. Each page is decoded whole (full objects, `managedFields` and all) before it is
/// reduced to records, and the allocator keeps what the largest pages needed: at 10,000 pods, pages of 100
/// leave the adapter at 40 MiB resident where kube-runtime's default 500 leaves 68 MiB, with the same time to
/// ready (`benches/inventory_scale.rs`).
const LIST_PAGE_SIZE: u32 = 100;

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchPlan {
    /// Namespaces whose pods are served (empty: all).
    pub pods: Vec<String>,
    /// Namespaces whose Deployments scale-on-failure policies target (empty: none watched).
    pub deployments: Vec<String>,
    /// Whether Nodes are needed (resource metrics whose node label holds an address).
    pub nodes: bool,
}

impl WatchPlan {
    /// Every stream of the plan.
    pub fn streams(&self) -> Vec<StreamId> {
        let mut streams: Vec<_> = Scope::of(&self.pods)
            .into_iter()
            .map(|scope| StreamId {
                resource: PodInfo::RESOURCE,
                scope,
            })
            .collect();
        if !self.deployments.is_empty() {
            streams.extend(
                Scope::of(&self.deployments)
                    .into_iter()
                    .map(|scope| StreamId {
                        resource: DeploymentInfo::RESOURCE,
                        scope,
                    }),
            );
        }
        if self.nodes {
            streams.push(StreamId {
                resource: NodeInfo::RESOURCE,
                scope: Scope::Cluster,
            });
        }
        streams
    }
}

/// Registers every stream of `plan` (so readiness waits for each first list), then starts them.
pub fn start(client: &kube::Client, plan: &WatchPlan, inventory: &Arc<PodInventory>) {
    for id in plan.streams() {
        inventory.streams().register(&id);
        let client = client.clone();
        let inventory = inventory.clone();
        match id.resource {
            PodInfo::RESOURCE => {
                let api = api::<Pod>(client, &id.scope);
                tokio::spawn(run(api, id, inventory, |pod: &Pod| {
                    PodInfo::from_pod(pod, deployment_of_replica_set)
                }));
            }
            DeploymentInfo::RESOURCE => {
                let api = api::<Deployment>(client, &id.scope);
                tokio::spawn(run(api, id, inventory, DeploymentInfo::from_deployment));
            }
            _ => {
                let api = Api::<Node>::all(client);
                tokio::spawn(run(api, id, inventory, NodeInfo::from_node));
            }
        }
    }
}

fn api<K>(client: kube::Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Scope::Cluster => Api::all(client),
        Scope::Namespace(ns) => Api::namespaced(client, ns),
    }
}

/// `security-server-sidecar-secondary-7d9f8` → `security-server-sidecar-secondary`: the Deployment controller
/// names ReplicaSets `<deployment>-<pod-template-hash>`.
fn deployment_of_replica_set(replica_set: &str) -> Option<String> {
    replica_set
        .rsplit_once('-')
        .map(|(deployment, _)| deployment.to_owned())
}

/// Feeds one stream into the inventory for as long as the process runs. kube-runtime's watcher lists, watches
/// from the listed version and re-lists after `410 Expired`; the default backoff spaces out failed attempts
/// (0.8 s doubling to 30 s, with jitter) so an unavailable API server is not hammered.
async fn run<K, T>(
    api: Api<K>,
    id: StreamId,
    inventory: Arc<PodInventory>,
    project: fn(&K) -> Option<T>,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    T: Kept,
{
    let mut indexer = StreamIndexer::new(id.scope.clone());
    let mut events = watcher::watcher(api, watcher::Config::default().page_size(LIST_PAGE_SIZE))
        .default_backoff()
        .boxed();
    let streams = inventory.streams();
    while let Some(event) = events.next().await {
        let change = match event {
            Ok(Event::Init) => {
                streams.listing(&id);
                Change::Init
            }
            Ok(Event::InitApply(object)) => match project(&object) {
                Some(record) => Change::InitApply(record),
                None => continue,
            },
            Ok(Event::InitDone) => Change::InitDone,
            // An object the adapter cannot use (no name, an unusable selector) must not keep an older version.
            Ok(Event::Apply(object)) => match project(&object) {
                Some(record) => Change::Apply(record),
                None => deletion(&object),
            },
            Ok(Event::Delete(object)) => deletion(&object),
            Err(error) => {
                tracing::warn!(stream = %id, %error, "watch failed; retrying after backoff");
                streams.failed(&id, Instant::now(), error.to_string());
                continue;
            }
        };
        // Anything but the start of a list proves the API server answered.
        let answered = !matches!(change, Change::Init);
        let applied = indexer.apply(change, T::index(&inventory));
        if answered {
            streams.progressed(&id, applied == Applied::Listed);
        }
    }
}

fn deletion<K: Resource, T>(object: &K) -> Change<T> {
    Change::Delete {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_set_names_lose_their_template_hash() {
        assert_eq!(
            deployment_of_replica_set("security-server-sidecar-secondary-7d9f8").as_deref(),
            Some("security-server-sidecar-secondary")
        );
        assert_eq!(deployment_of_replica_set("plain"), None);
    }

    #[test]
    fn the_plan_has_one_stream_per_namespace_and_resource() {
        let plan = WatchPlan {
            pods: vec!["b".into(), "a".into(), "b".into()],
            deployments: vec!["a".into()],
            nodes: true,
        };
        let streams: Vec<_> = plan.streams().iter().map(ToString::to_string).collect();
        assert_eq!(
            streams,
            [
                "pods in namespace a",
                "pods in namespace b",
                "deployments in namespace a",
                "nodes in the cluster"
            ]
        );
        let everything = WatchPlan::default();
        let streams: Vec<_> = everything
            .streams()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(streams, ["pods in the cluster"]);
    }
}
