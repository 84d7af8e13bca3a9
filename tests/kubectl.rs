//! The real `kubectl get --raw` against the adapter over real TLS (self-signed CA in a temporary kubeconfig)
//! and a real Prometheus: what an operator types, and what they see.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_raw_reads_discovery_and_per_pod_rates_over_tls() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let adapter = TlsAdapter::start(state(&prometheus.url)).await;
    let dir = tempfile::tempdir().unwrap();

    let discovery = adapter
        .kubectl_json(dir.path(), "/apis/custom.metrics.k8s.io/v1beta2")
        .await;
    assert_eq!(discovery["kind"], "APIResourceList");

    let list = adapter
        .kubectl_json(
            dir.path(),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/container_network_receive_packets_per_second?labelSelector=run%3Dsecurity-server-sidecar-secondary",
        )
        .await;
    assert_eq!(values(&list), pairs(&SECONDARIES_RX_PACKETS));

    let external = adapter
        .kubectl_json(
            dir.path(),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/container_network_receive_packets_per_second?labelSelector=interface%3Deth1",
        )
        .await;
    assert_eq!(external["items"][0]["value"], "5");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_shows_an_unknown_metric_as_not_found_with_our_message() {
    let adapter = TlsAdapter::start(state("http://127.0.0.1:9")).await;
    let dir = tempfile::tempdir().unwrap();
    let output = adapter
        .kubectl(
            dir.path(),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/xroad_no_such_metric",
        )
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Error from server (NotFound): the server could not find the metric xroad_no_such_metric for pods"),
        "{stderr}"
    );
}
