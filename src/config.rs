//! The native configuration file (`--config FILE`): YAML in, a validated typed `Config` out.
//!
//! Parse, don't validate later: every duration, URL and header is checked here, once, and unknown keys are
//! errors that name file, line and column. The section names are a contract (`../shared/DESIGN.md`).
//! This module does no network I/O.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

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
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// How queries are sent to the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Form-encoded POST: every Prometheus-compatible backend accepts it and no URL limit applies
    /// (`../shared/reference/metric-backends.md` §1, §4).
    #[default]
    Post,
    /// GET, switching to POST automatically for queries longer than [`GET_QUERY_LIMIT`].
    Get,
}

/// Above this many bytes of PromQL a `GET` source sends POST instead, well below nginx's 8 KiB request line.
pub const GET_QUERY_LIMIT: usize = 2048;

/// The metrics backend: Prometheus or a compatible engine.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// Base URL up to, not including, `/api/v1` (a path prefix such as `/prometheus` is kept).
    pub url: Option<url::Url>,
    /// Extra headers on every query, e.g. `X-Scope-OrgID`; never logged.
    pub headers: BTreeMap<String, String>,
    /// Client timeout; the backend is asked to stop slightly earlier.
    pub timeout: Duration,
    /// GET or POST.
    pub method: HttpMethod,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            method: HttpMethod::Post,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The metrics backend.
    pub prometheus: PrometheusConfig,
    /// How long one backend answer is reused for every caller that asks the same question.
    pub refresh_interval: Duration,
    /// How long the last good answer is served while the backend fails, before requests fail.
    pub max_staleness: Duration,
    /// The `rate()` window of the built-in network metrics (≥ 4 × the scrape interval).
    pub rate_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prometheus: PrometheusConfig::default(),
            refresh_interval: Duration::from_secs(15),
            max_staleness: Duration::from_secs(60),
            rate_window: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    prometheus: RawPrometheus,
    refresh_interval: Option<String>,
    max_staleness: Option<String>,
    rate_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPrometheus {
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<String>,
    method: Option<HttpMethod>,
}

/// Parses a duration such as `15s`, `2m`, `1h30m` or `500ms`.
///
/// ```
/// use std::time::Duration;
/// use xroad_metrics_adapter::config::parse_duration;
/// assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a valid duration (use e.g. 500ms, 15s, 2m, 1h30m)")
    })?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
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
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Self::parse(&display, &text)
    }

    /// Validates `text`; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        let invalid = |key, message| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let duration = |key, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => parse_duration(&text).map_err(|m| invalid(key, m)),
        };
        let defaults = Config::default();
        let positive = |key, d: Duration| {
            if d.is_zero() {
                Err(invalid(key, "must be greater than zero".into()))
            } else {
                Ok(d)
            }
        };
        for (name, value) in &raw.prometheus.headers {
            if axum::http::HeaderName::try_from(name.as_str()).is_err()
                || axum::http::HeaderValue::try_from(value.as_str()).is_err()
            {
                return Err(invalid(
                    "prometheus.headers",
                    format!("{name:?} is not a valid HTTP header"),
                ));
            }
        }
        let config = Config {
            prometheus: PrometheusConfig {
                url: raw
                    .prometheus
                    .url
                    .as_deref()
                    .map(parse_base_url)
                    .transpose()
                    .map_err(|m| invalid("prometheus.url", m))?,
                headers: raw.prometheus.headers,
                timeout: positive(
                    "prometheus.timeout",
                    duration(
                        "prometheus.timeout",
                        raw.prometheus.timeout,
                        defaults.prometheus.timeout,
                    )?,
                )?,
                method: raw.prometheus.method.unwrap_or_default(),
            },
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
        };
        if config.rate_window.as_secs() < 60 || config.rate_window.subsec_nanos() != 0 {
            return Err(invalid(
                "rateWindow",
                "must be a whole number of seconds, at least 60s (4 × a 15s scrape interval)"
                    .into(),
            ));
        }
        Ok(config)
    }
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
        assert!(err("rateWindow: 30s").contains("at least 60s"));
        assert!(
            err("prometheus: {headers: {'bad header': x}}").contains("not a valid HTTP header")
        );
    }
}
