//! Delegated access for tests and benches: the cluster's PKI, the authentication ConfigMap kube-apiserver
//! publishes for it (on the fake kube API of `fake_kube`), and the adapter served over TLS behind it.
//!
//! The ConfigMap's keys and TokenReview/SubjectAccessReview shapes follow the aggregation layer's
//! authentication docs: <https://kubernetes.io/docs/tasks/extend-kubernetes/configure-aggregation-layer/>.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use xroad_metrics_adapter::auth::review::ReviewTiming;
use xroad_metrics_adapter::auth::{Access, Delegated, DelegatedConfig, OverrideFiles};
use xroad_metrics_adapter::server::guard::{Guard, Limits};

use super::pki::{Ca, Leaf};
use super::{Prometheus, TlsAdapter, guarded, sidecar_traffic};

pub use super::fake_kube::FakeKube;

const AUTHENTICATION_CONFIGMAP: &str = "extension-apiserver-authentication";

impl FakeKube {
    /// A fake cluster publishing `data` in `kube-system/extension-apiserver-authentication`, as
    /// kube-apiserver does.
    pub async fn with_authentication(data: HashMap<String, String>) -> (Self, kube::Client) {
        let (fake, client) = FakeKube::start().await;
        fake.apply(
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": AUTHENTICATION_CONFIGMAP, "namespace": "kube-system"},
                   "data": data}),
        );
        (fake, client)
    }

    /// Replaces one key of the authentication ConfigMap, as kube-apiserver does when a CA rotates.
    pub fn update(&self, key: &str, value: &str) {
        let mut configmap = self
            .object("configmaps", "kube-system", AUTHENTICATION_CONFIGMAP)
            .expect("started with_authentication");
        configmap["data"][key] = json!(value);
        self.apply("configmaps", configmap);
    }
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
    let (kube, client) = FakeKube::with_authentication(pki.configmap()).await;
    let delegated = Delegated::start(client.clone(), client, delegated_config())
        .await
        .unwrap();
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

    /// With a backend at `url`, reachable or not.
    pub async fn with_backend_url(url: &str) -> Self {
        let (pki, kube, state) = delegated_state(url).await;
        let adapter = TlsAdapter::start(state).await;
        Self {
            pki,
            kube,
            adapter,
            _prometheus: None,
        }
    }

    pub async fn start_with(prometheus: Option<Prometheus>) -> Self {
        let url = prometheus
            .as_ref()
            .map_or("http://127.0.0.1:9".to_owned(), |p| p.url.clone());
        Self {
            _prometheus: prometheus,
            ..Self::with_backend_url(&url).await
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
