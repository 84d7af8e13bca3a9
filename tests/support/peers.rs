//! The peers the adapter replaces, run side by side with it behind one real aggregator and fed the same data:
//! metrics-server v0.8.0 scraping the stand-in kubelet's `/metrics/resource`, and the Prometheus Adapter
//! v0.12.0 serving the same rules from the same Prometheus (both built by `scripts/control-plane.sh build`).
//!
//! Only one server can own an API group version, so the Prometheus Adapter gets `custom.metrics.k8s.io`
//! v1beta1 and we get v1beta2: the same request reaches either by its version. `metrics.k8s.io` starts at
//! metrics-server, as in a cluster before the switch, and [`SideBySide::switch_resource_metrics`] moves it to
//! us. Used by `tests/peers.rs` and `benches/side_by_side.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::Prometheus;
use super::control_plane::{ControlPlane, Kubelet, Process};
use super::kubelet_metrics;

pub const NS: &str = "sidecar";
pub const DEPLOYMENT: &str = "security-server-sidecar-secondary";
pub const PODS: usize = 3;
/// Where the servers' Services live.
const SERVICES: &str = "kube-system";

/// A Prometheus Adapter configuration both servers read: a packet rate per pod and per namespace, and the
/// chart's resource rules written for the kubelet's `/metrics/resource` series.
pub const RULES: &str = r#"rules:
- seriesQuery: 'container_network_receive_packets_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_rate"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
resourceRules:
  cpu:
    containerQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[1m])) by (<<.GroupBy>>)'
    nodeQuery: 'sum(rate(node_cpu_usage_seconds_total{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
    resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}
    containerLabel: container
  memory:
    containerQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""}) by (<<.GroupBy>>)'
    nodeQuery: 'sum(node_memory_working_set_bytes{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
    resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}
    containerLabel: container
  window: 1m
"#;

/// The metric the rule above serves.
pub const RULE_METRIC: &str = "container_network_receive_packets_rate";

pub struct SideBySide {
    pub plane: ControlPlane,
    pub kubelet: Arc<Kubelet>,
    pub prometheus: Prometheus,
    pub metrics_server: Option<Process>,
    pub prometheus_adapter: Process,
    pub adapter: Process,
    /// Where the Prometheus Adapter listens.
    pub prometheus_adapter_port: u16,
    /// Where we listen.
    pub adapter_port: u16,
}

/// Starts `program` as the aggregated server `service` on a free port, with the flags every Kubernetes generic
/// apiserver takes (serving certificate, delegated authentication as the admin) and `flags`; registers `apis`
/// for it. `subcommand` goes first (ours: `serve`).
async fn serve(
    plane: &ControlPlane,
    program: &std::path::Path,
    subcommand: &[&str],
    service: &str,
    flags: &[String],
    apis: &[&str],
) -> (Process, u16) {
    let port = super::free_port();
    let mut args: Vec<String> = subcommand.iter().map(|s| s.to_string()).collect();
    args.extend(plane.serving_flags(service, SERVICES, port));
    args.extend_from_slice(flags);
    let process = Process::start(program, &args, plane.dir.path(), service);
    plane.register_apis(service, SERVICES, port, apis).await;
    (process, port)
}

impl SideBySide {
    /// The control plane, a node whose kubelet endpoints serve the Sidecar's pods, Prometheus scraping them,
    /// and the three servers registered with the aggregator.
    pub async fn start() -> Self {
        let plane = ControlPlane::start().await;
        let dir = plane.dir.path().to_owned();
        plane.admin(&["create", "namespace", NS]);
        let kubelet = Kubelet::spawn(plane.client().await, NS);
        let kubelet_port = kubelet_metrics::serve(kubelet.clone(), NS).await;

        // The node, as its kubelet registers it: its address, its endpoint's port, what it can hold.
        plane.apply("apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n");
        let resources = r#"{"cpu": "4", "memory": "8Gi", "pods": "110"}"#;
        plane.admin(&[
            "patch",
            "node",
            "node-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status": {{"addresses": [{{"type": "InternalIP", "address": "127.0.0.1"}}],
                   "daemonEndpoints": {{"kubeletEndpoint": {{"Port": {kubelet_port}}}}},
                   "capacity": {resources}, "allocatable": {resources}}}}}"#
            ),
        ]);
        plane.apply(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {DEPLOYMENT}, namespace: {NS}}}\n\
             spec:\n  replicas: {PODS}\n  selector: {{matchLabels: {{run: {DEPLOYMENT}}}}}\n  template:\n    \
             metadata: {{labels: {{run: {DEPLOYMENT}}}}}\n    \
             spec: {{containers: [{{name: {}, image: niis/xroad-security-server-sidecar:7.6.2}}]}}\n",
            kubelet_metrics::CONTAINER
        ));
        super::eventually("the pods running", Duration::from_secs(60), || async {
            kubelet.running.lock().unwrap().len() == PODS
        })
        .await;

        // As the usual kubelet scrape configs do: both endpoints, the node's name as a label.
        let prometheus = Prometheus::start_with_config(&format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n\
             - job_name: kubelet-resource\n  metrics_path: /metrics/resource\n  \
               static_configs: [{{targets: ['127.0.0.1:{kubelet_port}'], labels: {{node: node-1}}}}]\n\
             - job_name: kubelet-cadvisor\n  metrics_path: /metrics/cadvisor\n  \
               static_configs: [{{targets: ['127.0.0.1:{kubelet_port}'], labels: {{node: node-1}}}}]\n"
        ))
        .await;
        let rules = dir.join("rules.yaml");
        std::fs::write(&rules, RULES).unwrap();
        let rules = rules.to_str().unwrap().to_owned();
        let admin = plane.admin.to_str().unwrap().to_owned();

        let (metrics_server, _) = serve(
            &plane,
            &plane.bin.join("metrics-server"),
            &[],
            "metrics-server",
            &[
                format!("--kubeconfig={admin}"),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
                "--kubelet-use-node-status-port".to_owned(),
                "--deprecated-kubelet-completely-insecure".to_owned(),
                "--metric-resolution=10s".to_owned(),
                "--kubelet-request-timeout=5s".to_owned(),
            ],
            &["v1beta1.metrics.k8s.io"],
        )
        .await;
        let (prometheus_adapter, prometheus_adapter_port) = serve(
            &plane,
            &plane.bin.join("prometheus-adapter"),
            &[],
            "prometheus-adapter",
            &[
                format!("--lister-kubeconfig={admin}"),
                format!("--prometheus-url={}", prometheus.url),
                format!("--config={rules}"),
                "--metrics-relist-interval=5s".to_owned(),
            ],
            &["v1beta1.custom.metrics.k8s.io"],
        )
        .await;
        let (adapter, adapter_port) = serve(
            &plane,
            std::path::Path::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter")),
            &["serve"],
            "xroad-metrics-adapter",
            &[
                format!("--kubeconfig={admin}"),
                format!("--prometheus-url={}", prometheus.url),
                format!("--adapter-config={rules}"),
                "--metrics-relist-interval=5s".to_owned(),
            ],
            &[
                "v1beta2.custom.metrics.k8s.io",
                "v1beta1.external.metrics.k8s.io",
            ],
        )
        .await;

        Self {
            plane,
            kubelet,
            prometheus,
            metrics_server: Some(metrics_server),
            prometheus_adapter,
            adapter,
            prometheus_adapter_port,
            adapter_port,
        }
    }

    /// Points `metrics.k8s.io` at us, as a cluster replacing metrics-server does, and stops metrics-server, so
    /// every answer from then on is ours.
    pub async fn switch_resource_metrics(&mut self) {
        self.plane
            .register_apis(
                "xroad-metrics-adapter",
                SERVICES,
                self.adapter_port,
                &["v1beta1.metrics.k8s.io"],
            )
            .await;
        self.metrics_server = None;
    }

    /// The last lines a server wrote to its log (`metrics-server`, `prometheus-adapter`,
    /// `xroad-metrics-adapter`), for failure messages.
    pub fn log(&self, server: &str) -> String {
        self.plane.log(server)
    }
}
