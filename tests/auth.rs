//! Delegated authentication and authorization end to end: real TLS with client certificates made by a test
//! PKI (rcgen), the real `kubectl`, and the fake kube API of `support/delegated.rs` (no kube-apiserver can
//! run here).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::delegated::Setup;
use support::pki::Ca;
use support::*;

const HPA: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
const DISCOVERY: &str = V2;

/// The headers kube-apiserver's proxy sets for the HPA controller.
const HPA_HEADERS: &[(&str, &str)] = &[
    ("X-Remote-User", HPA),
    ("X-Remote-Group", "system:serviceaccounts"),
    ("X-Remote-Group", "system:serviceaccounts:kube-system"),
];

fn assert_unauthorized((code, body): (u16, Value)) {
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_front_proxy_certificate_with_headers_is_the_user_the_access_review_sees() {
    let setup = Setup::with_data().await;
    setup
        .kube
        .allow(HPA, "pods/container_network_receive_packets_per_second");
    let (code, list) = setup
        .get(
            Some(&setup.pki.front_proxy()),
            &secondaries_rx_packets(),
            HPA_HEADERS,
        )
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(values(&list), pairs(&SECONDARIES_RX_PACKETS));
    assert_eq!(
        setup.kube.access_reviews(),
        [json!({
            "user": HPA,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            "extra": {},
            "resourceAttributes": {"namespace": "sidecar", "verb": "get", "group": "custom.metrics.k8s.io",
                                   "version": "v1beta2", "resource": "pods",
                                   "subresource": "container_network_receive_packets_per_second", "name": "*"}
        })]
    );
    assert!(
        setup.kube.token_reviews().is_empty(),
        "no token was involved"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn front_proxy_headers_without_the_front_proxy_certificate_are_ignored() {
    let setup = Setup::start().await;
    let masters = [
        ("X-Remote-User", "admin"),
        ("X-Remote-Group", "system:masters"),
    ];
    // No certificate at all.
    assert_unauthorized(setup.get(None, &secondaries_rx_packets(), &masters).await);
    // The front-proxy CA, but a CN not in requestheader-allowed-names.
    let wrong_cn = setup.pki.front_proxy_ca.client("kubelet", &[]);
    assert_unauthorized(
        setup
            .get(Some(&wrong_cn), &secondaries_rx_packets(), &masters)
            .await,
    );
    // The right CN from a CA the cluster does not trust.
    let forged = Ca::new("front-proxy-ca").client("front-proxy-client", &[]);
    assert_unauthorized(
        setup
            .get(Some(&forged), &secondaries_rx_packets(), &masters)
            .await,
    );
    assert!(setup.kube.access_reviews().is_empty());
    assert!(setup.kube.token_reviews().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_ca_user_is_its_own_cn_whatever_headers_it_sends() {
    let setup = Setup::start().await;
    let alice = setup.pki.client_ca.client("alice", &["dev"]);
    let (code, status) = setup
        .get(
            Some(&alice),
            &secondaries_rx_packets(),
            &[
                ("X-Remote-User", "admin"),
                ("X-Remote-Group", "system:masters"),
            ],
        )
        .await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "pods.custom.metrics.k8s.io \"*\" is forbidden: User \"alice\" cannot get resource \
         \"pods/container_network_receive_packets_per_second\" in API group \"custom.metrics.k8s.io\" in the \
         namespace \"sidecar\""
    );
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["details"],
        json!({"name": "*", "group": "custom.metrics.k8s.io", "kind": "pods"})
    );
    assert!(status.get("items").is_none(), "no metric data when denied");
    let reviews = setup.kube.access_reviews();
    assert_eq!(reviews[0]["user"], "alice");
    assert_eq!(reviews[0]["groups"], json!(["dev", "system:authenticated"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn system_masters_is_allowed_without_an_access_review() {
    let setup = Setup::start().await;
    let admin = setup
        .pki
        .client_ca
        .client("kubernetes-admin", &["system:masters"]);
    let (code, body) = setup.get(Some(&admin), DISCOVERY, &[]).await;
    assert_eq!(code, 200, "{body}");
    // The aggregator's availability check: front proxy, system:masters.
    let (code, _) = setup
        .get(
            Some(&setup.pki.front_proxy()),
            DISCOVERY,
            &[
                ("X-Remote-User", "system:kube-aggregator"),
                ("X-Remote-Group", "system:masters"),
            ],
        )
        .await;
    assert_eq!(code, 200);
    assert!(setup.kube.access_reviews().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_reviewed_once_and_answers_are_cached_both_ways() {
    let setup = Setup::start().await;
    setup.kube.accept_token(
        "ops-token",
        json!({"username": "system:serviceaccount:sidecar:ops", "uid": "4b1c",
               "groups": ["system:serviceaccounts", "system:authenticated"],
               "extra": {"authentication.kubernetes.io/pod-name": ["ops-0"]}}),
    );
    setup
        .kube
        .allow("system:serviceaccount:sidecar:ops", DISCOVERY);
    for _ in 0..3 {
        let (code, body) = setup
            .get(None, DISCOVERY, &[("Authorization", "Bearer ops-token")])
            .await;
        assert_eq!(code, 200, "{body}");
    }
    for _ in 0..3 {
        assert_unauthorized(
            setup
                .get(None, DISCOVERY, &[("Authorization", "Bearer stolen")])
                .await,
        );
    }
    assert_unauthorized(
        setup
            .get(None, DISCOVERY, &[("Authorization", "Bearer  ops-token")])
            .await,
    );
    let reviews = setup.kube.token_reviews();
    assert_eq!(
        reviews.len(),
        2,
        "one TokenReview per token within the TTL: {reviews:?}"
    );
    assert_eq!(
        reviews[0]["spec"],
        json!({"token": "ops-token", "audiences": []})
    );
    let access = setup.kube.access_reviews();
    assert_eq!(access.len(), 1, "one SubjectAccessReview within the TTL");
    assert_eq!(
        access[0],
        json!({"user": "system:serviceaccount:sidecar:ops", "uid": "4b1c",
               "groups": ["system:serviceaccounts", "system:authenticated"],
               "extra": {"authentication.kubernetes.io/pod-name": ["ops-0"]},
               "nonResourceAttributes": {"path": DISCOVERY, "verb": "get"}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_access_review_is_a_500_and_is_not_remembered() {
    let setup = Setup::start().await;
    let alice = setup.pki.client_ca.client("alice", &[]);
    setup.kube.allow("alice", DISCOVERY);
    setup.kube.state.lock().unwrap().access_review_fails = true;
    let (code, status) = setup.get(Some(&alice), DISCOVERY, &[]).await;
    assert_eq!(code, 500);
    assert_eq!(status["reason"], "InternalError");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("Internal error occurred: "),
        "{status}"
    );
    setup.kube.state.lock().unwrap().access_review_fails = false;
    let (code, _) = setup.get(Some(&alice), DISCOVERY, &[]).await;
    assert_eq!(code, 200, "the failure was not cached as a denial");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_probes_are_open_and_metrics_need_their_own_permission() {
    let setup = Setup::start().await;
    for path in [
        "/healthz",
        "/healthz/ping",
        "/livez",
        "/readyz",
        "/readyz/ping",
    ] {
        let (code, body) = setup.get(None, path, &[]).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    for path in ["/metrics", "/version", "/apis", DISCOVERY, "/openapi/v2"] {
        assert_unauthorized(setup.get(None, path, &[]).await);
    }
    let prometheus = setup.pki.client_ca.client("prometheus", &[]);
    let (code, status) = setup.get(Some(&prometheus), "/metrics", &[]).await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "forbidden: User \"prometheus\" cannot get path \"/metrics\""
    );
    setup.kube.allow("prometheus", "/metrics");
    // The denial is cached for its TTL; a new user name shows the allow rule at work.
    let scraper = setup.pki.client_ca.client("prometheus", &["monitoring"]);
    let (code, text) = setup.get(Some(&scraper), "/metrics", &[]).await;
    assert_eq!(code, 200);
    assert!(
        text.as_str()
            .unwrap()
            .contains("xroad_metrics_adapter_authorizations_total{reason=\"denied\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_front_proxy_ca_is_picked_up_without_a_restart() {
    let setup = Setup::start().await;
    let admin = [
        ("X-Remote-User", "admin"),
        ("X-Remote-Group", "system:masters"),
    ];
    let old_proxy = setup.pki.front_proxy();
    assert_eq!(setup.get(Some(&old_proxy), DISCOVERY, &admin).await.0, 200);

    let new_ca = Ca::new("front-proxy-ca-2");
    setup
        .kube
        .update("requestheader-client-ca-file", &new_ca.pem);
    let new_proxy = new_ca.client("front-proxy-client", &[]);
    eventually(
        "old proxy refused, new proxy accepted",
        Duration::from_secs(5),
        || async {
            let codes = (
                setup.get(Some(&old_proxy), DISCOVERY, &admin).await.0,
                setup.get(Some(&new_proxy), DISCOVERY, &admin).await.0,
            );
            codes == (401, 200)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_kubectl_authenticates_with_a_client_certificate_and_with_a_bearer_token() {
    let setup = Setup::with_data().await;
    let dir = tempfile::tempdir().unwrap();
    let ops = setup.pki.client_ca.client("ops", &["sidecar-operators"]);
    let (cert, key) = (dir.path().join("ops.crt"), dir.path().join("ops.key"));
    std::fs::write(&cert, &ops.cert_pem).unwrap();
    std::fs::write(&key, &ops.key_pem).unwrap();
    let with_cert = setup.adapter.kubeconfig_as(
        dir.path(),
        &format!(
            "{{client-certificate: {}, client-key: {}}}",
            cert.display(),
            key.display()
        ),
    );
    let denied = setup
        .adapter
        .kubectl_with(with_cert.clone(), dir.path(), &secondaries_rx_packets())
        .await;
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("Error from server (Forbidden): pods.custom.metrics.k8s.io \"*\" is forbidden: User \"ops\""),
        "{stderr}"
    );
    setup
        .kube
        .allow("ops", "pods/container_network_receive_packets_per_second");
    // A new group set is a new cache key: the allow rule applies at once.
    let ops2 = setup.pki.client_ca.client("ops", &["sidecar-admins"]);
    std::fs::write(&cert, &ops2.cert_pem).unwrap();
    std::fs::write(&key, &ops2.key_pem).unwrap();
    let allowed = setup
        .adapter
        .kubectl_with(with_cert, dir.path(), &secondaries_rx_packets())
        .await;
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let list: Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(values(&list).len(), 3);

    setup.kube.accept_token(
        "hpa-token",
        json!({"username": HPA, "groups": ["system:serviceaccounts"]}),
    );
    setup
        .kube
        .allow(HPA, "pods/container_network_receive_packets_per_second");
    let with_token = setup
        .adapter
        .kubeconfig_as(dir.path(), "{token: hpa-token}");
    let output = setup
        .adapter
        .kubectl_with(with_token.clone(), dir.path(), &secondaries_rx_packets())
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bad_token = setup
        .adapter
        .kubeconfig_as(dir.path(), "{token: not-a-token}");
    let output = setup
        .adapter
        .kubectl_with(bad_token, dir.path(), &secondaries_rx_packets())
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: You must be logged in to the server (Unauthorized)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_trust_configmap_stops_startup_unless_tolerated() {
    use xroad_metrics_adapter::auth::{Delegated, DelegatedConfig};
    // A kube API that forbids everything, as when the RoleBinding in kube-system is missing.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::FORBIDDEN,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                              "message": "configmaps \"extension-apiserver-authentication\" is forbidden: User \"system:serviceaccount:xroad-metrics:xroad-metrics-adapter\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"kube-system\""})),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();

    let error = Delegated::start(
        client.clone(),
        client.clone(),
        support::delegated::delegated_config(),
    )
    .await
    .err()
    .expect("startup must fail");
    let text = error.to_string();
    assert!(
        text.contains("cannot read the ConfigMap kube-system/extension-apiserver-authentication")
            && text.contains("is forbidden")
            && text.contains("extension-apiserver-authentication-reader"),
        "{text}"
    );
    let tolerant = DelegatedConfig {
        tolerate_lookup_failure: true,
        ..support::delegated::delegated_config()
    };
    assert!(
        Delegated::start(client.clone(), client, tolerant)
            .await
            .is_ok()
    );
}

/// The whole `serve` command with its default, delegated access, asking the fake kube API: flags, ConfigMap,
/// readiness, and the access check on the real socket; SubjectAccessReviews go to the
/// `--authorization-kubeconfig` cluster.
#[tokio::test(flavor = "multi_thread")]
async fn serve_with_default_flags_reads_the_trust_and_checks_every_request() {
    use support::delegated::{ClusterPki, FakeKube};
    let pki = ClusterPki::new();
    let (kube, _) = FakeKube::with_authentication(pki.configmap()).await;
    let (authorizer, _) = FakeKube::with_authentication(pki.configmap()).await;
    let authorizer_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .args([
            "serve",
            "--prometheus-url",
            "http://127.0.0.1:9",
            "--inventory",
            INVENTORY,
        ])
        .args(["--secure-port", &port.to_string(), "--cert-dir"])
        .arg(dir.path())
        .arg("--authentication-kubeconfig")
        .arg(kube.kubeconfig(dir.path()))
        .arg("--authorization-kubeconfig")
        .arg(authorizer.kubeconfig(authorizer_dir.path()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _child = support::control_plane::Process(child);
    let ca =
        reqwest::Certificate::from_pem(&wait_for_file(&dir.path().join("ca.crt")).await).unwrap();
    let client = |leaf: Option<&support::pki::Leaf>| {
        let mut builder = reqwest::Client::builder().tls_certs_merge([ca.clone()]);
        if let Some(leaf) = leaf {
            let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    };
    let base = format!("https://localhost:{port}");
    let ready = wait_for("serve answers /readyz", Duration::from_secs(10), || async {
        let response = client(None)
            .get(format!("{base}/readyz?verbose"))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    })
    .await;
    assert!(ready.contains("readyz check passed"), "{ready}");
    let anonymous = client(None)
        .get(format!("{base}/apis"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let admin = pki
        .client_ca
        .client("kubernetes-admin", &["system:masters"]);
    let allowed = client(Some(&admin))
        .get(format!("{base}/apis"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let jane = pki.client_ca.client("jane", &[]);
    let denied = client(Some(&jane))
        .get(format!(
            "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/*/xroad_messages_per_second"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);
    assert_eq!(authorizer.access_reviews().len(), 1);
    assert!(kube.access_reviews().is_empty());
}

async fn wait_for_file(path: &std::path::Path) -> Vec<u8> {
    let what = format!("{} appears", path.display());
    wait_for(&what, Duration::from_secs(10), || async {
        std::fs::read(path).ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn health_details_and_backend_addresses_go_only_to_callers_allowed_to_read_them() {
    let setup =
        Setup::with_backend_url("http://scraper:hunter2@127.0.0.1:9/prometheus?api_key=s3cr3t")
            .await;
    let alice = setup.pki.client_ca.client("alice", &[]);
    setup
        .kube
        .allow("alice", "pods/container_network_receive_packets_per_second");
    let (code, status) = setup
        .get(Some(&alice), &secondaries_rx_packets(), &[])
        .await;
    assert_eq!(code, 500, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("http://127.0.0.1:9/prometheus") && !message.contains("hunter2"),
        "{message}"
    );
    assert!(
        !message.contains("s3cr3t") && !message.contains("api_key"),
        "{message}"
    );

    let (code, anonymous) = setup.get(None, "/readyz?verbose", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        anonymous.as_str().unwrap(),
        "[+]ping ok\n[+]serving-cert ok\n[+]pod-inventory ok\nreadyz check passed\n",
        "names and states only"
    );
    let (_, not_allowed) = setup.get(Some(&alice), "/readyz?verbose", &[]).await;
    assert_eq!(not_allowed, anonymous, "alice may not read /readyz");
    let ops = setup.pki.client_ca.client("ops", &[]);
    setup.kube.allow("ops", "/readyz");
    let (_, detailed) = setup.get(Some(&ops), "/readyz?verbose", &[]).await;
    let detailed = detailed.as_str().unwrap();
    assert!(
        detailed.contains("[i]metrics-backend prometheus (information, not a readiness check): last success never, last error ")
            && detailed.contains("s ago: cannot reach the metrics backend at http://127.0.0.1:9/prometheus: "),
        "{detailed}"
    );
    assert!(
        !detailed.contains("hunter2") && !detailed.contains("s3cr3t"),
        "{detailed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hpa_keeps_getting_answers_while_made_up_tokens_flood_the_adapter() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let setup = Setup::with_data().await;
    setup
        .kube
        .allow(HPA, "pods/container_network_receive_packets_per_second");
    setup.kube.state.lock().unwrap().token_review_latency = Some(Duration::from_secs(3));
    // More concurrent callers than --max-requests-inflight (400), each with a fresh token every time, so that
    // every request costs a TokenReview the (slow) kube-apiserver takes 3 s to answer.
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..450)
        .map(|_| {
            let client = setup.client(None);
            let url = format!("https://localhost:{}{DISCOVERY}", setup.adapter.port);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut codes = std::collections::BTreeMap::<u16, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    let token = format!("Bearer {}", uuid::Uuid::new_v4());
                    if let Ok(response) =
                        client.get(&url).header("Authorization", token).send().await
                    {
                        *codes.entry(response.status().as_u16()).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                codes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let proxy = setup.pki.front_proxy();
    let mut hpa_codes = Vec::new();
    for _ in 0..15 {
        let (code, _) = setup
            .get(Some(&proxy), &secondaries_rx_packets(), HPA_HEADERS)
            .await;
        hpa_codes.push(code);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut flood_codes = std::collections::BTreeMap::<u16, usize>::new();
    for task in flood {
        for (code, n) in task.await.unwrap() {
            *flood_codes.entry(code).or_default() += n;
        }
    }
    assert!(
        hpa_codes.iter().all(|c| *c == 200),
        "the HPA got {hpa_codes:?} while the flood got {flood_codes:?}"
    );
    assert!(
        flood_codes.get(&429).is_some_and(|n| *n > 0),
        "{flood_codes:?}"
    );
    assert!(
        flood_codes.keys().all(|c| [401, 429].contains(c)),
        "{flood_codes:?}"
    );
    let most = setup.kube.state.lock().unwrap().most_token_reviews_waiting;
    assert!(
        most <= xroad_metrics_adapter::auth::review::MAX_REVIEWS_IN_FLIGHT,
        "{most} TokenReviews waited at once"
    );
}
