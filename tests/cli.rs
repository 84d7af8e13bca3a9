//! The `xroad-metrics-adapter` binary's command line: refusals that protect users, and clear messages.

use std::process::Command;

mod support;

fn adapter(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const PROM: &[&str] = &["--prometheus-url", "http://127.0.0.1:9"];

#[test]
fn serve_refuses_to_run_unauthenticated_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().to_str().unwrap();
    let (ok, text) = adapter(
        &[
            &[
                "serve",
                "--cert-dir",
                cert_dir,
                "--inventory",
                "tests/fixtures/inventory-sidecar.yaml",
            ],
            PROM,
        ]
        .concat(),
    );
    // Without a cluster to delegate to, serve stops and says how to run locally; it never falls back to
    // anonymous access.
    assert!(!ok);
    assert!(
        text.contains("delegated authentication asks the Kubernetes API")
            && text.contains("--authentication none --bind-address 127.0.0.1"),
        "{text}"
    );
}

#[test]
fn serve_refuses_anonymous_access_on_a_non_loopback_address() {
    let (ok, text) = adapter(
        &[
            &[
                "serve",
                "--authentication",
                "none",
                "--bind-address",
                "0.0.0.0",
            ],
            PROM,
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(
        text.contains("--authentication none is only allowed with a loopback --bind-address"),
        "{text}"
    );
}

#[test]
fn check_config_points_at_the_line_of_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "prometheus:\n  url: http://prometheus:9090\n  timout: 5s\n",
    )
    .unwrap();
    let (ok, text) = adapter(&["check-config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("timout") && text.contains("config.yaml"),
        "{text}"
    );
    std::fs::write(
        &file,
        "prometheus:\n  url: http://prometheus:9090\nrateWindow: 2m\n",
    )
    .unwrap();
    let (ok, text) = adapter(&["check-config", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("container_network_receive_packets_per_second"),
        "{text}"
    );
}

#[test]
fn bad_flags_and_files_get_clear_messages() {
    let (ok, text) = adapter(&["serve", "--prometheus-url", "not a url"]);
    assert!(!ok && text.contains("not a valid URL"), "{text}");
    let (ok, text) = adapter(&["serve", "--prometheus-verb", "PUT"]);
    assert!(!ok && text.contains("\"PUT\" is not GET or POST"), "{text}");
    let (ok, text) = adapter(&["serve", "--prometheus-header", "X Tenant=a"]);
    assert!(!ok && text.contains("is not an HTTP header name"), "{text}");
    let certs = tempfile::tempdir().unwrap();
    let (ok, text) = adapter(&[
        "serve",
        "--authentication",
        "none",
        "--bind-address",
        "127.0.0.1",
        "--cert-dir",
        certs.path().to_str().unwrap(),
        "--tls-cipher-suites",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265",
    ]);
    assert!(
        !ok && text.contains(
            "cipher suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265 not supported or doesn't exist"
        ),
        "{text}"
    );
    let query_with = |flag: &str, file: &str| {
        adapter(
            &[
                &["query", "-n", "sidecar", "--metric", "m", flag, file],
                PROM,
            ]
            .concat(),
        )
    };
    let (ok, text) = query_with("--inventory", "/nonexistent.yaml");
    assert!(
        !ok && text.contains("cannot read inventory /nonexistent.yaml"),
        "{text}"
    );
    // The Prometheus Adapter's name for the kubeconfig that lists objects.
    let (ok, text) = query_with("--lister-kubeconfig", "/nonexistent/kubeconfig");
    assert!(
        !ok && text.contains("cannot read kubeconfig /nonexistent/kubeconfig"),
        "{text}"
    );
}

#[test]
fn a_file_that_never_ends_is_refused_at_the_size_cap() {
    let (ok, text) = adapter(&["check-config", "/dev/zero"]);
    assert!(!ok);
    assert!(
        text.contains("cannot read /dev/zero: larger than 4 MiB"),
        "{text}"
    );
}

#[test]
fn a_yaml_syntax_error_in_a_prometheus_adapter_config_is_reported_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "rules:\n- seriesQuery: up\n  metricsQuery: 'sum(x)'\n  name: {matches: [\n",
    )
    .unwrap();
    let (ok, text) = adapter(&["check-config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("line 4 column 19: unclosed bracket '['") && !text.contains("unknown field"),
        "{text}"
    );
}

/// The X-Road Sidecar guide's Prometheus Adapter rule, in the chart's values layout.
const SIDECAR_GUIDE_VALUES: &str = r#"rules:
  default: false
  custom:
  - seriesQuery: 'container_network_receive_packets_total{namespace="sidecar"}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    name: {matches: "^(.*)_total", as: "${1}_per_minute"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"#;

#[test]
fn check_config_explains_a_prometheus_adapter_config_and_config_points_to_adapter_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, SIDECAR_GUIDE_VALUES).unwrap();
    let (ok, text) = adapter(&["check-config", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    for expected in [
        "a valid Prometheus Adapter configuration",
        "name ^(.*)_total -> ${1}_per_minute",
        r#"query for pods pod-a, pod-b in default: sum(rate(<series>{namespace="default",pod=~"pod-a|pod-b"}[1m])) by (pod)"#,
        "warning: rules[0]: a rate window of 60s",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    let (ok, text) = adapter(
        &[
            &[
                "serve",
                "--authentication",
                "none",
                "--bind-address",
                "127.0.0.1",
                "--config",
                file.to_str().unwrap(),
                "--adapter-config",
                file.to_str().unwrap(),
            ],
            PROM,
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(
        text.contains("is a Prometheus Adapter configuration, and --adapter-config")
            && text.contains("pass one"),
        "{text}"
    );
}

/// A Prometheus Adapter Deployment passes its ConfigMap as `--config`: taken as it is.
#[tokio::test]
async fn serve_reads_a_prometheus_adapter_config_given_as_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, SIDECAR_GUIDE_VALUES).unwrap();
    let served = support::served::ServedAdapter::start(
        &[
            &[
                "--config",
                file.to_str().unwrap(),
                "--inventory",
                support::INVENTORY,
            ][..],
            PROM,
        ]
        .concat(),
    )
    .await;
    let log = served.log_text();
    assert!(
        log.contains("--config is a Prometheus Adapter configuration: read as --adapter-config"),
        "{log}"
    );
    // The rules are in force: their series are listed (Prometheus is down here, so the list fails).
    assert!(
        log.contains("unable to list the Prometheus Adapter rules' series"),
        "{log}"
    );
}

/// A Prometheus Adapter Deployment's args: klog's flags accepted, `--prometheus-verb` and
/// `--prometheus-header` applied to every backend request (seen by a stand-in backend that answers an empty
/// vector, as the Prometheus HTTP API does).
#[tokio::test]
async fn serve_takes_the_prometheus_adapters_flags() {
    use std::sync::{Arc, Mutex};
    // Each backend request's method and tenant header.
    type Seen = Vec<(String, Option<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    let backend = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::any(
            move |method: axum::http::Method, headers: axum::http::HeaderMap| {
                let tenant = headers
                    .get("x-scope-orgid")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record.lock().unwrap().push((method.to_string(), tenant));
                std::future::ready(axum::Json(serde_json::json!(
                    {"status": "success", "data": {"resultType": "vector", "result": []}}
                )))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, backend).await.unwrap() });
    let served = support::served::ServedAdapter::start(&[
        "--inventory",
        support::INVENTORY,
        "--prometheus-url",
        &url,
        "--v=4",
        "--logtostderr",
        "--prometheus-verb=GET",
        "--prometheus-header=X-Scope-OrgID=tenant-1",
    ])
    .await;
    served
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/container_network_receive_packets_per_second")
        .await
        .expect("an answer");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the backend was asked");
    for (method, tenant) in &seen {
        assert_eq!(
            (method.as_str(), tenant.as_deref()),
            ("GET", Some("tenant-1"))
        );
    }
    assert!(served.log_text().contains("accepted and ignored"));
}

#[test]
fn explain_hpa_says_what_is_wrong_with_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ok, text) = adapter(&["explain", "--hpa", "secondary"]);
    assert!(
        !ok && text.contains("--hpa \"secondary\": expected NAMESPACE/NAME"),
        "{text}"
    );
    let (ok, text) = adapter(&["explain", "--hpa-file", "hpa.yaml"]);
    assert!(!ok && text.contains("--inventory"), "{text}");
    let explain_file = |hpa: &str| {
        adapter(
            &[
                &[
                    "explain",
                    "--hpa-file",
                    hpa,
                    "--inventory",
                    support::INVENTORY,
                ][..],
                PROM,
            ]
            .concat(),
        )
    };
    let (ok, text) = explain_file("/nonexistent/hpa.yaml");
    assert!(
        !ok && text.contains("cannot read /nonexistent/hpa.yaml"),
        "{text}"
    );
    let not_an_hpa = write("pod.yaml", "apiVersion: v1\nkind: Pod\nspec: 3\n");
    let (ok, text) = explain_file(&not_an_hpa);
    assert!(
        !ok && text.contains("not a HorizontalPodAutoscaler (autoscaling/v2)"),
        "{text}"
    );
    let elsewhere = write(
        "hpa.yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h, namespace: sidecar}\n\
         spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: gone}\n  maxReplicas: 3\n",
    );
    let (ok, text) = explain_file(&elsewhere);
    assert!(
        !ok && text.contains("no Deployment sidecar/gone (the HPA's scaleTargetRef)"),
        "{text}"
    );
    let bad_target = write(
        "bad.yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h, namespace: sidecar}\n\
         spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: security-server-sidecar-secondary}\n  \
         maxReplicas: 3\n  metrics:\n  - type: Pods\n    pods: {metric: {name: m}, target: {type: Utilization, averageUtilization: 50}}\n",
    );
    let (ok, text) = explain_file(&bad_target);
    assert!(
        !ok && text.contains(
            "HPA sidecar/h: spec.metrics[0]: target type \"Utilization\" is not one of AverageValue"
        ),
        "{text}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly_instead_of_a_panic() {
    use std::process::Stdio;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/adapter-config.yaml"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .args(["check-config", example])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reading end closes before anything is read.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{stderr}");
}
