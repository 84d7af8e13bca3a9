//! Logs and the adapter's own metrics: tracing set-up (text or JSON) and the prometheus-client registry
//! behind `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::inventory::PodInventory;
use crate::inventory::streams::StreamCounters;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route kind, e.g. `custom_metric`, `discovery`.
    pub route: &'static str,
    /// The HTTP status code.
    pub code: u16,
}

/// Labels of a latency histogram by route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route kind.
    pub route: &'static str,
}

/// Labels naming a reason or outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason.
    pub reason: &'static str,
}

/// Labels naming a metrics backend.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// The backend's name.
    pub backend: String,
}

/// Labels naming a metrics backend and why a query failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendReasonLabels {
    /// The backend's name.
    pub backend: String,
    /// The reason.
    pub reason: &'static str,
}

/// Labels of a gRPC call: its method and the status code it ended with.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// `IsActive`, `StreamIsActive`, `GetMetricSpec` or `GetMetrics`.
    pub method: &'static str,
    /// `OK`, `NotFound`, `InvalidArgument`, `Unavailable`, …
    pub code: String,
}

/// Labels naming a gRPC method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethodLabels {
    /// The method.
    pub method: &'static str,
}

/// A configuration file the adapter reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    /// `--config`: the adapter's own configuration.
    Config,
    /// `--adapter-config`: Prometheus Adapter rules.
    AdapterConfig,
}

impl ConfigFile {
    /// The `file` label's value: the flag's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigFile::Config => "config",
            ConfigFile::AdapterConfig => "adapter-config",
        }
    }
}

/// Labels of a configuration reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// Which file: [`ConfigFile::as_str`].
    pub file: &'static str,
    /// `applied`, or why not.
    pub reason: &'static str,
}

/// Labels of a scale-on-failure policy's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The target's namespace.
    pub namespace: String,
    /// The target Deployment.
    pub deployment: String,
    /// The policy name.
    pub policy: String,
}

/// Labels of a pod's health state (one-hot over `state`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodStateLabels {
    /// The namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// `healthy`, `failing`, `maintenance` or `unknown`.
    pub state: &'static str,
}

/// The adapter's own metrics and the values it computes for dashboards.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Requests served, by route and code.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub request_duration: Family<RouteLabels, Histogram>,
    /// KEDA External Scaler calls by method and code.
    pub grpc_calls: Family<GrpcLabels, Counter>,
    /// Their latency by method.
    pub grpc_call_duration: Family<GrpcMethodLabels, Histogram>,
    /// Backend query latency by backend.
    pub backend_duration: Family<BackendLabels, Histogram>,
    /// Failed backend queries by backend and reason.
    pub backend_errors: Family<BackendReasonLabels, Counter>,
    /// Warnings in backend answers, served or not, by backend.
    pub backend_warnings: Family<BackendLabels, Counter>,
    /// Cache lookups by outcome: `hit`, `miss`, `revalidate` (served past the refresh interval while one
    /// background refresh runs), `stale` (last good value served during an outage).
    pub cache_lookups: Family<ReasonLabels, Counter>,
    /// Answers dropped to keep the cache under its memory cap.
    pub cache_evictions: Counter,
    /// Reloads of `--config` and `--adapter-config` by outcome.
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Unix time of each backend's last successful query: how stale served values can be.
    pub backend_last_success: Family<BackendLabels, Gauge>,
    /// The replica count each scale-on-failure policy asks for.
    pub scale_on_failure_replicas: Family<PolicyLabels, Gauge>,
    /// Pods of each policy's target failing now.
    pub unhealthy_pods: Family<PolicyLabels, Gauge>,
    /// Each target pod's health state, one-hot.
    pub pod_health: Family<PodStateLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        // The adapter's own series are prefixed; the values it computes for the HPA carry domain names.
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let backend_duration = Family::<BackendLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let backend_errors = Family::<BackendReasonLabels, Counter>::default();
        let backend_warnings = Family::<BackendLabels, Counter>::default();
        let grpc_calls = Family::<GrpcLabels, Counter>::default();
        let grpc_call_duration = Family::<GrpcMethodLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let cache_lookups = Family::<ReasonLabels, Counter>::default();
        let cache_evictions = Counter::default();
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        let backend_last_success = Family::<BackendLabels, Gauge>::default();
        {
            let own = registry.sub_registry_with_prefix("xroad_metrics_adapter");
            own.register(
                "http_requests",
                "API requests served, by route and HTTP code",
                requests.clone(),
            );
            own.register(
                "http_request_duration_seconds",
                "API request latency by route",
                request_duration.clone(),
            );
            own.register(
                "grpc_calls",
                "KEDA External Scaler calls by method and gRPC code",
                grpc_calls.clone(),
            );
            own.register(
                "grpc_call_duration_seconds",
                "KEDA External Scaler call latency by method (a stream: until it ends)",
                grpc_call_duration.clone(),
            );
            own.register(
                "backend_query_duration_seconds",
                "Latency of queries to each metrics backend",
                backend_duration.clone(),
            );
            own.register(
                "backend_errors",
                "Failed metrics-backend queries by backend and reason",
                backend_errors.clone(),
            );
            own.register(
                "backend_warnings",
                "Warnings in metrics-backend answers (partial answers, limits), by backend; an answer with \
                 warnings fails unless the backend's warnings setting is ignore",
                backend_warnings.clone(),
            );
            own.register(
                "cache_lookups",
                "Query-cache lookups: hit, miss, revalidate (served past the refresh interval while it is refreshed), \
                 or stale (last good value served while the backend fails)",
                cache_lookups.clone(),
            );
            own.register(
                "config_reloads",
                "Reloads of --config and --adapter-config (file) by outcome (reason): applied; or invalid, \
                 unlisted (the rules' series cannot be listed) or restart_required (a change only a restart \
                 applies), each leaving the previous configuration serving",
                config_reloads.clone(),
            );
            own.register(
                "cache_evictions",
                "Answers dropped, least recently used first, to keep the query cache under its memory cap",
                cache_evictions.clone(),
            );
            own.register(
                "backend_last_success_timestamp_seconds",
                "Unix time of each metrics backend's last successful query",
                backend_last_success.clone(),
            );
        }
        let scale_on_failure_replicas = Family::<PolicyLabels, Gauge>::default();
        let unhealthy_pods = Family::<PolicyLabels, Gauge>::default();
        let pod_health = Family::<PodStateLabels, Gauge>::default();
        registry.register(
            "xroad_scale_on_failure_replicas",
            "Replica count the scale-on-failure policy asks the HPA for",
            scale_on_failure_replicas.clone(),
        );
        registry.register(
            "xroad_unhealthy_pods",
            "Pods of the policy's target Deployment failing liveness or health checks now",
            unhealthy_pods.clone(),
        );
        registry.register(
            "xroad_pod_health_state",
            "Health state of each target pod (1 for the current state)",
            pod_health.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            request_duration,
            backend_duration,
            backend_errors,
            backend_warnings,
            grpc_calls,
            grpc_call_duration,
            cache_lookups,
            cache_evictions,
            config_reloads,
            backend_last_success,
            scale_on_failure_replicas,
            unhealthy_pods,
            pod_health,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Registers a metric family owned elsewhere (e.g. the X-Road collector's counters).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register(name, help, metric);
    }

    /// Exports the inventory's size and the health of its watch streams, read at each scrape.
    pub fn register_inventory(&self, inventory: Arc<PodInventory>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sub_registry_with_prefix("xroad_metrics_adapter")
            .register_collector(Box::new(InventoryCollector(inventory)));
    }

    /// Counts a reload of `file` and its outcome.
    pub fn reloaded(&self, file: ConfigFile, reason: &'static str) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                file: file.as_str(),
                reason,
            })
            .inc();
    }

    /// Counts a cache outcome.
    pub fn cache(&self, reason: &'static str) {
        self.cache_lookups
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// Labels of one watch stream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    resource: &'static str,
    /// Empty for a cluster-wide stream.
    namespace: String,
}

/// The inventory's own series, computed from its state at each scrape so they can never disagree with it.
#[derive(Debug)]
struct InventoryCollector(Arc<PodInventory>);

/// One family with a sample per stream.
fn encode_streams<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, prometheus_client::metrics::MetricType),
    streams: &[StreamCounters],
    value: impl Fn(&StreamCounters) -> M,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for stream in streams {
        let labels = StreamLabels {
            resource: stream.id.resource,
            namespace: stream.id.namespace().to_owned(),
        };
        value(stream).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for InventoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType::{Counter, Gauge};
        let streams = self.0.streams().counters(Instant::now());
        let failures = (
            "watch_failures",
            "Failed list or watch attempts of each inventory stream; each is retried after backoff",
            Counter,
        );
        encode_streams(&mut encoder, failures, &streams, |s| {
            ConstCounter::new(s.failures)
        })?;
        let relists = (
            "watch_relists",
            "Lists after the first (a watch that fell behind the API server's history starts over)",
            Counter,
        );
        encode_streams(&mut encoder, relists, &streams, |s| {
            ConstCounter::new(s.relists)
        })?;
        let lost = (
            "watch_lost",
            "1 while an inventory stream has failed for over 30 s: what it serves may be out of date",
            Gauge,
        );
        encode_streams(&mut encoder, lost, &streams, |s| {
            ConstGauge::new(i64::from(s.lost))
        })?;
        let mut family = encoder.encode_descriptor(
            "inventory_objects",
            "Objects the inventory holds, by resource",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (resource, count) in self.0.counts() {
            ConstGauge::new(count as i64)
                .encode(family.encode_family(&[("resource", resource)])?)?;
        }
        Ok(())
    }
}
