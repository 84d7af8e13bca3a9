//! The stand-in kubelet's metric endpoints, for the pods it runs: `/metrics/resource` (CPU and memory of
//! containers and of the node, read by metrics-server and by Prometheus) and `/metrics/cadvisor` (network
//! packets). A faithful fake written from the kubelet's published text format (the resource metrics endpoint
//! of KEP-727, cAdvisor's Prometheus collector): the same series names and labels, counters that grow at a
//! constant rate, and sample timestamps as the kubelet writes them, since metrics-server computes rates from
//! those timestamps.
//!
//! Each pod gets its own usage, by the order the kubelet first saw it, so values attributed to the wrong pod
//! show up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::control_plane::Kubelet;

/// The one container of every pod.
pub const CONTAINER: &str = "security-server";

/// What pod number `index` uses: CPU in cores, working-set memory in bytes, received packets per second.
/// Off the millicore and MiB boundaries, so rounding cannot tell two correct answers apart.
pub fn pod_usage(index: usize) -> (f64, f64, f64) {
    let k = index as f64;
    (
        0.1234 + 0.1 * k,
        (100.0 + 10.0 * k) * 1024.0 * 1024.0 + 12345.0,
        12.5 + 5.0 * k,
    )
}

/// The node's own usage: cores and bytes.
pub const NODE_USAGE: (f64, f64) = (1.5, 3.0 * 1024.0 * 1024.0 * 1024.0 + 4567.0);

/// Containers started an hour before the kubelet first reports them, so no scrape sees a fresh container.
const STARTED_BEFORE_MS: u64 = 3_600_000;

#[derive(Default)]
struct Seen {
    /// Pod name: (number, start of its container in ms since the epoch).
    pods: HashMap<String, (usize, u64)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Serves both endpoints on a loopback port for `namespace`'s running pods; the port.
pub async fn serve(kubelet: Arc<Kubelet>, namespace: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let node_started = now_ms() - STARTED_BEFORE_MS;
    let namespace = namespace.to_owned();
    // Each running pod with its number and start time, numbering new ones.
    let pods = move |kubelet: &Kubelet, seen: &Mutex<Seen>| {
        let running = kubelet.running.lock().unwrap().clone();
        let mut seen = seen.lock().unwrap();
        running
            .into_iter()
            .map(|pod| {
                let next = seen.pods.len();
                let (index, started) = *seen
                    .pods
                    .entry(pod.clone())
                    .or_insert((next, now_ms() - STARTED_BEFORE_MS));
                (pod, index, started)
            })
            .collect::<Vec<_>>()
    };
    let resource = {
        let (kubelet, seen, namespace) = (kubelet.clone(), seen.clone(), namespace.clone());
        move || {
            let now = now_ms();
            let seconds = |since: u64| (now - since) as f64 / 1000.0;
            let mut text = String::new();
            let mut family = |name: &str, kind: &str, lines: Vec<String>| {
                text.push_str(&format!("# TYPE {name} {kind}\n"));
                for line in lines {
                    text.push_str(&format!("{name}{line} {now}\n"));
                }
            };
            let running = pods(&kubelet, &seen);
            let labels = |pod: &str| {
                format!("{{container=\"{CONTAINER}\",namespace=\"{namespace}\",pod=\"{pod}\"}}")
            };
            family(
                "container_cpu_usage_seconds_total",
                "counter",
                running
                    .iter()
                    .map(|(pod, k, started)| {
                        format!("{} {}", labels(pod), pod_usage(*k).0 * seconds(*started))
                    })
                    .collect(),
            );
            family(
                "container_memory_working_set_bytes",
                "gauge",
                running
                    .iter()
                    .map(|(pod, k, _)| format!("{} {}", labels(pod), pod_usage(*k).1))
                    .collect(),
            );
            family(
                "container_start_time_seconds",
                "gauge",
                running
                    .iter()
                    .map(|(pod, _, started)| {
                        format!("{} {}", labels(pod), *started as f64 / 1000.0)
                    })
                    .collect(),
            );
            family(
                "node_cpu_usage_seconds_total",
                "counter",
                vec![format!(" {}", NODE_USAGE.0 * seconds(node_started))],
            );
            family(
                "node_memory_working_set_bytes",
                "gauge",
                vec![format!(" {}", NODE_USAGE.1)],
            );
            text.push_str("# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n");
            text
        }
    };
    let cadvisor = move || {
        let now = now_ms();
        let mut text = String::from("# TYPE container_network_receive_packets_total counter\n");
        for (pod, k, started) in pods(&kubelet, &seen) {
            let value = pod_usage(k).2 * (now - started) as f64 / 1000.0;
            text.push_str(&format!(
                "container_network_receive_packets_total{{container=\"\",id=\"/kubepods/pod-{pod}\",image=\"\",interface=\"eth0\",name=\"\",namespace=\"{namespace}\",pod=\"{pod}\"}} {value} {now}\n"
            ));
        }
        text
    };
    let app = axum::Router::new()
        .route(
            "/metrics/resource",
            axum::routing::get(move || std::future::ready(resource())),
        )
        .route(
            "/metrics/cadvisor",
            axum::routing::get(move || std::future::ready(cadvisor())),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}
