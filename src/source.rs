//! The metrics backend behind a trait: a Prometheus-compatible HTTP API client (Prometheus, Thanos, Mimir,
//! VictoriaMetrics) that runs instant queries and classifies failures.
//!
//! `prometheus-http-query` does the HTTP; this module adds headers, timeouts, completeness parameters and
//! error classification (the Prometheus HTTP API documentation). It never logs headers.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_http_query::response::Data;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{GET_QUERY_LIMIT, HttpMethod, PrometheusConfig};
use crate::error_chain::transport_cause;

mod series;
pub use series::SeriesKeys;

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series labels (after aggregation, only the `by` labels).
    pub labels: BTreeMap<String, String>,
    /// The value; may be NaN or ±Inf, which callers must not serve.
    pub value: f64,
}

/// Why a query failed. The text is what operators read after `unable to fetch metrics: `.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the configured timeout, or the backend's own `timeout` error.
    #[error("the query timed out after {0:?}")]
    Timeout(Duration),
    /// Connection refused, DNS failure, TLS failure, or another transport problem.
    #[error("cannot reach the metrics backend at {url}: {cause}")]
    Unreachable {
        /// The backend URL, without credentials.
        url: String,
        /// The transport's reason.
        cause: String,
    },
    /// The backend answered with an error status and type (e.g. `bad_data`, `execution`).
    #[error("the metrics backend rejected the query ({error_type}): {message}")]
    Rejected {
        /// Prometheus `errorType`.
        error_type: String,
        /// Prometheus `error`.
        message: String,
    },
    /// [`crate::cache::MAX_BACKEND_QUERIES_IN_FLIGHT`] queries are already waiting for the backend, which
    /// is slow or hung: this one is not sent.
    #[error("{0} queries are already waiting for the metrics backend; not sending another")]
    Overloaded(usize),
    /// Not an instant vector (a matrix or string), which no metric query should produce.
    #[error("the metrics backend returned a {0} where an instant vector was expected")]
    UnexpectedResult(&'static str),
}

impl SourceError {
    /// A short label for self-metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Timeout(_) => "timeout",
            SourceError::Unreachable { .. } => "transport",
            SourceError::Rejected { .. } => "rejected",
            SourceError::UnexpectedResult(_) => "unexpected_result",
            SourceError::Overloaded(_) => "overloaded",
        }
    }
}

/// Runs PromQL instant queries. Implemented by [`PrometheusSource`] and by test doubles.
pub trait MetricSource: Send + Sync + 'static {
    /// Evaluates `promql` at the backend's current time.
    fn instant_query<'a>(
        &'a self,
        promql: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Sample>, SourceError>>;

    /// The names and label names of the series `selector` matches with samples between `start` and `end`
    /// (Unix seconds), one entry per name. Sources without discovery find nothing.
    fn series<'a>(
        &'a self,
        _selector: &'a str,
        _start: i64,
        _end: i64,
    ) -> BoxFuture<'a, Result<Vec<SeriesKeys>, SourceError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A Prometheus-compatible HTTP API.
pub struct PrometheusSource {
    client: prometheus_http_query::Client,
    /// The same HTTP client and base URL, for `/api/v1/series`: prometheus-http-query would keep every
    /// label value of every series, which is what discovery must not do.
    http: reqwest::Client,
    base: String,
    display_url: String,
    method: HttpMethod,
    timeout: Duration,
}

/// Removes user, password, query and fragment (where tokens hide: `?api_key=…`) so a URL can appear in
/// messages and logs.
pub fn redacted(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

impl PrometheusSource {
    /// Builds a client for `config.url`; headers are sent with every request.
    pub fn new(config: &PrometheusConfig) -> Result<Self, String> {
        let url = config.url.as_ref().ok_or(
            "no Prometheus URL: pass --prometheus-url or set prometheus.url in the config file",
        )?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("header {name:?} is not a valid header name"))?;
            let mut value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("header {name} has an invalid value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let base = url.as_str().trim_end_matches('/');
        let client = prometheus_http_query::Client::from(http.clone(), base)
            .map_err(|e| format!("invalid Prometheus URL {}: {e}", redacted(url)))?;
        Ok(Self {
            client,
            http,
            base: base.to_owned(),
            display_url: redacted(url),
            method: config.method,
            timeout: config.timeout,
        })
    }

    fn classify(&self, error: prometheus_http_query::Error) -> SourceError {
        use prometheus_http_query::Error;
        match error {
            Error::Prometheus(e) if e.is_timeout() || e.is_canceled() => {
                SourceError::Timeout(self.timeout)
            }
            Error::Prometheus(e) => SourceError::Rejected {
                error_type: e.error_type().to_string(),
                message: e.message().to_owned(),
            },
            Error::Client(e) => match e.inner() {
                Some(inner) if inner.is_timeout() => SourceError::Timeout(self.timeout),
                Some(inner) => SourceError::Unreachable {
                    url: self.display_url.clone(),
                    cause: transport_cause(inner),
                },
                None => SourceError::Unreachable {
                    url: self.display_url.clone(),
                    cause: e.to_string(),
                },
            },
            other => SourceError::Unreachable {
                url: self.display_url.clone(),
                cause: other.to_string(),
            },
        }
    }
}

impl MetricSource for PrometheusSource {
    fn instant_query<'a>(
        &'a self,
        promql: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Sample>, SourceError>> {
        Box::pin(async move {
            // Ask the backend to give up a little before we do, so its own error reaches us.
            let server_timeout = self.timeout.saturating_sub(self.timeout / 10).as_millis() as i64;
            let query = self
                .client
                .query(promql)
                .timeout(server_timeout.max(1))
                // Partial answers under-count and look like a traffic drop: demand complete ones
                // (Thanos and VictoriaMetrics cluster; Prometheus ignores both).
                .query("partial_response", "false")
                .query("deny_partial_response", "1");
            let answer = if self.method == HttpMethod::Get && promql.len() <= GET_QUERY_LIMIT {
                query.get().await
            } else {
                query.post().await
            };
            let (data, _) = answer.map_err(|e| self.classify(e))?.into_inner();
            match data {
                Data::Vector(vector) => Ok(vector
                    .into_iter()
                    .map(|v| {
                        let (labels, sample) = v.into_inner();
                        Sample {
                            labels: labels.into_iter().collect(),
                            value: sample.value(),
                        }
                    })
                    .collect()),
                Data::Scalar(sample) => Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    value: sample.value(),
                }]),
                Data::Matrix(_) => Err(SourceError::UnexpectedResult("range vector")),
            }
        })
    }

    fn series<'a>(
        &'a self,
        selector: &'a str,
        start: i64,
        end: i64,
    ) -> BoxFuture<'a, Result<Vec<SeriesKeys>, SourceError>> {
        Box::pin(async move {
            let transport = |e: reqwest::Error| {
                if e.is_timeout() {
                    SourceError::Timeout(self.timeout)
                } else {
                    SourceError::Unreachable {
                        url: self.display_url.clone(),
                        cause: transport_cause(&e),
                    }
                }
            };
            // POST: a long selector never meets a URL limit.
            let response = self
                .http
                .post(format!("{}/api/v1/series", self.base))
                .form(&[
                    ("match[]", selector.to_owned()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                ])
                .send()
                .await
                .map_err(transport)?;
            let body = response.bytes().await.map_err(transport)?;
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
