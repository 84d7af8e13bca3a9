//! The adapter as it runs in a cluster: pods and Deployments from live list and watch, never from a file,
//! against the fake kube API of `support::fake_kube` (for the faults a real API server cannot be made to
//! produce on cue: compaction, injected 500s, slow lists), a real Prometheus and the real `kubectl`.
//!
//! Each test prints what it measured (seconds to converge, calls during a fault), as docs/inventory.md reports.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_kube::{FakeKube, objects};
use support::served::ServedAdapter;
use support::*;
use xroad_metrics_adapter::app::{Adapter, Settings};
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::server::AppState;
use xroad_metrics_adapter::server::guard::Guard;

const PODS_PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/container_network_receive_packets_per_second?labelSelector=run%3Dsecurity-server-sidecar-secondary";
const REPLICAS_PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/xroad_scale_on_failure_replicas";

/// The Sidecar's Secondary pods (A, B, C at 10.42.0.11–13) and their Deployment, in a new fake cluster.
async fn sidecar_cluster() -> FakeKube {
    let (kube, _) = FakeKube::start().await;
    for (name, ip) in [
        (SECONDARY_A, "10.42.0.11"),
        (SECONDARY_B, "10.42.0.12"),
        (SECONDARY_C, "10.42.0.13"),
    ] {
        kube.apply("pods", objects::secondary_pod(NAMESPACE, name, ip));
    }
    kube.apply("deployments", objects::secondary_deployment(NAMESPACE, 3));
    kube
}

/// The adapter built as `serve` builds it, watching `kube` in `namespaces` (all when empty).
async fn watching(
    prometheus: &str,
    kube: &FakeKube,
    namespaces: &[&str],
    config: Config,
) -> (std::sync::Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config;
    config.prometheus.url = Some(prometheus.parse().unwrap());
    let settings = Settings {
        kubeconfig: Some(kube.kubeconfig(dir.path())),
        watch_namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        ..Settings::default()
    };
    let state = Adapter::build(settings, config, Guard::anonymous())
        .await
        .unwrap()
        .state;
    (state, dir)
}

/// `watching` the whole cluster, once every stream has listed.
async fn watching_synced(
    prometheus: &str,
    kube: &FakeKube,
) -> (std::sync::Arc<AppState>, tempfile::TempDir) {
    let (state, dir) = watching(prometheus, kube, &[], Config::default()).await;
    eventually("synced", Duration::from_secs(10), || async {
        state.inventory.is_synced()
    })
    .await;
    (state, dir)
}

fn served_pods(list: &Value) -> BTreeSet<String> {
    values(list).into_iter().map(|(pod, _)| pod).collect()
}

fn names(pods: &[&str]) -> BTreeSet<String> {
    pods.iter().map(|p| p.to_string()).collect()
}

fn inventory_pods(state: &AppState, namespace: &str) -> BTreeSet<String> {
    state
        .inventory
        .select(
            namespace,
            &xroad_metrics_adapter::selector::LabelSelector::everything(),
        )
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_added_and_deleted_through_the_watch_are_served_and_dropped_within_seconds() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let kube = sidecar_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let adapter = ServedAdapter::start(&[
        "--prometheus-url",
        &prometheus.url,
        "--kubeconfig",
        kube.kubeconfig(dir.path()).to_str().unwrap(),
    ])
    .await;
    adapter.wait_ready(Duration::from_secs(20)).await;
    let list = adapter.kubectl_json(dir.path(), PODS_PATH).await;
    assert_eq!(
        values(&list),
        pairs(&[
            (SECONDARY_A, "12500m"),
            (SECONDARY_B, "17500m"),
            (SECONDARY_C, "20")
        ])
    );

    // A fourth pod starts (its traffic is already in Prometheus: 99 packets/s).
    kube.apply(
        "pods",
        objects::secondary_pod(NAMESPACE, DELETED, "10.42.0.14"),
    );
    let added = eventually("the new pod is served", Duration::from_secs(10), || async {
        served_pods(&adapter.kubectl_json(dir.path(), PODS_PATH).await).contains(DELETED)
    })
    .await;
    // Secondary B is deleted.
    kube.delete("pods", NAMESPACE, SECONDARY_B);
    let dropped = eventually(
        "the deleted pod is dropped",
        Duration::from_secs(10),
        || async {
            served_pods(&adapter.kubectl_json(dir.path(), PODS_PATH).await)
                == names(&[SECONDARY_A, SECONDARY_C, DELETED])
        },
    )
    .await;
    let list = adapter.kubectl_json(dir.path(), PODS_PATH).await;
    assert_eq!(
        values(&list),
        pairs(&[
            (SECONDARY_A, "12500m"),
            (DELETED, "99"),
            (SECONDARY_C, "20")
        ])
    );
    println!(
        "added pod served after {added:?}; deleted pod dropped after {dropped:?} (kubectl round trips included)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_deleted_while_the_watch_was_down_is_dropped_by_the_relist() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let kube = sidecar_cluster().await;
    let (state, _dir) = watching_synced(&prometheus.url, &kube).await;

    // The API server goes away; meanwhile B is deleted and the history it would replay is compacted.
    kube.set_failing(true);
    kube.delete("pods", NAMESPACE, SECONDARY_B);
    kube.compact();
    kube.set_failing(false);
    let since = Instant::now();
    eventually(
        "B dropped after the relist",
        Duration::from_secs(60),
        || async { inventory_pods(&state, NAMESPACE) == names(&[SECONDARY_A, SECONDARY_C]) },
    )
    .await;
    let took = since.elapsed();
    let calls = kube.calls();
    assert!(
        calls.iter().any(|c| c.is_watch() && c.status == 200)
            && calls
                .iter()
                .filter(|c| !c.is_watch() && c.path == "/api/v1/pods")
                .count()
                >= 2,
        "a watch from the old version, then a second list"
    );
    let (_, metrics) = get(&state, "/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(
            r#"xroad_metrics_adapter_watch_relists_total{resource="pods",namespace=""} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"xroad_metrics_adapter_inventory_objects{resource="pods"} 2"#));
    println!("pod deleted during the outage dropped {took:?} after the API server came back");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_watched_namespaces_list_independently_and_readiness_waits_for_both() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let kube = sidecar_cluster().await;
    // A second namespace of 1,200 pods: twelve pages of the watcher's 100, each served slowly.
    for i in 0..1200 {
        kube.apply(
            "pods",
            objects::secondary_pod("big", &format!("pod-{i:04}"), "10.43.0.1"),
        );
    }
    kube.set_list_latency("big", Duration::from_millis(200));
    let (state, _dir) = watching(
        &prometheus.url,
        &kube,
        &["sidecar", "big"],
        Config::default(),
    )
    .await;

    eventually("sidecar listed", Duration::from_secs(10), || async {
        inventory_pods(&state, NAMESPACE).len() == 3
    })
    .await;
    let (code, text) = get(&state, "/readyz?verbose").await;
    assert_eq!(code, 500, "big is still listing: {text}");
    assert!(
        text.as_str().unwrap().contains("pods in namespace big"),
        "{text}"
    );
    let ready = eventually("ready", Duration::from_secs(20), || async {
        get(&state, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(inventory_pods(&state, "big").len(), 1200);
    let pages = kube
        .calls()
        .iter()
        .filter(|c| c.path == "/api/v1/namespaces/big/pods" && !c.is_watch())
        .count();
    assert_eq!(pages, 12, "limit/continue paging");

    // Both relist (history compacted); sidecar finishes long before big. Neither ever shows a partial list.
    kube.set_failing(true);
    kube.compact();
    kube.set_failing(false);
    let start = Instant::now();
    let mut relisted = false;
    while start.elapsed() < Duration::from_secs(40) && !relisted {
        assert_eq!(inventory_pods(&state, "big").len(), 1200);
        assert_eq!(inventory_pods(&state, NAMESPACE).len(), 3);
        relisted = kube
            .calls()
            .iter()
            .filter(|c| c.path == "/api/v1/namespaces/big/pods" && !c.is_watch() && c.status == 200)
            .count()
            >= 24;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(relisted, "big listed again");
    assert_eq!(inventory_pods(&state, "big").len(), 1200);
    assert_eq!(get(&state, "/readyz").await.0, 200);
    println!("readiness waited {ready:?} for the slow namespace");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_errors_keep_serving_what_is_known_with_backoff_and_resync_after() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let kube = sidecar_cluster().await;
    let (state, dir) = watching_synced(&prometheus.url, &kube).await;
    let adapter = TlsAdapter::start(state.clone()).await;

    kube.set_failing(true);
    let outage = Instant::now();
    // During the outage a pod is added; the adapter cannot know yet.
    kube.apply(
        "pods",
        objects::secondary_pod(NAMESPACE, DELETED, "10.42.0.14"),
    );
    while outage.elapsed() < Duration::from_secs(20) {
        let list = adapter.kubectl_json(dir.path(), PODS_PATH).await;
        assert_eq!(
            served_pods(&list),
            names(&[SECONDARY_A, SECONDARY_B, SECONDARY_C])
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let failed_calls = kube
        .calls()
        .iter()
        .filter(|c| c.at >= outage && c.at < outage + Duration::from_secs(20))
        .filter(|c| c.path.ends_with("/pods"))
        .count();
    assert!(
        (2..=12).contains(&failed_calls),
        "backoff spaces the retries of one stream over 20 s: {failed_calls} calls"
    );
    // Past 30 s the stream shows as lost, and the adapter stays ready.
    eventually("reported lost", Duration::from_secs(20), || async {
        get(&state, "/readyz?verbose")
            .await
            .1
            .as_str()
            .unwrap_or_default()
            .contains("[i]watch pods in the cluster")
    })
    .await;
    let (code, text) = get(&state, "/readyz?verbose").await;
    assert_eq!(code, 200, "{text}");
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"xroad_metrics_adapter_watch_lost{resource="pods",namespace=""} 1"#),
        "{metrics}"
    );

    kube.set_failing(false);
    let back = Instant::now();
    eventually("resynced", Duration::from_secs(90), || async {
        served_pods(&adapter.kubectl_json(dir.path(), PODS_PATH).await).contains(DELETED)
    })
    .await;
    let resynced = back.elapsed();
    // The pods stream, which had events to resync; the quiet nodes stream recovers at its next event or
    // bookmark, which this fake API server does not send.
    eventually("no longer lost", Duration::from_secs(5), || async {
        !get(&state, "/readyz?verbose")
            .await
            .1
            .as_str()
            .unwrap_or_default()
            .contains("[i]watch pods")
    })
    .await;
    println!(
        "{failed_calls} calls in the first 20 s of 500s ({} in {:?}); resynced {resynced:?} after the API server came back",
        kube.calls()
            .iter()
            .filter(|c| c.at >= outage && c.at < back)
            .count(),
        back - outage
    );
}

fn policy_config() -> String {
    "scaleOnFailure:\n- name: secondaries\n  target: {namespace: sidecar, deployment: security-server-sidecar-secondary}\n  \
     load: {metric: container_network_receive_packets_per_second, capacityPerPod: 10}\n  minHealthy: 2\n  failFor: 3s\n  recoverFor: 0s\n  \
     signals:\n    probes: {enabled: false}\n    healthCheck: {enabled: false, period: 1s}\n"
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_on_failure_works_from_the_cluster_alone() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let kube = sidecar_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, policy_config()).unwrap();
    let kubeconfig = kube.kubeconfig(dir.path());
    let source = [
        "--prometheus-url",
        &prometheus.url,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let adapter = ServedAdapter::start(&source).await;
    // 12.5 + 17.5 + 20 = 50 packets/s over capacity 10: 5 replicas, none failing.
    eventually("5 replicas served", Duration::from_secs(20), || async {
        adapter
            .get(REPLICAS_PATH)
            .await
            .is_some_and(|(_, body)| body.contains(r#""value":"5""#))
    })
    .await;
    let list = adapter.kubectl_json(dir.path(), REPLICAS_PATH).await;
    assert_eq!(list["items"][0]["value"], "5");
    assert!(
        kube.calls()
            .iter()
            .any(|c| c.path == "/apis/apps/v1/namespaces/sidecar/deployments"),
        "the Deployment came from the kube API"
    );

    // The kubelet reports B crash-looping.
    let b = kube.object("pods", NAMESPACE, SECONDARY_B).unwrap();
    kube.apply("pods", objects::crash_looping(b));
    let crashed = Instant::now();
    eventually("6 replicas served", Duration::from_secs(20), || async {
        adapter.kubectl_json(dir.path(), REPLICAS_PATH).await["items"][0]["value"] == "6"
    })
    .await;
    let raised = crashed.elapsed();
    // Kubernetes dates the Ready transition in whole seconds, and failFor counts from it.
    assert!(
        raised >= Duration::from_secs(2),
        "not before failFor (3 s, less the second the time stamp drops): {raised:?}"
    );
    let (_, unhealthy) = adapter
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/unhealthy_pods")
        .await
        .unwrap();
    assert!(unhealthy.contains(r#""value":"1""#), "{unhealthy}");

    // `explain` reads the same cluster and says the same.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .arg("explain")
        .args(source)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains(SECONDARY_B) && text.contains("CrashLoopBackOff"),
        "{text}"
    );
    assert!(text.contains("+ failing 1 = 6"), "{text}");
    println!(
        "crash-looping pod raised the served replicas from 5 to 6 after {raised:?} (failFor 3 s)\n{text}"
    );
}
