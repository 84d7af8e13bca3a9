//! Shared fixtures of the integration tests: a real Prometheus loaded with exact counter data, the adapter
//! served in process over real TLS, and the named X-Road Sidecar data set.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use xroad_metrics_adapter::app::{Adapter, Settings};
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::server::guard::Guard;
use xroad_metrics_adapter::server::{self, AppState, tls};

#[path = "tools.rs"]
mod tools;
pub use tools::*;
#[path = "traffic.rs"]
mod traffic;
pub use traffic::*;
#[path = "control_plane.rs"]
pub mod control_plane;
#[path = "delegated.rs"]
pub mod delegated;
#[path = "fake_kube.rs"]
pub mod fake_kube;
#[path = "health_endpoint.rs"]
pub mod health_endpoint;
#[path = "hpa_model.rs"]
pub mod hpa_model;
#[path = "kubelet_metrics.rs"]
pub mod kubelet_metrics;
#[path = "opmonitor.rs"]
pub mod opmonitor;
#[path = "peers.rs"]
pub mod peers;
#[path = "pki.rs"]
pub mod pki;
#[path = "recording_proxy.rs"]
pub mod recording_proxy;
#[path = "scaler.rs"]
pub mod scaler;
#[path = "served.rs"]
pub mod served;
#[path = "victoria.rs"]
pub mod victoria;

/// The inventory of the Sidecar layout: one Primary, three Secondary pods.
pub const INVENTORY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/inventory-sidecar.yaml"
);

/// A real Prometheus on a free loopback port with its own data directory; killed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus over TSDB blocks made by `promtool tsdb create-blocks-from openmetrics`.
    pub async fn start(counters: &[Counter]) -> Self {
        Self::start_openmetrics(&openmetrics(counters)).await
    }

    /// The same from OpenMetrics text with timestamps.
    pub async fn start_openmetrics(text: &str) -> Self {
        const INSTALL: &str =
            "apt-get install -y prometheus (Debian's package brings prometheus and promtool)";
        let promtool = require_tool("promtool", INSTALL);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.om");
        std::fs::write(&input, text).unwrap();
        let made = Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        Self::run(dir, "global:\n  scrape_interval: 15s\n").await
    }

    /// Prometheus with this configuration (e.g. scrape jobs) and an empty data directory.
    pub async fn start_with_config(config: &str) -> Self {
        Self::run(tempfile::tempdir().unwrap(), config).await
    }

    async fn run(dir: tempfile::TempDir, config_text: &str) -> Self {
        let prometheus = require_tool("prometheus", "apt-get install -y prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=10y")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let me = Self {
            child,
            url,
            _dir: dir,
        };
        me.wait_ready().await;
        me
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(response) = client.get(format!("{}/-/ready", self.url)).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus at {} did not become ready in 30 s", self.url);
    }

    /// Runs `promql` directly: the baseline the adapter's answers are compared with.
    pub async fn query(&self, promql: &str) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `source` as the only backend, named `prometheus`, behind a cache of the usual settings.
pub fn single_backend(
    source: Arc<dyn xroad_metrics_adapter::source::MetricSource>,
) -> Arc<xroad_metrics_adapter::backends::Backends> {
    use xroad_metrics_adapter::backends::Backends;
    use xroad_metrics_adapter::cache::QueryCache;
    Arc::new(Backends::single(Arc::new(QueryCache::new(
        "prometheus",
        source,
        Duration::from_secs(15),
        Duration::from_secs(60),
        Arc::new(Default::default()),
    ))))
}

/// The adapter's state for `prometheus_url`, with the Sidecar inventory.
pub fn state(prometheus_url: &str) -> Arc<AppState> {
    state_with(
        prometheus_url,
        Duration::from_secs(15),
        Duration::from_secs(60),
    )
}

pub fn state_with(prometheus_url: &str, refresh: Duration, staleness: Duration) -> Arc<AppState> {
    let config = Config {
        refresh_interval: refresh,
        max_staleness: staleness,
        ..Config::default()
    };
    // Building from an inventory file awaits no tokio resource, so blocking here is safe in any test.
    futures::executor::block_on(adapter(prometheus_url, config, Path::new(INVENTORY)))
}

/// The adapter as `serve` builds it, from a configuration and an inventory file.
pub async fn adapter(prometheus_url: &str, config: Config, inventory: &Path) -> Arc<AppState> {
    adapter_with(prometheus_url, config, inventory, Guard::anonymous()).await
}

/// `adapter()` with the access control and limits `serve` would give it.
pub async fn adapter_with(
    prometheus_url: &str,
    mut config: Config,
    inventory: &Path,
    guard: Guard,
) -> Arc<AppState> {
    config.prometheus.url = Some(prometheus_url.parse().unwrap());
    let settings = Settings {
        inventory: Some(inventory.to_owned()),
        ..Settings::default()
    };
    Adapter::build(settings, config, guard).await.unwrap().state
}

/// The Sidecar adapter serving the Prometheus Adapter rules in `adapter_config` too (listed once, at start).
pub async fn with_adapter_rules(prometheus_url: &str, adapter_config: &Path) -> Arc<AppState> {
    let mut config = Config::default();
    config.prometheus.url = Some(prometheus_url.parse().unwrap());
    let settings = Settings {
        inventory: Some(INVENTORY.into()),
        adapter_config: Some(adapter_config.to_owned()),
        ..Settings::default()
    };
    Adapter::build(settings, config, Guard::anonymous())
        .await
        .unwrap()
        .state
}

/// The Sidecar adapter of `state()` behind `guard`.
pub async fn guarded(prometheus_url: &str, guard: Guard) -> Arc<AppState> {
    adapter_with(
        prometheus_url,
        Config::default(),
        Path::new(INVENTORY),
        guard,
    )
    .await
}

/// Sends one GET through the router in process; returns status and JSON (or text as a JSON string).
pub async fn get(state: &Arc<AppState>, path: &str) -> (u16, serde_json::Value) {
    get_with(state, path, &[]).await
}

/// `get` with extra request headers.
pub async fn get_with(
    state: &Arc<AppState>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::get(path).header(
        "accept",
        "application/vnd.kubernetes.protobuf, application/json",
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(axum::body::Body::empty()).unwrap();
    let response = server::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, json)
}

/// `(pod name, value)` of every item, in response order.
/// The environment the image sets (`ENV` lines of the Dockerfile), which the deployment and the load benchmark
/// run the adapter with too.
pub fn image_env() -> Vec<(String, String)> {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("ENV ")?.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

pub fn values(list: &serde_json::Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {list}"))
        .iter()
        .map(|item| {
            (
                item["describedObject"]["name"].as_str().unwrap().to_owned(),
                item["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The adapter served over real TLS on a loopback port; stopped on drop.
pub struct TlsAdapter {
    pub port: u16,
    pub ca_file: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TlsAdapter {
    pub async fn start(state: Arc<AppState>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (cert, key) = tls::ensure_self_signed(dir.path(), &names).unwrap();
        let config = tls::server_config(
            tls::ServingCert::load(&cert, &key).unwrap(),
            &tls::TlsOptions::default(),
        )
        .unwrap();
        let ca_file = dir.path().join(tls::CA_FILE);
        Self::start_with(state, config, ca_file, dir).await
    }

    /// Serves `state` with a given TLS configuration; `ca_file` is what clients should trust.
    pub async fn start_with(
        state: Arc<AppState>,
        config: Arc<rustls::ServerConfig>,
        ca_file: PathBuf,
        dir: tempfile::TempDir,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(
            listener,
            config,
            server::app(state),
            server::ConnectionLimits::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            port,
            ca_file,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// A kubeconfig pointing kubectl at this adapter, trusting its CA. The token is a placeholder the adapter
    /// ignores (`--authentication none`); without any credentials kubectl would prompt for a username.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.kubeconfig_as(dir, "{token: unused-with-authentication-none}")
    }

    /// A kubeconfig whose user is `user`, a kubeconfig `user:` mapping in flow style.
    pub fn kubeconfig_as(&self, dir: &Path, user: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: adapter\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\n\
                 users:\n- name: me\n  user: {user}\ncontexts:\n- name: adapter\n  context: {{cluster: adapter, user: me}}\ncurrent-context: adapter\n",
                self.port,
                self.ca_file.display()
            ),
        )
        .unwrap();
        path
    }
}

impl TlsAdapter {
    /// A raw TLS connection to this adapter offering `alpn` (`h2`, `http/1.1`), trusting its CA; nothing is
    /// sent after the handshake.
    pub async fn connect(
        &self,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(&self.ca_file).unwrap())
            .unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::aws_lc_rs::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
    }

    /// Runs the real `kubectl get --raw PATH` against this adapter; the output as kubectl left it.
    pub async fn kubectl(&self, dir: &Path, path: &str) -> std::process::Output {
        self.kubectl_with(self.kubeconfig(dir), dir, path).await
    }

    /// `kubectl get --raw PATH` with the given kubeconfig.
    pub async fn kubectl_with(
        &self,
        kubeconfig: PathBuf,
        dir: &Path,
        path: &str,
    ) -> std::process::Output {
        let kubectl = require_tool(
            "kubectl",
            "install kubectl (Debian: apt-get install -y kubernetes-client, or the Kubernetes apt repository)",
        );
        tokio::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["get", "--raw", path])
            .env("HOME", dir)
            .env("KUBECACHEDIR", dir.join("cache"))
            .output()
            .await
            .unwrap()
    }

    /// `kubectl get --raw PATH`, which must succeed, as JSON.
    pub async fn kubectl_json(&self, dir: &Path, path: &str) -> serde_json::Value {
        let output = self.kubectl(dir, path).await;
        assert!(
            output.status.success(),
            "kubectl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for TlsAdapter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` every 50 ms until it holds, failing the test after `timeout`; returns how long it took.
/// Tests wait for a state with this, never with a sleep long enough on the author's machine.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    wait_for(what, timeout, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await;
    start.elapsed()
}

/// Polls `check` every 50 ms until it gives a value, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {timeout:?}: {what}");
}
