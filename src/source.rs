//! The metrics backend behind a trait: a Prometheus-compatible HTTP API client (Prometheus, Thanos, Mimir,
//! VictoriaMetrics, managed services) that runs instant queries and classifies failures.
//!
//! Each request is built here, so that what is signed is exactly what is sent and rotated credentials apply
//! to the next request; `prometheus-http-query`'s types decode the answers, and [`envelope`] reads the
//! `warnings` that crate drops (the Prometheus HTTP API documentation). Headers and credentials are never
//! logged.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

mod client;
mod credentials;
pub mod envelope;
mod series;
mod watched;

pub use client::PrometheusSource;
pub use credentials::Credentials;
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
    /// The answer came with warnings (a partial answer, a limit hit) and the backend's `warnings: fail`
    /// says such an answer must not be served: it may under-count and drive a scale-down.
    #[error("the metrics backend answered with warnings: {}", .0.join("; "))]
    Degraded(Vec<String>),
    /// The credentials could not be read or obtained (a missing token file, a refused OAuth2 grant, no AWS
    /// credentials); the text never holds a secret.
    #[error("no credentials for the metrics backend: {0}")]
    Credentials(String),
    /// The backend refused the credentials (HTTP 401 or 403): a wrong token or a missing tenant.
    #[error(
        "the metrics backend refused the credentials (HTTP {0}); check the backend's auth and tenant settings"
    )]
    Unauthorized(u16),
    /// The query is longer than the backend's `maxQueryLength` (VictoriaMetrics refuses more than 16 KiB).
    #[error("the query is {len} bytes, longer than the backend's maxQueryLength of {limit}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
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
            SourceError::Degraded(_) => "warnings",
            SourceError::Credentials(_) => "credentials",
            SourceError::Unauthorized(_) => "unauthorized",
            SourceError::TooLong { .. } => "too_long",
        }
    }
}

/// An instant query's samples, and the warnings of an answer served despite them (`warnings: ignore`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answered {
    /// The samples.
    pub samples: Vec<Sample>,
    /// The answer's warnings; a backend set to fail on warnings never returns any.
    pub warnings: Vec<String>,
}

impl From<Vec<Sample>> for Answered {
    fn from(samples: Vec<Sample>) -> Self {
        Self {
            samples,
            warnings: Vec::new(),
        }
    }
}

/// Runs PromQL instant queries. Implemented by [`PrometheusSource`] and by test doubles.
pub trait MetricSource: Send + Sync + 'static {
    /// Evaluates `promql` at the backend's current time.
    fn instant_query<'a>(&'a self, promql: &'a str)
    -> BoxFuture<'a, Result<Answered, SourceError>>;

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
