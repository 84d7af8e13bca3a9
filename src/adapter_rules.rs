//! Prometheus Adapter rules at run time: the registry the handlers read, and the relist that refreshes it from
//! `/api/v1/series` (the Prometheus Adapter's docs/config.md and its naming and resource code). The rules and the registry logic
//! are pure (`compat`); this module does the fetching and the swapping.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::compat::discovery::{Registry, series_queries};
use crate::compat::resources::{DiscoveredResource, learn};
use crate::compat::rules::AdapterConfig;
use crate::source::{MetricSource, SourceError};

/// The rules, their current registry, and where series come from.
pub struct AdapterRules {
    /// The configuration as loaded.
    pub config: AdapterConfig,
    registry: RwLock<Arc<Registry>>,
    source: Arc<dyn MetricSource>,
    max_age: Duration,
    /// The cluster whose resources name series labels (custom resources included); none without a cluster.
    cluster: Option<kube::Client>,
}

/// Teaches the resource table every resource `client`'s cluster serves, so that labels and request paths
/// naming custom resources resolve as they would with the Prometheus Adapter's RESTMapper. Returns how many
/// resources were new.
pub async fn learn_cluster_resources(client: &kube::Client) -> Result<usize, kube::Error> {
    use kube::discovery::{Discovery, Scope};
    let discovery = Discovery::new(client.clone()).run().await?;
    let resources = discovery.groups().flat_map(|group| {
        group
            .recommended_resources()
            .into_iter()
            .filter(|(resource, _)| !resource.plural.contains('/'))
            .map(|(resource, capabilities)| DiscoveredResource {
                group: resource.group,
                version: resource.version,
                kind: resource.kind,
                plural: resource.plural,
                namespaced: capabilities.scope == Scope::Namespaced,
            })
    });
    Ok(learn(resources.collect::<Vec<_>>()))
}

impl AdapterRules {
    /// Rules with an empty registry; `max_age` is how recently a series must have had samples to be listed.
    pub fn new(
        config: AdapterConfig,
        source: Arc<dyn MetricSource>,
        max_age: Duration,
        cluster: Option<kube::Client>,
    ) -> Self {
        Self {
            config,
            registry: RwLock::new(Arc::new(Registry::default())),
            source,
            max_age,
            cluster,
        }
    }

    /// The registry of the last successful relist.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks for every distinct `seriesQuery` at once (with `start` and `end`) and swaps in the new registry.
    /// If any request fails the previous registry stays, as with the Prometheus Adapter. Returns the number of
    /// entries now served.
    pub async fn relist(&self) -> Result<usize, SourceError> {
        // Resources installed since the last relist (a new CRD) resolve from now on.
        if let Some(client) = &self.cluster
            && let Err(error) = learn_cluster_resources(client).await
        {
            tracing::warn!(error = %crate::error::root_cause(&error), "cluster discovery failed; resources resolve as before");
        }
        let end = crate::unix_now();
        let start = end - self.max_age.as_secs() as i64;
        let queries: Vec<String> = series_queries(&self.config).into_iter().collect();
        let answers = futures::future::join_all(
            queries
                .iter()
                .map(|query| self.source.series(query, start, end)),
        )
        .await;
        let mut found = BTreeMap::new();
        for (query, answer) in queries.into_iter().zip(answers) {
            found.insert(query, answer?);
        }
        let (registry, collisions) = Registry::build(&self.config, &found);
        for collision in collisions {
            tracing::warn!(%collision, "two series give one metric name; the later wins");
        }
        let entries = registry.len();
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
        Ok(entries)
    }

    /// Relists every `every`, for as long as the process runs.
    pub fn spawn_relister(self: &Arc<Self>, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                match this.relist().await {
                    Ok(entries) => {
                        tracing::debug!(entries, "relisted the Prometheus Adapter rules' series")
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "unable to update the list of metrics; keeping the previous one"
                    ),
                }
            }
        });
    }
}
