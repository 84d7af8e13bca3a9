//! The native configuration file (`--config FILE`): YAML in, a validated typed `Config` out.
//!
//! Parse, don't validate later: every duration, URL and header is checked here, once, and unknown keys are
//! errors that name file, line and column. The section names are a contract.
//! This module does no network I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod kubeconfig;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// YAML syntax, unknown keys or wrong types; the text carries line and column.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message with its location.
        message: String,
    },
    /// A value that parsed but makes no sense.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// How queries are sent to the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Form-encoded POST: every Prometheus-compatible backend accepts it and no URL limit applies
    /// (the Prometheus HTTP API documentation).
    #[default]
    Post,
    /// GET, switching to POST automatically for queries longer than [`GET_QUERY_LIMIT`].
    Get,
}

/// Above this many bytes of PromQL a `GET` source sends POST instead, well below nginx's 8 KiB request line.
pub const GET_QUERY_LIMIT: usize = 2048;

/// The name of the backend configured under `prometheus:`.
pub const DEFAULT_BACKEND: &str = "prometheus";

/// One metrics backend: Prometheus or a compatible engine, and how it is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Its name, which metrics and rules choose it by (`prometheus` for the `prometheus:` section).
    pub name: String,
    /// Base URL up to, not including, `/api/v1` (a path prefix such as `/prometheus` is kept).
    pub url: Option<url::Url>,
    /// Extra headers on every query; never logged.
    pub headers: BTreeMap<String, String>,
    /// The tenant, sent as a header (Mimir and Cortex `X-Scope-OrgID`, Thanos `THANOS-TENANT`).
    pub tenant: Option<Tenant>,
    /// Extra form parameters on every query (e.g. a prom-label-proxy `tenant`, OpenShift's `namespace`).
    pub query_params: BTreeMap<String, String>,
    /// Client timeout; the backend is asked to stop slightly earlier.
    pub timeout: Duration,
    /// GET or POST.
    pub method: HttpMethod,
    /// TLS towards the backend.
    pub tls: BackendTls,
    /// How requests authenticate.
    pub auth: BackendAuth,
    /// Whether an answer with warnings is served.
    pub warnings: WarningPolicy,
    /// Longer queries are refused before they are sent (VictoriaMetrics' `-search.maxQueryLen` is 16 KiB).
    pub max_query_length: Option<usize>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_BACKEND.to_owned(),
            url: None,
            headers: BTreeMap::new(),
            tenant: None,
            query_params: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            method: HttpMethod::Post,
            tls: BackendTls::default(),
            auth: BackendAuth::None,
            warnings: WarningPolicy::Fail,
            max_query_length: None,
        }
    }
}

/// A tenant header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The header, `X-Scope-OrgID` unless set.
    pub header: String,
    /// The tenant (Mimir federation: `a|b`).
    pub id: String,
}

/// A certificate, key or secret: a file, re-read when it changes, or the bytes themselves (a kubeconfig's
/// `…-data` fields). Inline bytes never show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Material {
    /// A file.
    File(PathBuf),
    /// The bytes.
    Inline(std::sync::Arc<[u8]>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Material::File(path) => path.fmt(f),
            Material::Inline(_) => f.write_str("<inline>"),
        }
    }
}

impl std::fmt::Display for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Material::File(path) => path.display().fmt(f),
            Material::Inline(_) => f.write_str("inline data"),
        }
    }
}

/// TLS towards a backend. Certificate files are re-read when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTls {
    /// Trust only this CA bundle (default: the system's roots).
    pub ca: Option<Material>,
    /// A client certificate (PEM) for mutual TLS.
    pub cert: Option<Material>,
    /// Its key (PEM).
    pub key: Option<Material>,
    /// Skip verifying the backend's certificate: for tests only, and warned about at start.
    pub insecure_skip_verify: bool,
}

/// How requests to a backend authenticate; at most one way per backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BackendAuth {
    /// None.
    #[default]
    None,
    /// `Authorization: Bearer` with the token from a file (a projected ServiceAccount token rotates).
    Bearer {
        /// The token.
        token: Material,
    },
    /// HTTP basic auth (Grafana Cloud, vmauth, Prometheus' `web.config`).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: Material,
    },
    /// OAuth2 client credentials.
    OAuth2 {
        /// The token endpoint.
        token_url: url::Url,
        /// The client id.
        client_id: String,
        /// The client secret file.
        client_secret_file: PathBuf,
        /// Scopes asked for.
        scopes: Vec<String>,
        /// Extra token-request parameters (e.g. `audience`).
        params: BTreeMap<String, String>,
    },
    /// AWS SigV4 (Amazon Managed Service for Prometheus).
    SigV4 {
        /// The region (default: the AWS SDK's, e.g. `AWS_REGION`).
        region: Option<String>,
        /// The signing name, `aps` unless set.
        service: String,
    },
}

impl BackendAuth {
    /// How it authenticates, without a secret: for `check-config` and logs.
    pub fn describe(&self) -> String {
        match self {
            BackendAuth::None => "no auth".into(),
            BackendAuth::Bearer { token } => format!("bearer token from {token}"),
            BackendAuth::Basic { username, .. } => format!("basic auth as {username}"),
            BackendAuth::OAuth2 { token_url, .. } => format!("OAuth2 from {token_url}"),
            BackendAuth::SigV4 { region, service } => format!(
                "SigV4 for {service} in {}",
                region.as_deref().unwrap_or("the SDK's region")
            ),
        }
    }
}

/// What an answer with warnings (a partial answer, a limit hit) becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarningPolicy {
    /// A failed query: the HTTP API's last good value or an error, never an under-count.
    #[default]
    Fail,
    /// Served; the warnings are logged and counted.
    Ignore,
}

/// Which backend each metric reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Catalogue metrics by name; the others read the default backend.
    pub metrics: BTreeMap<String, String>,
}

/// The Deployment a scale-on-failure policy serves a replica count for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTarget {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub deployment: String,
}

/// The active Security Server health check (`http://<podIP>:5588/`), probed like a kubelet probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    /// Off: no active probing.
    pub enabled: bool,
    /// `http` or `https` (certificates are not verified: the check is about liveness, not identity).
    pub scheme: String,
    /// The port, 5588 on Sidecar images.
    pub port: u16,
    /// The path; the Security Server answers every path alike.
    pub path: String,
    /// How often each pod is probed.
    pub period: Duration,
    /// How long one probe may take (above the server's 5 s per-check timeout).
    pub timeout: Duration,
    /// Consecutive failures before a pod is failing.
    pub failure_threshold: u32,
    /// Consecutive successes before a failing pod is healthy again.
    pub success_threshold: u32,
}

/// The health signals a policy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalsConfig {
    /// Pod status: `Ready`, recent container restarts, waiting reasons, long `Pending`.
    pub pod_status: bool,
    /// A container restarted within this window counts as failing.
    pub restart_window: Duration,
    /// A pod younger than this that is not yet Ready is starting, not failing.
    pub startup_grace: Duration,
    /// Kubelet liveness-probe failures from Prometheus (`prober_probe_total`).
    pub probes: bool,
    /// The window of `increase(prober_probe_total{…}[window])`.
    pub probe_window: Duration,
    /// The backend the probe counts come from (the default one without).
    pub probe_backend: Option<String>,
    /// The active health check.
    pub health_check: HealthCheckConfig,
}

/// One scale-on-failure policy (`scaleOnFailure[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleOnFailureConfig {
    /// A unique name.
    pub name: String,
    /// The Deployment.
    pub target: PolicyTarget,
    /// A served pod metric whose sum over the target's pods is the load.
    pub load_metric: String,
    /// The load one healthy pod carries at target.
    pub capacity_per_pod: f64,
    /// Never ask for fewer healthy pods than this.
    pub min_healthy: u32,
    /// At most this many replicas on top of what the load needs.
    pub max_extra: u32,
    /// Never ask for more replicas than this (optional).
    pub max_replicas: Option<u32>,
    /// The health signals.
    pub signals: SignalsConfig,
    /// How long a pod must fail before it counts.
    pub fail_for: Duration,
    /// How long a counted pod must be healthy before it stops counting.
    pub recover_for: Duration,
}

/// TLS towards the Security Server's client proxy (its consumer port demands a registered client certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA bundle to verify the client proxy with (default: the system roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// The adapter's client certificate (PEM).
    pub cert_file: Option<std::path::PathBuf>,
    /// Its key (PEM).
    pub key_file: Option<std::path::PathBuf>,
}

/// The op-monitor collector (`xroad.opmonitor`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpMonitorConfig {
    /// The Security Server's client proxy, e.g. `https://…:8443`.
    pub url: url::Url,
    /// The owner member of the Security Server (`objectType=MEMBER`).
    pub client: crate::xroad::protocol::XRoadId,
    /// The Security Server (owner member + `serverCode`).
    pub security_server: crate::xroad::protocol::XRoadId,
    /// Client TLS.
    pub tls: ClientTls,
    /// How often to poll.
    pub poll_interval: Duration,
    /// How far behind now the window ends: the server's 60 s availability offset plus a clock-skew margin.
    pub records_available_offset: Duration,
    /// One request's timeout.
    pub timeout: Duration,
    /// The namespace of the pods the records are attributed to.
    pub namespace: String,
    /// At most this many distinct services get their own labels; the rest fold into `service_code="other"`.
    pub max_services: usize,
    /// Count the monitoring meta-services (`getSecurityServer*`) too.
    pub include_meta_services: bool,
    /// The server's `max-records-in-payload`: a page this full is followed by the next one at once.
    pub page_size: usize,
    /// The Lease that elects one collector among the adapter's replicas (cluster mode only).
    pub leader_election: LeaderElectionConfig,
}

/// `xroad.opmonitor.leaderElection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Off: every replica collects (run one replica only, or counts add up).
    pub enabled: bool,
    /// The Lease's namespace (default: the adapter's own, from `POD_NAMESPACE`).
    pub namespace: Option<String>,
    /// The Lease's name.
    pub lease_name: String,
    /// How long a leader holds the Lease without renewing; the failover time.
    pub lease_duration: Duration,
}

/// KEDA's External Scaler over gRPC (`grpc:`).
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcConfig {
    /// Off unless enabled.
    pub enabled: bool,
    /// Its own port, beside the HTTPS API's.
    pub port: u16,
    /// When set, a caller must present a client certificate this CA signed (KEDA's `tlsClientCert`).
    pub client_ca_file: Option<PathBuf>,
    /// How often `StreamIsActive` checks for a change of activity.
    pub active_check_interval: Duration,
    /// Calls served at once; more are refused with `RESOURCE_EXHAUSTED`.
    pub max_concurrent_calls: usize,
    /// How long one call may take before `DEADLINE_EXCEEDED`.
    pub call_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 9443,
            client_ca_file: None,
            active_check_interval: Duration::from_secs(10),
            max_concurrent_calls: 64,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Prometheus' usual scrape interval, assumed unless `scrapeInterval` says otherwise.
const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The default metrics backend (`prometheus:`).
    pub prometheus: BackendConfig,
    /// Further named backends (`backends:`).
    pub backends: Vec<BackendConfig>,
    /// Which backend each catalogue metric reads (`metrics.<name>.backend`).
    pub routes: Routes,
    /// How long one backend answer is reused for every caller that asks the same question.
    pub refresh_interval: Duration,
    /// How long the last good answer is served while the backend fails, before requests fail.
    pub max_staleness: Duration,
    /// The `rate()` window of the built-in network metrics (≥ 4 × the scrape interval).
    pub rate_window: Duration,
    /// Scale-on-failure policies.
    pub scale_on_failure: Vec<ScaleOnFailureConfig>,
    /// The X-Road op-monitor collector, when configured.
    pub opmonitor: Option<OpMonitorConfig>,
    /// Where `xroad_messages_per_second` comes from.
    pub throughput: crate::catalog::ThroughputSource,
    /// KEDA's External Scaler.
    pub grpc: GrpcConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prometheus: BackendConfig::default(),
            backends: Vec::new(),
            routes: Routes::default(),
            refresh_interval: Duration::from_secs(15),
            max_staleness: Duration::from_secs(60),
            rate_window: Duration::from_secs(120),
            scale_on_failure: Vec::new(),
            opmonitor: None,
            throughput: Default::default(),
            grpc: GrpcConfig::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    prometheus: RawBackend,
    #[serde(default)]
    backends: Vec<RawBackend>,
    #[serde(default)]
    metrics: BTreeMap<String, RawMetric>,
    refresh_interval: Option<String>,
    max_staleness: Option<String>,
    rate_window: Option<String>,
    /// Prometheus' scrape interval for cAdvisor, which bounds `rateWindow` from below.
    scrape_interval: Option<String>,
    #[serde(default)]
    scale_on_failure: Vec<RawPolicy>,
    xroad: Option<RawXRoad>,
    grpc: Option<RawGrpc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGrpc {
    enabled: Option<bool>,
    port: Option<u16>,
    client_ca_file: Option<PathBuf>,
    active_check_interval: Option<String>,
    max_concurrent_calls: Option<usize>,
    call_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawXRoad {
    opmonitor: Option<RawOpMonitor>,
    throughput: Option<crate::catalog::ThroughputSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawId {
    x_road_instance: String,
    member_class: String,
    member_code: String,
    server_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTls {
    ca_file: Option<std::path::PathBuf>,
    cert_file: Option<std::path::PathBuf>,
    key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOpMonitor {
    url: String,
    client: RawId,
    security_server: RawId,
    #[serde(default)]
    tls: RawTls,
    poll_interval: Option<String>,
    records_available_offset: Option<String>,
    timeout: Option<String>,
    namespace: String,
    max_services: Option<usize>,
    include_meta_services: Option<bool>,
    page_size: Option<usize>,
    #[serde(default)]
    leader_election: RawLeaderElection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLeaderElection {
    enabled: Option<bool>,
    namespace: Option<String>,
    lease_name: Option<String>,
    lease_duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicy {
    name: String,
    target: RawTarget,
    load: RawLoad,
    min_healthy: Option<u32>,
    max_extra: Option<u32>,
    max_replicas: Option<u32>,
    #[serde(default)]
    signals: RawSignals,
    fail_for: Option<String>,
    recover_for: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTarget {
    namespace: String,
    deployment: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLoad {
    metric: String,
    capacity_per_pod: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSignals {
    #[serde(default)]
    pod_status: RawPodStatus,
    #[serde(default)]
    probes: RawProbes,
    #[serde(default)]
    health_check: RawHealthCheck,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPodStatus {
    enabled: Option<bool>,
    restart_window: Option<String>,
    startup_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProbes {
    enabled: Option<bool>,
    window: Option<String>,
    backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHealthCheck {
    enabled: Option<bool>,
    scheme: Option<String>,
    port: Option<u16>,
    path: Option<String>,
    period: Option<String>,
    timeout: Option<String>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBackend {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    tenant: Option<RawTenant>,
    #[serde(default)]
    query_params: BTreeMap<String, String>,
    timeout: Option<String>,
    method: Option<HttpMethod>,
    #[serde(default)]
    tls: RawBackendTls,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<RawBasicAuth>,
    oauth2: Option<RawOAuth2>,
    sigv4: Option<RawSigV4>,
    warnings: Option<WarningPolicy>,
    max_query_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTenant {
    id: String,
    header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBackendTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOAuth2 {
    token_url: String,
    client_id: String,
    client_secret_file: PathBuf,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSigV4 {
    region: Option<String>,
    service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMetric {
    backend: String,
}

/// The tenant header Mimir and Cortex read.
const DEFAULT_TENANT_HEADER: &str = "X-Scope-OrgID";

/// Validates one backend section; `key` is its dotted key (`prometheus`, `backends[1]`).
fn backend(raw: RawBackend, key: &str, name: String) -> Result<BackendConfig, (String, String)> {
    let defaults = BackendConfig::default();
    let at = |field: &str, message: String| (format!("{key}.{field}"), message);
    let header = |name: &str, value: &str| {
        axum::http::HeaderName::try_from(name).is_ok()
            && axum::http::HeaderValue::try_from(value).is_ok()
    };
    for (name, value) in &raw.headers {
        if !header(name, value) {
            return Err(at(
                "headers",
                format!("{name:?} is not a valid HTTP header"),
            ));
        }
    }
    let tenant = raw
        .tenant
        .map(|t| Tenant {
            header: t.header.unwrap_or_else(|| DEFAULT_TENANT_HEADER.to_owned()),
            id: t.id,
        })
        .filter(|t| !t.id.is_empty());
    if let Some(t) = &tenant
        && !header(&t.header, &t.id)
    {
        return Err(at(
            "tenant",
            format!("{:?} is not a valid HTTP header", t.header),
        ));
    }
    let timeout = match raw.timeout {
        None => defaults.timeout,
        Some(text) => crate::duration::parse(&text).map_err(|m| at("timeout", m))?,
    };
    if timeout.is_zero() {
        return Err(at("timeout", "must be greater than zero".into()));
    }
    let mut ways = Vec::new();
    if let Some(token_file) = raw.bearer_token_file {
        ways.push((
            "bearerTokenFile",
            BackendAuth::Bearer {
                token: Material::File(token_file),
            },
        ));
    }
    if let Some(basic) = raw.basic_auth {
        ways.push((
            "basicAuth",
            BackendAuth::Basic {
                username: basic.username,
                password: Material::File(basic.password_file),
            },
        ));
    }
    if let Some(oauth2) = raw.oauth2 {
        ways.push((
            "oauth2",
            BackendAuth::OAuth2 {
                token_url: parse_base_url(&oauth2.token_url)
                    .map_err(|m| at("oauth2.tokenUrl", m))?,
                client_id: oauth2.client_id,
                client_secret_file: oauth2.client_secret_file,
                scopes: oauth2.scopes,
                params: oauth2.params,
            },
        ));
    }
    if let Some(sigv4) = raw.sigv4 {
        ways.push((
            "sigv4",
            BackendAuth::SigV4 {
                region: sigv4.region,
                service: sigv4.service.unwrap_or_else(|| "aps".to_owned()),
            },
        ));
    }
    if ways.len() > 1 {
        let names: Vec<_> = ways.iter().map(|(n, _)| *n).collect();
        return Err((
            key.to_owned(),
            format!(
                "{} are set; a backend authenticates one way",
                names.join(" and ")
            ),
        ));
    }
    let tls = BackendTls {
        ca: raw.tls.ca_file.map(Material::File),
        cert: raw.tls.cert_file.map(Material::File),
        key: raw.tls.key_file.map(Material::File),
        insecure_skip_verify: raw.tls.insecure_skip_verify.unwrap_or(false),
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(at("tls", "certFile and keyFile go together".into()));
    }
    Ok(BackendConfig {
        name,
        url: raw
            .url
            .as_deref()
            .map(parse_base_url)
            .transpose()
            .map_err(|m| at("url", m))?,
        headers: raw.headers,
        tenant,
        query_params: raw.query_params,
        timeout,
        method: raw.method.unwrap_or_default(),
        tls,
        auth: ways.pop().map(|(_, way)| way).unwrap_or_default(),
        warnings: raw.warnings.unwrap_or_default(),
        max_query_length: raw.max_query_length,
    })
}

/// Parses a base URL and checks that it is HTTP(S) with a host.
pub fn parse_base_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

impl Config {
    /// The backends with a URL, in order: `prometheus:` first (the default), then `backends:`.
    pub fn all_backends(&self) -> impl Iterator<Item = &BackendConfig> {
        std::iter::once(&self.prometheus)
            .filter(|p| p.url.is_some())
            .chain(&self.backends)
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = crate::files::read_text(path, crate::files::CONFIG_LIMIT).map_err(|source| {
            ConfigError::Read {
                path: display.clone(),
                source,
            }
        })?;
        Self::parse(&display, &text)
    }

    /// Validates `text`; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        if crate::compat::rules::looks_like_adapter_config(text) {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                message: "this is a Prometheus Adapter configuration (rules, externalRules, resourceRules), \
                          not the adapter's own: the command line reads it as --adapter-config"
                    .into(),
            });
        }
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        let invalid = |key: &str, message| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let duration = |key, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => crate::duration::parse(&text).map_err(|m| invalid(key, m)),
        };
        let defaults = Config::default();
        let positive = |key, d: Duration| {
            if d.is_zero() {
                Err(invalid(key, "must be greater than zero".into()))
            } else {
                Ok(d)
            }
        };
        let backend_error = |(key, message)| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if raw.prometheus.name.is_some() {
            return Err(invalid(
                "prometheus.name",
                format!(
                    "the prometheus section is the backend named {DEFAULT_BACKEND:?}; further backends go under backends"
                ),
            ));
        }
        let prometheus = backend(raw.prometheus, "prometheus", DEFAULT_BACKEND.to_owned())
            .map_err(backend_error)?;
        let mut backends = Vec::new();
        let mut backend_names = vec![DEFAULT_BACKEND.to_owned()];
        for (index, raw) in raw.backends.into_iter().enumerate() {
            let key = format!("backends[{index}]");
            let name = raw.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
                invalid(
                    &key,
                    "every backend needs a name, which metrics choose it by".into(),
                )
            })?;
            if backend_names.contains(&name) {
                return Err(invalid(&key, format!("two backends are named {name:?}")));
            }
            backend_names.push(name.clone());
            let backend = backend(raw, &key, name).map_err(backend_error)?;
            if backend.url.is_none() {
                return Err(invalid(&format!("{key}.url"), "is required".into()));
            }
            backends.push(backend);
        }
        let mut routes = Routes::default();
        for (metric, route) in raw.metrics {
            if !backend_names.contains(&route.backend) {
                return Err(invalid(
                    &format!("metrics.{metric}.backend"),
                    format!(
                        "no backend is named {:?} (there are: {})",
                        route.backend,
                        backend_names.join(", ")
                    ),
                ));
            }
            routes.metrics.insert(metric, route.backend);
        }
        let scrape_interval = positive(
            "scrapeInterval",
            duration(
                "scrapeInterval",
                raw.scrape_interval.clone(),
                DEFAULT_SCRAPE_INTERVAL,
            )?,
        )?;
        let config = Config {
            prometheus,
            backends,
            routes,
            refresh_interval: positive(
                "refreshInterval",
                duration(
                    "refreshInterval",
                    raw.refresh_interval,
                    defaults.refresh_interval,
                )?,
            )?,
            max_staleness: duration("maxStaleness", raw.max_staleness, defaults.max_staleness)?,
            rate_window: positive(
                "rateWindow",
                duration("rateWindow", raw.rate_window, defaults.rate_window)?,
            )?,
            scale_on_failure: Vec::new(),
            opmonitor: None,
            throughput: Default::default(),
            grpc: GrpcConfig::default(),
        };
        let mut config = config;
        let mut names = std::collections::HashSet::new();
        for (index, raw) in raw.scale_on_failure.into_iter().enumerate() {
            let policy = policy(raw).map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                key: key.to_owned(),
                message: format!("scaleOnFailure[{index}]: {message}"),
            })?;
            if !names.insert(policy.name.clone()) {
                return Err(invalid(
                    "scaleOnFailure",
                    format!("two policies are named {:?}", policy.name),
                ));
            }
            config.scale_on_failure.push(policy);
        }
        if let Some(grpc) = raw.grpc {
            let defaults = GrpcConfig::default();
            config.grpc = GrpcConfig {
                enabled: grpc.enabled.unwrap_or(false),
                port: grpc.port.unwrap_or(defaults.port),
                client_ca_file: grpc.client_ca_file,
                active_check_interval: positive(
                    "grpc.activeCheckInterval",
                    duration(
                        "grpc.activeCheckInterval",
                        grpc.active_check_interval,
                        defaults.active_check_interval,
                    )?,
                )?,
                max_concurrent_calls: match grpc.max_concurrent_calls {
                    None => defaults.max_concurrent_calls,
                    Some(0) => {
                        return Err(invalid(
                            "grpc.maxConcurrentCalls",
                            "must be greater than zero".into(),
                        ));
                    }
                    Some(calls) => calls,
                },
                call_timeout: positive(
                    "grpc.callTimeout",
                    duration("grpc.callTimeout", grpc.call_timeout, defaults.call_timeout)?,
                )?,
            };
        }
        if let Some(xroad) = raw.xroad {
            config.throughput = xroad.throughput.unwrap_or_default();
            if let Some(raw) = xroad.opmonitor {
                config.opmonitor =
                    Some(
                        opmonitor(raw).map_err(|(key, message)| ConfigError::Invalid {
                            path: path.to_owned(),
                            key: key.to_owned(),
                            message,
                        })?,
                    );
            }
        }
        // rate() needs at least two samples in its window, and four leave room for a missed scrape.
        let shortest = scrape_interval * 4;
        if config.rate_window < shortest || config.rate_window.subsec_nanos() != 0 {
            return Err(invalid(
                "rateWindow",
                format!(
                    "must be a whole number of seconds, at least {}s (4 × scrapeInterval {}s)",
                    shortest.as_secs_f64(),
                    scrape_interval.as_secs_f64()
                ),
            ));
        }
        Ok(config)
    }
}

/// A key and what is wrong with it.
type KeyError = (&'static str, String);

fn opmonitor(raw: RawOpMonitor) -> Result<OpMonitorConfig, KeyError> {
    use crate::xroad::protocol::XRoadId;
    let duration =
        |key: &'static str, value: Option<String>, default: u64| -> Result<Duration, KeyError> {
            match value {
                None => Ok(Duration::from_secs(default)),
                Some(text) => crate::duration::parse(&text).map_err(|m| (key, m)),
            }
        };
    let id = |raw: RawId| XRoadId {
        instance: raw.x_road_instance,
        member_class: raw.member_class,
        member_code: raw.member_code,
        server_code: raw.server_code,
    };
    if raw.client.server_code.is_some() {
        return Err((
            "xroad.opmonitor.client",
            "is the owner member: it has no serverCode".into(),
        ));
    }
    if raw.security_server.server_code.is_none() {
        return Err((
            "xroad.opmonitor.securityServer",
            "needs a serverCode".into(),
        ));
    }
    let client = id(raw.client);
    let security_server = id(raw.security_server);
    // The daemon returns every record only to the server's owner; anyone else silently gets a
    // filtered view, which would read as no traffic.
    if (&client.instance, &client.member_class, &client.member_code)
        != (
            &security_server.instance,
            &security_server.member_class,
            &security_server.member_code,
        )
    {
        return Err((
            "xroad.opmonitor.client",
            "must be the owner member of the security server (same xRoadInstance, memberClass, memberCode): \
             other clients only see their own records"
                .into(),
        ));
    }
    if raw.tls.cert_file.is_some() != raw.tls.key_file.is_some() {
        return Err((
            "xroad.opmonitor.tls",
            "certFile and keyFile go together".into(),
        ));
    }
    let offset = duration(
        "xroad.opmonitor.recordsAvailableOffset",
        raw.records_available_offset,
        65,
    )?;
    if offset < Duration::from_secs(60) {
        return Err((
            "xroad.opmonitor.recordsAvailableOffset",
            "must be at least 60s, the daemon's own offset".into(),
        ));
    }
    Ok(OpMonitorConfig {
        url: parse_base_url(&raw.url).map_err(|m| ("xroad.opmonitor.url", m))?,
        client,
        security_server,
        tls: ClientTls {
            ca_file: raw.tls.ca_file,
            cert_file: raw.tls.cert_file,
            key_file: raw.tls.key_file,
        },
        poll_interval: duration("xroad.opmonitor.pollInterval", raw.poll_interval, 30)?,
        records_available_offset: offset,
        timeout: duration("xroad.opmonitor.timeout", raw.timeout, 60)?,
        namespace: raw.namespace,
        max_services: raw.max_services.unwrap_or(200),
        include_meta_services: raw.include_meta_services.unwrap_or(false),
        page_size: raw.page_size.unwrap_or(10_000).max(1),
        leader_election: LeaderElectionConfig {
            enabled: raw.leader_election.enabled.unwrap_or(true),
            namespace: raw.leader_election.namespace,
            lease_name: raw
                .leader_election
                .lease_name
                .unwrap_or_else(|| "xroad-metrics-adapter-opmonitor".into()),
            lease_duration: duration(
                "xroad.opmonitor.leaderElection.leaseDuration",
                raw.leader_election.lease_duration,
                30,
            )?,
        },
    })
}

fn policy(raw: RawPolicy) -> Result<ScaleOnFailureConfig, KeyError> {
    let duration =
        |key: &'static str, value: Option<String>, default: u64| -> Result<Duration, KeyError> {
            match value {
                None => Ok(Duration::from_secs(default)),
                Some(text) => crate::duration::parse(&text).map_err(|m| (key, m)),
            }
        };
    let dns_name = |key: &'static str, value: &str| -> Result<(), KeyError> {
        let ok = !value.is_empty()
            && value.len() <= 253
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if ok {
            Ok(())
        } else {
            Err((key, format!("{value:?} is not a valid Kubernetes name")))
        }
    };
    dns_name("scaleOnFailure.name", &raw.name)?;
    dns_name("scaleOnFailure.target.namespace", &raw.target.namespace)?;
    dns_name("scaleOnFailure.target.deployment", &raw.target.deployment)?;
    if !(raw.load.capacity_per_pod.is_finite() && raw.load.capacity_per_pod > 0.0) {
        return Err((
            "scaleOnFailure.load.capacityPerPod",
            "must be a number greater than zero".into(),
        ));
    }
    let check = raw.signals.health_check;
    let scheme = check.scheme.unwrap_or_else(|| "http".into());
    if scheme != "http" && scheme != "https" {
        return Err((
            "scaleOnFailure.signals.healthCheck.scheme",
            format!("{scheme:?} must be http or https"),
        ));
    }
    let path = check.path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            "scaleOnFailure.signals.healthCheck.path",
            format!("{path:?} must be an absolute URL path"),
        ));
    }
    let health_check = HealthCheckConfig {
        enabled: check.enabled.unwrap_or(true),
        scheme,
        port: check.port.unwrap_or(5588),
        path,
        period: duration(
            "scaleOnFailure.signals.healthCheck.period",
            check.period,
            10,
        )?,
        timeout: duration(
            "scaleOnFailure.signals.healthCheck.timeout",
            check.timeout,
            8,
        )?,
        failure_threshold: check.failure_threshold.unwrap_or(2).max(1),
        success_threshold: check.success_threshold.unwrap_or(1).max(1),
    };
    if health_check.period.is_zero() || health_check.timeout.is_zero() {
        return Err((
            "scaleOnFailure.signals.healthCheck",
            "period and timeout must be greater than zero".into(),
        ));
    }
    let min_healthy = raw.min_healthy.unwrap_or(1);
    if let Some(max) = raw.max_replicas
        && max < min_healthy
    {
        return Err((
            "scaleOnFailure.maxReplicas",
            format!("{max} is below minHealthy {min_healthy}"),
        ));
    }
    Ok(ScaleOnFailureConfig {
        name: raw.name,
        target: PolicyTarget {
            namespace: raw.target.namespace,
            deployment: raw.target.deployment,
        },
        load_metric: raw.load.metric,
        capacity_per_pod: raw.load.capacity_per_pod,
        min_healthy,
        max_extra: raw.max_extra.unwrap_or(5),
        max_replicas: raw.max_replicas,
        signals: SignalsConfig {
            pod_status: raw.signals.pod_status.enabled.unwrap_or(true),
            restart_window: duration(
                "scaleOnFailure.signals.podStatus.restartWindow",
                raw.signals.pod_status.restart_window,
                300,
            )?,
            startup_grace: duration(
                "scaleOnFailure.signals.podStatus.startupGrace",
                raw.signals.pod_status.startup_grace,
                600,
            )?,
            probes: raw.signals.probes.enabled.unwrap_or(true),
            probe_window: duration(
                "scaleOnFailure.signals.probes.window",
                raw.signals.probes.window,
                120,
            )?,
            probe_backend: raw.signals.probes.backend,
            health_check,
        },
        fail_for: duration("scaleOnFailure.failFor", raw.fail_for, 30)?,
        recover_for: duration("scaleOnFailure.recoverFor", raw.recover_for, 60)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(Config::parse("c.yaml", "").unwrap(), Config::default());
    }

    #[test]
    fn every_key_is_read() {
        let config = Config::parse(
            "c.yaml",
            "prometheus:\n  url: http://mimir:8080/prometheus\n  headers: {X-Scope-OrgID: xroad}\n  timeout: 3s\n  method: GET\n\
             refreshInterval: 10s\nmaxStaleness: 2m\nrateWindow: 5m\n",
        )
        .unwrap();
        assert_eq!(
            config.prometheus.url.unwrap().as_str(),
            "http://mimir:8080/prometheus"
        );
        assert_eq!(config.prometheus.headers["X-Scope-OrgID"], "xroad");
        assert_eq!(config.prometheus.timeout, Duration::from_secs(3));
        assert_eq!(config.prometheus.method, HttpMethod::Get);
        assert_eq!(config.refresh_interval, Duration::from_secs(10));
        assert_eq!(config.max_staleness, Duration::from_secs(120));
        assert_eq!(config.rate_window, Duration::from_secs(300));
    }

    const POLICY: &str = "scaleOnFailure:\n- name: secondaries\n  target: {namespace: sidecar, deployment: security-server-sidecar-secondary}\n  load: {metric: container_network_receive_packets_per_second, capacityPerPod: 50}\n";

    #[test]
    fn a_minimal_policy_gets_the_documented_defaults() {
        let config = Config::parse("c.yaml", POLICY).unwrap();
        let policy = &config.scale_on_failure[0];
        assert_eq!(
            policy.target.deployment,
            "security-server-sidecar-secondary"
        );
        assert_eq!(
            (policy.min_healthy, policy.max_extra, policy.max_replicas),
            (1, 5, None)
        );
        assert_eq!(
            (policy.fail_for, policy.recover_for),
            (Duration::from_secs(30), Duration::from_secs(60))
        );
        let check = &policy.signals.health_check;
        assert!(check.enabled && policy.signals.pod_status && policy.signals.probes);
        assert_eq!(
            (check.scheme.as_str(), check.port, check.path.as_str()),
            ("http", 5588, "/")
        );
        assert_eq!(
            (check.period, check.timeout),
            (Duration::from_secs(10), Duration::from_secs(8))
        );
        assert_eq!((check.failure_threshold, check.success_threshold), (2, 1));
    }

    #[test]
    fn every_policy_key_is_read() {
        let text = format!(
            "{POLICY}  minHealthy: 2\n  maxExtra: 3\n  maxReplicas: 20\n  failFor: 45s\n  recoverFor: 2m\n  signals:\n    podStatus: {{enabled: false, restartWindow: 10m, startupGrace: 15m}}\n    probes: {{enabled: false, window: 5m}}\n    healthCheck: {{enabled: true, scheme: https, port: 15588, path: /health, period: 5s, timeout: 3s, failureThreshold: 3, successThreshold: 2}}\n"
        );
        let policy = Config::parse("c.yaml", &text)
            .unwrap()
            .scale_on_failure
            .remove(0);
        assert_eq!(
            (policy.min_healthy, policy.max_extra, policy.max_replicas),
            (2, 3, Some(20))
        );
        assert_eq!(policy.fail_for, Duration::from_secs(45));
        assert!(!policy.signals.pod_status && !policy.signals.probes);
        assert_eq!(policy.signals.startup_grace, Duration::from_secs(900));
        assert_eq!(policy.signals.health_check.port, 15588);
        assert_eq!(policy.signals.health_check.success_threshold, 2);
    }

    #[test]
    fn bad_policies_say_which_and_why() {
        let err = |text: &str| Config::parse("c.yaml", text).unwrap_err().to_string();
        assert!(
            err(&POLICY.replace("50", "0"))
                .contains("capacityPerPod: scaleOnFailure[0]: must be a number greater than zero")
        );
        assert!(
            err(&format!("{POLICY}{}", &POLICY["scaleOnFailure:\n".len()..]))
                .contains("two policies are named \"secondaries\"")
        );
        assert!(
            err(&POLICY.replace("sidecar,", "Sidecar,")).contains("not a valid Kubernetes name")
        );
        assert!(
            err(&format!("{POLICY}  maxReplicas: 1\n  minHealthy: 3\n"))
                .contains("below minHealthy")
        );
        assert!(
            err(&format!(
                "{POLICY}  signals: {{healthCheck: {{scheme: ftp}}}}\n"
            ))
            .contains("must be http or https")
        );
        assert!(err(&format!("{POLICY}  bogus: 1\n")).contains("bogus"));
    }

    const OPMONITOR: &str = "xroad:\n  opmonitor:\n    url: https://security-server-sidecar-primary.sidecar.svc:8443\n    client: {xRoadInstance: EE, memberClass: GOV, memberCode: '1234567-8'}\n    securityServer: {xRoadInstance: EE, memberClass: GOV, memberCode: '1234567-8', serverCode: sidecar}\n    namespace: sidecar\n";

    #[test]
    fn the_opmonitor_section_is_read_with_its_defaults() {
        let op = Config::parse("c.yaml", OPMONITOR)
            .unwrap()
            .opmonitor
            .unwrap();
        assert_eq!(op.client.member_code, "1234567-8");
        assert_eq!(op.security_server.server_code.as_deref(), Some("sidecar"));
        assert_eq!(
            (op.poll_interval, op.records_available_offset),
            (Duration::from_secs(30), Duration::from_secs(65))
        );
        assert_eq!((op.max_services, op.include_meta_services), (200, false));
        let jmx = Config::parse("c.yaml", "xroad: {throughput: jmx}\n").unwrap();
        assert_eq!(jmx.throughput, crate::catalog::ThroughputSource::Jmx);
    }

    #[test]
    fn a_collector_identity_that_would_see_a_filtered_view_is_refused() {
        let err = |text: &str| Config::parse("c.yaml", text).unwrap_err().to_string();
        assert!(
            err(&OPMONITOR.replace(
                "memberClass: GOV, memberCode: '1234567-8'}",
                "memberClass: COM, memberCode: '1234567-8'}"
            ))
            .contains("must be the owner member")
        );
        assert!(
            err(&OPMONITOR.replace(", serverCode: sidecar", "")).contains("needs a serverCode")
        );
        assert!(
            err(&format!("{OPMONITOR}    recordsAvailableOffset: 30s\n")).contains("at least 60s")
        );
        assert!(
            err(&format!("{OPMONITOR}    tls: {{certFile: c.pem}}\n"))
                .contains("certFile and keyFile go together")
        );
    }

    #[test]
    fn yaml_1_1_boolean_words_stay_names() {
        let text = "scaleOnFailure:\n- name: y\n  target: {namespace: n, deployment: on}\n  load: {metric: m, capacityPerPod: 1}\n";
        let policy = Config::parse("c.yaml", text)
            .unwrap()
            .scale_on_failure
            .remove(0);
        assert_eq!(
            (
                policy.name.as_str(),
                policy.target.namespace.as_str(),
                policy.target.deployment.as_str()
            ),
            ("y", "n", "on")
        );
    }

    #[test]
    fn unknown_keys_name_the_line_and_column() {
        let err = Config::parse(
            "c.yaml",
            "prometheus:\n  url: http://p:9090\n  tiemout: 5s\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tiemout"), "{err}");
        assert!(err.contains("3:3") || err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |text| Config::parse("c.yaml", text).unwrap_err().to_string();
        assert_eq!(
            err("refreshInterval: soon"),
            "c.yaml: refreshInterval: \"soon\" is not a valid duration (use e.g. 500ms, 15s, 2m, 1h30m)"
        );
        assert!(err("prometheus: {url: 'ftp://x'}").contains("prometheus.url"));
        assert!(err("prometheus: {timeout: 0s}").contains("must be greater than zero"));
        assert_eq!(
            err("rateWindow: 30s"),
            "c.yaml: rateWindow: must be a whole number of seconds, at least 60s (4 × scrapeInterval 15s)"
        );
        assert!(err("scrapeInterval: 5s\nrateWindow: 10s").contains("at least 20s"));
        let fast = Config::parse("c.yaml", "scrapeInterval: 5s\nrateWindow: 20s").unwrap();
        assert_eq!(fast.rate_window, Duration::from_secs(20));
        assert!(
            err("prometheus: {headers: {'bad header': x}}").contains("not a valid HTTP header")
        );
    }

    #[test]
    fn every_backend_key_is_read() {
        let config = Config::parse(
            "c.yaml",
            "prometheus:
  url: https://mimir.example/prometheus
  tenant: {id: sidecar-prod}
  queryParams: {dedup: 'false'}
  tls: {caFile: /ca.crt, certFile: /tls.crt, keyFile: /tls.key}
  bearerTokenFile: /var/run/secrets/token
  warnings: ignore
  maxQueryLength: 16384
backends:
- name: amp
  url: https://aps-workspaces.eu-north-1.amazonaws.com/workspaces/ws-1
  sigv4: {region: eu-north-1}
- name: cloud
  url: https://prometheus-prod.grafana.net/api/prom
  basicAuth: {username: '123456', passwordFile: /secrets/password}
- name: idp
  url: https://thanos.example
  tenant: {id: xroad, header: THANOS-TENANT}
  oauth2: {tokenUrl: https://idp.example/token, clientId: adapter, clientSecretFile: /s, scopes: [read]}
metrics:
  xroad_messages_per_second: {backend: amp}
",
        )
        .unwrap();
        let p = &config.prometheus;
        assert_eq!(p.tenant.as_ref().unwrap().header, "X-Scope-OrgID");
        assert_eq!(p.query_params["dedup"], "false");
        assert_eq!(p.tls.key, Some(Material::File("/tls.key".into())));
        assert!(matches!(p.auth, BackendAuth::Bearer { .. }));
        assert_eq!(
            (p.warnings, p.max_query_length),
            (WarningPolicy::Ignore, Some(16384))
        );
        let names: Vec<_> = config.all_backends().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["prometheus", "amp", "cloud", "idp"]);
        assert_eq!(
            config.backends[0].auth,
            BackendAuth::SigV4 {
                region: Some("eu-north-1".into()),
                service: "aps".into()
            }
        );
        assert!(matches!(config.backends[1].auth, BackendAuth::Basic { .. }));
        assert_eq!(
            config.backends[2].tenant.as_ref().unwrap().header,
            "THANOS-TENANT"
        );
        assert_eq!(config.routes.metrics["xroad_messages_per_second"], "amp");
        assert_eq!(
            config.backends[0].warnings,
            WarningPolicy::Fail,
            "the default"
        );
    }

    #[test]
    fn the_grpc_section_is_off_by_default_and_read_whole() {
        assert!(!Config::default().grpc.enabled);
        let config = Config::parse(
            "c.yaml",
            "grpc: {enabled: true, port: 9100, clientCaFile: /keda/ca.crt, activeCheckInterval: 5s, maxConcurrentCalls: 8, callTimeout: 3s}",
        )
        .unwrap();
        assert_eq!(
            config.grpc,
            GrpcConfig {
                enabled: true,
                port: 9100,
                client_ca_file: Some("/keda/ca.crt".into()),
                active_check_interval: Duration::from_secs(5),
                max_concurrent_calls: 8,
                call_timeout: Duration::from_secs(3),
            }
        );
        let err = |text| Config::parse("c.yaml", text).unwrap_err().to_string();
        assert!(err("grpc: {maxConcurrentCalls: 0}").contains("grpc.maxConcurrentCalls"));
        assert!(err("grpc: {activeCheckInterval: 0s}").contains("grpc.activeCheckInterval"));
        assert!(err("grpc: {tls: true}").contains("unknown field"));
    }

    #[test]
    fn bad_backends_say_which_and_why() {
        let err = |text| Config::parse("c.yaml", text).unwrap_err().to_string();
        assert_eq!(
            err("prometheus: {bearerTokenFile: /t, sigv4: {}}"),
            "c.yaml: prometheus: bearerTokenFile and sigv4 are set; a backend authenticates one way"
        );
        assert_eq!(
            err("backends: [{url: http://a}]"),
            "c.yaml: backends[0]: every backend needs a name, which metrics choose it by"
        );
        assert_eq!(
            err("backends: [{name: prometheus, url: http://a}]"),
            "c.yaml: backends[0]: two backends are named \"prometheus\""
        );
        assert_eq!(
            err("backends: [{name: b}]"),
            "c.yaml: backends[0].url: is required"
        );
        assert_eq!(
            err("metrics: {m: {backend: nowhere}}"),
            "c.yaml: metrics.m.backend: no backend is named \"nowhere\" (there are: prometheus)"
        );
        assert_eq!(
            err("prometheus: {tls: {certFile: /c}}"),
            "c.yaml: prometheus.tls: certFile and keyFile go together"
        );
        assert!(err("backends: [{name: b, url: http://b, oauth2: {tokenUrl: nope, clientId: c, clientSecretFile: /s}}]").contains("backends[0].oauth2.tokenUrl"));
    }
}
