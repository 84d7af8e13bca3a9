//! `--inventory` with a snapshot of a cluster of the size users run: 10,000 pods, as `kubectl get
//! nodes,deploy,rs,pods -A` prints them in JSON and in YAML.

mod support;

use std::time::Instant;

use support::fake_kube::cluster;
use xroad_metrics_adapter::inventory::{self, PodInventory};
use xroad_metrics_adapter::selector::LabelSelector;

const PODS: usize = 10_000;

fn check(snapshot: inventory::Snapshot) {
    assert_eq!(snapshot.pods.len(), PODS);
    assert_eq!(
        snapshot.deployments.len(),
        PODS / cluster::PODS_PER_DEPLOYMENT
    );
    assert_eq!(snapshot.nodes.len(), PODS / cluster::PODS_PER_NODE);
    let inventory = PodInventory::new();
    inventory.load(snapshot);
    let app: LabelSelector = "app=app-0123".parse().unwrap();
    let pods = inventory.select("ns-01", &app);
    assert_eq!(pods.len(), 10);
    assert_eq!(
        pods[0].deployment.as_deref(),
        Some("app-0123"),
        "attributed through the ReplicaSet"
    );
    assert_eq!(
        inventory.node_for("192.168.0.7:9100").as_deref(),
        Some("node-007")
    );
}

#[test]
fn a_10000_pod_snapshot_loads_from_json_and_from_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let list = cluster::snapshot(PODS);
    let json = dir.path().join("cluster.json");
    std::fs::write(&json, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    let yaml = dir.path().join("cluster.yaml");
    std::fs::write(&yaml, serde_saphyr::to_string(&list).unwrap()).unwrap();
    drop(list);

    for file in [&json, &yaml] {
        let start = Instant::now();
        check(inventory::load_file(file).unwrap());
        println!(
            "{}: {} MB loaded in {:?} (unoptimised build)",
            file.display(),
            std::fs::metadata(file).unwrap().len() / 1_000_000,
            start.elapsed()
        );
    }
}
