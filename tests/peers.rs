//! Side by side with the peers the adapter replaces, behind one real aggregator (`support::peers`):
//! - `kubectl top` through our `metrics.k8s.io` prints what metrics-server v0.8.0 printed from the same
//!   kubelet, before the APIService was switched to us;
//! - the Prometheus Adapter v0.12.0 and we, reading the same rules and the same Prometheus, answer the same
//!   custom metrics requests with the same values.
//!
//! The test prints both sides, as docs/control-plane.md reports them.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::kubelet_metrics::{NODE_USAGE, pod_usage};
use support::peers::{DEPLOYMENT, NS, PODS, RULE_METRIC, SideBySide};
use support::*;
use xroad_metrics_adapter::quantity;

fn number(value: &Value) -> f64 {
    quantity::parse(
        value
            .as_str()
            .unwrap_or_else(|| panic!("a quantity: {value}")),
    )
    .unwrap()
}

/// `kubectl top` output, lines sorted (the order of a list is not part of the API), once every expected row
/// is there; otherwise what kubectl printed.
fn top(peers: &SideBySide, args: &[&str], rows: usize) -> Result<Vec<String>, String> {
    let output = peers.plane.kubectl(&peers.plane.admin, args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    if output.status.success() && lines.len() == rows + 1 {
        Ok(lines)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn raw(peers: &SideBySide, path: &str) -> Value {
    serde_json::from_str(&peers.plane.admin(&["get", "--raw", path])).unwrap()
}

/// CPU (cores) and memory (bytes) of each pod's containers, summed, from a `PodMetricsList`.
fn pod_usages(list: &Value) -> BTreeMap<String, (f64, f64)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| {
            let containers = pod["containers"].as_array().unwrap();
            let sum = |resource: &str| {
                containers
                    .iter()
                    .map(|c| number(&c["usage"][resource]))
                    .sum()
            };
            (
                pod["metadata"]["name"].as_str().unwrap().to_owned(),
                (sum("cpu"), sum("memory")),
            )
        })
        .collect()
}

/// Each described object's value, from a `MetricValueList` of v1beta1 or v1beta2.
fn metric_values(list: &Value) -> BTreeMap<String, f64> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["describedObject"]["name"].as_str().unwrap().to_owned(),
                number(&item["value"]),
            )
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-9)
}

fn sorted(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn side_by_side_metrics_server_and_the_prometheus_adapter_give_the_answers_we_give() {
    let mut peers = SideBySide::start().await;
    let top_pods = ["top", "pod", "-n", NS];
    let top_nodes = ["top", "node"];
    let pods_path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods");

    // metrics-server first, as the cluster had it: two scrapes of the kubelet, 10 s apart, before a rate.
    let peers_ref = &peers;
    eventually(
        "kubectl top pod from metrics-server",
        Duration::from_secs(120),
        || async { top(peers_ref, &top_pods, PODS).is_ok() },
    )
    .await;
    let theirs_pods = top(&peers, &top_pods, PODS).unwrap();
    let theirs_nodes = top(&peers, &top_nodes, 1).expect("kubectl top node from metrics-server");
    let theirs = pod_usages(&raw(&peers, &pods_path));
    // What the kubelet reported, to the millicore and the byte (metrics-server truncates to nanocores).
    let expected: Vec<(f64, f64)> = (0..PODS)
        .map(|k| (pod_usage(k).0, pod_usage(k).1))
        .collect();
    assert_eq!(theirs.len(), PODS, "{theirs:?}");
    for ((cpu, memory), (want_cpu, want_memory)) in sorted(theirs.values().map(|u| u.0))
        .into_iter()
        .zip(sorted(theirs.values().map(|u| u.1)))
        .zip(expected.iter().copied())
    {
        assert!(
            close(cpu, want_cpu),
            "metrics-server: {cpu} cores, the kubelet {want_cpu}"
        );
        assert!(
            (memory - want_memory).abs() < 1.0,
            "metrics-server: {memory} bytes, the kubelet {want_memory}"
        );
    }

    // Prometheus's rate() under-reads until a whole window of samples exists (it extrapolates only half a
    // scrape interval past the first sample): wait for it, as metrics-server waited for its second scrape.
    let full_window = "sum(rate(container_cpu_usage_seconds_total[1m]))";
    let total_cpu: f64 = expected.iter().map(|u| u.0).sum();
    let prometheus = &peers.prometheus;
    eventually(
        "Prometheus holds a whole rate window",
        Duration::from_secs(120),
        || async {
            let answer = prometheus.query(full_window).await;
            answer["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| close(v, total_cpu))
        },
    )
    .await;

    // Switched to us: the same tables, the same values.
    peers.switch_resource_metrics().await;
    let switched = std::time::Instant::now();
    loop {
        let ours = top(&peers, &top_pods, PODS);
        if ours.as_ref() == Ok(&theirs_pods) {
            break;
        }
        assert!(
            switched.elapsed() < Duration::from_secs(30),
            "kubectl top pod, from us:\n{ours:#?}\nfrom metrics-server:\n{theirs_pods:#?}\nour log:\n{}",
            peers.log("xroad-metrics-adapter"),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let switched = switched.elapsed();
    assert_eq!(
        top(&peers, &top_nodes, 1).as_ref(),
        Ok(&theirs_nodes),
        "kubectl top node from us and from metrics-server"
    );
    let ours = pod_usages(&raw(&peers, &pods_path));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (pod, (cpu, memory)) in &ours {
        let (their_cpu, their_memory) = theirs[pod];
        assert!(
            close(*cpu, their_cpu),
            "{pod}: {cpu} cores from us, {their_cpu} from metrics-server"
        );
        assert!(
            (memory - their_memory).abs() < 1.0,
            "{pod}: {memory} bytes from us, {their_memory}"
        );
    }
    let node = raw(&peers, "/apis/metrics.k8s.io/v1beta1/nodes/node-1");
    assert!(close(number(&node["usage"]["cpu"]), NODE_USAGE.0), "{node}");

    // The Prometheus Adapter (v1beta1) and we (v1beta2): the HPA's request, a named pod, the namespace.
    let selector = format!("labelSelector=run%3D{DEPLOYMENT}");
    let wildcard = |version: &str| {
        format!(
            "/apis/custom.metrics.k8s.io/{version}/namespaces/{NS}/pods/*/{RULE_METRIC}?{selector}"
        )
    };
    let peers_ref = &peers;
    eventually(
        "the Prometheus Adapter lists the rule's metric for every pod",
        Duration::from_secs(60),
        || async {
            let output = peers_ref.plane.kubectl(
                &peers_ref.plane.admin,
                &["get", "--raw", &wildcard("v1beta1")],
            );
            output.status.success()
                && metric_values(&serde_json::from_slice(&output.stdout).unwrap()).len() == PODS
        },
    )
    .await;
    let theirs = metric_values(&raw(&peers, &wildcard("v1beta1")));
    let ours = metric_values(&raw(&peers, &wildcard("v1beta2")));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (pod, value) in &ours {
        assert!(
            close(*value, theirs[pod]),
            "{pod}: {value} from us, {} from the Prometheus Adapter",
            theirs[pod]
        );
    }
    let packets = sorted((0..PODS).map(|k| pod_usage(k).2));
    for (value, want) in sorted(ours.values().copied()).iter().zip(&packets) {
        assert!(
            close(*value, *want),
            "{value} packets/s, the kubelet {want}"
        );
    }
    let pod = ours.keys().next().unwrap().clone();
    let named = |version: &str| {
        metric_values(&raw(
            &peers,
            &format!(
                "/apis/custom.metrics.k8s.io/{version}/namespaces/{NS}/pods/{pod}/{RULE_METRIC}"
            ),
        ))
    };
    assert!(close(named("v1beta1")[&pod], named("v1beta2")[&pod]));
    let namespace = |version: &str| {
        metric_values(&raw(
            &peers,
            &format!("/apis/custom.metrics.k8s.io/{version}/namespaces/{NS}/metrics/{RULE_METRIC}"),
        ))
    };
    let (theirs_ns, ours_ns) = (namespace("v1beta1"), namespace("v1beta2"));
    assert!(
        close(theirs_ns[NS], ours_ns[NS]),
        "{theirs_ns:?} {ours_ns:?}"
    );
    assert!(close(ours_ns[NS], packets.iter().sum()), "{ours_ns:?}");
    // Discovery: every resource the Prometheus Adapter lists for its rules, we list alike.
    let resources = |version: &str| -> Vec<Value> {
        raw(&peers, &format!("/apis/custom.metrics.k8s.io/{version}"))["resources"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (theirs_listed, ours_listed) = (resources("v1beta1"), resources("v1beta2"));
    assert!(!theirs_listed.is_empty());
    for resource in &theirs_listed {
        assert!(
            ours_listed.contains(resource),
            "the Prometheus Adapter lists {resource}, we list {ours_listed:?}"
        );
    }
    for version in ["v1beta1", "v1beta2"] {
        let missing = peers.plane.kubectl(
            &peers.plane.admin,
            &[
                "get",
                "--raw",
                &format!(
                    "/apis/custom.metrics.k8s.io/{version}/namespaces/{NS}/pods/*/no_such_metric"
                ),
            ],
        );
        assert!(
            String::from_utf8_lossy(&missing.stderr).contains("NotFound"),
            "{version}: {}",
            String::from_utf8_lossy(&missing.stderr)
        );
    }

    println!(
        "kubectl top pod, metrics-server:\n{}\n\nkubectl top pod, us ({switched:.1?} after the switch):\n{}\n\nkubectl top node (both):\n{}\n\n\
         {RULE_METRIC}, the Prometheus Adapter: {theirs:?}\n{RULE_METRIC}, us: {ours:?}",
        theirs_pods.join("\n"),
        top(&peers, &top_pods, PODS).unwrap().join("\n"),
        theirs_nodes.join("\n"),
    );
}
