//! The Prometheus Adapter's Deployment with only its image swapped for this one: the Helm chart's rendered
//! args (prometheus-community/helm-charts, `charts/prometheus-adapter/templates/deployment.yaml` with the
//! default values, as `helm template` renders them), its ConfigMap of default rules, and the pod's in-cluster
//! access to the kube API (stood in for by `$KUBECONFIG` pointing at the tests' fake of the kube API, which
//! publishes the aggregation layer's trust as kube-apiserver does).

mod support;

use std::time::Duration;

use support::delegated::{ClusterPki, FakeKube};
use support::fake_kube::objects;
use support::*;
use xroad_metrics_adapter::compat::rules::HELM_DEFAULT_RULES;

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_deployment_runs_unchanged_with_this_image_and_serves_its_rules() {
    let pki = ClusterPki::new();
    let (kube, _) = FakeKube::with_authentication(pki.configmap()).await;
    for (name, ip) in [
        (SECONDARY_A, "10.42.0.11"),
        (SECONDARY_B, "10.42.0.12"),
        (SECONDARY_C, "10.42.0.13"),
    ] {
        kube.apply("pods", objects::secondary_pod(NAMESPACE, name, ip));
    }
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let dir = tempfile::tempdir().unwrap();
    // The chart's ConfigMap with `rules.default: true`, mounted at /etc/adapter/config.yaml.
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("rules:{HELM_DEFAULT_RULES}")).unwrap();
    let port = free_port();
    let cert_dir = dir.path().join("cert");
    let chart_args = [
        "/adapter".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", cert_dir.display()),
        format!("--prometheus-url={}", prometheus.url),
        "--metrics-relist-interval=1m".to_owned(),
        "--v=4".to_owned(),
        format!("--config={}", config.display()),
    ];
    let log = dir.path().join("adapter.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .args(&chart_args)
        .env("KUBECONFIG", kube.kubeconfig(dir.path()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _child = support::control_plane::Process(child);

    let ca_file = cert_dir.join("ca.crt");
    let ca = wait_for(
        "the serving certificate",
        Duration::from_secs(20),
        || async {
            let pem = std::fs::read(&ca_file).ok()?;
            reqwest::Certificate::from_pem(&pem).ok()
        },
    )
    .await;
    // As kube-apiserver's aggregator forwards a request: the front-proxy certificate and the user's headers.
    let proxy = pki.front_proxy();
    let client = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .identity(
            reqwest::Identity::from_pem(format!("{}{}", proxy.cert_pem, proxy.key_pem).as_bytes())
                .unwrap(),
        )
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{port}/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/%2A/network_receive_packets"
    );
    // The chart's default rules name `container_network_receive_packets_total` `network_receive_packets`.
    let list = wait_for(
        "the chart's rule-served metric through its own args",
        Duration::from_secs(30),
        || async {
            let response = client
                .get(&url)
                .header("X-Remote-User", "admin")
                .header("X-Remote-Group", "system:masters")
                .send()
                .await
                .ok()?;
            if response.status() != 200 {
                return None;
            }
            response.json::<serde_json::Value>().await.ok()
        },
    )
    .await;
    // What the Prometheus Adapter answers with these rules: they skip `container="POD"` series, so pod B
    // (dockershim layout, every series on the pause container) has none, and they sum every other series
    // of a pod, so A's app-container copy counts twice.
    assert_eq!(
        values(&list),
        pairs(&[(SECONDARY_A, "25"), (SECONDARY_C, "20")]),
        "{list}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("--config is a Prometheus Adapter configuration"),
        "{text}"
    );
}
