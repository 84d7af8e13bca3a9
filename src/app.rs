//! The composition root: builds the running adapter (backend, cache, inventory and its watches, rules,
//! policies, collector) from the configuration and the command line's settings, and puts a reloaded
//! configuration in force. `serve`, `query`, `explain` and the integration tests all start here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapter_rules::AdapterRules;
use crate::backends::Backends;
use crate::cache::QueryCache;
use crate::catalog::Catalog;
use crate::compat::resources::ResourceTable;
use crate::compat::rules::AdapterConfig;
use crate::config::{Config, ConfigError, HttpMethod, Material, OpMonitorConfig};
use crate::inventory::watch::WatchPlan;
use crate::inventory::{self, InventoryError, PodInventory};
use crate::policy::runner::{FailurePolicies, PolicyContext};
use crate::server::guard::Guard;
use crate::server::{AppState, Configured};
use crate::source::PrometheusSource;
use crate::telemetry::{ConfigFile, Metrics};
use crate::xroad::collector::Collector;
use crate::xroad::election::LeaderElection;

/// What the command line decides besides the configuration file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file (`--config`); its absence means the defaults.
    pub config: Option<PathBuf>,
    /// Overrides the file's `prometheus.url`.
    pub prometheus_url: Option<url::Url>,
    /// Overrides the file's `prometheus.method`.
    pub prometheus_method: Option<HttpMethod>,
    /// Added to the file's `prometheus.headers`.
    pub prometheus_headers: Vec<(String, String)>,
    /// The TLS and credentials of this kubeconfig's current context for the default backend.
    pub prometheus_auth_config: Option<PathBuf>,
    /// The pod's ServiceAccount token and the cluster's CA for the default backend.
    pub prometheus_auth_incluster: bool,
    /// Overrides the file's `prometheus.tls.caFile`.
    pub prometheus_ca_file: Option<PathBuf>,
    /// Overrides the file's `prometheus` credentials with a bearer token file.
    pub prometheus_token_file: Option<PathBuf>,
    /// Overrides the file's `prometheus.tls.certFile` and `keyFile`.
    pub prometheus_client_certificate: Option<(PathBuf, PathBuf)>,
    /// Pods from this snapshot instead of the cluster.
    pub inventory: Option<PathBuf>,
    /// The cluster's kubeconfig (default: in-cluster, then `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces whose pods are watched; empty for all.
    pub watch_namespaces: Vec<String>,
    /// Prometheus Adapter rules served next to the built-in metrics.
    pub adapter_config: Option<PathBuf>,
    /// How often the rules' series are listed again.
    pub metrics_relist_interval: Duration,
    /// How recently a series must have had samples to be listed (default: the relist interval).
    pub metrics_max_age: Option<Duration>,
}

impl Default for Settings {
    /// No files and no cluster settings: the defaults of the flags.
    fn default() -> Self {
        Self {
            config: None,
            prometheus_url: None,
            prometheus_method: None,
            prometheus_headers: Vec::new(),
            prometheus_auth_config: None,
            prometheus_auth_incluster: false,
            prometheus_ca_file: None,
            prometheus_token_file: None,
            prometheus_client_certificate: None,
            inventory: None,
            kubeconfig: None,
            watch_namespaces: Vec::new(),
            adapter_config: None,
            metrics_relist_interval: Duration::from_secs(60),
            metrics_max_age: None,
        }
    }
}

impl Settings {
    /// The configuration file with the command line's overrides applied.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        self.overridden(config)
    }

    /// The Prometheus Adapter's precedence: the in-cluster or kubeconfig transport first, then the CA and
    /// client-certificate flags, then the token file.
    fn overridden(&self, mut config: Config) -> Result<Config, ConfigError> {
        if let Some(url) = &self.prometheus_url {
            config.prometheus.url = Some(url.clone());
        }
        if let Some(method) = self.prometheus_method {
            config.prometheus.method = method;
        }
        let prometheus = &mut config.prometheus;
        prometheus
            .headers
            .extend(self.prometheus_headers.iter().cloned());
        let transport = match &self.prometheus_auth_config {
            _ if self.prometheus_auth_incluster => Some(crate::config::kubeconfig::in_cluster()),
            Some(path) => Some(
                crate::config::kubeconfig::from_file(path).map_err(|message| {
                    ConfigError::Invalid {
                        path: path.display().to_string(),
                        key: "--prometheus-auth-config".to_owned(),
                        message,
                    }
                })?,
            ),
            None => None,
        };
        if let Some((tls, auth)) = transport {
            prometheus.tls = tls;
            prometheus.auth = auth;
        }
        if let Some(ca) = &self.prometheus_ca_file {
            prometheus.tls.ca = Some(Material::File(ca.clone()));
        }
        if let Some(token_file) = &self.prometheus_token_file {
            prometheus.auth = crate::config::BackendAuth::Bearer {
                token: Material::File(token_file.clone()),
            };
        }
        if let Some((cert, key)) = &self.prometheus_client_certificate {
            prometheus.tls.cert = Some(Material::File(cert.clone()));
            prometheus.tls.key = Some(Material::File(key.clone()));
        }
        Ok(config)
    }
}

/// Why the adapter cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A bad configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad inventory file.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A configuration whose parts do not fit together.
    #[error("{0}")]
    Invalid(String),
    /// A configuration that needs a restart to apply (on reload only).
    #[error("{0}")]
    RestartRequired(String),
    /// No cluster to reach, or no client for it.
    #[error("{0}")]
    Cluster(String),
}

impl AppError {
    /// The `reason` label a failed reload is counted under.
    fn reason(&self) -> &'static str {
        match self {
            AppError::RestartRequired(_) => "restart_required",
            _ => "invalid",
        }
    }
}

/// The running adapter.
pub struct Adapter {
    /// What the server's handlers share.
    pub state: Arc<AppState>,
    settings: Settings,
    /// The configuration in force.
    config: Mutex<Config>,
    /// The cluster pods and Deployments are watched in; none with an inventory snapshot.
    cluster: Option<kube::Client>,
    /// The namespaces whose Deployments are watched: a reload cannot target others.
    deployment_namespaces: Vec<String>,
    /// Whether [`Adapter::start`] has run: a reload then starts the new policies' loops.
    started: AtomicBool,
}

const WATCH_HINT: &str = "pass --kubeconfig FILE, or --inventory FILE to run without a cluster";

impl Adapter {
    /// Builds the adapter for `config` (as [`Settings::load_config`] reads it); with an inventory snapshot
    /// the pods are loaded now, otherwise their watches start. Nothing runs in the background until
    /// [`Adapter::start`], so `query` and tests can drive each part themselves.
    pub async fn build(settings: Settings, config: Config, guard: Guard) -> Result<Self, AppError> {
        let metrics = Arc::new(Metrics::default());
        guard.register_metrics(&metrics);
        // The cluster: pods and Deployments are watched in it, and adapter rules learn its resources from it.
        let cluster = match &settings.inventory {
            Some(_) => None,
            None => Some(kube_client(settings.kubeconfig.as_deref(), WATCH_HINT).await?),
        };
        let backends = backends(&config, &metrics, None)?;
        let rules = adapter_rules(&settings, &backends, cluster.clone()).await?;
        let inventory = Arc::new(PodInventory::new());
        metrics.register_inventory(inventory.clone());
        if let Some(path) = &settings.inventory {
            inventory.load(inventory::load_file(path)?);
        }
        let plan = watch_plan(&settings, &config)?;
        if let Some(client) = &cluster {
            inventory::watch::start(client, &plan, &inventory);
        }
        let configured = configured(&config, backends, &inventory, &metrics, None)?;
        Ok(Self {
            state: Arc::new(AppState::new(configured, inventory, metrics, guard, rules)),
            settings,
            config: Mutex::new(config),
            cluster,
            deployment_namespaces: plan.deployments,
            started: AtomicBool::new(false),
        })
    }

    /// Starts what serving runs in the background: the policies' loops, the op-monitor collector, the rules'
    /// relists, and the reloads of both configuration files (checked every `reload_every` and on SIGHUP).
    /// `lease_namespace` is where the collectors' Lease lives unless the configuration names one.
    pub async fn start(
        self: &Arc<Self>,
        reload_every: Duration,
        lease_namespace: &str,
    ) -> Result<(), AppError> {
        self.started.store(true, Ordering::SeqCst);
        self.state.configured().policies.spawn();
        let opmonitor = self.config().opmonitor;
        if let Some(opmonitor) = opmonitor {
            let collector = Collector::new(opmonitor.clone(), &self.state.metrics)
                .map_err(AppError::Invalid)?;
            let election = self.election(&opmonitor, lease_namespace).await?;
            tokio::spawn(Arc::new(collector).run(self.state.inventory.clone(), election));
        }
        if let Some(rules) = &self.state.rules {
            rules.spawn_relister(self.settings.metrics_relist_interval);
            if let Some(path) = &self.settings.adapter_config {
                rules.spawn_reloader(path.clone(), reload_every, self.state.metrics.clone());
            }
        }
        if let Some(path) = &self.settings.config {
            let this = self.clone();
            crate::files::watch(path.clone(), reload_every, move |text| {
                this.reload_text(&text);
                std::future::ready(())
            });
        }
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a new text of `--config`, logs and counts the outcome.
    fn reload_text(&self, text: &str) {
        let path = self.settings.config.as_deref().unwrap_or(".".as_ref());
        let outcome = Config::parse(&path.display().to_string(), text)
            .map_err(AppError::from)
            .and_then(|config| self.settings.overridden(config).map_err(AppError::from))
            .and_then(|config| self.reload(config));
        let reason = match outcome {
            Ok(true) => {
                tracing::info!(file = %path.display(), "configuration reloaded");
                "applied"
            }
            Ok(false) => return,
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "the new configuration is not applied; the configuration in force keeps serving");
                error.reason()
            }
        };
        self.state.metrics.reloaded(ConfigFile::Config, reason);
    }

    /// Puts `config` in force for every request that starts from now on, or leaves the configuration in
    /// force untouched and says why not. Returns false when `config` is the one in force. What did not change
    /// is kept: the cache (and its answers) while the backend settings are the same, and each policy
    /// configured as before, with its memory.
    pub fn reload(&self, config: Config) -> Result<bool, AppError> {
        let mut in_force = self.config.lock().unwrap_or_else(|e| e.into_inner());
        if config == *in_force {
            return Ok(false);
        }
        if config.grpc != in_force.grpc {
            return Err(AppError::RestartRequired(
                "the grpc section changed, and its server starts once: restart the adapter"
                    .to_owned(),
            ));
        }
        if config.opmonitor != in_force.opmonitor {
            return Err(AppError::RestartRequired(
                "the opmonitor section changed, and the collector applies it at start only: restart the \
                 adapter"
                    .to_owned(),
            ));
        }
        if let Some(policy) = config.scale_on_failure.iter().find(|p| {
            self.cluster.is_some() && !self.deployment_namespaces.contains(&p.target.namespace)
        }) {
            return Err(AppError::RestartRequired(format!(
                "scaleOnFailure {} targets namespace {}, whose Deployments are not watched yet: restart the \
                 adapter",
                policy.name, policy.target.namespace
            )));
        }
        let previous = self.state.configured();
        let backends = backends(
            &config,
            &self.state.metrics,
            Some((&in_force, &previous.backends)),
        )?;
        if let Some(rules) = &self.state.rules {
            rules
                .check_backends(&backends)
                .map_err(|e| AppError::Invalid(format!("--adapter-config: {e}")))?;
        }
        let next = configured(
            &config,
            backends.clone(),
            &self.state.inventory,
            &self.state.metrics,
            Some(&previous.policies),
        )?;
        // Nothing can fail from here on.
        if let Some(rules) = &self.state.rules {
            rules.use_backends(backends);
        }
        let replaced = self.state.replace(Arc::new(next));
        let current = self.state.configured();
        replaced.policies.stop();
        if self.started.load(Ordering::SeqCst) {
            current.policies.spawn();
        }
        for gone in replaced
            .policies
            .all()
            .iter()
            .filter(|p| !current.policies.all().iter().any(|c| Arc::ptr_eq(c, p)))
        {
            gone.forget(&self.state.metrics);
        }
        *in_force = config;
        Ok(true)
    }

    /// Without a cluster (an inventory file) the adapter is the only collector; in a cluster a Lease elects one.
    async fn election(
        &self,
        opmonitor: &OpMonitorConfig,
        lease_namespace: &str,
    ) -> Result<Option<LeaderElection>, AppError> {
        let election = &opmonitor.leader_election;
        let Some(client) = self.cluster.clone().filter(|_| election.enabled) else {
            return Ok(None);
        };
        let namespace = election
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| lease_namespace.to_owned());
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string());
        Ok(Some(LeaderElection::new(
            client,
            &namespace,
            &election.lease_name,
            &identity,
            election.lease_duration,
        )))
    }
}

/// The backends of `config`, each behind its own cache. A backend configured exactly as in `previous` (with
/// the same refresh and staleness) keeps its cache, and the answers in it.
fn backends(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: Option<(&Config, &Backends)>,
) -> Result<Arc<Backends>, AppError> {
    let mut caches = Vec::new();
    for backend in config.all_backends() {
        let kept = previous.and_then(|(in_force, caches)| {
            let same = in_force.all_backends().any(|b| b == backend)
                && in_force.refresh_interval == config.refresh_interval
                && in_force.max_staleness == config.max_staleness;
            same.then(|| caches.named(Some(&backend.name)).cloned())
                .flatten()
        });
        let cache = match kept {
            Some(cache) => cache,
            None => {
                if backend.tls.insecure_skip_verify {
                    tracing::warn!(
                        backend = backend.name,
                        "tls.insecureSkipVerify: the backend's certificate is not verified; use it for tests only"
                    );
                }
                let source = PrometheusSource::new(backend).map_err(AppError::Invalid)?;
                Arc::new(QueryCache::new(
                    &backend.name,
                    Arc::new(source),
                    config.refresh_interval,
                    config.max_staleness,
                    metrics.clone(),
                ))
            }
        };
        caches.push(cache);
    }
    Backends::new(caches, &config.routes)
        .map(Arc::new)
        .map_err(AppError::Invalid)
}

/// What `config` decides, answered through `backends`; policies configured as in `previous` are kept.
fn configured(
    config: &Config,
    backends: Arc<Backends>,
    inventory: &Arc<PodInventory>,
    metrics: &Arc<Metrics>,
    previous: Option<&FailurePolicies>,
) -> Result<Configured, AppError> {
    let catalog = Catalog::with_throughput(config.throughput);
    for policy in &config.scale_on_failure {
        if catalog.pod_metric(&policy.load_metric).is_none() {
            let served: Vec<_> = catalog.metrics().iter().map(|m| m.name.as_str()).collect();
            return Err(AppError::Invalid(format!(
                "scaleOnFailure {}: load.metric {:?} is not a served pod metric (one of: {})",
                policy.name,
                policy.load_metric,
                served.join(", ")
            )));
        }
    }
    backends
        .check(
            config
                .scale_on_failure
                .iter()
                .filter_map(|p| p.signals.probe_backend.as_deref()),
        )
        .map_err(|e| AppError::Invalid(format!("scaleOnFailure signals.probes.backend: {e}")))?;
    let context = Arc::new(PolicyContext {
        inventory: inventory.clone(),
        backends: backends.clone(),
        catalog: catalog.clone(),
        rate_window: config.rate_window,
        metrics: metrics.clone(),
    });
    Ok(Configured {
        policies: Arc::new(FailurePolicies::new(
            &config.scale_on_failure,
            context,
            previous,
        )),
        catalog,
        backends,
        rate_window: config.rate_window,
    })
}

/// The streams serving needs: pods where they are served, Deployments where policies target them, and Nodes,
/// which node metrics name (by name or by address).
fn watch_plan(settings: &Settings, config: &Config) -> Result<WatchPlan, AppError> {
    let mut deployments: Vec<String> = config
        .scale_on_failure
        .iter()
        .map(|p| p.target.namespace.clone())
        .collect();
    deployments.sort();
    deployments.dedup();
    let watched = &settings.watch_namespaces;
    if let Some(missing) = deployments
        .iter()
        .find(|ns| !watched.is_empty() && !watched.contains(ns))
    {
        return Err(AppError::Invalid(format!(
            "a scaleOnFailure policy targets namespace {missing}, whose pods are not watched: add --watch-namespace {missing}"
        )));
    }
    Ok(WatchPlan {
        pods: watched.clone(),
        deployments,
        nodes: true,
    })
}

/// Loads `--adapter-config` and lists its series once, so its metrics are served from the start.
async fn adapter_rules(
    settings: &Settings,
    backends: &Arc<Backends>,
    cluster: Option<kube::Client>,
) -> Result<Option<Arc<AdapterRules>>, AppError> {
    let Some(path) = &settings.adapter_config else {
        return Ok(None);
    };
    // Before the rules are read, so that overrides naming custom resources normalise as the cluster says.
    let resources = Arc::new(ResourceTable::default());
    if let Some(client) = &cluster {
        match crate::adapter_rules::learn_cluster_resources(client, &resources).await {
            Ok(learned) => {
                tracing::info!(learned, "resources learned from the cluster's discovery")
            }
            Err(error) => {
                tracing::warn!(error = %crate::error_chain::root_cause(&error), "cluster discovery failed; only the built-in resources resolve")
            }
        }
    }
    let invalid = |e: &dyn std::fmt::Display| AppError::Invalid(format!("{}: {e}", path.display()));
    let text = crate::files::read_text(path, crate::files::CONFIG_LIMIT)
        .map_err(|e| AppError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let config = AdapterConfig::parse_with(&text, resources).map_err(|e| invalid(&e))?;
    for warning in &config.warnings {
        tracing::warn!(file = %path.display(), "{warning}");
    }
    let relist = settings.metrics_relist_interval;
    let max_age = settings.metrics_max_age.unwrap_or(relist);
    if max_age < relist {
        return Err(AppError::Invalid(
            "--metrics-max-age must be at least --metrics-relist-interval, or series would drop out between relists"
                .to_owned(),
        ));
    }
    backends.check(config.backends()).map_err(|e| invalid(&e))?;
    let rules = Arc::new(AdapterRules::new(
        config,
        backends.clone(),
        max_age,
        cluster,
    ));
    match rules.relist().await {
        Ok(entries) => {
            tracing::info!(entries, file = %path.display(), "Prometheus Adapter rules listed")
        }
        Err(error) => {
            tracing::warn!(%error, "unable to list the Prometheus Adapter rules' series; retrying at the next relist")
        }
    }
    Ok(Some(rules))
}

/// A client of the cluster; `hint` says what to do when none is found.
pub async fn kube_client(
    kubeconfig: Option<&std::path::Path>,
    hint: &str,
) -> Result<kube::Client, AppError> {
    let failed = |text: String| AppError::Cluster(text);
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| failed(format!("cannot read kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| failed(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| failed(format!("no cluster found ({e}); {hint}")))?,
    };
    kube::Client::try_from(config)
        .map_err(|e| failed(format!("cannot build the Kubernetes client: {e}")))
}
