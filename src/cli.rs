//! The command line: `serve`, `query`, `explain`, `certificate` and `check-config`, their flags, and what each
//! runs.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `println!` for the commands' output: a reader that went away (`check-config … | head`) ends the command
/// quietly, as Unix tools do, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        write_line(format_args!($($arg)*))
    };
}

fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        tracing::warn!(%error, "cannot write to standard output");
    }
}

use clap::{Args, Parser, Subcommand, ValueEnum};
use tower::ServiceExt;

use crate::app::{Adapter, AppError, Settings, kube_client};
use crate::auth::review::ReviewTiming;
use crate::auth::trust::TrustOverrides;
use crate::auth::{Access, Delegated, DelegatedConfig, OverrideFiles};
use crate::catalog::Catalog;
use crate::config::{Config, ConfigError, parse_base_url};
use crate::duration;
use crate::explain;
use crate::hpa;
use crate::inventory::PodInventory;
use crate::policy::runner::FailurePolicy;
use crate::quantity::Quantity;
use crate::server::guard::{Guard, Limits};
use crate::server::{self, tls};
use crate::telemetry::LogFormat;

/// xroad-metrics-adapter: custom and external metrics for the HPA, for X-Road Security Server Sidecars.
#[derive(Debug, Parser)]
#[command(name = "xroad-metrics-adapter", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the metrics APIs over HTTPS (register it with an APIService).
    Serve(Box<ServeArgs>),
    /// Print what the adapter would serve for one metric, and the replica count an HPA would choose.
    Query(QueryArgs),
    /// Explain an HPA's next move (`--hpa` or `--hpa-file`): each metric's values, ratio and proposal, the
    /// limits, behavior and stabilization, and the replica count the controller will set. Without them: for
    /// each scale-on-failure policy, every pod's health and why, the load, and the replica count.
    Explain(ExplainArgs),
    /// Write a CA and a serving certificate for the Service (for an APIService `caBundle` without
    /// cert-manager).
    Certificate(CertificateArgs),
    /// Validate a configuration file and print what it configures.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Authentication {
    /// Delegated to the kube-apiserver (front-proxy certificates, TokenReview, SubjectAccessReview).
    Delegated,
    /// No authentication; allowed only on a loopback bind address.
    None,
}

/// Where metrics come from and which pods exist: shared by `serve` and `query`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The Prometheus-compatible base URL (overrides `prometheus.url` of the config file).
    #[arg(long, value_parser = parse_base_url)]
    pub prometheus_url: Option<url::Url>,
    /// GET or POST for queries (overrides `prometheus.method`; the Prometheus Adapter's flag).
    #[arg(long, value_parser = parse_verb)]
    pub prometheus_verb: Option<crate::config::HttpMethod>,
    /// `Name=value`: a header on every backend request, e.g. a tenant (repeatable; added to
    /// `prometheus.headers`; the Prometheus Adapter's flag).
    #[arg(long = "prometheus-header", value_parser = parse_header)]
    pub prometheus_headers: Vec<(String, String)>,
    /// A kubeconfig whose current context's CA and credentials (token, token file, client certificate, or
    /// user and password) reach the default backend; its server address is not used (the Prometheus
    /// Adapter's flag).
    #[arg(long, conflicts_with = "prometheus_auth_incluster")]
    pub prometheus_auth_config: Option<PathBuf>,
    /// Reach the default backend with the pod's ServiceAccount token and the cluster's CA (the Prometheus
    /// Adapter's flag).
    #[arg(long)]
    pub prometheus_auth_incluster: bool,
    /// Trust only this CA bundle for the default backend (overrides `prometheus.tls.caFile`; the Prometheus
    /// Adapter's flag).
    #[arg(long)]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Send `Authorization: Bearer` with the token in this file, re-read when it changes (overrides
    /// `prometheus.bearerTokenFile`; the Prometheus Adapter's flag, which reads it once).
    #[arg(long)]
    pub prometheus_token_file: Option<PathBuf>,
    /// A client certificate for mutual TLS with the default backend (overrides `prometheus.tls.certFile`;
    /// the Prometheus Adapter's flag).
    #[arg(long, requires = "prometheus_client_tls_key_file")]
    pub prometheus_client_tls_cert_file: Option<PathBuf>,
    /// Its key (overrides `prometheus.tls.keyFile`).
    #[arg(long, requires = "prometheus_client_tls_cert_file")]
    pub prometheus_client_tls_key_file: Option<PathBuf>,
    /// The configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Take pods from this file (what `kubectl get deploy,rs,pods -A -o yaml` prints) instead of the cluster.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub inventory: Option<PathBuf>,
    /// The kubeconfig to watch pods with (default: in-cluster, then `$KUBECONFIG`, then `~/.kube/config`);
    /// `--lister-kubeconfig` is the Prometheus Adapter's name for it.
    #[arg(long, alias = "lister-kubeconfig")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch pods only in these namespaces (repeatable; default: all).
    #[arg(long = "watch-namespace")]
    pub watch_namespaces: Vec<String>,
    /// A Prometheus Adapter configuration (its `config.yaml`, or the Helm chart's values) whose rules are
    /// served next to the built-in metrics.
    #[arg(long)]
    pub adapter_config: Option<PathBuf>,
    /// How often the adapter rules' series are listed again.
    #[arg(long, default_value = "1m", value_parser = duration::parse)]
    pub metrics_relist_interval: Duration,
    /// How recently a series must have had samples to be listed (default: the relist interval).
    #[arg(long, value_parser = duration::parse)]
    pub metrics_max_age: Option<Duration>,
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Backend, configuration and pods.
    #[command(flatten)]
    pub source: SourceArgs,
    /// klog's verbosity, as a Prometheus Adapter Deployment passes it: accepted and ignored (the log level
    /// is `RUST_LOG`'s).
    #[arg(long = "v", hide = true)]
    pub klog_verbosity: Option<u8>,
    /// klog's `--logtostderr`: accepted and ignored (the log always goes to standard error).
    #[arg(long = "logtostderr", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub klog_logtostderr: Option<bool>,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Where a self-signed serving certificate is generated (and reused) when no certificate files are given.
    #[arg(long, default_value = "apiserver.local.config/certificates")]
    pub cert_dir: PathBuf,
    /// The names of a self-signed certificate.
    #[command(flatten)]
    pub names: CertificateNames,
    /// The serving certificate (PEM, chain allowed).
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// The lowest TLS version accepted.
    #[arg(long, value_enum, default_value = "VersionTLS12")]
    pub tls_min_version: tls::TlsMinVersion,
    /// The TLS 1.2 cipher suites offered, comma-separated, in Go's names (TLS 1.3's are always on); suites
    /// rustls does not implement (CBC, RC4, 3DES, static RSA) are logged and left out.
    #[arg(long, value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,
    /// Serve HTTP/1.1 only.
    #[arg(long)]
    pub disable_http2: bool,
    /// `delegated` (default) or `none` (loopback bind addresses only).
    #[arg(long, value_enum, default_value = "delegated")]
    pub authentication: Authentication,
    /// Delegated authentication and authorization.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Requests handled at once; more are answered 429 with `Retry-After: 1`.
    #[arg(long, default_value_t = Limits::default().max_in_flight)]
    pub max_requests_inflight: usize,
    /// How long one request may take, authentication included.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    pub request_timeout: Duration,
    /// Connections served at once (0: 4096, lowered to fit the open-file limit). Beyond it 32 reserve
    /// connections serve health probes and clients presenting a certificate; others are closed.
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,
    /// How often `--adapter-config` is checked for changes (it is also re-read on SIGHUP).
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub config_reload_interval: Duration,
    /// A connection without a request for this long is closed (HTTP/2: GOAWAY), as kube-apiserver does.
    #[arg(long, default_value = "90s", value_parser = duration::parse)]
    pub idle_connection_timeout: Duration,
}

/// The Service a self-signed certificate is made for, and extra names.
#[derive(Debug, Args)]
pub struct CertificateNames {
    /// The Service name, for the self-signed certificate's `<service>.<namespace>.svc` names.
    #[arg(long, default_value = "xroad-metrics-adapter")]
    pub service_name: String,
    /// The Service namespace.
    #[arg(long, default_value = "xroad-metrics")]
    pub service_namespace: String,
    /// Extra DNS names or IP addresses for the self-signed certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
}

/// `certificate` flags.
#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// Where to write `apiserver.crt` (certificate and CA), `apiserver.key` and `ca.crt`.
    #[arg(long)]
    pub cert_dir: PathBuf,
    /// The names.
    #[command(flatten)]
    pub names: CertificateNames,
}

/// Flags of delegated authentication and authorization, named as the Kubernetes generic apiserver names
/// them. Each `--client-ca-file` / `--requestheader-*` flag replaces the same key of
/// `kube-system/extension-apiserver-authentication`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The kubeconfig for TokenReview and the ConfigMap (default: as `--kubeconfig`).
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// The kubeconfig for SubjectAccessReview (default: as `--authentication-kubeconfig`).
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Start even if the authentication ConfigMap cannot be read.
    #[arg(long)]
    pub authentication_tolerate_lookup_failure: bool,
    /// CA bundle for client certificates (user = CN, groups = O).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// CA bundle for the front proxy's client certificate.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Allowed front-proxy certificate CNs (comma-separated; empty allows any).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Option<Vec<String>>,
    /// Headers naming the user.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_username_headers: Option<Vec<String>>,
    /// Headers naming the user's UID.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Option<Vec<String>>,
    /// Headers naming the user's groups.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_group_headers: Option<Vec<String>>,
    /// Prefixes of headers carrying the user's extra attributes.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Option<Vec<String>>,
    /// TokenReview audiences (default: the API server's own).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// How long an accepted token is remembered.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub authentication_token_webhook_cache_ttl: Duration,
    /// How long a rejected token is remembered.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub authentication_token_webhook_negative_cache_ttl: Duration,
    /// How long an allowed SubjectAccessReview is remembered.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub authorization_webhook_cache_authorized_ttl: Duration,
    /// How long a denied SubjectAccessReview is remembered.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
    /// Paths served without authentication or authorization; a trailing `*` matches a prefix.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "/healthz,/healthz/*,/livez,/livez/*,/readyz,/readyz/*"
    )]
    pub authorization_always_allow_paths: Vec<String>,
}

/// `query` flags.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Backend, configuration and pods.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The namespace of the pods.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// The metric, e.g. `container_network_receive_packets_per_second`.
    #[arg(long)]
    pub metric: String,
    /// The pod label selector (the HPA sends the scale target's selector).
    #[arg(long, short = 'l', default_value = "")]
    pub selector: String,
    /// A metric label selector.
    #[arg(long)]
    pub metric_selector: Option<String>,
    /// An HPA `Pods` target `averageValue` (a Kubernetes quantity such as `10` or `500m`): print the replica
    /// count the HPA would choose.
    #[arg(long)]
    pub target_average_value: Option<String>,
    /// The current `spec.replicas` (default: the number of selected pods).
    #[arg(long)]
    pub current_replicas: Option<u32>,
    /// The HPA's tolerances.
    #[command(flatten)]
    pub tolerance: ToleranceArgs,
}

/// The HPA's tolerances, as the controller's flag and the HPA's `behavior` set them.
#[derive(Debug, Args)]
pub struct ToleranceArgs {
    /// `--horizontal-pod-autoscaler-tolerance`, both directions.
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f64,
    /// `behavior.scaleUp.tolerance` (Kubernetes 1.33+), if the HPA sets it.
    #[arg(long)]
    pub scale_up_tolerance: Option<f64>,
    /// `behavior.scaleDown.tolerance` (Kubernetes 1.33+), if the HPA sets it.
    #[arg(long)]
    pub scale_down_tolerance: Option<f64>,
}

impl ToleranceArgs {
    fn tolerance(&self) -> hpa::Tolerance {
        hpa::Tolerance {
            scale_up: self.scale_up_tolerance.unwrap_or(self.tolerance),
            scale_down: self.scale_down_tolerance.unwrap_or(self.tolerance),
        }
    }
}

/// `explain` flags.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Backend, configuration and pods.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only this policy.
    #[arg(long, conflicts_with_all = ["hpa", "hpa_file"])]
    pub policy: Option<String>,
    /// `NAMESPACE/NAME`: read this HorizontalPodAutoscaler, its scale target and pods from the cluster
    /// (`--kubeconfig`), and its metrics through the cluster's metrics APIs, as the HPA controller does.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "hpa_file")]
    pub hpa: Option<String>,
    /// An HPA manifest to explain without a cluster: its scale target and pods come from `--inventory`, its
    /// metrics from this adapter run in process (`--prometheus-url`, `--config`).
    #[arg(long, value_name = "FILE", requires = "inventory")]
    pub hpa_file: Option<PathBuf>,
    /// `text` for people, `json` for tools.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    /// The controller's `--horizontal-pod-autoscaler-downscale-stabilization` (for HPAs without a
    /// scale-down window).
    #[arg(long, default_value = "5m", value_parser = duration::parse)]
    pub downscale_stabilization: Duration,
    /// The controller's `--horizontal-pod-autoscaler-sync-period`.
    #[arg(long, default_value = "15s", value_parser = duration::parse)]
    pub sync_period: Duration,
    /// The HPA's tolerances, for the proposal shown; with `--hpa`, the scale-up and scale-down ones override
    /// the HPA's own.
    #[command(flatten)]
    pub tolerance: ToleranceArgs,
}

/// How `explain --hpa` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
}

/// The command line as the Prometheus Adapter's image takes it, made ours: the chart's Deployment passes the
/// binary's path (`/adapter`) as the first argument and no subcommand, so a Deployment whose image is swapped
/// for this one keeps its args. A leading `/adapter` is dropped, and flags without a subcommand run `serve`
/// (but `--help` and `--version`).
pub fn drop_in_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "/adapter") {
        args.remove(1);
    }
    let flag_first = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| a.starts_with('-') && !["-h", "--help", "-V", "--version"].contains(&a));
    if flag_first {
        args.insert(1, "serve".into());
    }
    args
}

/// Why a command failed; printed as is.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The adapter cannot be built.
    #[error(transparent)]
    App(#[from] AppError),
    /// A TLS set-up problem.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// An HPA that cannot be explained.
    #[error(transparent)]
    Explain(#[from] explain::ExplainError),
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Message(String),
}

fn message(text: impl Into<String>) -> CliError {
    CliError::Message(text.into())
}

/// `GET` or `POST`, as the Prometheus Adapter's `--prometheus-verb` takes it.
fn parse_verb(text: &str) -> Result<crate::config::HttpMethod, String> {
    match text {
        "GET" => Ok(crate::config::HttpMethod::Get),
        "POST" => Ok(crate::config::HttpMethod::Post),
        _ => Err(format!("{text:?} is not GET or POST")),
    }
}

/// `Name=value`, as the Prometheus Adapter splits it (at the first `=`; no `=` is an empty value).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').unwrap_or((text, ""));
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not an HTTP header name"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

impl SourceArgs {
    /// What the composition root takes from these flags.
    pub fn settings(&self) -> Settings {
        Settings {
            config: self.config.clone(),
            prometheus_url: self.prometheus_url.clone(),
            prometheus_method: self.prometheus_verb,
            prometheus_headers: self.prometheus_headers.clone(),
            prometheus_auth_config: self.prometheus_auth_config.clone(),
            prometheus_auth_incluster: self.prometheus_auth_incluster,
            prometheus_ca_file: self.prometheus_ca_file.clone(),
            prometheus_token_file: self.prometheus_token_file.clone(),
            prometheus_client_certificate: self
                .prometheus_client_tls_cert_file
                .clone()
                .zip(self.prometheus_client_tls_key_file.clone()),
            inventory: self.inventory.clone(),
            kubeconfig: self.kubeconfig.clone(),
            watch_namespaces: self.watch_namespaces.clone(),
            adapter_config: self.adapter_config.clone(),
            metrics_relist_interval: self.metrics_relist_interval,
            metrics_max_age: self.metrics_max_age,
        }
    }

    /// The settings and the configuration they name, ready for [`Adapter::build`].
    fn load(&mut self) -> Result<(Settings, Config), CliError> {
        self.sort_config_files()?;
        let settings = self.settings();
        let config = settings.load_config()?;
        Ok((settings, config))
    }

    /// `--config` takes the adapter's own configuration or, where the Prometheus Adapter took its own, a
    /// Prometheus Adapter configuration: told apart by their keys (as `check-config` does), the latter is read
    /// as `--adapter-config`. A file that cannot be read is left to the loader, which says why.
    fn sort_config_files(&mut self) -> Result<(), CliError> {
        let Some(path) = &self.config else {
            return Ok(());
        };
        let Ok(text) = crate::files::read_text(path, crate::files::CONFIG_LIMIT) else {
            return Ok(());
        };
        if !crate::compat::rules::looks_like_adapter_config(&text) {
            return Ok(());
        }
        if let Some(other) = &self.adapter_config {
            return Err(message(format!(
                "--config {} is a Prometheus Adapter configuration, and --adapter-config {} is one too: pass one \
                 (--config then takes the adapter's own configuration)",
                path.display(),
                other.display()
            )));
        }
        tracing::info!(file = %path.display(), "--config is a Prometheus Adapter configuration: read as --adapter-config");
        self.adapter_config = self.config.take();
        Ok(())
    }
}

/// The names the self-signed certificate is valid for: the Service's (the aggregator dials
/// `<service>.<namespace>.svc`), loopback, `bind` if specific, and the extra ones.
fn certificate_names(args: &CertificateNames, bind: Option<IpAddr>) -> Vec<String> {
    let (service, namespace) = (&args.service_name, &args.service_namespace);
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    names.extend(bind.filter(|b| !b.is_unspecified()).map(|b| b.to_string()));
    names.extend(args.tls_sans.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// `certificate`: writes a CA and a serving certificate for the Service, for an APIService `caBundle`
/// without cert-manager (`deploy/self-signed`). An existing certificate in the directory is kept.
pub fn certificate(args: &CertificateArgs) -> Result<(), CliError> {
    let (cert, key) =
        tls::ensure_self_signed(&args.cert_dir, &certificate_names(&args.names, None))?;
    out!(
        "serving certificate {} and key {}, signed by {}: the APIService caBundle",
        cert.display(),
        key.display(),
        args.cert_dir.join(tls::CA_FILE).display()
    );
    Ok(())
}

/// Refuses to serve without authentication anywhere but on loopback.
pub fn check_authentication(authentication: Authentication, bind: IpAddr) -> Result<(), CliError> {
    match authentication {
        Authentication::None if bind.is_loopback() => Ok(()),
        Authentication::None => Err(message(format!(
            "--authentication none is only allowed with a loopback --bind-address (127.0.0.1 or ::1), not {bind}: \
             anyone who can reach the port could read every metric"
        ))),
        Authentication::Delegated => Ok(()),
    }
}

/// The access control `serve` runs with: delegated unless `--authentication none`.
async fn access(args: &ServeArgs) -> Result<Access, CliError> {
    if args.authentication == Authentication::None {
        tracing::warn!(
            "serving without authentication (--authentication none): every local user can read every metric"
        );
        return Ok(Access::Anonymous);
    }
    let auth = &args.auth;
    let kubeconfig = auth
        .authentication_kubeconfig
        .as_deref()
        .or(args.source.kubeconfig.as_deref());
    let missing = "delegated authentication asks the Kubernetes API (TokenReview, SubjectAccessReview): pass \
                   --authentication-kubeconfig FILE, or for a local run without a cluster \
                   --authentication none --bind-address 127.0.0.1";
    let client = kube_client(kubeconfig, missing).await?;
    let authorization = match &auth.authorization_kubeconfig {
        Some(path) if Some(path.as_path()) != kubeconfig => {
            kube_client(Some(path), missing).await?
        }
        _ => client.clone(),
    };
    let timing = |positive_ttl, negative_ttl| ReviewTiming {
        positive_ttl,
        negative_ttl,
        ..ReviewTiming::default()
    };
    let config = DelegatedConfig {
        overrides: OverrideFiles {
            client_ca: auth.client_ca_file.clone(),
            requestheader_ca: auth.requestheader_client_ca_file.clone(),
            lists: TrustOverrides {
                allowed_names: auth.requestheader_allowed_names.clone(),
                username_headers: auth.requestheader_username_headers.clone(),
                uid_headers: auth.requestheader_uid_headers.clone(),
                group_headers: auth.requestheader_group_headers.clone(),
                extra_prefixes: auth.requestheader_extra_headers_prefix.clone(),
                ..TrustOverrides::default()
            },
        },
        always_allow_paths: auth.authorization_always_allow_paths.clone(),
        audiences: auth.api_audiences.clone(),
        token_timing: timing(
            auth.authentication_token_webhook_cache_ttl,
            auth.authentication_token_webhook_negative_cache_ttl,
        ),
        access_timing: timing(
            auth.authorization_webhook_cache_authorized_ttl,
            auth.authorization_webhook_cache_unauthorized_ttl,
        ),
        tolerate_lookup_failure: auth.authentication_tolerate_lookup_failure,
    };
    let delegated = Delegated::start(client, authorization, config)
        .await
        .map_err(|e| message(e.to_string()))?;
    Ok(Access::Delegated(delegated))
}

/// How often the serving certificate files are checked for a rotation.
const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// `serve`.
pub async fn serve(mut args: ServeArgs) -> Result<(), CliError> {
    check_authentication(args.authentication, args.bind_address)?;
    let (settings, config) = args.source.load()?;
    if args.klog_verbosity.is_some() || args.klog_logtostderr.is_some() {
        tracing::info!(
            "--v and --logtostderr (klog's) are accepted and ignored; the log level is RUST_LOG's"
        );
    }
    let (cert, key) = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => tls::ensure_self_signed(
            &args.cert_dir,
            &certificate_names(&args.names, Some(args.bind_address)),
        )?,
    };
    let serving_cert = tls::ServingCert::load(&cert, &key)?;
    serving_cert.spawn_reloader(CERT_RELOAD_INTERVAL);
    let options = tls::TlsOptions {
        min_version: args.tls_min_version,
        cipher_suites: args.tls_cipher_suites.clone(),
        http2: !args.disable_http2,
    };
    let tls_config = tls::server_config(serving_cert.clone(), &options)?;
    let grpc = config.grpc.clone();
    let limits = Limits {
        max_in_flight: args.max_requests_inflight,
        request_timeout: args.request_timeout,
        ..Limits::default()
    };
    let guard = Guard::new(access(&args).await?, limits);
    let adapter = Arc::new(Adapter::build(settings, config, guard).await?);
    adapter
        .start(args.config_reload_interval, &args.names.service_namespace)
        .await?;
    let state = adapter.state.clone();
    let address = SocketAddr::new(args.bind_address, args.secure_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| message(format!("cannot listen on {address}: {e}")))?;
    tracing::info!(%address, certificate = %cert.display(), "serving custom.metrics.k8s.io and external.metrics.k8s.io");
    let file_limit = server::listener::raise_file_limit();
    let connections = server::ConnectionLimits::within_file_limit(
        args.max_connections,
        file_limit,
        args.idle_connection_timeout,
    );
    tracing::info!(
        file_limit,
        max_connections = connections.max_connections,
        reserve = connections.reserve,
        "connection limits"
    );
    // One signal stops both servers and ends the External Scaler's streams, so draining can finish.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stopped| *stopped).await;
    };
    let scaler = if grpc.enabled {
        let grpc_options = tls::TlsOptions {
            http2: true,
            ..options
        };
        let grpc_tls = match &grpc.client_ca_file {
            Some(ca) => tls::server_config_requiring_clients(serving_cert, &grpc_options, ca)?,
            None => tls::server_config(serving_cert, &grpc_options)?,
        };
        let address = SocketAddr::new(args.bind_address, grpc.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| message(format!("cannot listen on {address} (grpc.port): {e}")))?;
        tracing::info!(%address, client_certificates = grpc.client_ca_file.is_some(), "serving KEDA's External Scaler and gRPC health");
        let router = crate::grpc::Scaler::new(state.clone(), grpc, stopping.clone()).router();
        Some(tokio::spawn(server::serve(
            listener,
            grpc_tls,
            router,
            connections,
            stopped(stopping.clone()),
        )))
    } else {
        None
    };
    server::serve(
        listener,
        tls_config,
        server::app(state),
        connections,
        stopped(stopping),
    )
    .await;
    if let Some(scaler) = scaler {
        let _ = scaler.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// `query`: runs the request through the server's own router, in process, and explains the result.
pub async fn query(mut args: QueryArgs) -> Result<(), CliError> {
    let (settings, config) = args.source.load()?;
    let state = Adapter::build(settings, config, Guard::anonymous())
        .await?
        .state;
    wait_for_inventory(&state.inventory).await?;
    let target = args
        .target_average_value
        .as_deref()
        .map(|t| {
            t.parse::<Quantity>()
                .map_err(|e| message(format!("--target-average-value: {e}")))
        })
        .transpose()?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("labelSelector", &args.selector);
    if let Some(selector) = &args.metric_selector {
        query.append_pair("metricLabelSelector", selector);
    }
    let path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/pods/%2A/{}?{}",
        percent_encoding::utf8_percent_encode(&args.namespace, percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(&args.metric, percent_encoding::NON_ALPHANUMERIC),
        query.finish()
    );
    let request = axum::http::Request::get(&path)
        .body(axum::body::Body::empty())
        .map_err(|e| message(e.to_string()))?;
    let response = server::app(state.clone())
        .oneshot(request)
        .await
        .map_err(|e| message(e.to_string()))?;
    let code = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| message(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| message(e.to_string()))?;
    if !code.is_success() {
        return Err(message(format!(
            "{code}: {}",
            json["message"].as_str().unwrap_or_default()
        )));
    }
    let items = json["items"].as_array().cloned().unwrap_or_default();
    let selector = if args.selector.is_empty() {
        "<all>"
    } else {
        &args.selector
    };
    out!(
        "{} in namespace {} for pods matching {selector}:",
        args.metric,
        args.namespace
    );
    let mut by_pod = std::collections::HashMap::new();
    for item in &items {
        let name = item["describedObject"]["name"].as_str().unwrap_or_default();
        let value = item["value"].as_str().unwrap_or_default();
        let parsed: Quantity = value
            .parse()
            .map_err(|e| message(format!("{value}: {e}")))?;
        out!("  {name:<52} {value:>12}  ({})", parsed.as_f64());
        by_pod.insert(name.to_owned(), parsed.millis());
    }
    let selected = state.inventory.select(
        &args.namespace,
        &args
            .selector
            .parse()
            .map_err(|e| message(format!("--selector: {e}")))?,
    );
    if items.is_empty() {
        out!("  (no values: the HPA would report \"no metrics returned from custom metrics API\")");
    }
    if let Some(target) = target {
        let pods: Vec<hpa::Pod> = selected.iter().map(|p| p.as_hpa_pod()).collect();
        let samples: hpa::Samples = by_pod
            .into_iter()
            .map(|(name, millis)| (name, hpa::Sample::of(millis)))
            .collect();
        let current = args.current_replicas.unwrap_or(pods.len() as u32);
        let tolerance = args.tolerance.tolerance();
        match hpa::calculator::pods_average_value(
            &samples,
            &pods,
            target.millis(),
            current,
            tolerance,
            None,
        ) {
            Ok(p) => {
                let groups = p.groups.clone().unwrap_or_default();
                let average = match p.current {
                    hpa::Current::AverageValue(v) => Quantity::from_millis(v).to_string(),
                    other => format!("{other:?}"),
                };
                out!(
                    "HPA with a Pods target averageValue {target}: average {} over {} pods, ratio {:.3} -> {} replicas \
                     (currently {current}; {}; {} running without a value, {} Pending or unready, {} deleting or \
                     Failed; tolerance -{} +{})",
                    average,
                    groups.ready.len() + groups.extraneous.len(),
                    p.ratio,
                    p.replicas,
                    p.reason,
                    groups.missing.len(),
                    groups.unready.len(),
                    groups.ignored.len(),
                    tolerance.scale_down,
                    tolerance.scale_up,
                )
            }
            Err(why) => out!(
                "HPA with a Pods target averageValue {target}: {why}, so it keeps {current} replicas"
            ),
        }
    }
    Ok(())
}

/// `explain --hpa` and `--hpa-file`: one sync of the HPA controller, step by step.
async fn explain_hpa(mut args: ExplainArgs) -> Result<(), CliError> {
    let (observed, api) = match (&args.hpa, &args.hpa_file) {
        (Some(reference), _) => {
            let (namespace, name) = reference
                .split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                .ok_or_else(|| message(format!("--hpa {reference:?}: expected NAMESPACE/NAME")))?;
            let client =
                kube_client(args.source.kubeconfig.as_deref(), "pass --kubeconfig FILE").await?;
            let observed = explain::observe_cluster(&client, namespace, name).await?;
            (observed, explain::MetricsApi::Cluster(client))
        }
        (None, Some(file)) => {
            let inventory = args
                .source
                .inventory
                .clone()
                .ok_or_else(|| message("--hpa-file needs --inventory"))?;
            let observed = explain::observe_files(file, &inventory)?;
            let (settings, config) = args.source.load()?;
            let state = Adapter::build(settings, config, Guard::anonymous())
                .await?
                .state;
            wait_for_inventory(&state.inventory).await?;
            state.configured().policies.tick_all().await;
            (observed, explain::MetricsApi::InProcess(server::app(state)))
        }
        (None, None) => unreachable!("explain_hpa runs with --hpa or --hpa-file"),
    };
    let flags = hpa::spec::ControllerFlags {
        tolerance: args.tolerance.tolerance,
        downscale_window: args.downscale_stabilization.as_secs() as i64,
    };
    let overrides = explain::Overrides {
        scale_up: args.tolerance.scale_up_tolerance,
        scale_down: args.tolerance.scale_down_tolerance,
    };
    let report = explain::explain(
        &observed,
        &api,
        flags,
        overrides,
        args.sync_period.as_secs() as i64,
    )
    .await?;
    match args.output {
        Output::Text => out!("{}", explain::render(&report).trim_end_matches('\n')),
        Output::Json => out!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| message(e.to_string()))?
        ),
    }
    Ok(())
}

/// `explain`: an HPA's next sync (`--hpa`, `--hpa-file`), or one evaluation of each scale-on-failure policy,
/// as if the pods' current states had held for `failFor`.
pub async fn explain(mut args: ExplainArgs) -> Result<(), CliError> {
    if args.hpa.is_some() || args.hpa_file.is_some() {
        return explain_hpa(args).await;
    }
    let (settings, config) = args.source.load()?;
    let state = Adapter::build(settings, config.clone(), Guard::anonymous())
        .await?
        .state;
    let configured = state.configured();
    wait_for_inventory(&state.inventory).await?;
    let selected: Vec<_> = config
        .scale_on_failure
        .iter()
        .filter(|p| args.policy.as_ref().is_none_or(|name| &p.name == name))
        .collect();
    if selected.is_empty() {
        return Err(message(match &args.policy {
            Some(name) => format!("no scaleOnFailure policy named {name:?} in the configuration"),
            None => "the configuration has no scaleOnFailure policies".to_owned(),
        }));
    }
    out!("(one round of checks; failFor, recoverFor and the probe thresholds are not waited for)");
    for policy in selected {
        // Hysteresis needs time; explain shows where the policy settles if today's states persist.
        let mut settled = policy.clone();
        settled.fail_for = std::time::Duration::ZERO;
        settled.recover_for = std::time::Duration::ZERO;
        settled.signals.health_check.failure_threshold = 1;
        settled.signals.health_check.success_threshold = 1;
        let now = crate::unix_now();
        let target = &policy.target;
        out!(
            "\npolicy {}: deployment {}/{}",
            policy.name,
            target.namespace,
            target.deployment
        );
        let decision = match FailurePolicy::new(settled)
            .evaluate(configured.policies.context(), now)
            .await
        {
            Ok(decision) => decision,
            Err(cause) => {
                out!("  cannot evaluate: {cause}");
                continue;
            }
        };
        for (pod, health) in &decision.pods {
            out!(
                "  {pod:<52} {:<11} {}",
                health.state.as_str(),
                health.reasons.join("; ")
            );
        }
        out!(
            "  load: {} = {:.3} (capacityPerPod {})",
            policy.load_metric,
            decision.load,
            policy.capacity_per_pod
        );
        out!("  replicas: {}", decision.explanation);
        let running = decision.pods.len() as u32;
        let tolerance = args.tolerance.tolerance();
        let hpa = hpa::calculator::average_value(
            i64::from(decision.replicas) * 1000,
            1000,
            running,
            tolerance,
        )
        .map_or(running, |p| p.replicas);
        out!(
            "  an HPA Object metric (AverageValue 1) with {running} replicas running proposes {hpa} (tolerance -{} +{})",
            tolerance.scale_down,
            tolerance.scale_up
        );
    }
    Ok(())
}

async fn wait_for_inventory(inventory: &PodInventory) -> Result<(), CliError> {
    for _ in 0..300 {
        if inventory.is_synced() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(message(format!(
        "the cluster's objects did not list within 30 s (still waiting for {}); the log says why",
        inventory.streams().describe_unlisted().unwrap_or_default()
    )))
}

/// `check-config` for a Prometheus Adapter configuration: each rule's naming, labels and a sample query.
fn check_adapter_config(file: &std::path::Path, text: &str) -> Result<(), CliError> {
    use crate::compat::query::{Objects, custom_query, external_query};
    use crate::compat::resources::GroupResource;
    use crate::compat::rules::{AdapterConfig, Rule};

    let config =
        AdapterConfig::parse(text).map_err(|e| message(format!("{}: {e}", file.display())))?;
    out!(
        "{}: a valid Prometheus Adapter configuration",
        file.display()
    );
    let describe = |rule: &Rule| {
        out!("    seriesQuery {}", rule.series_query);
        if !rule.filters.is_empty() {
            let filters: Vec<String> = rule.filters.iter().map(|f| f.describe()).collect();
            out!("    seriesFilters {}", filters.join(", "));
        }
        out!("    name {}", rule.naming.describe());
        out!("    resources {}", rule.resources.describe());
    };
    let no_selector = crate::selector::LabelSelector::everything();
    out!("  rules (custom.metrics.k8s.io): {}", config.rules.len());
    let pods = GroupResource {
        group: String::new(),
        resource: "pods".into(),
    };
    let names = ["pod-a".to_owned(), "pod-b".to_owned()];
    for (index, rule) in config.rules.iter().enumerate() {
        out!("  [{index}]");
        describe(rule);
        match custom_query(
            rule,
            "<series>",
            &pods,
            Some("default"),
            Objects::Named(&names),
            &no_selector,
        ) {
            Ok(query) => out!("    query for pods pod-a, pod-b in default: {query}"),
            Err(error) => out!("    no pods query: {error}"),
        }
    }
    out!(
        "  externalRules (external.metrics.k8s.io): {}",
        config.external_rules.len()
    );
    for (index, rule) in config.external_rules.iter().enumerate() {
        out!("  [{index}]");
        describe(rule);
        match external_query(rule, "<series>", "default", &no_selector) {
            Ok(query) => out!("    query in namespace default: {query}"),
            Err(error) => out!("    no query: {error}"),
        }
    }
    if let Some(resource) = &config.resource_rules {
        out!(
            "  resourceRules (metrics.k8s.io): cpu and memory, window {:?}, container label {}",
            resource.window,
            resource.cpu.container_label
        );
    }
    for warning in &config.warnings {
        out!("  warning: {warning}");
    }
    out!("  serve it with --adapter-config {}", file.display());
    Ok(())
}

/// `check-config`.
pub fn check_config(file: &std::path::Path) -> Result<(), CliError> {
    let text = crate::files::read_text(file, crate::files::CONFIG_LIMIT)
        .map_err(|e| message(format!("cannot read {}: {e}", file.display())))?;
    if crate::compat::rules::looks_like_adapter_config(&text) {
        return check_adapter_config(file, &text);
    }
    let config = Config::load(file)?;
    out!("{}: valid", file.display());
    if config.prometheus.url.is_none() {
        out!("  prometheus.url: not set (pass --prometheus-url to serve)");
    }
    for (index, backend) in config.all_backends().enumerate() {
        out!(
            "  backend {}{}: {} ({:?}, timeout {:?}, {}, warnings {:?}{})",
            backend.name,
            if index == 0 { " (default)" } else { "" },
            backend
                .url
                .as_ref()
                .map(crate::source::redacted)
                .unwrap_or_default(),
            backend.method,
            backend.timeout,
            backend.auth.describe(),
            backend.warnings,
            backend
                .tenant
                .as_ref()
                .map(|t| format!(", tenant in {}", t.header))
                .unwrap_or_default(),
        );
    }
    for (metric, backend) in &config.routes.metrics {
        out!("  metric {metric} reads backend {backend}");
    }
    if config.grpc.enabled {
        out!(
            "  grpc: KEDA's External Scaler on port {}, client certificates {}",
            config.grpc.port,
            match &config.grpc.client_ca_file {
                Some(ca) => format!("required (signed by {})", ca.display()),
                None => "not required".to_owned(),
            }
        );
    }
    out!(
        "  refreshInterval {:?}, maxStaleness {:?}, rateWindow {:?}",
        config.refresh_interval,
        config.max_staleness,
        config.rate_window
    );
    out!("  metrics served (custom: pods and namespaces; external: namespace totals):");
    for metric in Catalog::builtin().metrics() {
        out!("    {}", metric.name);
    }
    if let Some(op) = &config.opmonitor {
        let server = &op.security_server;
        out!(
            "  xroad.opmonitor: {} as {}/{}/{} for server {}, poll every {:?} (offset {:?}), records attributed to pods in {}, \
             leader election {}",
            crate::source::redacted(&op.url),
            op.client.instance,
            op.client.member_class,
            op.client.member_code,
            server.server_code.as_deref().unwrap_or_default(),
            op.poll_interval,
            op.records_available_offset,
            op.namespace,
            if op.leader_election.enabled {
                "on (in a cluster)"
            } else {
                "off"
            }
        );
        let sets: Vec<String> = crate::xroad::protocol::FIELD_SETS
            .iter()
            .map(|set| match set.size_fields {
                ["", ""] => "none (any version)".to_owned(),
                [request, response] => format!("{request}/{response} ({})", set.servers),
            })
            .collect();
        out!(
            "    size fields asked for, each tried when the Security Server faults on the one before: {}",
            sets.join(", then ")
        );
    }
    out!("  X-Road messages from: {:?}", config.throughput);
    for policy in &config.scale_on_failure {
        let target = &policy.target;
        out!(
            "  scaleOnFailure {}: deployments.apps {}/{} serves xroad_scale_on_failure_replicas and unhealthy_pods; \
             load {} at {} per pod, minHealthy {}, maxExtra {}, failFor {:?}, recoverFor {:?}",
            policy.name,
            target.namespace,
            target.deployment,
            policy.load_metric,
            policy.capacity_per_pod,
            policy.min_healthy,
            policy.max_extra,
            policy.fail_for,
            policy.recover_for
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_prometheus_adapter_images_args_run_serve() {
        let binary = "xroad-metrics-adapter";
        assert_eq!(
            drop_in_args(args(&[binary, "/adapter", "--secure-port=6443", "--v=4"])),
            args(&[binary, "serve", "--secure-port=6443", "--v=4"])
        );
        assert_eq!(
            drop_in_args(args(&[binary, "--prometheus-url=http://p:9090"])),
            args(&[binary, "serve", "--prometheus-url=http://p:9090"])
        );
        for unchanged in [
            &[binary, "query", "--metric", "m"][..],
            &[binary, "--help"],
            &[binary, "--version"],
            &[binary],
        ] {
            assert_eq!(drop_in_args(args(unchanged)), args(unchanged));
        }
    }
}
