//! Delegated access for tests and benches: a fake of the kube API (no kube-apiserver can run here), the
//! cluster's PKI, and the adapter served over TLS behind it.
//!
//! The fake serves what an aggregated API server asks of the kube-apiserver, in the wire shapes of
//! `../shared/reference/kubernetes-contract.md` §8–§9: the `kube-system/extension-apiserver-authentication`
//! ConfigMap (GET, LIST and a WATCH that streams each change), TokenReview and SubjectAccessReview. It
//! records every review it is asked, so tests can see which user the adapter saw and count cache hits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use xroad_metrics_adapter::auth::review::ReviewTiming;
use xroad_metrics_adapter::auth::{Access, Delegated, DelegatedConfig, OverrideFiles};
use xroad_metrics_adapter::server::guard::{Guard, Limits};

use super::pki::{Ca, Leaf};
use super::{Prometheus, TlsAdapter, guarded, sidecar_traffic};

#[derive(Default)]
pub struct KubeState {
    pub configmap: HashMap<String, String>,
    pub resource_version: u64,
    /// Bearer token → TokenReview `status.user`.
    pub tokens: HashMap<String, Value>,
    /// (user, `resource/subresource` or non-resource path) pairs RBAC allows.
    pub allowed: Vec<(String, String)>,
    pub access_review_fails: bool,
    pub token_reviews: Vec<Value>,
    pub access_reviews: Vec<Value>,
}

#[derive(Clone)]
pub struct FakeKube {
    pub state: Arc<Mutex<KubeState>>,
    changes: tokio::sync::broadcast::Sender<Value>,
    /// Where it listens (plain HTTP).
    pub url: String,
}

fn configmap_object(state: &KubeState) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system",
                        "resourceVersion": state.resource_version.to_string()},
           "data": state.configmap})
}

impl FakeKube {
    pub async fn start(configmap: HashMap<String, String>) -> (Self, kube::Client) {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeKube {
            state: Arc::new(Mutex::new(KubeState {
                configmap,
                resource_version: 1,
                ..KubeState::default()
            })),
            changes: tokio::sync::broadcast::channel(16).0,
            url: format!("http://{}", listener.local_addr().unwrap()),
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
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = kube::Client::try_from(kube::Config::new(fake.url.parse().unwrap())).unwrap();
        (fake, client)
    }

    /// A kubeconfig for this fake, as `--authentication-kubeconfig` takes it.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("fake-kube.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: {}}}\n\
                 users:\n- name: adapter\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: adapter}}\n\
                 current-context: fake\n",
                self.url
            ),
        )
        .unwrap();
        path
    }

    pub fn accept_token(&self, token: &str, user: Value) {
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_owned(), user);
    }

    pub fn allow(&self, user: &str, what: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed
            .push((user.to_owned(), what.to_owned()));
    }

    /// Replaces one ConfigMap key, as kube-apiserver does when a CA rotates, and tells the watchers.
    pub fn update(&self, key: &str, value: &str) {
        let object = {
            let mut state = self.state.lock().unwrap();
            state.configmap.insert(key.to_owned(), value.to_owned());
            state.resource_version += 1;
            configmap_object(&state)
        };
        let _ = self
            .changes
            .send(json!({"type": "MODIFIED", "object": object}));
    }

    pub fn token_reviews(&self) -> Vec<Value> {
        self.state.lock().unwrap().token_reviews.clone()
    }

    pub fn access_reviews(&self) -> Vec<Value> {
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
    axum::Json(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "metadata": {}, "spec": review["spec"], "status": status}),
    )
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
            r.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        (_, n) => n["path"].as_str().unwrap_or_default().to_owned(),
    };
    let allowed = state.allowed.iter().any(|(u, w)| u == user && *w == what);
    axum::Json(
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "metadata": {}, "spec": spec, "status": {"allowed": allowed}}),
    )
    .into_response()
}

/// The cluster's PKI and the ConfigMap kube-apiserver publishes for it (kubeadm's values).
pub struct ClusterPki {
    pub client_ca: Ca,
    pub front_proxy_ca: Ca,
}

impl ClusterPki {
    pub fn new() -> Self {
        Self {
            client_ca: Ca::new("kubernetes"),
            front_proxy_ca: Ca::new("front-proxy-ca"),
        }
    }

    pub fn configmap(&self) -> HashMap<String, String> {
        [
            ("client-ca-file", self.client_ca.pem.clone()),
            (
                "requestheader-client-ca-file",
                self.front_proxy_ca.pem.clone(),
            ),
            (
                "requestheader-allowed-names",
                r#"["front-proxy-client"]"#.into(),
            ),
            (
                "requestheader-username-headers",
                r#"["X-Remote-User"]"#.into(),
            ),
            (
                "requestheader-group-headers",
                r#"["X-Remote-Group"]"#.into(),
            ),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#.into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The certificate kube-apiserver proxies with (`--proxy-client-cert-file`).
    pub fn front_proxy(&self) -> Leaf {
        self.front_proxy_ca.client("front-proxy-client", &[])
    }
}

pub fn delegated_config() -> DelegatedConfig {
    DelegatedConfig {
        overrides: OverrideFiles::default(),
        always_allow_paths: [
            "/healthz",
            "/healthz/*",
            "/livez",
            "/livez/*",
            "/readyz",
            "/readyz/*",
        ]
        .map(String::from)
        .to_vec(),
        audiences: vec![],
        token_timing: ReviewTiming::default(),
        access_timing: ReviewTiming::default(),
        tolerate_lookup_failure: false,
    }
}

/// Delegated access to a new fake cluster, with the default limits.
pub async fn delegated_guard() -> (ClusterPki, FakeKube, Guard) {
    let pki = ClusterPki::new();
    let (kube, client) = FakeKube::start(pki.configmap()).await;
    let delegated = Delegated::start(client, delegated_config()).await.unwrap();
    let guard = Guard::new(Access::Delegated(delegated), Limits::default());
    (pki, kube, guard)
}

/// The Sidecar adapter behind delegated access to a new fake cluster.
pub async fn delegated_state(
    prometheus_url: &str,
) -> (
    ClusterPki,
    FakeKube,
    Arc<xroad_metrics_adapter::server::AppState>,
) {
    let (pki, kube, guard) = delegated_guard().await;
    (pki, kube, guarded(prometheus_url, guard).await)
}

/// The adapter served over TLS with delegated access, and the fake cluster behind it.
pub struct Setup {
    pub pki: ClusterPki,
    pub kube: FakeKube,
    pub adapter: TlsAdapter,
    _prometheus: Option<Prometheus>,
}

impl Setup {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With a real Prometheus holding the Sidecar traffic, for requests that must return values.
    pub async fn with_data() -> Self {
        Self::start_with(Some(Prometheus::start(&sidecar_traffic()).await)).await
    }

    pub async fn start_with(prometheus: Option<Prometheus>) -> Self {
        let url = prometheus
            .as_ref()
            .map_or("http://127.0.0.1:9".to_owned(), |p| p.url.clone());
        let (pki, kube, state) = delegated_state(&url).await;
        let adapter = TlsAdapter::start(state).await;
        Self {
            pki,
            kube,
            adapter,
            _prometheus: prometheus,
        }
    }

    /// An HTTPS client trusting the adapter, presenting `certificate` if given.
    pub fn client(&self, certificate: Option<&Leaf>) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(&self.adapter.ca_file).unwrap()).unwrap();
        let mut builder = reqwest::Client::builder().tls_certs_merge([ca]);
        if let Some(leaf) = certificate {
            let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    pub async fn get(
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
