//! The inventory at the size users run: 10,000 pods (1,000 Deployments, 250 Nodes).
//!
//! - Snapshot load time (`--inventory`) of `kubectl get nodes,deploy,rs,pods -A` in JSON and YAML, median of 5,
//!   against the baseline of parsing the same JSON into a `serde_json::Value` (no projection), in this process.
//! - Resident memory of `serve`: watching a fake kube API that holds those objects, against the same fake
//!   holding none (the baseline, same script), and loading the JSON snapshot. `VmRSS` once ready (the first
//!   list of every stream is in) and `VmHWM`, the peak.
//!
//! Run with `cargo bench --bench inventory_scale` (needs Debian's `prometheus`; `scripts/install-deps.sh`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::fake_kube::{FakeKube, cluster};
use support::served::ServedAdapter;
use support::*;
use xroad_metrics_adapter::inventory;

const PODS: usize = 10_000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(mut run: impl FnMut()) -> Duration {
    median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed()
            })
            .collect(),
    )
}

/// A fake cluster holding the first `pods` pods of the generated cluster, with their Deployments and Nodes.
async fn fake_cluster(pods: usize) -> FakeKube {
    let (kube, _) = FakeKube::start().await;
    for d in 0..pods.div_ceil(cluster::PODS_PER_DEPLOYMENT) {
        kube.apply("deployments", cluster::deployment(d));
    }
    for i in 0..pods {
        kube.apply("pods", cluster::pod(i));
    }
    kube
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let list = cluster::snapshot(PODS);
    let json_path = dir.path().join("cluster.json");
    let yaml_path = dir.path().join("cluster.yaml");
    std::fs::write(&json_path, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    std::fs::write(&yaml_path, serde_saphyr::to_string(&list).unwrap()).unwrap();
    drop(list);
    let mb = |p: &std::path::Path| std::fs::metadata(p).unwrap().len() as f64 / 1e6;
    let json_text = std::fs::read_to_string(&json_path).unwrap();

    let baseline = time(|| {
        std::hint::black_box(serde_json::from_str::<serde_json::Value>(&json_text).unwrap());
    });
    let json = time(|| {
        assert_eq!(inventory::load_file(&json_path).unwrap().pods.len(), PODS);
    });
    let yaml = time(|| {
        assert_eq!(inventory::load_file(&yaml_path).unwrap().pods.len(), PODS);
    });
    println!("snapshot of {PODS} pods, median of 5 | time | ratio to baseline");
    println!("---|---|---");
    println!(
        "baseline: serde_json::Value of the JSON ({:.1} MB) | {baseline:.2?} | 1.00",
        mb(&json_path)
    );
    for (what, took) in [
        (format!("--inventory JSON ({:.1} MB)", mb(&json_path)), json),
        (format!("--inventory YAML ({:.1} MB)", mb(&yaml_path)), yaml),
    ] {
        println!(
            "{what} | {took:.2?} | {:.2}",
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    }

    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let policy = dir.path().join("config.yaml");
    // A policy in every namespace, so that Deployments are watched as well.
    let policies: String = (0..PODS / 1000)
        .map(|n| format!("- name: p{n}\n  target: {{namespace: ns-{n:02}, deployment: app-{:04}}}\n  load: {{metric: container_network_receive_packets_per_second, capacityPerPod: 10}}\n  signals:\n    healthCheck: {{enabled: false}}\n    probes: {{enabled: false}}\n", n * 100))
        .collect();
    std::fs::write(&policy, format!("scaleOnFailure:\n{policies}")).unwrap();
    println!("\nserve | ready after | VmRSS MiB | VmHWM MiB");
    println!("---|---|---|---");
    for pods in [0, PODS] {
        let kube = fake_cluster(pods).await;
        let kubeconfig = kube.kubeconfig(dir.path());
        let start = Instant::now();
        let adapter = ServedAdapter::start(&[
            "--prometheus-url",
            &prometheus.url,
            "--config",
            policy.to_str().unwrap(),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ])
        .await;
        adapter.wait_ready(Duration::from_secs(120)).await;
        let took = start.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, hwm) = adapter.memory();
        println!("watching {pods} pods and their Deployments | {took:.2?} | {rss:.1} | {hwm:.1}");
    }
    let start = Instant::now();
    let adapter = ServedAdapter::start(&[
        "--prometheus-url",
        &prometheus.url,
        "--inventory",
        json_path.to_str().unwrap(),
    ])
    .await;
    adapter.wait_ready(Duration::from_secs(120)).await;
    let took = start.elapsed();
    let (rss, hwm) = adapter.memory();
    println!("--inventory JSON snapshot of {PODS} pods | {took:.2?} | {rss:.1} | {hwm:.1}");
}
