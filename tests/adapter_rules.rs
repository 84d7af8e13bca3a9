//! Prometheus Adapter rules (`--adapter-config`) against a real Prometheus loaded with the Sidecar traffic:
//! discovery through `/api/v1/series`, the rules' own queries, and the values a Prometheus Adapter with the
//! same rules would serve (`../shared/reference/prometheus-adapter-compat.md`).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use support::*;
use xroad_metrics_adapter::adapter_rules::AdapterRules;
use xroad_metrics_adapter::compat::discovery::SeriesKeys;
use xroad_metrics_adapter::compat::resources::GroupResource;
use xroad_metrics_adapter::compat::rules::AdapterConfig;
use xroad_metrics_adapter::source::{MetricSource, Sample, SourceError};

/// The Helm chart's values as the seed runs them: the default rules plus the Sidecar guide's rule, and an
/// external rule per interface.
const SIDECAR_VALUES: &str = r#"
prometheus: {url: http://prometheus.default.svc, port: 9090}
rules:
  default: true
  custom:
  - seriesQuery: 'container_network_receive_packets_total{namespace="sidecar"}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    name: {matches: "^(.*)_total", as: "${1}_per_minute"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
  external:
  - seriesQuery: 'container_network_receive_packets_total{namespace!="",pod!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    name: {matches: "^container_(.*)_total$", as: "${1}_by_interface"}
    metricsQuery: 'sum(max by (namespace, pod, interface) (rate(<<.Series>>{<<.LabelMatchers>>}[2m]))) by (interface)'
"#;

async fn adapter(
    prometheus: &Prometheus,
) -> (
    Arc<xroad_metrics_adapter::server::AppState>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, SIDECAR_VALUES).unwrap();
    (with_adapter_rules(&prometheus.url, &file).await, dir)
}

fn discovered(list: &serde_json::Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_guides_rule_serves_its_name_with_the_prometheus_adapters_values() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (state, _dir) = adapter(&prometheus).await;
    let (code, list) = get(&state, V2).await;
    assert_eq!(code, 200);
    let names = discovered(&list);
    for expected in [
        "pods/container_network_receive_packets_per_minute",
        "namespaces/container_network_receive_packets_per_minute",
        "pods/network_receive_packets",
        "pods/network_transmit_bytes",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let (code, list) = get(
        &state,
        &wildcard(
            V2,
            "container_network_receive_packets_per_minute",
            SECONDARY_SELECTOR,
        ),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    // The rule sums every series of a pod, so A's app-container copy counts twice: what the Prometheus
    // Adapter serves with this rule (and the built-in legacy metric reproduces).
    assert_eq!(values(&list), pairs(&SECONDARIES_LEGACY_PER_MINUTE));
    // The same query sent straight to Prometheus, as the Prometheus Adapter renders it.
    let direct = prometheus
        .query(&format!(
            "sum(rate(container_network_receive_packets_total{{namespace=\"sidecar\",pod=~\"{SECONDARY_A}|{SECONDARY_B}|{SECONDARY_C}\"}}[1m])) by (pod)"
        ))
        .await;
    let direct: BTreeMap<String, f64> = direct["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["pod"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(direct.len(), 3);
    assert!((direct[SECONDARY_A] - 25.0).abs() < 1e-6 && (direct[SECONDARY_B] - 17.5).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_default_rules_serve_container_series_as_the_prometheus_adapter_does() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (state, _dir) = adapter(&prometheus).await;
    let (code, list) = get(
        &state,
        &wildcard(V2, "network_receive_packets", SECONDARY_SELECTOR),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    // `container!="POD"` drops the dockershim layout (B) entirely, and A's two containers both count: the
    // chart defaults' known flaws, reproduced, which the built-in per_second metrics do not have.
    assert_eq!(
        values(&list),
        pairs(&[(SECONDARY_A, "25"), (SECONDARY_C, "20")])
    );
    assert_eq!(list["items"][0]["describedObject"]["apiVersion"], "v1");
    let (code, one) = get(
        &state,
        &format!("{V2}/namespaces/sidecar/pods/{SECONDARY_C}/network_receive_packets"),
    )
    .await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(values(&one), pairs(&[(SECONDARY_C, "20")]));
    let (code, status) = get(
        &state,
        &format!("{V2}/namespaces/sidecar/pods/{SECONDARY_B}/network_receive_packets"),
    )
    .await;
    assert_eq!(code, 404, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_rule_serves_its_series_with_the_selector_applied() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (state, _dir) = adapter(&prometheus).await;
    let (_, list) = get(&state, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert!(discovered(&list).contains(&"network_receive_packets_by_interface".to_owned()));
    let (code, list) = get(
        &state,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/network_receive_packets_by_interface?labelSelector=interface%3Deth1",
    )
    .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]["metricLabels"],
        serde_json::json!({"interface": "eth1"})
    );
    assert_eq!(list["items"][0]["value"], "5");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_relist_keeps_the_registry() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (state, _dir) = adapter(&prometheus).await;
    let rules = state.rules.clone().unwrap();
    let before = rules.registry();
    assert!(!before.is_empty());
    drop(prometheus);
    let error = rules.relist().await.unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");
    assert_eq!(*rules.registry(), *before);
    let (_, list) = get(&state, V2).await;
    assert!(discovered(&list).contains(&"pods/network_receive_packets".to_owned()));
}

/// A backend whose series can change between relists.
#[derive(Default)]
struct ChangingSeries {
    series: Mutex<Vec<SeriesKeys>>,
}

impl MetricSource for ChangingSeries {
    fn instant_query<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, SourceError>> {
        async { Ok(Vec::new()) }.boxed()
    }

    fn series<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: i64,
    ) -> BoxFuture<'a, Result<Vec<SeriesKeys>, SourceError>> {
        async { Ok(self.series.lock().unwrap().clone()) }.boxed()
    }
}

#[tokio::test]
async fn a_new_series_is_served_after_the_next_relist() {
    let config = AdapterConfig::parse(
        "rules:\n- seriesQuery: '{__name__=~\"xroad_.*\"}'\n  resources: {template: <<.Resource>>}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
    )
    .unwrap();
    let backend = Arc::new(ChangingSeries::default());
    let rules = AdapterRules::new(config, backend.clone(), std::time::Duration::from_secs(60));
    rules.relist().await.unwrap();
    let pods = GroupResource {
        group: String::new(),
        resource: "pods".into(),
    };
    assert!(
        rules
            .registry()
            .custom(&pods, "xroad_queue_depth")
            .is_none()
    );
    backend.series.lock().unwrap().push(SeriesKeys {
        name: "xroad_queue_depth".into(),
        labels: vec!["namespace".into(), "pod".into()],
    });
    assert_eq!(rules.relist().await.unwrap(), 2, "pods and namespaces");
    assert!(
        rules
            .registry()
            .custom(&pods, "xroad_queue_depth")
            .is_some()
    );
}
