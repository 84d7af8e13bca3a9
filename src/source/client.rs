//! The HTTP client of one Prometheus-compatible backend: builds each request (method, form, tenant, headers,
//! extra parameters), adds its credentials, sends it over TLS that follows its certificate files, and
//! classifies the answer.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_http_query::response::Data;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::credentials::{Credentials, OAuth2, SigV4};
use super::envelope::{ApiError, Envelope};
use super::watched::{SecretFile, Stamp, stamp};
use super::{Answered, MetricSource, Sample, SeriesKeys, SourceError, redacted, series};
use crate::config::{
    BackendAuth, BackendConfig, BackendTls, GET_QUERY_LIMIT, HttpMethod, Material, WarningPolicy,
};
use crate::error_chain::transport_cause;

/// A Prometheus-compatible HTTP API.
pub struct PrometheusSource {
    http: TlsClient,
    base: url::Url,
    display_url: String,
    method: HttpMethod,
    timeout: Duration,
    headers: HeaderMap,
    params: Vec<(String, String)>,
    credentials: Credentials,
    warnings: WarningPolicy,
    max_query_length: Option<usize>,
}

/// Parameters that ask for a complete, raw answer: a partial or downsampled one under-counts and looks like a
/// traffic drop. Thanos reads `partial_response`, `dedup` and `max_source_resolution`, VictoriaMetrics
/// `deny_partial_response`; Prometheus, Mimir and the managed services ignore parameters they do not know.
/// A backend's `queryParams` override them.
const COMPLETE_ANSWERS: [(&str, &str); 4] = [
    ("partial_response", "false"),
    ("dedup", "true"),
    ("max_source_resolution", "0s"),
    ("deny_partial_response", "1"),
];

impl PrometheusSource {
    /// A client for `config`; nothing is sent until the first query, and credentials files are read then.
    pub fn new(config: &BackendConfig) -> Result<Self, String> {
        let url = config.url.as_ref().ok_or_else(|| {
            format!(
                "backend {}: no URL: pass --prometheus-url or set its url in the config file",
                config.name
            )
        })?;
        let mut headers = HeaderMap::new();
        let tenant = config.tenant.iter().map(|t| (&t.header, &t.id));
        for (name, value) in config.headers.iter().chain(tenant) {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("header {name:?} is not a valid header name"))?;
            let mut value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("header {name} has an invalid value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut params: Vec<(String, String)> = COMPLETE_ANSWERS
            .iter()
            .filter(|(k, _)| !config.query_params.contains_key(*k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params.extend(config.query_params.clone());
        let credentials = match &config.auth {
            BackendAuth::None => Credentials::None,
            BackendAuth::Bearer { token } => Credentials::Bearer(SecretFile::new(token.clone())),
            BackendAuth::Basic { username, password } => Credentials::Basic {
                username: username.clone(),
                password: SecretFile::new(password.clone()),
            },
            BackendAuth::OAuth2 {
                token_url,
                client_id,
                client_secret_file,
                scopes,
                params,
            } => Credentials::OAuth2(OAuth2::new(
                token_url.clone(),
                client_id.clone(),
                SecretFile::new(Material::File(client_secret_file.clone())),
                scopes.clone(),
                params.clone().into_iter().collect(),
                config.timeout,
            )?),
            BackendAuth::SigV4 { region, service } => {
                Credentials::SigV4(SigV4::new(region.clone(), service.clone()))
            }
        };
        let http = TlsClient::new(config.tls.clone(), config.timeout)?;
        Ok(Self {
            http,
            base: url.clone(),
            display_url: redacted(url),
            method: config.method,
            timeout: config.timeout,
            headers,
            params,
            credentials,
            warnings: config.warnings,
            max_query_length: config.max_query_length,
        })
    }

    /// `{base}/api/v1/{endpoint}`, keeping the base's path prefix and query (e.g. a tenant parameter).
    fn endpoint(&self, endpoint: &str) -> url::Url {
        let mut url = self.base.clone();
        let path = format!("{}/api/v1/{endpoint}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// A complete request: form in the body (POST) or the URL (GET), headers, then credentials, which may
    /// sign all of it.
    async fn request(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
        method: HttpMethod,
    ) -> Result<reqwest::Response, SourceError> {
        let mut url = self.endpoint(endpoint);
        let pairs = form
            .iter()
            .copied()
            .chain(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut request = match method {
            HttpMethod::Get => {
                url.query_pairs_mut().extend_pairs(pairs);
                reqwest::Request::new(reqwest::Method::GET, url)
            }
            HttpMethod::Post => {
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish();
                let mut request = reqwest::Request::new(reqwest::Method::POST, url);
                let headers = request.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                *request.body_mut() = Some(body.into());
                request
            }
        };
        request.headers_mut().extend(self.headers.clone());
        *request.timeout_mut() = Some(self.timeout);
        self.credentials
            .apply(&mut request)
            .await
            .map_err(SourceError::Credentials)?;
        let response = self
            .http
            .current()
            .execute(request)
            .await
            .map_err(|e| self.transport(e))?;
        match response.status().as_u16() {
            status @ (401 | 403) => Err(SourceError::Unauthorized(status)),
            _ => Ok(response),
        }
    }

    fn transport(&self, error: reqwest::Error) -> SourceError {
        if error.is_timeout() {
            SourceError::Timeout(self.timeout)
        } else {
            SourceError::Unreachable {
                url: self.display_url.clone(),
                cause: transport_cause(&error),
            }
        }
    }

    fn rejected(&self, error: ApiError) -> SourceError {
        match error.error_type.as_str() {
            "timeout" | "canceled" => SourceError::Timeout(self.timeout),
            _ => SourceError::Rejected {
                error_type: error.error_type,
                message: error.message,
            },
        }
    }
}

impl MetricSource for PrometheusSource {
    fn instant_query<'a>(
        &'a self,
        promql: &'a str,
    ) -> BoxFuture<'a, Result<Answered, SourceError>> {
        Box::pin(async move {
            if let Some(limit) = self.max_query_length.filter(|l| promql.len() > *l) {
                return Err(SourceError::TooLong {
                    len: promql.len(),
                    limit,
                });
            }
            // Ask the backend to give up a little before we do, so its own error reaches us.
            let server_timeout = self
                .timeout
                .saturating_sub(self.timeout / 10)
                .max(Duration::from_millis(1));
            let server_timeout = format!("{}ms", server_timeout.as_millis());
            let method = match self.method {
                HttpMethod::Get if promql.len() <= GET_QUERY_LIMIT => HttpMethod::Get,
                _ => HttpMethod::Post,
            };
            let response = self
                .request(
                    "query",
                    &[("query", promql), ("timeout", &server_timeout)],
                    method,
                )
                .await?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(|e| self.transport(e))?;
            let envelope = Envelope::decode(&body, status).map_err(|e| self.rejected(e))?;
            if !envelope.infos.is_empty() {
                tracing::debug!(backend = %self.display_url, query = promql, infos = ?envelope.infos, "the metrics backend's notes on a query");
            }
            if !envelope.warnings.is_empty() && self.warnings == WarningPolicy::Fail {
                return Err(SourceError::Degraded(envelope.warnings));
            }
            let samples = match envelope.data {
                Data::Vector(vector) => vector
                    .into_iter()
                    .map(|v| {
                        let (labels, sample) = v.into_inner();
                        Sample {
                            labels: labels.into_iter().collect(),
                            value: sample.value(),
                        }
                    })
                    .collect(),
                Data::Scalar(sample) => vec![Sample {
                    labels: Default::default(),
                    value: sample.value(),
                }],
                Data::Matrix(_) => return Err(SourceError::UnexpectedResult("range vector")),
            };
            Ok(Answered {
                samples,
                warnings: envelope.warnings,
            })
        })
    }

    fn series<'a>(
        &'a self,
        selector: &'a str,
        start: i64,
        end: i64,
    ) -> BoxFuture<'a, Result<Vec<SeriesKeys>, SourceError>> {
        Box::pin(async move {
            let (start, end) = (start.to_string(), end.to_string());
            // POST: a long selector never meets a URL limit. `end` is always sent: without it some engines
            // list every series they ever held.
            let response = self
                .request(
                    "series",
                    &[("match[]", selector), ("start", &start), ("end", &end)],
                    HttpMethod::Post,
                )
                .await?;
            let body = response.bytes().await.map_err(|e| self.transport(e))?;
            let answer: series::SeriesAnswer =
                serde_json::from_slice(&body).map_err(|e| SourceError::Rejected {
                    error_type: "bad_response".into(),
                    message: format!("not a Prometheus API answer: {e}"),
                })?;
            if answer.status != "success" {
                return Err(SourceError::Rejected {
                    error_type: answer.error_type,
                    message: answer.error,
                });
            }
            Ok(answer.into_keys())
        })
    }
}

/// The HTTP client, built again when a CA, certificate or key file changes, so a renewed client
/// certificate is used from the next connection on.
struct TlsClient {
    tls: BackendTls,
    timeout: Duration,
    current: Mutex<(Vec<Stamp>, reqwest::Client)>,
}

impl TlsClient {
    fn new(tls: BackendTls, timeout: Duration) -> Result<Self, String> {
        let stamps = Self::stamps(&tls)?;
        let client = Self::build(&tls, timeout)?;
        Ok(Self {
            tls,
            timeout,
            current: Mutex::new((stamps, client)),
        })
    }

    fn files(tls: &BackendTls) -> impl Iterator<Item = &PathBuf> {
        [&tls.ca, &tls.cert, &tls.key]
            .into_iter()
            .flatten()
            .filter_map(|m| match m {
                Material::File(path) => Some(path),
                Material::Inline(_) => None,
            })
    }

    fn stamps(tls: &BackendTls) -> Result<Vec<Stamp>, String> {
        Self::files(tls).map(|path| stamp(path)).collect()
    }

    fn build(tls: &BackendTls, timeout: Duration) -> Result<reqwest::Client, String> {
        let read = |material: &Material| match material {
            Material::File(path) => crate::files::read_bytes(path, crate::files::CONFIG_LIMIT)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Material::Inline(bytes) => Ok(bytes.to_vec()),
        };
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &tls.ca {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| format!("{ca}: not a PEM CA bundle: {e}"))?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("client certificate {cert} and key {key}: {e}"))?;
            builder = builder.identity(identity);
        }
        if tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// The client for the files as they are now. A rotation caught half-way (a new certificate, the old key)
    /// keeps the previous client and is tried again at the next request.
    fn current(&self) -> reqwest::Client {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match Self::stamps(&self.tls) {
            Ok(stamps) if stamps != current.0 => match Self::build(&self.tls, self.timeout) {
                Ok(client) => {
                    tracing::info!("backend TLS files changed; new connections use them");
                    *current = (stamps, client);
                }
                Err(error) => {
                    tracing::warn!(%error, "backend TLS files changed but cannot be used yet; keeping the previous ones")
                }
            },
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "backend TLS files cannot be read; keeping the previous ones")
            }
        }
        current.1.clone()
    }
}
