//! Prometheus Adapter rules at run time: the registry the handlers read, and the relist that refreshes it from
//! `/api/v1/series` (the Prometheus Adapter's docs/config.md and its naming and resource code). The rules and the registry logic
//! are pure (`compat`); this module does the fetching and the swapping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::backends::Backends;
use crate::compat::discovery::{Registry, series_queries};
use crate::compat::resources::{DiscoveredResource, ResourceTable};
use crate::compat::rules::AdapterConfig;
use crate::source::SourceError;
use crate::telemetry::{ConfigFile, Metrics};

/// A configuration and the registry built from it: swapped together, so a request never reads a rule by
/// the position another configuration's registry gave it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Arc<AdapterConfig>,
    /// The metrics its rules found at the last relist.
    pub registry: Arc<Registry>,
}

/// The rules, their current registry, and where series come from.
pub struct AdapterRules {
    current: RwLock<Arc<Loaded>>,
    /// Replaced when a reloaded `--config` changes the backends.
    backends: RwLock<Arc<Backends>>,
    max_age: Duration,
    /// The cluster whose resources name series labels (custom resources included); none without a cluster.
    cluster: Option<kube::Client>,
}

/// How long one discovery of the cluster may take. kube's client retries a 503 for many minutes, and an
/// aggregated API whose server is down answers 503; without a bound, one broken APIService would hold up the
/// adapter's start (and its own APIService is such a one until it listens).
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the cluster's resources could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The API server refused or failed a discovery request.
    #[error("discovery of the cluster's resources failed")]
    Kube(#[from] kube::Error),
    /// Discovery did not finish within the bound.
    #[error("discovery of the cluster's resources took longer than {0:?}")]
    TimedOut(Duration),
}

/// Teaches the resource table every resource `client`'s cluster serves, so that labels and request paths
/// naming custom resources resolve as they would with the Prometheus Adapter's RESTMapper. Returns how many
/// resources were new.
///
/// Aggregated discovery (Kubernetes 1.26+) is one request that an unavailable aggregated API cannot fail; a
/// cluster without it is asked group by group. The metrics groups are left out: they name no resource a rule
/// could mean, and ours are served by this very process.
pub async fn learn_cluster_resources(
    client: &kube::Client,
    table: &ResourceTable,
) -> Result<usize, DiscoveryError> {
    use kube::discovery::{Discovery, Scope};
    const METRICS_GROUPS: [&str; 3] = [
        crate::apis::CUSTOM_GROUP,
        crate::apis::EXTERNAL_GROUP,
        crate::apis::RESOURCE_GROUP,
    ];
    let discover = async {
        let discovery = || Discovery::new(client.clone()).exclude(&METRICS_GROUPS);
        // A server without aggregated discovery answers in the old format, which reads as no groups at all:
        // every server has the core group, so its absence means "ask the old way".
        match discovery().run_aggregated().await {
            Ok(discovery) if discovery.has_group(kube::discovery::ApiGroup::CORE_GROUP) => {
                Ok(discovery)
            }
            Ok(_) => discovery().run().await,
            Err(error) => {
                tracing::debug!(%error, "aggregated discovery refused; asking group by group");
                discovery().run().await
            }
        }
    };
    let discovery = tokio::time::timeout(DISCOVERY_TIMEOUT, discover)
        .await
        .map_err(|_| DiscoveryError::TimedOut(DISCOVERY_TIMEOUT))??;
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
    Ok(table.learn(resources.collect::<Vec<_>>()))
}

impl AdapterRules {
    /// Rules with an empty registry; `max_age` is how recently a series must have had samples to be listed.
    pub fn new(
        config: AdapterConfig,
        backends: Arc<Backends>,
        max_age: Duration,
        cluster: Option<kube::Client>,
    ) -> Self {
        Self {
            current: RwLock::new(Arc::new(Loaded {
                config: Arc::new(config),
                registry: Arc::default(),
            })),
            backends: RwLock::new(backends),
            max_age,
            cluster,
        }
    }

    /// The configuration and registry in force; read once per request.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The registry of the last successful relist.
    pub fn registry(&self) -> Arc<Registry> {
        self.current().registry.clone()
    }

    /// Asks for every distinct `seriesQuery` at once (with `start` and `end`) and swaps in the new registry.
    /// If any request fails the previous registry stays, as with the Prometheus Adapter. Returns the number of
    /// entries now served.
    pub async fn relist(&self) -> Result<usize, SourceError> {
        let config = self.current().config.clone();
        let registry = self.registry_for(&config).await?;
        let entries = registry.len();
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // A reload while this relist ran wins: its registry belongs to its configuration.
        if Arc::ptr_eq(&current.config, &config) {
            *current = Arc::new(Loaded {
                config,
                registry: Arc::new(registry),
            });
        }
        Ok(entries)
    }

    /// Swaps in `config` with a registry listed for it, or keeps the configuration in force if the listing
    /// fails. Returns the number of entries now served.
    pub async fn reload(&self, config: AdapterConfig) -> Result<usize, SourceError> {
        let config = Arc::new(config);
        let registry = self.registry_for(&config).await?;
        let entries = registry.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Loaded {
            config,
            registry: Arc::new(registry),
        });
        Ok(entries)
    }

    async fn registry_for(&self, config: &AdapterConfig) -> Result<Registry, SourceError> {
        // Resources installed since the last relist (a new CRD) resolve from now on.
        if let Some(client) = &self.cluster
            && let Err(error) = learn_cluster_resources(client, &config.resources).await
        {
            tracing::warn!(error = %crate::error_chain::root_cause(&error), "cluster discovery failed; resources resolve as before");
        }
        let end = crate::unix_now();
        let start = end - self.max_age.as_secs() as i64;
        let queries: Vec<_> = series_queries(config).into_iter().collect();
        let backends = self
            .backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let answers = futures::future::join_all(queries.iter().map(|(backend, query)| {
            let source = backends.source(backend.as_deref());
            async move {
                match source {
                    Some(source) => source.series(query, start, end).await,
                    None => Err(SourceError::Rejected {
                        error_type: "configuration".into(),
                        message: format!("no backend is named {backend:?}"),
                    }),
                }
            }
        }))
        .await;
        let mut found = BTreeMap::new();
        for (query, answer) in queries.into_iter().zip(answers) {
            found.insert(query, answer?);
        }
        let (registry, collisions) = Registry::build(config, &found);
        for collision in collisions {
            tracing::warn!(%collision, "two series give one metric name; the later wins");
        }
        Ok(registry)
    }

    /// Lists series from `backends` from the next relist on.
    pub fn use_backends(&self, backends: Arc<Backends>) {
        *self.backends.write().unwrap_or_else(|e| e.into_inner()) = backends;
    }

    /// Checks that the rules name only backends of `backends`.
    pub fn check_backends(&self, backends: &Backends) -> Result<(), String> {
        backends.check(self.current().config.backends())
    }

    /// Re-reads `path` whenever its content changes (checked every `every`, as a mounted ConfigMap is
    /// updated in place) and on SIGHUP. A configuration that parses and whose series list is swapped in at once;
    /// anything else is logged and counted while the rules in force keep serving.
    pub fn spawn_reloader(self: &Arc<Self>, path: PathBuf, every: Duration, metrics: Arc<Metrics>) {
        let this = self.clone();
        crate::files::watch(path.clone(), every, move |text| {
            let (this, path, metrics) = (this.clone(), path.clone(), metrics.clone());
            async move {
                let outcome = this.reload_text(&path, &text).await;
                metrics.reloaded(ConfigFile::AdapterConfig, outcome);
            }
        });
    }

    async fn reload_text(&self, path: &std::path::Path, text: &str) -> &'static str {
        let table = self.current().config.resources.clone();
        let config = match AdapterConfig::parse_with(text, table) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "the new Prometheus Adapter rules are invalid; keeping the rules in force");
                return "invalid";
            }
        };
        for warning in &config.warnings {
            tracing::warn!(file = %path.display(), "{warning}");
        }
        let backends = self
            .backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Err(error) = backends.check(config.backends()) {
            tracing::error!(file = %path.display(), %error, "the new Prometheus Adapter rules name a backend that is not configured; keeping the rules in force");
            return "invalid";
        }
        match self.reload(config).await {
            Ok(entries) => {
                tracing::info!(file = %path.display(), entries, "Prometheus Adapter rules reloaded");
                "applied"
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "cannot list the new rules' series; keeping the rules in force");
                "unlisted"
            }
        }
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
