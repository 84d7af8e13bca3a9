//! Past one Prometheus: a real VictoriaMetrics, a real Prometheus behind vmauth's bearer and basic auth, and a
//! recording TLS proxy in front of Prometheus for what no real part here can show (client certificates, exact
//! requests, SigV4 signatures, warnings); and two named backends in one adapter.

mod support;

use std::path::Path;
use std::sync::Arc;

use support::pki::Ca;
use support::recording_proxy::{RecordingProxy, SIGV4_ACCESS_KEY, SIGV4_SECRET_KEY, amz_date};
use support::victoria::Victoria;
use support::*;
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::server::AppState;

/// The adapter as `serve` builds it from this configuration text, with the Sidecar inventory.
async fn adapter_from(yaml: &str) -> Arc<AppState> {
    let config = Config::parse("test.yaml", yaml).unwrap();
    let settings = xroad_metrics_adapter::app::Settings {
        inventory: Some(INVENTORY.into()),
        ..Default::default()
    };
    xroad_metrics_adapter::app::Adapter::build(
        settings,
        config,
        xroad_metrics_adapter::server::guard::Guard::anonymous(),
    )
    .await
    .unwrap()
    .state
}

/// The Secondaries' received packets per second, by pod, as numbers.
async fn secondaries(state: &Arc<AppState>, metric: &str) -> Vec<(String, f64)> {
    let (status, body) = get(state, &wildcard(V2, metric, SECONDARY_SELECTOR)).await;
    assert_eq!(status, 200, "{body}");
    values(&body)
        .into_iter()
        .map(|(pod, quantity)| (pod, parse_quantity(&quantity)))
        .collect()
}

/// Asserts that the HPA's request for the Secondaries' received packets is served, with the data set's values.
async fn assert_served(state: &Arc<AppState>) {
    let (status, body) = get(state, &secondaries_rx_packets()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(values(&body), pairs(&SECONDARIES_RX_PACKETS));
}

/// The message of the 500 the HPA's request gets.
async fn refusal(state: &Arc<AppState>) -> String {
    let (status, body) = get(state, &secondaries_rx_packets()).await;
    assert_eq!(status, 500, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

fn parse_quantity(text: &str) -> f64 {
    match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
        None => text.parse().unwrap(),
    }
}

const RX: &str = "container_network_receive_packets_per_second";
const TX: &str = "container_network_transmit_packets_per_second";

#[tokio::test]
async fn victoriametrics_serves_what_prometheus_serves_and_its_series_feed_adapter_rules() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let vm = Victoria::metrics(&sidecar_traffic()).await;
    let on_prometheus = adapter_from(&format!("prometheus: {{url: {}}}", prometheus.url)).await;
    let on_vm = adapter_from(&format!(
        "prometheus: {{url: {}, maxQueryLength: 16384}}",
        vm.url
    ))
    .await;
    for metric in [RX, TX] {
        let expected = secondaries(&on_prometheus, metric).await;
        let served = secondaries(&on_vm, metric).await;
        assert_eq!(served.len(), expected.len(), "{metric}: {served:?}");
        // MetricsQL's rate() does not extrapolate; on counters this steady the two agree within 1 %.
        for ((pod, vm_value), (expected_pod, value)) in served.iter().zip(&expected) {
            assert_eq!(pod, expected_pod);
            assert!(
                (vm_value - value).abs() <= value * 0.01,
                "{metric} {pod}: VictoriaMetrics {vm_value}, Prometheus {value}"
            );
        }
    }

    // A Prometheus Adapter rule discovers its series in VictoriaMetrics (`/api/v1/series` with start and end).
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n- seriesQuery: 'container_network_receive_packets_total{namespace!=\"\",pod!=\"\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  name: {matches: ^container_(.*)_total$, as: \"${1}_per_second\"}\n  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>,container=\"\"}[2m])) by (<<.GroupBy>>)'\n",
    )
    .unwrap();
    let with_rules = with_adapter_rules(&vm.url, &rules).await;
    let (status, body) = get(
        &with_rules,
        &format!("{V2}/namespaces/sidecar/pods/{SECONDARY_C}/network_receive_packets_per_second"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let value = parse_quantity(body["items"][0]["value"].as_str().unwrap());
    assert!((value - 20.0).abs() < 0.2, "{body}");
}

#[tokio::test]
async fn a_query_longer_than_the_backends_limit_is_refused_before_it_is_sent() {
    let vm = Victoria::metrics(&sidecar_traffic()).await;
    let state = adapter_from(&format!(
        "prometheus: {{url: {}, maxQueryLength: 64}}",
        vm.url
    ))
    .await;
    let message = refusal(&state).await;
    assert!(
        message.contains("longer than the backend's maxQueryLength of 64"),
        "{message}"
    );
}

/// vmauth in front of `prometheus`, accepting the bearer token `second-token` and the user `xroad` with
/// password `s3cret`.
async fn vmauth(prometheus: &Prometheus) -> Victoria {
    Victoria::auth(&format!(
        "users:\n- bearer_token: second-token\n  url_prefix: {url}\n- username: xroad\n  password: s3cret\n  url_prefix: {url}\n",
        url = prometheus.url
    ))
    .await
}

#[tokio::test]
async fn a_bearer_token_file_is_read_again_when_it_rotates() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let vmauth = vmauth(&prometheus).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let state = adapter_from(&format!(
        "prometheus: {{url: {}, bearerTokenFile: {}}}",
        vmauth.url,
        token.display()
    ))
    .await;
    let message = refusal(&state).await;
    // vmauth 1.79 refuses an unknown token with a plain-text 400 (later versions with 401).
    assert!(
        message.contains("HTTP 400 without a Prometheus API answer"),
        "{message}"
    );
    assert!(
        !message.contains("first-token"),
        "a token in a message: {message}"
    );

    // A projected token rotates: the kubelet swaps the file in.
    let next = dir.path().join("token.next");
    std::fs::write(&next, "second-token\n").unwrap();
    std::fs::rename(&next, &token).unwrap();
    assert_served(&state).await;
}

#[tokio::test]
async fn basic_auth_reads_its_password_from_a_file() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let vmauth = vmauth(&prometheus).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let state = adapter_from(&format!(
        "prometheus: {{url: {}, basicAuth: {{username: xroad, passwordFile: {}}}}}",
        vmauth.url,
        password.display()
    ))
    .await;
    assert_served(&state).await;

    let without = adapter_from(&format!("prometheus: {{url: {}}}", vmauth.url)).await;
    let message = refusal(&without).await;
    assert!(
        message.contains("refused the credentials (HTTP 401)"),
        "{message}"
    );
}

/// A client certificate with this CN, written to `dir` as `tls.crt` and `tls.key` (in place, as
/// cert-manager renews a Secret).
fn write_client_certificate(ca: &Ca, dir: &Path, common_name: &str) {
    let leaf = ca.client(common_name, &[]);
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
}

#[tokio::test]
async fn mutual_tls_presents_the_renewed_client_certificate_and_requests_carry_tenant_headers_and_parameters()
 {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let clients = Ca::new("backend-clients");
    let proxy = RecordingProxy::start(&prometheus.url, Some(&clients)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &proxy.ca_pem).unwrap();
    write_client_certificate(&clients, dir.path(), "adapter-1");
    let d = dir.path().display();
    let state = adapter_from(&format!(
        "prometheus:
  url: {}/prometheus
  tenant: {{id: sidecar-prod}}
  headers: {{X-Extra: one}}
  queryParams: {{max_source_resolution: 5m, tenant: xroad}}
  timeout: 4s
  tls: {{caFile: {d}/ca.crt, certFile: {d}/tls.crt, keyFile: {d}/tls.key}}
",
        proxy.url
    ))
    .await;
    assert_served(&state).await;

    let sent = proxy.queries();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let query = &sent[0];
    assert_eq!(query.client.as_deref(), Some("adapter-1"));
    assert_eq!(query.method, "POST");
    assert_eq!(query.path, "/prometheus/api/v1/query");
    assert_eq!(query.header("x-scope-orgid"), Some("sidecar-prod"));
    assert_eq!(query.header("x-extra"), Some("one"));
    assert_eq!(
        query.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = query.form();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "query",
            "timeout",
            "partial_response",
            "dedup",
            "deny_partial_response",
            "max_source_resolution",
            "tenant"
        ]
    );
    let value = |key: &str| form.iter().find(|(k, _)| k == key).unwrap().1.clone();
    assert!(value("query").contains("container_network_receive_packets_total"));
    assert_eq!(value("timeout"), "3600ms");
    assert_eq!(value("partial_response"), "false");
    assert_eq!(value("max_source_resolution"), "5m", "queryParams override");

    // cert-manager renews the certificate: the next connection presents the new one.
    write_client_certificate(&clients, dir.path(), "adapter-2");
    let (status, body) = get(&state, &wildcard(V2, TX, SECONDARY_SELECTOR)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        proxy.queries().last().unwrap().client.as_deref(),
        Some("adapter-2")
    );
}

#[tokio::test]
async fn an_answer_with_warnings_fails_unless_the_backend_ignores_them_and_warnings_are_counted() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let proxy = RecordingProxy::start(&prometheus.url, None).await;
    proxy.answer_with_warnings(&["No StoreAPI matched for this query"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &proxy.ca_pem).unwrap();
    let backend = |warnings: &str| {
        format!(
            "prometheus: {{url: {}, tls: {{caFile: {}}}, warnings: {warnings}}}",
            proxy.url,
            ca.display()
        )
    };

    let failing = adapter_from(&backend("fail")).await;
    let message = refusal(&failing).await;
    assert!(
        message.contains("answered with warnings: No StoreAPI matched for this query"),
        "{message}"
    );
    let (_, metrics) = get(&failing, "/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("xroad_metrics_adapter_backend_warnings_total{backend=\"prometheus\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "xroad_metrics_adapter_backend_errors_total{backend=\"prometheus\",reason=\"warnings\"} 1"
        ),
        "{metrics}"
    );

    let ignoring = adapter_from(&backend("ignore")).await;
    assert_served(&ignoring).await;
    let (_, metrics) = get(&ignoring, "/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("xroad_metrics_adapter_backend_warnings_total{backend=\"prometheus\"} 1")
    );
}

/// Runs `query` as a process with these backend flags: the AWS SDK's credential chain reads the
/// environment the process is given.
fn query_process(flags: &[String], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"));
    command
        .arg("query")
        .args(flags)
        .args(["--inventory", INVENTORY, "-n", "sidecar", "--metric", RX])
        .args(["-l", SECONDARY_SELECTOR])
        // Nothing from this machine's AWS setup: the environment's credentials only.
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

// The proxy must answer while the test waits for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signs_every_query_with_the_credentials_the_aws_sdk_chain_finds() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let proxy = RecordingProxy::start(&prometheus.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &proxy.ca_pem).unwrap();
    let config = dir.path().join("config.yaml");
    let flags = ["--config".to_owned(), config.display().to_string()];
    std::fs::write(
        &config,
        format!(
            "prometheus:\n  url: {}/workspaces/ws-0123\n  tls: {{caFile: {}}}\n  sigv4: {{region: eu-north-1}}\n",
            proxy.url,
            ca.display()
        ),
    )
    .unwrap();
    let credentials = [
        ("AWS_ACCESS_KEY_ID", SIGV4_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SIGV4_SECRET_KEY),
    ];
    let session = [
        ("AWS_ACCESS_KEY_ID", SIGV4_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SIGV4_SECRET_KEY),
        ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLE"),
    ];
    for env in [&credentials[..], &session[..]] {
        let output = query_process(&flags, env);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(SECONDARY_C) && stdout.contains("20"),
            "{stdout}"
        );
    }
    let sent = proxy.queries();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for query in &sent {
        assert_eq!(query.sigv4_valid, Some(true), "{query:?}");
        let authorization = query.header("authorization").unwrap();
        assert!(
            authorization.contains("/eu-north-1/aps/aws4_request"),
            "{authorization}"
        );
        assert!(
            query.header("x-amz-content-sha256").is_some(),
            "the body is signed"
        );
    }
    assert_eq!(
        sent[1].header("x-amz-security-token"),
        Some("IQoJb3JpZ2luX2VjEXAMPLE")
    );

    // Without credentials the query fails and says why; nothing unsigned is sent.
    let output = query_process(&flags, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert_eq!(proxy.queries().len(), 2);
}

#[tokio::test]
async fn oauth2_client_credentials_fetch_a_token_once_and_send_it() {
    use axum::http::HeaderMap;
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let proxy = RecordingProxy::start(&prometheus.url, None).await;
    let grants = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let recorded = grants.clone();
    // A token endpoint: HTTP Basic client authentication and the client-credentials grant (RFC 6749 §4.4).
    let issuer = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let recorded = recorded.clone();
            async move {
                let authorization = headers["authorization"].to_str().unwrap().to_owned();
                recorded.lock().unwrap().push((authorization, body));
                axum::Json(serde_json::json!({
                    "access_token": "issued-token", "token_type": "Bearer", "expires_in": 3600
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!(
        "http://127.0.0.1:{}/token",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, issuer).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &proxy.ca_pem).unwrap();
    std::fs::write(dir.path().join("secret"), "client-s3cret\n").unwrap();
    let d = dir.path().display();
    let state = adapter_from(&format!(
        "prometheus:
  url: {}
  tls: {{caFile: {d}/ca.crt}}
  oauth2: {{tokenUrl: {issuer_url}, clientId: xroad-adapter, clientSecretFile: {d}/secret, scopes: [metrics.read, tenant]}}
",
        proxy.url
    ))
    .await;
    for metric in [RX, TX] {
        let (status, body) = get(&state, &wildcard(V2, metric, SECONDARY_SELECTOR)).await;
        assert_eq!(status, 200, "{body}");
    }
    let grants = grants.lock().unwrap().clone();
    assert_eq!(grants.len(), 1, "one token for both queries: {grants:?}");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("xroad-adapter:client-s3cret");
    assert_eq!(grants[0].0, format!("Basic {basic}"));
    assert_eq!(
        grants[0].1,
        "grant_type=client_credentials&scope=metrics.read+tenant"
    );
    for query in proxy.queries() {
        assert_eq!(query.header("authorization"), Some("Bearer issued-token"));
    }
}

#[tokio::test]
async fn two_named_backends_serve_together_each_metric_and_rule_reading_the_one_it_names() {
    let cluster = Prometheus::start(&sidecar_traffic()).await;
    // The long-term store holds ten times the traffic, so every value says where it came from.
    let tenfold: Vec<Counter> = sidecar_traffic()
        .into_iter()
        .map(|mut c| {
            c.per_second *= 10.0;
            c
        })
        .collect();
    let longterm = Prometheus::start(&tenfold).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n- seriesQuery: 'container_network_receive_packets_total{namespace!=\"\",pod!=\"\"}'\n  backend: longterm\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  name: {matches: ^container_(.*)_total$, as: \"longterm_${1}\"}\n  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>,container=\"\"}[2m])) by (<<.GroupBy>>)'\n",
    )
    .unwrap();
    let config = Config::parse(
        "test.yaml",
        &format!(
            "prometheus: {{url: {}}}\nbackends:\n- {{name: longterm, url: {}}}\nmetrics:\n  {TX}: {{backend: longterm}}\n",
            cluster.url, longterm.url
        ),
    )
    .unwrap();
    let settings = xroad_metrics_adapter::app::Settings {
        inventory: Some(INVENTORY.into()),
        adapter_config: Some(rules),
        ..Default::default()
    };
    let state = xroad_metrics_adapter::app::Adapter::build(
        settings,
        config,
        xroad_metrics_adapter::server::guard::Guard::anonymous(),
    )
    .await
    .unwrap()
    .state;

    let rx = secondaries(&state, RX).await;
    assert_eq!(
        rx[0],
        (SECONDARY_A.to_owned(), 12.5),
        "from the cluster's Prometheus"
    );
    let tx = secondaries(&state, TX).await;
    assert_eq!(
        tx[0],
        (SECONDARY_A.to_owned(), 72.5),
        "from the long-term store"
    );
    let (status, body) = get(
        &state,
        &format!("{V2}/namespaces/sidecar/pods/{SECONDARY_C}/longterm_network_receive_packets"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["items"][0]["value"], "200",
        "the rule reads the long-term store"
    );

    let (_, ready) = get(&state, "/readyz?verbose").await;
    let ready = ready.as_str().unwrap();
    assert!(ready.contains("[i]metrics-backend prometheus"), "{ready}");
    assert!(ready.contains("[i]metrics-backend longterm"), "{ready}");
    let (_, metrics) = get(&state, "/metrics").await;
    let metrics = metrics.as_str().unwrap();
    for backend in ["prometheus", "longterm"] {
        assert!(
            metrics.contains(&format!(
                "xroad_metrics_adapter_backend_query_duration_seconds_count{{backend=\"{backend}\"}}"
            )),
            "{metrics}"
        );
    }
}

// The proxy must answer while the test waits for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_adapters_backend_flags_set_the_ca_the_client_certificate_and_the_token_file()
 {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let clients = Ca::new("backend-clients");
    let proxy = RecordingProxy::start(&prometheus.url, Some(&clients)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("ca.crt"), &proxy.ca_pem).unwrap();
    std::fs::write(dir.path().join("token"), "flag-token\n").unwrap();
    write_client_certificate(&clients, dir.path(), "adapter-from-flags");
    let flags: Vec<String> = [
        format!("--prometheus-url={}", proxy.url),
        format!("--prometheus-ca-file={d}/ca.crt"),
        format!("--prometheus-client-tls-cert-file={d}/tls.crt"),
        format!("--prometheus-client-tls-key-file={d}/tls.key"),
        format!("--prometheus-token-file={d}/token"),
    ]
    .into();
    let output = query_process(&flags, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent = proxy.queries();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].client.as_deref(), Some("adapter-from-flags"));
    assert_eq!(sent[0].header("authorization"), Some("Bearer flag-token"));
}

#[test]
fn the_verifying_proxy_reads_amz_dates_as_the_test_suite_means() {
    use std::time::{Duration, SystemTime};
    assert_eq!(
        amz_date("20150830T123600Z").unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    );
}

// The proxy must answer while the test waits for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_auth_config_takes_the_ca_client_certificate_and_token_of_a_kubeconfig() {
    use base64::Engine;
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let clients = Ca::new("backend-clients");
    let proxy = RecordingProxy::start(&prometheus.url, Some(&clients)).await;
    let leaf = clients.client("adapter-from-kubeconfig", &[]);
    let data = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("prometheus.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
current-context: prometheus
contexts:
- name: prometheus
  context: {{cluster: monitoring, user: adapter}}
clusters:
- name: monitoring
  cluster: {{server: https://not-used.example, certificate-authority-data: {}}}
users:
- name: adapter
  user: {{client-certificate-data: {}, client-key-data: {}, token: kubeconfig-token}}
",
            data(&proxy.ca_pem),
            data(&leaf.cert_pem),
            data(&leaf.key_pem)
        ),
    )
    .unwrap();
    let flags: Vec<String> = [
        format!("--prometheus-url={}", proxy.url),
        format!("--prometheus-auth-config={}", kubeconfig.display()),
    ]
    .into();
    let output = query_process(&flags, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent = proxy.queries();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].client.as_deref(), Some("adapter-from-kubeconfig"));
    assert_eq!(
        sent[0].header("authorization"),
        Some("Bearer kubeconfig-token")
    );

    // An exec plugin cannot run here: the message says what to give instead.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: https://x}}]\nusers: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}}]\n",
    )
    .unwrap();
    let output = query_process(&flags, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--prometheus-auth-config") && stderr.contains("exec plugin"),
        "{stderr}"
    );
}
