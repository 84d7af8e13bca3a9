//! The Grafana dashboards in `dashboards/`: they follow the conventions of
//! Grafana's dashboard JSON model, and every panel query, with the template variables
//! substituted, returns at least one series from a real Prometheus.
//!
//! The data set is what a kube-prometheus-stack Prometheus would hold:
//! - cAdvisor's network counters: the quick start's Sidecar traffic;
//! - kube-state-metrics series (names from kube-state-metrics' documentation), written here;
//! - the adapter's own `/metrics`, captured from a real adapter at simulated 15-second scrapes. The adapter
//!   serves HPA requests behind delegated access (the fake kube API of `support/delegated.rs`), runs its
//!   op-monitor collector against the fake client proxy of `support/opmonitor.rs`, loses its metrics backend
//!   two thirds of the way through, and holds a scale-on-failure decision in its gauges. Target labels are
//!   added as a ServiceMonitor scrape with `honorLabels` would add them.
//!
//! Every metric a panel names is produced by the adapter (its captured exposition) or is one of the upstream
//! series listed in the contract; nothing else is in the data set.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::*;
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::telemetry::{PodStateLabels, PolicyLabels};
use xroad_metrics_adapter::xroad::collector::Collector;

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
const AUTOSCALING: &str = "xroad-autoscaling.json";
const ADAPTER: &str = "xroad-metrics-adapter.json";
const DEPLOYMENT: &str = "security-server-sidecar-secondary";
const ADAPTER_NAMESPACE: &str = "xroad-metrics";
const ADAPTER_POD: &str = "xroad-metrics-adapter-6f7c9d8b5-x2x4q";
const HPA_USER: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";

/// Upstream series the dashboards may use.
const UPSTREAM: &[&str] = &[
    "container_network_receive_packets_total",
    "container_network_transmit_packets_total",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "kube_pod_info",
    "kube_deployment_status_replicas_available",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_min_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_horizontalpodautoscaler_status_condition",
];

fn dashboard(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DASHBOARDS}/{name}")).unwrap()).unwrap()
}

/// Every panel that shows data (rows excluded, nested panels included).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{}: no variable {name}", dashboard["title"]))
}

fn prometheus_datasource() -> Value {
    serde_json::json!({"type": "prometheus", "uid": "${datasource}"})
}

#[test]
fn dashboards_follow_the_grafana_conventions() {
    for (name, variables) in [
        (AUTOSCALING, &["namespace", "deployment", "pod", "hpa"][..]),
        (ADAPTER, &["namespace", "pod"][..]),
    ] {
        let d = dashboard(name);
        assert!(d["schemaVersion"].as_u64().unwrap() >= 39, "{name}");
        assert_eq!(d["editable"], false, "{name}: provisioned read-only");
        assert!(!d["uid"].as_str().unwrap().is_empty());
        let datasource = variable(&d, "datasource");
        assert_eq!(
            (
                &datasource["type"],
                &datasource["label"],
                &datasource["query"]
            ),
            (
                &Value::from("datasource"),
                &Value::from("Data source"),
                &Value::from("prometheus")
            )
        );
        for name in variables {
            let v = variable(&d, name);
            assert_eq!(v["datasource"], prometheus_datasource());
            assert_eq!(v["refresh"], 2, "{name}: reloads on time change");
        }
        let mut ids = BTreeSet::new();
        for panel in panels(&d) {
            let title = panel["title"].as_str().unwrap();
            assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: id");
            assert!(
                !panel["description"].as_str().unwrap_or("").is_empty(),
                "{title}: description"
            );
            assert_eq!(panel["datasource"], prometheus_datasource(), "{title}");
            assert!(
                !panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty(),
                "{title}: unit"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{title}: targets");
            for target in targets {
                assert_eq!(target["datasource"], prometheus_datasource(), "{title}");
                let expr = target["expr"].as_str().unwrap();
                for window in range_windows(expr) {
                    assert_eq!(
                        window, "$__rate_interval",
                        "{title}: windows use $__rate_interval: {expr}"
                    );
                }
                for counter in metric_names(expr).iter().filter(|m| m.ends_with("_total")) {
                    let at = expr.find(counter.as_str()).unwrap();
                    assert!(
                        expr[..at].ends_with("rate(") || expr[..at].ends_with("increase("),
                        "{title}: counter {counter} outside rate(): {expr}"
                    );
                }
            }
        }
    }
}

/// The range-selector windows of an expression: `[…]` right after a selector's `}` or a metric name (a `[`
/// inside a regex string follows a quote).
fn range_windows(expr: &str) -> Vec<&str> {
    expr.match_indices('[')
        .filter(|(i, _)| {
            expr[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c == '}' || c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(i, _)| &expr[i + 1..i + expr[i..].find(']').unwrap()])
        .collect()
}

/// Metric names in a PromQL expression: identifiers directly followed by `{`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    for (i, _) in expr.match_indices('{') {
        let start = expr[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        if start < i && !bytes[start].is_ascii_digit() {
            names.insert(expr[start..i].to_owned());
        }
    }
    names
}

// ------------------------------------------------------------------------------------------------------
// The data set.

/// kube-state-metrics for the Sidecar: pods, the Secondary Deployment, and its HPA, which scales from 3 to 5
/// ten minutes before the end. One sample every 15 s for the last hour.
fn kube_state_metrics(end: i64) -> String {
    let times: Vec<i64> = (end - 3600..=end).step_by(15).collect();
    let ksm = |labels: &str| format!("job=\"kube-state-metrics\",namespace=\"sidecar\",{labels}");
    let constant = |value: i64| vec![value; times.len()];
    let from = |at: i64, before: i64, after: i64| -> Vec<i64> {
        times
            .iter()
            .map(|&t| if t >= at { after } else { before })
            .collect()
    };
    let hpa = ksm(&format!("horizontalpodautoscaler=\"{DEPLOYMENT}\""));
    let condition =
        |name: &str, status: &str| format!("{hpa},condition=\"{name}\",status=\"{status}\"");
    let scaled = end - 600;
    let families = [
        (
            "kube_pod_info",
            [PRIMARY, SECONDARY_A, SECONDARY_B, SECONDARY_C]
                .map(|pod| (ksm(&format!("pod=\"{pod}\"")), constant(1)))
                .to_vec(),
        ),
        (
            "kube_deployment_status_replicas_available",
            vec![(ksm(&format!("deployment=\"{DEPLOYMENT}\"")), constant(3))],
        ),
        (
            "kube_horizontalpodautoscaler_status_current_replicas",
            vec![(hpa.clone(), from(scaled + 15, 3, 5))],
        ),
        (
            "kube_horizontalpodautoscaler_status_desired_replicas",
            vec![(hpa.clone(), from(scaled, 3, 5))],
        ),
        (
            "kube_horizontalpodautoscaler_spec_min_replicas",
            vec![(hpa.clone(), constant(2))],
        ),
        (
            "kube_horizontalpodautoscaler_spec_max_replicas",
            vec![(hpa.clone(), constant(20))],
        ),
        (
            "kube_horizontalpodautoscaler_status_condition",
            vec![
                (condition("AbleToScale", "true"), constant(1)),
                (condition("ScalingActive", "true"), constant(1)),
                (condition("ScalingLimited", "false"), constant(1)),
            ],
        ),
    ];
    let mut out = String::new();
    for (family, series) in families {
        out.push_str(&format!("# TYPE {family} gauge\n"));
        for (labels, values) in series {
            for (t, value) in times.iter().zip(values) {
                out.push_str(&format!("{family}{{{labels}}} {value} {t}\n"));
            }
        }
    }
    out
}

/// Parses `name{k="v",…} value` (or `name value`) into name, labels and value.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, String) {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_owned(), BTreeMap::new(), value.to_owned());
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest.strip_suffix('}').unwrap();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        labels.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    (name.to_owned(), labels, value.to_owned())
}

/// The adapter's expositions, each stamped with its scrape time, as one OpenMetrics history: target labels
/// added where the series lacks them (`honorLabels`), each series' samples together and in time order.
struct History {
    families: BTreeMap<String, String>,
    samples: BTreeMap<(String, String), Vec<(i64, String)>>,
}

impl History {
    fn new() -> Self {
        Self {
            families: BTreeMap::new(),
            samples: BTreeMap::new(),
        }
    }

    fn scrape(&mut self, t: i64, exposition: &str) {
        let mut family = String::new();
        for line in exposition.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
                self.families.insert(family.clone(), line.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, mut labels, value) = parse_sample(line);
            for (key, target) in [
                ("namespace", ADAPTER_NAMESPACE),
                ("pod", ADAPTER_POD),
                ("job", "xroad-metrics-adapter"),
            ] {
                labels
                    .entry(key.to_owned())
                    .or_insert_with(|| target.to_owned());
            }
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let series = format!("{name}{{{}}}", labels.join(","));
            self.samples
                .entry((family.clone(), series))
                .or_default()
                .push((t, value));
        }
    }

    fn families(&self) -> BTreeSet<String> {
        self.families.keys().cloned().collect()
    }

    fn openmetrics(&self) -> String {
        let mut out = String::new();
        let mut current = None;
        for ((family, series), points) in &self.samples {
            if current != Some(family) {
                out.push_str(&self.families[family]);
                out.push('\n');
                current = Some(family);
            }
            for (t, value) in points {
                out.push_str(&format!("{series} {value} {t}\n"));
            }
        }
        out
    }
}

/// Runs the adapter through an hour of scrapes ending at `end` (see the module documentation).
async fn adapter_history(end: i64) -> History {
    let backend = Prometheus::start(&sidecar_traffic()).await;
    let (_pki, kube, guard) = support::delegated::delegated_guard().await;
    kube.accept_token("hpa-token", serde_json::json!({"username": HPA_USER}));
    kube.accept_token("dev-token", serde_json::json!({"username": "dev"}));
    kube.allow(
        HPA_USER,
        "pods/container_network_receive_packets_per_second",
    );
    let config = Config {
        refresh_interval: Duration::from_millis(50),
        max_staleness: Duration::from_secs(1),
        ..Config::default()
    };
    let state = adapter_with(&backend.url, config, std::path::Path::new(INVENTORY), guard).await;
    let opmonitor = opmonitor::FakeOpMonitor::start(opmonitor::steady_traffic()).await;
    let collector = Collector::new(opmonitor::config(&opmonitor.url), &state.metrics).unwrap();
    let policy = PolicyLabels {
        namespace: NAMESPACE.into(),
        deployment: DEPLOYMENT.into(),
        policy: "secondaries".into(),
    };
    let mut backend = Some(backend);
    let mut history = History::new();
    const STEPS: i64 = 60;
    for step in 0..STEPS {
        let t = end - (STEPS - 1 - step) * 15;
        if step == 35 {
            drop(backend.take()); // The metrics backend goes away: stale answers, then 500s.
        }
        if step == 20 {
            opmonitor.push(opmonitor::Reply::BadGateway);
        }
        opmonitor.set_now(t);
        let _ = collector.poll(&state.inventory, t).await;
        let hpa = [("authorization", "Bearer hpa-token")];
        for _ in 0..2 {
            get_with(&state, &secondaries_rx_packets(), &hpa).await;
        }
        let (code, _) = get_with(
            &state,
            &secondaries_rx_packets(),
            &[("authorization", "Bearer dev-token")],
        )
        .await;
        assert_eq!(code, 403);
        let (code, _) = get(&state, V2).await;
        assert_eq!(code, 401);
        get(&state, "/readyz").await;

        let failing = step >= 30;
        state
            .metrics
            .scale_on_failure_replicas
            .get_or_create(&policy)
            .set(if failing { 5 } else { 3 });
        state
            .metrics
            .unhealthy_pods
            .get_or_create(&policy)
            .set(if failing { 2 } else { 0 });
        for (pod, fails) in [
            (SECONDARY_A, false),
            (SECONDARY_B, failing),
            (SECONDARY_C, failing),
        ] {
            for state_name in ["healthy", "failing"] {
                let current = if fails { "failing" } else { "healthy" };
                state
                    .metrics
                    .pod_health
                    .get_or_create(&PodStateLabels {
                        namespace: NAMESPACE.into(),
                        pod: pod.into(),
                        state: state_name,
                    })
                    .set(i64::from(state_name == current));
            }
        }
        // Past the 50 ms refresh interval: each step starts with a miss, then hits.
        tokio::time::sleep(Duration::from_millis(60)).await;
        history.scrape(t, &state.metrics.encode());
    }
    history
}

/// Substitutes the template variables as Grafana would with the given selections.
fn substitute(expr: &str, values: &[(&str, &str)]) -> String {
    let mut out = expr.replace("$__rate_interval", "1m");
    // Longest names first, so `$pod` cannot clobber a longer variable's prefix.
    let mut values = values.to_vec();
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in values {
        out = out.replace(&format!("${name}"), value);
    }
    out
}

async fn instant_query(prometheus: &Prometheus, promql: &str, time: i64) -> Vec<Value> {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/query", prometheus.url))
        .form(&[("query", promql), ("time", &time.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "success", "{promql}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_query_returns_data_from_a_real_prometheus() {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 15
        * 15;
    let history = adapter_history(end).await;
    let traffic = openmetrics(&sidecar_traffic());
    let data = format!(
        "{}{}{}# EOF\n",
        traffic.trim_end().trim_end_matches("# EOF"),
        kube_state_metrics(end),
        history.openmetrics()
    );
    let prometheus = Prometheus::start_openmetrics(&data).await;

    let adapter_families = history.families();
    let selections: [(&str, Vec<(&str, &str)>); 2] = [
        (
            AUTOSCALING,
            vec![
                ("namespace", NAMESPACE),
                ("deployment", DEPLOYMENT),
                ("pod", "$deployment-.*"),
                ("hpa", DEPLOYMENT),
            ],
        ),
        (
            ADAPTER,
            vec![("namespace", ADAPTER_NAMESPACE), ("pod", ".+")],
        ),
    ];
    let mut failures = Vec::new();
    let mut proven = 0;
    for (name, selection) in &selections {
        let d = dashboard(name);
        // "All" of the pod variable is its allValue, itself made of other variables.
        let resolve = |text: &str| substitute(&substitute(text, selection), selection);
        for v in d["templating"]["list"].as_array().unwrap() {
            let Some(query) = v["query"]["query"].as_str() else {
                continue;
            };
            let (expr, label) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|q| q.rsplit_once(", "))
                .unwrap();
            let found = instant_query(&prometheus, &resolve(expr), end).await;
            if !found.iter().any(|s| s["metric"][label].is_string()) {
                failures.push(format!(
                    "{name}: variable {}: no {label} in {expr}",
                    v["name"]
                ));
            }
        }
        for panel in panels(&d) {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for metric in metric_names(expr) {
                    let family = metric
                        .trim_end_matches("_total")
                        .trim_end_matches("_bucket");
                    if !UPSTREAM.contains(&metric.as_str()) && !adapter_families.contains(family) {
                        failures.push(format!(
                            "{name}: {}: {metric} is produced by nothing in the project",
                            panel["title"]
                        ));
                    }
                }
                let promql = resolve(expr);
                if instant_query(&prometheus, &promql, end).await.is_empty() {
                    failures.push(format!(
                        "{name}: {}: no series for {promql}",
                        panel["title"]
                    ));
                } else {
                    proven += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{proven} panel queries returned data");
    assert!(proven >= 30, "{proven} queries");
}
