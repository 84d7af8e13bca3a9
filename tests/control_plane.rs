//! The whole mission against a real control plane (kube-apiserver v1.37.2 with the aggregation layer, etcd,
//! and kube-controller-manager's Deployment, ReplicaSet and HPA controllers; `support::control_plane`): the
//! adapter runs with delegated authentication under the RBAC of `deploy/base/rbac.yaml`, is registered by the
//! APIServices of `apiservice/`, and the real HPA controller scales the Sidecar's Secondary Deployment on a
//! Pods metric and on the scale-on-failure Object metric. Traffic comes from a test exporter scraped by a real
//! Prometheus; it splits a total packet rate evenly among the running pods, as a load balancer would.
//!
//! The test prints the HPA's trace (time, metric values, replicas), as docs/control-plane.md reports it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use support::control_plane::{ControlPlane, Kubelet, Process};
use support::*;

const NS: &str = "sidecar";
const DEPLOYMENT: &str = "security-server-sidecar-secondary";

/// The exporter's state: the total packet rate and each pod's counter.
#[derive(Default)]
struct Traffic {
    total_per_second: f64,
    counters: BTreeMap<String, f64>,
    last: Option<Instant>,
}

/// Serves cAdvisor-shaped `container_network_receive_packets_total` for the running pods, the total rate
/// split evenly among them.
async fn exporter(kubelet: Arc<Kubelet>, traffic: Arc<Mutex<Traffic>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let kubelet = kubelet.clone();
            let traffic = traffic.clone();
            async move {
                let running = kubelet.running.lock().unwrap().clone();
                let mut traffic = traffic.lock().unwrap();
                let now = Instant::now();
                let elapsed = traffic.last.map_or(0.0, |t| (now - t).as_secs_f64());
                traffic.last = Some(now);
                let each = traffic.total_per_second / running.len().max(1) as f64;
                let mut text = String::from("# TYPE container_network_receive_packets_total counter\n");
                for pod in &running {
                    let value = traffic.counters.entry(pod.clone()).or_default();
                    *value += each * elapsed;
                    text.push_str(&format!(
                        "container_network_receive_packets_total{{namespace=\"{NS}\",pod=\"{pod}\",container=\"\",interface=\"eth0\",id=\"/kubepods/pod-{pod}/sandbox\"}} {value}\n"
                    ));
                }
                text
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn adapter_config() -> String {
    format!(
        "refreshInterval: 2s\nscrapeInterval: 1s\nrateWindow: 4s\nscaleOnFailure:\n- name: secondaries\n  target: {{namespace: {NS}, deployment: {DEPLOYMENT}}}\n  \
         load: {{metric: container_network_receive_packets_per_second, capacityPerPod: 10}}\n  minHealthy: 2\n  failFor: 30s\n  recoverFor: 0s\n  \
         signals:\n    probes: {{enabled: false}}\n    healthCheck: {{enabled: false, period: 1s}}\n"
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_hpa_scales_the_sidecar_on_pods_and_scale_on_failure_metrics() {
    let plane = ControlPlane::start().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = plane.dir.path().to_owned();

    // The adapter's identity and rights: deploy/base/rbac.yaml, and a token of its ServiceAccount.
    plane.admin(&["create", "namespace", "xroad-metrics"]);
    plane.admin(&["create", "namespace", NS]);
    plane.admin(&["apply", "-f", &format!("{root}/deploy/base/rbac.yaml")]);
    let token = plane.admin(&[
        "create",
        "token",
        "xroad-metrics-adapter",
        "-n",
        "xroad-metrics",
        "--duration=2h",
    ]);
    let adapter_kubeconfig = plane.kubeconfig_with_token("adapter", token.trim());

    let kubelet = Kubelet::spawn(plane.client().await, NS);
    let traffic = Arc::new(Mutex::new(Traffic {
        total_per_second: 35.0,
        ..Traffic::default()
    }));
    let exporter_port = exporter(kubelet.clone(), traffic.clone()).await;
    let prometheus = Prometheus::start_with_config(&format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: cadvisor\n  static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    ))
    .await;

    let port = free_port();
    let serving = plane
        .ca
        .server(&["xroad-metrics-adapter.xroad-metrics.svc", "localhost"]);
    std::fs::write(dir.join("adapter.crt"), &serving.cert_pem).unwrap();
    std::fs::write(dir.join("adapter.key"), &serving.key_pem).unwrap();
    std::fs::write(dir.join("adapter.yaml"), adapter_config()).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let args: Vec<String> = [
        "serve",
        "--prometheus-url",
        &prometheus.url,
        "--config",
        &path("adapter.yaml"),
        "--kubeconfig",
        adapter_kubeconfig.to_str().unwrap(),
        "--authentication-kubeconfig",
        adapter_kubeconfig.to_str().unwrap(),
        "--tls-cert-file",
        &path("adapter.crt"),
        "--tls-private-key-file",
        &path("adapter.key"),
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        &port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let adapter = Process::start(
        Path::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter")),
        &args,
        &dir,
        "xroad-metrics-adapter",
    );

    // The APIServices of apiservice/, with the caBundle cert-manager would inject and the adapter's port, behind
    // an ExternalName Service (see support::control_plane).
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&plane.ca.pem);
    plane.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: xroad-metrics-adapter, namespace: xroad-metrics}}\n\
         spec: {{type: ExternalName, externalName: localhost, ports: [{{port: {port}}}]}}\n"
    ));
    for file in [
        "apiservice/custom-metrics.yaml",
        "apiservice/external/external-metrics.yaml",
    ] {
        let manifest = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let served = manifest.replace(
            "service: {namespace: xroad-metrics, name: xroad-metrics-adapter, port: 443}",
            &format!("service: {{namespace: xroad-metrics, name: xroad-metrics-adapter, port: {port}}}\n  caBundle: {ca_bundle}"),
        );
        assert_ne!(served, manifest, "{file} names the Service as expected");
        plane.apply(&served);
    }
    eventually(
        "the APIServices are Available",
        Duration::from_secs(60),
        || async {
            plane.available("v1beta2.custom.metrics.k8s.io")
                && plane.available("v1beta1.external.metrics.k8s.io")
        },
    )
    .await;

    // The Secondary Deployment, two pods to start.
    plane.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-1}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {DEPLOYMENT}, namespace: {NS}}}\n\
         spec:\n  replicas: 2\n  selector: {{matchLabels: {{run: {DEPLOYMENT}}}}}\n  template:\n    metadata: {{labels: {{run: {DEPLOYMENT}}}}}\n    \
         spec: {{containers: [{{name: security-server, image: niis/xroad-security-server-sidecar:7.6.2}}]}}\n"
    ));
    eventually("two pods running", Duration::from_secs(60), || async {
        kubelet.running.lock().unwrap().len() == 2
    })
    .await;

    // Through the aggregator, as kubectl users and the HPA reach it.
    let raw = |path: &str| json(&plane.admin(&["get", "--raw", path]));
    let discovery = raw("/apis/custom.metrics.k8s.io/v1beta2");
    assert_eq!(discovery["kind"], "APIResourceList");
    let pods_path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/container_network_receive_packets_per_second?labelSelector=run%3D{DEPLOYMENT}"
    );
    let policy_path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/deployments.apps/{DEPLOYMENT}/xroad_scale_on_failure_replicas"
    );
    eventually(
        "per-pod rates of 17.5 packets/s",
        Duration::from_secs(60),
        || async {
            let list = raw(&pods_path);
            let values: Vec<f64> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    i["value"]
                        .as_str()
                        .unwrap()
                        .parse::<xroad_metrics_adapter::quantity::Quantity>()
                        .unwrap()
                        .as_f64()
                })
                .collect();
            values.len() == 2 && values.iter().all(|v| (v - 17.5).abs() < 2.0)
        },
    )
    .await;
    eventually(
        "the policy's value for a named Deployment",
        Duration::from_secs(30),
        || async {
            plane
                .kubectl(&plane.admin, &["get", "--raw", &policy_path])
                .status
                .success()
        },
    )
    .await;
    let external = raw(&format!(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/container_network_receive_packets_per_second"
    ));
    assert_eq!(external["kind"], "ExternalMetricValueList");
    let nobody = plane.kubeconfig_for("nobody", &[]);
    let denied = plane.kubectl(&nobody, &["get", "--raw", &pods_path]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    let start = Instant::now();
    let trace = Arc::new(Mutex::new(Vec::<String>::new()));
    let replicas = || {
        plane
            .admin(&[
                "get",
                "deployment",
                DEPLOYMENT,
                "-n",
                NS,
                "-o",
                "jsonpath={.spec.replicas}",
            ])
            .parse::<u32>()
            .unwrap()
    };
    let hpa = || {
        let output = plane.kubectl(
            &plane.admin,
            &["get", "hpa", "secondary", "-n", NS, "-o", "json"],
        );
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    };
    let record = |what: &str| {
        let status = &hpa()["status"];
        let metrics: Vec<String> = status["currentMetrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m["type"].as_str() {
                Some("Pods") => format!(
                    "packets/pod {}",
                    m["pods"]["current"]["averageValue"].as_str().unwrap_or("?")
                ),
                // With an AverageValue target the HPA reports the Object metric divided by the replicas.
                Some("Object") => format!(
                    "policy/replicas {}",
                    m["object"]["current"]["averageValue"]
                        .as_str()
                        .unwrap_or("?")
                ),
                _ => "unreadable".to_owned(),
            })
            .collect();
        let line = format!(
            "{:>5.1}s  replicas {} (desired {})  {}  [{what}]",
            start.elapsed().as_secs_f64(),
            replicas(),
            status["desiredReplicas"],
            metrics.join(", ")
        );
        trace.lock().unwrap().push(line);
    };
    record("before the HPA");
    // The HPA of the Sidecar guide, on our metrics: packets per pod, and the scale-on-failure replica count.
    plane.apply(&format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: secondary, namespace: {NS}}}\nspec:\n  \
         scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {DEPLOYMENT}}}\n  minReplicas: 2\n  maxReplicas: 8\n  \
         behavior:\n    scaleUp: {{stabilizationWindowSeconds: 0}}\n    scaleDown: {{stabilizationWindowSeconds: 0, policies: [{{type: Percent, value: 100, periodSeconds: 1}}]}}\n  \
         metrics:\n  - type: Pods\n    pods:\n      metric: {{name: container_network_receive_packets_per_second}}\n      target: {{type: AverageValue, averageValue: '10'}}\n  \
         - type: Object\n    object:\n      describedObject: {{apiVersion: apps/v1, kind: Deployment, name: {DEPLOYMENT}}}\n      \
         metric: {{name: xroad_scale_on_failure_replicas}}\n      target: {{type: AverageValue, averageValue: '1'}}\n"
    ));
    let trace_lines = &trace;
    // Waits for `want` replicas; on the way the count never falls below `floor`.
    let until = |what: &'static str, want: u32, floor: u32, timeout: u64| {
        let record = &record;
        let replicas = &replicas;
        async move {
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                record(what);
                let now = replicas();
                assert!(
                    now >= floor,
                    "{now} replicas, below {floor}: {what}\n{}",
                    trace_lines.lock().unwrap().join("\n")
                );
                if now == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "not {want} replicas within {timeout} s: {what}\n{}",
                    trace_lines.lock().unwrap().join("\n")
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };

    // 35 packets/s over 10 per pod: 4 replicas, by both metrics (loads off the ceil() boundaries, so rate
    // noise cannot tip them).
    until("35 packets/s in all", 4, 2, 120).await;
    let conditions = hpa()["status"]["conditions"].clone();
    let condition = |kind: &str| {
        conditions
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| c["status"].clone())
    };
    assert_eq!(condition("AbleToScale"), Some(Value::from("True")));
    assert_eq!(
        condition("ScalingActive"),
        Some(Value::from("True")),
        "{conditions}"
    );

    // `explain --hpa` reads the same HPA, scale and pods, and the metrics through the aggregator as the
    // controller does: it names the count the controller holds, and the Object metric's value it reports.
    let admin = plane.admin.clone();
    let explain_agrees = async |want: u32| {
        eventually(
            "explain --hpa agrees with the HPA controller",
            Duration::from_secs(30),
            || async {
                let output =
                    std::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
                        .args([
                            "explain",
                            "--hpa",
                            &format!("{NS}/secondary"),
                            "--sync-period",
                            "2s",
                            "-o",
                            "json",
                            "--kubeconfig",
                        ])
                        .arg(&admin)
                        .output()
                        .unwrap();
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let report: Value = serde_json::from_slice(&output.stdout).unwrap();
                let reported =
                    hpa()["status"]["currentMetrics"][1]["object"]["current"]["averageValue"]
                        .clone();
                println!(
                    "explain: next {} ({}), object {} (HPA status {reported})",
                    report["next_replicas"], report["steps"], report["metrics"][1]["current"]
                );
                report["next_replicas"] == want
                    && report["scale"]["spec_replicas"] == want
                    && report["metrics"][1]["current"]
                        == format!("averageValue {}", reported.as_str().unwrap_or("?"))
            },
        )
        .await;
    };
    explain_agrees(4).await;

    // A pod crash-loops: after failFor the policy asks for one more, and the HPA follows.
    let victim = kubelet
        .running
        .lock()
        .unwrap()
        .iter()
        .next()
        .unwrap()
        .clone();
    kubelet.crashing.lock().unwrap().insert(victim.clone());
    until("one pod in CrashLoopBackOff", 5, 4, 90).await;
    explain_agrees(5).await;

    // The adapter dies: the HPA cannot read its metrics and keeps the size it has, then resumes.
    drop(adapter);
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(15) {
        record("adapter down");
        assert_eq!(
            replicas(),
            5,
            "the HPA holds its size while the adapter is down"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let down = hpa()["status"]["conditions"].clone();
    assert!(
        down.as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "ScalingActive" && c["status"] == "False"),
        "{down}"
    );
    let adapter = Process::start(
        Path::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter")),
        &args,
        &dir,
        "xroad-metrics-adapter",
    );

    // Back, under the same load and with the pod still failing: the HPA reads the metrics again and keeps 5.
    // The restarted adapter dates the failure from the pod's status; had it waited failFor again, it would
    // have asked for 4, and the ReplicaSet would have removed the failing pod first.
    eventually(
        "the HPA reads the metrics again",
        Duration::from_secs(60),
        || async {
            hpa()["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "ScalingActive" && c["status"] == "True")
            })
        },
    )
    .await;
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(15) {
        record("adapter back, one pod failing");
        assert_eq!(
            replicas(),
            5,
            "the restarted adapter still counts the failing pod\n{}",
            trace.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Load halves and the pod recovers: 2 replicas.
    traffic.lock().unwrap().total_per_second = 15.0;
    kubelet.crashing.lock().unwrap().clear();
    until("15 packets/s, the pod recovered", 2, 2, 120).await;

    let events = plane.admin(&[
        "get",
        "events",
        "-n",
        NS,
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler",
        "-o",
        "json",
    ]);
    let events = json(&events);
    let reasons: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("SuccessfulRescale")),
        "{reasons:?}"
    );
    drop(adapter);
    println!(
        "HPA trace:\n{}\n\nHPA events:\n{}",
        trace.lock().unwrap().join("\n"),
        reasons.join("\n")
    );
}

/// An aggregated API whose server is down answers discovery with 503, which kube's client retries for minutes.
/// The adapter's own APIService is such an API until the adapter listens, and clusters often carry a broken one
/// of someone else's: neither may hold up the start, and the cluster's resources are still learned for the
/// Prometheus Adapter rules.
#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_starts_while_its_own_and_another_aggregated_api_are_unavailable() {
    const SERVICE: &str = "xroad-metrics-adapter";
    const NAMESPACE: &str = "xroad-metrics";
    const OURS: &str = "v1beta2.custom.metrics.k8s.io";
    const BROKEN: &str = "v1beta1.broken.example.com";
    let plane = ControlPlane::start().await;
    let dir = plane.dir.path().to_owned();
    plane.admin(&["create", "namespace", NAMESPACE]);
    let port = free_port();
    plane.route_apis("broken", NAMESPACE, free_port(), &[BROKEN]);
    plane.route_apis(SERVICE, NAMESPACE, port, &[OURS]);
    eventually(
        "the aggregator finding both APIs unavailable",
        Duration::from_secs(60),
        || async { plane.availability(BROKEN) == "False" && plane.availability(OURS) == "False" },
    )
    .await;

    let prometheus = Prometheus::start_with_config("global: {scrape_interval: 15s}\n").await;
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n- seriesQuery: 'container_network_receive_packets_total{namespace!=\"\",pod!=\"\"}'\n  \
         resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  \
         metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'\n",
    )
    .unwrap();
    let mut args = vec!["serve".to_owned()];
    args.extend(plane.serving_flags(SERVICE, NAMESPACE, port));
    args.extend([
        format!("--kubeconfig={}", plane.admin.display()),
        format!("--prometheus-url={}", prometheus.url),
        format!("--adapter-config={}", rules.display()),
    ]);
    let _adapter = Process::start(
        Path::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter")),
        &args,
        &dir,
        SERVICE,
    );
    plane.register_apis(SERVICE, NAMESPACE, port, &[OURS]).await;

    let log = std::fs::read_to_string(dir.join(format!("{SERVICE}.log"))).unwrap();
    assert!(
        log.contains("resources learned from the cluster's discovery")
            && !log.contains("discovery failed"),
        "the cluster's resources learned despite the unavailable APIs; the adapter's log:\n{log}"
    );
    assert_eq!(
        plane.availability(BROKEN),
        "False",
        "the broken API stays broken"
    );
}
