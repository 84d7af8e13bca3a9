//! Delegated authentication and authorization end to end: real TLS with client certificates made by a test
//! PKI (rcgen), the real `kubectl`, and a fake of the kube API (no kube-apiserver can run here).
//!
//! The fake serves what an aggregated API server asks of the kube-apiserver, in the wire shapes of
//! `../shared/reference/kubernetes-contract.md` §8–§9: the `kube-system/extension-apiserver-authentication`
//! ConfigMap (GET, LIST and a WATCH that streams each change), TokenReview and SubjectAccessReview. It
//! records every review it is asked, so tests can see which user the adapter saw and count cache hits.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::pki::{Ca, Leaf};
use support::*;
use xroad_metrics_adapter::auth::review::ReviewTiming;
use xroad_metrics_adapter::auth::{Access, Delegated, DelegatedConfig, OverrideFiles};
use xroad_metrics_adapter::server::guard::{Guard, Limits};

const HPA: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
const DISCOVERY: &str = V2;

#[derive(Default)]
struct KubeState {
    configmap: HashMap<String, String>,
    resource_version: u64,
    /// Bearer token → TokenReview `status.user`.
    tokens: HashMap<String, Value>,
    /// (user, `resource/subresource` or non-resource path) pairs RBAC allows.
    allowed: Vec<(String, String)>,
    access_review_fails: bool,
    token_reviews: Vec<Value>,
    access_reviews: Vec<Value>,
}

#[derive(Clone)]
struct FakeKube {
    state: Arc<Mutex<KubeState>>,
    changes: tokio::sync::broadcast::Sender<Value>,
}

fn configmap_object(state: &KubeState) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system",
                        "resourceVersion": state.resource_version.to_string()},
           "data": state.configmap})
}

impl FakeKube {
    async fn start(configmap: HashMap<String, String>) -> (Self, kube::Client) {
        use axum::routing::{get, post};
        let fake = FakeKube {
            state: Arc::new(Mutex::new(KubeState {
                configmap,
                resource_version: 1,
                ..KubeState::default()
            })),
            changes: tokio::sync::broadcast::channel(16).0,
        };
        let configmaps = "/api/v1/namespaces/kube-system/configmaps";
        let app = axum::Router::new()
            .route(
                &format!("{configmaps}/extension-apiserver-authentication"),
                get(|State(f): State<FakeKube>| async move {
                    axum::Json(configmap_object(&f.state.lock().unwrap()))
                }),
            )
            .route(configmaps, get(list_or_watch))
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(access_review),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        (fake, client)
    }

    fn accept_token(&self, token: &str, user: Value) {
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_owned(), user);
    }

    fn allow(&self, user: &str, what: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed
            .push((user.to_owned(), what.to_owned()));
    }

    /// Replaces one ConfigMap key, as kube-apiserver does when a CA rotates, and tells the watchers.
    fn update(&self, key: &str, value: &str) {
        let object = {
            let mut state = self.state.lock().unwrap();
            state.configmap.insert(key.to_owned(), value.to_owned());
            state.resource_version += 1;
            configmap_object(&state)
        };
        let _ = self.changes.send(json!({"type": "MODIFIED", "object": object}));
    }

    fn token_reviews(&self) -> Vec<Value> {
        self.state.lock().unwrap().token_reviews.clone()
    }

    fn access_reviews(&self) -> Vec<Value> {
        self.state.lock().unwrap().access_reviews.clone()
    }
}

async fn list_or_watch(
    State(fake): State<FakeKube>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let changes = fake.changes.subscribe();
        let stream = futures::stream::unfold(changes, |mut changes| async move {
            let event = changes.recv().await.ok()?;
            Some((Ok::<_, std::io::Error>(format!("{event}\n")), changes))
        });
        return (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(stream),
        )
            .into_response();
    }
    let state = fake.state.lock().unwrap();
    axum::Json(json!({"apiVersion": "v1", "kind": "ConfigMapList",
                      "metadata": {"resourceVersion": state.resource_version.to_string()},
                      "items": [configmap_object(&state)]}))
    .into_response()
}

async fn token_review(
    State(fake): State<FakeKube>,
    axum::Json(review): axum::Json<Value>,
) -> axum::Json<Value> {
    let mut state = fake.state.lock().unwrap();
    state.token_reviews.push(review.clone());
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let status = match state.tokens.get(token) {
        Some(user) => {
            json!({"authenticated": true, "user": user, "audiences": ["https://kubernetes.default.svc"]})
        }
        None => json!({"authenticated": false}),
    };
    axum::Json(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "metadata": {}, "spec": review["spec"], "status": status}))
}

async fn access_review(
    State(fake): State<FakeKube>,
    axum::Json(review): axum::Json<Value>,
) -> axum::response::Response {
    let mut state = fake.state.lock().unwrap();
    state.access_reviews.push(review["spec"].clone());
    if state.access_review_fails {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500})),
        )
            .into_response();
    }
    let spec = &review["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let what = match (&spec["resourceAttributes"], &spec["nonResourceAttributes"]) {
        (Value::Object(r), _) => format!(
            "{}/{}",
            r["resource"].as_str().unwrap_or_default(),
            r.get("subresource").and_then(Value::as_str).unwrap_or_default()
        ),
        (_, n) => n["path"].as_str().unwrap_or_default().to_owned(),
    };
    let allowed = state
        .allowed
        .iter()
        .any(|(u, w)| u == user && *w == what);
    axum::Json(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "metadata": {}, "spec": spec, "status": {"allowed": allowed}}))
    .into_response()
}

/// The cluster's PKI and the ConfigMap kube-apiserver publishes for it (kubeadm's values).
struct ClusterPki {
    client_ca: Ca,
    front_proxy_ca: Ca,
}

impl ClusterPki {
    fn new() -> Self {
        Self {
            client_ca: Ca::new("kubernetes"),
            front_proxy_ca: Ca::new("front-proxy-ca"),
        }
    }

    fn configmap(&self) -> HashMap<String, String> {
        [
            ("client-ca-file", self.client_ca.pem.clone()),
            ("requestheader-client-ca-file", self.front_proxy_ca.pem.clone()),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#.into()),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#.into()),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#.into()),
            ("requestheader-extra-headers-prefix", r#"["X-Remote-Extra-"]"#.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The certificate kube-apiserver proxies with (`--proxy-client-cert-file`).
    fn front_proxy(&self) -> Leaf {
        self.front_proxy_ca.client("front-proxy-client", &[])
    }
}

fn delegated_config() -> DelegatedConfig {
    DelegatedConfig {
        overrides: OverrideFiles::default(),
        always_allow_paths: ["/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*"]
            .map(String::from)
            .to_vec(),
        audiences: vec![],
        token_timing: ReviewTiming::default(),
        access_timing: ReviewTiming::default(),
        tolerate_lookup_failure: false,
    }
}

/// The adapter served over TLS with delegated access, and the fake cluster behind it.
struct Setup {
    pki: ClusterPki,
    kube: FakeKube,
    adapter: TlsAdapter,
    _prometheus: Option<Prometheus>,
}

impl Setup {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With a real Prometheus holding the Sidecar traffic, for requests that must return values.
    async fn with_data() -> Self {
        Self::start_with(Some(Prometheus::start(&sidecar_traffic()).await)).await
    }

    async fn start_with(prometheus: Option<Prometheus>) -> Self {
        let pki = ClusterPki::new();
        let (kube, client) = FakeKube::start(pki.configmap()).await;
        let delegated = Delegated::start(client, delegated_config()).await.unwrap();
        let url = prometheus
            .as_ref()
            .map_or("http://127.0.0.1:9".to_owned(), |p| p.url.clone());
        let guard = Guard::new(Access::Delegated(delegated), Limits::default());
        let adapter = TlsAdapter::start(guarded(&url, guard).await).await;
        Self {
            pki,
            kube,
            adapter,
            _prometheus: prometheus,
        }
    }

    /// An HTTPS client trusting the adapter, presenting `certificate` if given.
    fn client(&self, certificate: Option<&Leaf>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.adapter.ca_file).unwrap())
            .unwrap();
        let mut builder = reqwest::Client::builder().tls_certs_merge([ca]);
        if let Some(leaf) = certificate {
            let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    async fn get(
        &self,
        certificate: Option<&Leaf>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .client(certificate)
            .get(format!("https://localhost:{}{path}", self.adapter.port));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The headers kube-apiserver's proxy sets for the HPA controller (§7.4).
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
    setup.kube.allow(HPA, "pods/container_network_receive_packets_per_second");
    let (code, list) = setup
        .get(Some(&setup.pki.front_proxy()), &secondaries_rx_packets(), HPA_HEADERS)
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        values(&list),
        pairs(&[
            (SECONDARY_A, "12500m"),
            (SECONDARY_B, "17500m"),
            (SECONDARY_C, "20")
        ])
    );
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
    let masters = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];
    // No certificate at all.
    assert_unauthorized(setup.get(None, &secondaries_rx_packets(), &masters).await);
    // The front-proxy CA, but a CN not in requestheader-allowed-names.
    let wrong_cn = setup.pki.front_proxy_ca.client("kubelet", &[]);
    assert_unauthorized(setup.get(Some(&wrong_cn), &secondaries_rx_packets(), &masters).await);
    // The right CN from a CA the cluster does not trust.
    let forged = Ca::new("front-proxy-ca").client("front-proxy-client", &[]);
    assert_unauthorized(setup.get(Some(&forged), &secondaries_rx_packets(), &masters).await);
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
            &[("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")],
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
    // The aggregator's availability check: front proxy, system:masters (§7.2).
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
    for path in ["/healthz", "/livez", "/readyz", "/readyz/ping"] {
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
    let admin = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];
    let old_proxy = setup.pki.front_proxy();
    assert_eq!(setup.get(Some(&old_proxy), DISCOVERY, &admin).await.0, 200);

    let new_ca = Ca::new("front-proxy-ca-2");
    setup
        .kube
        .update("requestheader-client-ca-file", &new_ca.pem);
    let new_proxy = new_ca.client("front-proxy-client", &[]);
    let mut codes = (0, 0);
    for _ in 0..100 {
        codes = (
            setup.get(Some(&old_proxy), DISCOVERY, &admin).await.0,
            setup.get(Some(&new_proxy), DISCOVERY, &admin).await.0,
        );
        if codes == (401, 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        codes,
        (401, 200),
        "old proxy refused, new proxy accepted"
    );
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

    setup
        .kube
        .accept_token("hpa-token", json!({"username": HPA, "groups": ["system:serviceaccounts"]}));
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
