//! The metric catalogue: which metrics exist for which resources, and the PromQL each one runs.
//!
//! Queries are shaped per (metric, namespace), never per pod list: requested pods are selected afterwards, in
//! memory. Pure: builds text, runs nothing.

use std::time::Duration;

use crate::promql;

/// Packets or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `…_packets_total`.
    Packets,
    /// `…_bytes_total`.
    Bytes,
}

/// Received or transmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `container_network_receive_…`.
    Receive,
    /// `container_network_transmit_…`.
    Transmit,
}

/// How a metric is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Per-pod network rate from cAdvisor's pod-sandbox series, without double counting.
    Network(Direction, Unit),
    /// The sidecar guide's Prometheus Adapter rule, number for number: `sum(rate(…[1m])) by (pod)`.
    /// Despite the name, a per-second rate.
    LegacyReceivePacketsPerMinute,
    /// X-Road messages per second from the collector's `xroad_opmon_requests_total`; `failed` keeps only
    /// `succeeded="false"`.
    XRoadMessages {
        /// Only failed messages.
        failed: bool,
    },
    /// X-Road messages per second from a JMX exporter on the op-monitor daemon: window gauges divided by
    /// the window length, never `rate()` on a gauge (X-Road's PR-OPMON, UG-SS and the Sidecar user guide). Producer role only.
    XRoadMessagesJmx {
        /// Only unsuccessful requests.
        failed: bool,
    },
}

/// Where X-Road message counts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThroughputSource {
    /// The adapter's op-monitor collector (`xroad_opmon_requests_total`).
    #[default]
    Opmonitor,
    /// A JMX exporter's `xroad_opmon_requests_in_window` and `xroad_opmon_statistics_period_seconds`.
    Jmx,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    /// The name served in the API.
    pub name: String,
    /// How it is computed.
    pub kind: MetricKind,
}

/// Which namespaces a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One namespace.
    Namespace(&'a str),
    /// Every namespace (`namespaces/*/metrics/<m>`).
    AllNamespaces,
}

/// The window of the legacy rule, kept so that its numbers do not change.
const LEGACY_WINDOW: Duration = Duration::from_secs(60);

impl MetricDef {
    /// The aggregation window reported as `windowSeconds`.
    pub fn window(&self, rate_window: Duration) -> Duration {
        match self.kind {
            MetricKind::Network(..)
            | MetricKind::XRoadMessages { .. }
            | MetricKind::XRoadMessagesJmx { .. } => rate_window,
            MetricKind::LegacyReceivePacketsPerMinute => LEGACY_WINDOW,
        }
    }

    /// The rate expression, one series per (namespace, pod) and, for network metrics, interface.
    fn rate_expression(
        &self,
        scope: Scope<'_>,
        matchers: &[String],
        rate_window: Duration,
    ) -> String {
        let namespace = match scope {
            Scope::Namespace(ns) => promql::equal("namespace", ns),
            Scope::AllNamespaces => "namespace!=\"\"".to_owned(),
        };
        if let MetricKind::XRoadMessagesJmx { failed } = self.kind {
            let mut selector = vec![namespace.clone()];
            if failed {
                selector.push("result=\"unsuccessful\"".to_owned());
            }
            selector.extend(matchers.iter().cloned());
            return format!(
                "sum by (namespace, pod) (xroad_opmon_requests_in_window{{{}}}) / on (namespace, pod) \
                 max by (namespace, pod) (xroad_opmon_statistics_period_seconds{{{namespace}}})",
                selector.join(",")
            );
        }
        let mut selector = vec![namespace];
        let counter = match self.kind {
            MetricKind::Network(direction, unit) => {
                // The pod-sandbox series carry a pod's traffic, under `container="POD"` (dockershim) or
                // `container=""` (containerd, CRI-O); app containers may repeat them. `max by interface`
                // collapses the copies; the node's own series (`id="/"`) have no pod.
                selector.push("pod!=\"\"".to_owned());
                selector.push("id!=\"/\"".to_owned());
                let direction = match direction {
                    Direction::Receive => "receive",
                    Direction::Transmit => "transmit",
                };
                let unit = match unit {
                    Unit::Packets => "packets",
                    Unit::Bytes => "bytes",
                };
                format!("container_network_{direction}_{unit}_total")
            }
            MetricKind::LegacyReceivePacketsPerMinute => {
                "container_network_receive_packets_total".to_owned()
            }
            MetricKind::XRoadMessages { failed } => {
                if failed {
                    selector.push("succeeded=\"false\"".to_owned());
                }
                "xroad_opmon_requests_total".to_owned()
            }
            MetricKind::XRoadMessagesJmx { .. } => unreachable!("returned above"),
        };
        selector.extend(matchers.iter().cloned());
        let window = self.window(rate_window).as_secs();
        let rate = format!("rate({counter}{{{}}}[{window}s])", selector.join(","));
        match self.kind {
            MetricKind::Network(..) => format!("max by (namespace, pod, interface) ({rate})"),
            _ => rate,
        }
    }

    /// One sample per pod, labelled `namespace` and `pod`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use xroad_metrics_adapter::catalog::{Catalog, Scope};
    /// let catalog = Catalog::builtin();
    /// let metric = catalog.pod_metric("container_network_receive_packets_per_second").unwrap();
    /// assert_eq!(
    ///     metric.per_pod_query(Scope::Namespace("sidecar"), &[], Duration::from_secs(120)),
    ///     r#"sum by (namespace, pod) (max by (namespace, pod, interface) (rate(container_network_receive_packets_total{namespace="sidecar",pod!="",id!="/"}[120s])))"#
    /// );
    /// ```
    pub fn per_pod_query(
        &self,
        scope: Scope<'_>,
        matchers: &[String],
        rate_window: Duration,
    ) -> String {
        format!(
            "sum by (namespace, pod) ({})",
            self.rate_expression(scope, matchers, rate_window)
        )
    }

    /// One sample: the namespace total (external metrics).
    pub fn total_query(
        &self,
        scope: Scope<'_>,
        matchers: &[String],
        rate_window: Duration,
    ) -> String {
        format!(
            "sum({})",
            self.rate_expression(scope, matchers, rate_window)
        )
    }
}

/// The metrics this adapter serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    metrics: Vec<MetricDef>,
}

/// The resource every built-in metric describes.
pub const PODS: &str = "pods";
/// Namespaces get the sum of their pods, as the Prometheus Adapter serves them.
pub const NAMESPACES: &str = "namespaces";
/// The resource the scale-on-failure metrics describe.
pub const DEPLOYMENTS: &str = "deployments.apps";
/// The replica count a scale-on-failure policy asks for (HPA Object metric, `AverageValue: 1`).
pub const SCALE_ON_FAILURE_REPLICAS: &str = "xroad_scale_on_failure_replicas";
/// Pods of a policy's target failing now.
pub const UNHEALTHY_PODS: &str = "unhealthy_pods";
/// The metrics the scale-on-failure policies serve, when any policy is configured.
pub const POLICY_METRICS: [&str; 2] = [SCALE_ON_FAILURE_REPLICAS, UNHEALTHY_PODS];

impl Catalog {
    /// The built-in metrics, X-Road messages from the collector.
    pub fn builtin() -> Self {
        Self::with_throughput(ThroughputSource::Opmonitor)
    }

    /// The built-in metrics with X-Road message counts from `source`.
    pub fn with_throughput(source: ThroughputSource) -> Self {
        let messages = |failed| match source {
            ThroughputSource::Opmonitor => MetricKind::XRoadMessages { failed },
            ThroughputSource::Jmx => MetricKind::XRoadMessagesJmx { failed },
        };
        let network = |direction, unit, name: &str| MetricDef {
            name: name.to_owned(),
            kind: MetricKind::Network(direction, unit),
        };
        use Direction::*;
        use Unit::*;
        Self {
            metrics: vec![
                network(
                    Receive,
                    Packets,
                    "container_network_receive_packets_per_second",
                ),
                network(
                    Transmit,
                    Packets,
                    "container_network_transmit_packets_per_second",
                ),
                network(Receive, Bytes, "container_network_receive_bytes_per_second"),
                network(
                    Transmit,
                    Bytes,
                    "container_network_transmit_bytes_per_second",
                ),
                MetricDef {
                    name: "container_network_receive_packets_per_minute".to_owned(),
                    kind: MetricKind::LegacyReceivePacketsPerMinute,
                },
                MetricDef {
                    name: "xroad_messages_per_second".to_owned(),
                    kind: messages(false),
                },
                MetricDef {
                    name: "xroad_failed_messages_per_second".to_owned(),
                    kind: messages(true),
                },
            ],
        }
    }

    /// Every metric, in catalogue order.
    pub fn metrics(&self) -> &[MetricDef] {
        &self.metrics
    }

    /// `(resource, metric, namespaced)` for custom-metrics discovery.
    pub fn custom_resources(&self) -> impl Iterator<Item = (&'static str, &str, bool)> {
        self.metrics.iter().flat_map(|m| {
            [
                (PODS, m.name.as_str(), true),
                (NAMESPACES, m.name.as_str(), false),
            ]
        })
    }

    /// A metric served for pods (and, summed, for namespaces).
    pub fn pod_metric(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// A metric served as an external metric (the namespace total).
    pub fn external_metric(&self, name: &str) -> Option<&MetricDef> {
        self.pod_metric(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(120);

    fn metric(name: &str) -> MetricDef {
        Catalog::builtin().pod_metric(name).unwrap().clone()
    }

    #[test]
    fn network_metrics_dedupe_sandbox_series_and_skip_node_series() {
        let q = metric("container_network_transmit_bytes_per_second").per_pod_query(
            Scope::Namespace("sidecar"),
            &[],
            WINDOW,
        );
        assert_eq!(
            q,
            r#"sum by (namespace, pod) (max by (namespace, pod, interface) (rate(container_network_transmit_bytes_total{namespace="sidecar",pod!="",id!="/"}[120s])))"#
        );
    }

    #[test]
    fn the_legacy_metric_is_the_sidecar_guide_rule() {
        let m = metric("container_network_receive_packets_per_minute");
        assert_eq!(m.window(WINDOW), Duration::from_secs(60));
        assert_eq!(
            m.per_pod_query(Scope::Namespace("sidecar"), &[], WINDOW),
            r#"sum by (namespace, pod) (rate(container_network_receive_packets_total{namespace="sidecar"}[60s]))"#
        );
    }

    #[test]
    fn metric_matchers_and_hostile_namespaces_stay_inside_the_selector() {
        let q = metric("container_network_receive_packets_per_second").per_pod_query(
            Scope::Namespace("x\"}) or vector(1) #"),
            &[r#"interface="eth0""#.to_owned()],
            WINDOW,
        );
        assert_eq!(
            q,
            r#"sum by (namespace, pod) (max by (namespace, pod, interface) (rate(container_network_receive_packets_total{namespace="x\"}) or vector(1) #",pod!="",id!="/",interface="eth0"}[120s])))"#
        );
    }

    #[test]
    fn external_totals_and_all_namespace_queries() {
        let m = metric("container_network_receive_packets_per_second");
        assert_eq!(
            m.total_query(Scope::Namespace("sidecar"), &[], WINDOW),
            r#"sum(max by (namespace, pod, interface) (rate(container_network_receive_packets_total{namespace="sidecar",pod!="",id!="/"}[120s])))"#
        );
        assert!(
            m.per_pod_query(Scope::AllNamespaces, &[], WINDOW)
                .contains(r#"{namespace!="",pod!="""#)
        );
    }

    #[test]
    fn xroad_messages_come_from_the_collector_counters() {
        let all = metric("xroad_messages_per_second");
        assert_eq!(
            all.per_pod_query(
                Scope::Namespace("sidecar"),
                &[r#"security_server_type="producer""#.to_owned()],
                WINDOW
            ),
            r#"sum by (namespace, pod) (rate(xroad_opmon_requests_total{namespace="sidecar",security_server_type="producer"}[120s]))"#
        );
        assert_eq!(
            metric("xroad_failed_messages_per_second").total_query(
                Scope::Namespace("sidecar"),
                &[],
                WINDOW
            ),
            r#"sum(rate(xroad_opmon_requests_total{namespace="sidecar",succeeded="false"}[120s]))"#
        );
    }

    #[test]
    fn the_jmx_preset_divides_window_counts_by_the_period_and_never_rates_gauges() {
        let catalog = Catalog::with_throughput(ThroughputSource::Jmx);
        let failed = catalog
            .pod_metric("xroad_failed_messages_per_second")
            .unwrap();
        let query = failed.per_pod_query(Scope::Namespace("sidecar"), &[], WINDOW);
        assert_eq!(
            query,
            r#"sum by (namespace, pod) (sum by (namespace, pod) (xroad_opmon_requests_in_window{namespace="sidecar",result="unsuccessful"}) / on (namespace, pod) max by (namespace, pod) (xroad_opmon_statistics_period_seconds{namespace="sidecar"}))"#
        );
        assert!(!query.contains("rate("));
    }

    #[test]
    fn discovery_lists_pods_and_namespaces_for_every_metric() {
        let catalog = Catalog::builtin();
        let entries: Vec<_> = catalog.custom_resources().collect();
        assert_eq!(entries.len(), 2 * catalog.metrics().len());
        assert!(entries.contains(&("pods", "container_network_receive_packets_per_minute", true)));
        assert!(entries.contains(&(
            "namespaces",
            "container_network_receive_bytes_per_second",
            false
        )));
        assert!(catalog.pod_metric("xroad_no_such_metric").is_none());
    }
}
