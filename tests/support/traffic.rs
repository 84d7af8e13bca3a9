//! The named X-Road Sidecar traffic data set as OpenMetrics with exact counters: shared by the integration
//! tests and the quick start (`examples/quickstart_data.rs`), so both show the same numbers.
#![allow(dead_code, unreachable_pub)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Pods of `tests/fixtures/inventory-sidecar.yaml`.
pub const NAMESPACE: &str = "sidecar";
pub const SECONDARY_SELECTOR: &str = "run=security-server-sidecar-secondary";
pub const PRIMARY: &str = "security-server-sidecar-primary-0";
pub const SECONDARY_A: &str = "security-server-sidecar-secondary-7d9f8-abcde";
pub const SECONDARY_B: &str = "security-server-sidecar-secondary-7d9f8-fghij";
pub const SECONDARY_C: &str = "security-server-sidecar-secondary-7d9f8-klmno";
/// A pod that was deleted: Prometheus still has its series, the inventory does not.
pub const DELETED: &str = "security-server-sidecar-secondary-7d9f8-gone1";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One counter series growing at exactly `per_second` from an hour ago to half an hour ahead, so that
/// `rate()` at "now" is `per_second` (up to float noise) for any window.
#[derive(Debug, Clone)]
pub struct Counter {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub per_second: f64,
}

impl Counter {
    pub fn new(name: &'static str, labels: &[(&'static str, &str)], per_second: f64) -> Self {
        Self {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            per_second,
        }
    }
}

/// A pod-network counter in cAdvisor's containerd layout (`container=""`, one series per interface).
pub fn containerd(name: &'static str, pod: &str, interface: &str, per_second: f64) -> Counter {
    let id = format!("/kubepods/burstable/pod-{pod}/sandbox");
    Counter::new(
        name,
        &[
            ("namespace", NAMESPACE),
            ("pod", pod),
            ("container", ""),
            ("interface", interface),
            ("id", &id),
            ("image", "registry.k8s.io/pause:3.9"),
        ],
        per_second,
    )
}

/// The same in the dockershim layout (`container="POD"`).
pub fn dockershim(name: &'static str, pod: &str, interface: &str, per_second: f64) -> Counter {
    let id = format!("/kubepods/burstable/pod-{pod}/POD");
    Counter::new(
        name,
        &[
            ("namespace", NAMESPACE),
            ("pod", pod),
            ("container", "POD"),
            ("interface", interface),
            ("id", &id),
        ],
        per_second,
    )
}

pub const RX_PACKETS: &str = "container_network_receive_packets_total";
pub const TX_PACKETS: &str = "container_network_transmit_packets_total";
pub const RX_BYTES: &str = "container_network_receive_bytes_total";
pub const TX_BYTES: &str = "container_network_transmit_bytes_total";

/// The named data set: every layout and pitfall of cAdvisor's container network metrics
///
/// | pod | layout | receive packets/s |
/// |---|---|---|
/// | secondary A | containerd sandbox, repeated by the app container | 12.5 |
/// | secondary B | dockershim `container="POD"` | 17.5 |
/// | secondary C | containerd, two interfaces (eth0 15 + eth1 5) | 20 |
/// | primary | containerd | 3 |
/// | deleted pod | containerd, not in the inventory | 99 |
/// | node (`id="/"`) | host interfaces | 1000 |
pub fn sidecar_traffic() -> Vec<Counter> {
    vec![
        containerd(RX_PACKETS, SECONDARY_A, "eth0", 12.5),
        Counter::new(
            RX_PACKETS,
            &[
                ("namespace", NAMESPACE),
                ("pod", SECONDARY_A),
                ("container", "security-server-sidecar"),
                ("interface", "eth0"),
                ("id", "/kubepods/burstable/pod-a/app"),
            ],
            12.5,
        ),
        dockershim(RX_PACKETS, SECONDARY_B, "eth0", 17.5),
        containerd(RX_PACKETS, SECONDARY_C, "eth0", 15.0),
        containerd(RX_PACKETS, SECONDARY_C, "eth1", 5.0),
        containerd(RX_PACKETS, PRIMARY, "eth0", 3.0),
        containerd(RX_PACKETS, DELETED, "eth0", 99.0),
        Counter::new(RX_PACKETS, &[("id", "/"), ("interface", "ens5")], 1000.0),
        containerd(TX_PACKETS, SECONDARY_A, "eth0", 7.25),
        dockershim(TX_PACKETS, SECONDARY_B, "eth0", 8.5),
        containerd(RX_BYTES, SECONDARY_A, "eth0", 18750.0),
        containerd(TX_BYTES, SECONDARY_A, "eth0", 9062.5),
    ]
}

/// Renders counters as OpenMetrics, one sample every 15 s from an hour ago to 30 minutes ahead.
pub fn openmetrics(counters: &[Counter]) -> String {
    let now = unix_now();
    let start = (now - 3600) / 15 * 15;
    let mut out = String::new();
    let mut names: Vec<_> = counters.iter().map(|c| c.name).collect();
    names.dedup();
    names.sort();
    names.dedup();
    for name in names {
        let family = name.trim_end_matches("_total");
        out.push_str(&format!("# TYPE {family} counter\n"));
        for counter in counters.iter().filter(|c| c.name == name) {
            let labels: Vec<String> = counter
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            for t in (start..now + 1800).step_by(15) {
                let value = (t - start) as f64 * counter.per_second;
                out.push_str(&format!("{name}{{{}}} {value} {t}\n", labels.join(",")));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The custom-metrics API paths of each version.
pub const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
pub const V1: &str = "/apis/custom.metrics.k8s.io/v1beta1";

/// A wildcard pods request in `sidecar` with a pod label selector.
pub fn wildcard(version: &str, metric: &str, selector: &str) -> String {
    let selector: String = form_urlencoded::byte_serialize(selector.as_bytes()).collect();
    format!("{version}/namespaces/sidecar/pods/%2A/{metric}?labelSelector={selector}")
}

/// What the adapter serves for `secondaries_rx_packets()`: the table of `sidecar_traffic()`, per pod.
pub const SECONDARIES_RX_PACKETS: [(&str, &str); 3] = [
    (SECONDARY_A, "12500m"),
    (SECONDARY_B, "17500m"),
    (SECONDARY_C, "20"),
];

/// What the Sidecar guide's Prometheus Adapter rule gives the Secondary pods (`…_per_minute`): it sums every
/// series of a pod, so A's app-container copy counts twice.
pub const SECONDARIES_LEGACY_PER_MINUTE: [(&str, &str); 3] = [
    (SECONDARY_A, "25"),
    (SECONDARY_B, "17500m"),
    (SECONDARY_C, "20"),
];

/// The same request under the Sidecar guide's legacy `…_per_minute` name.
pub fn secondaries_legacy_per_minute() -> String {
    wildcard(
        V2,
        "container_network_receive_packets_per_minute",
        SECONDARY_SELECTOR,
    )
}

/// The HPA's request for the Secondary pods' received packets per second (v1beta2).
pub fn secondaries_rx_packets() -> String {
    wildcard(
        V2,
        "container_network_receive_packets_per_second",
        SECONDARY_SELECTOR,
    )
}
