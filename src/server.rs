//! The HTTPS server: TLS accept loop, the router, and the handlers of every endpoint an aggregated
//! metrics API server answers
//!
//! `app(state)` is a pure function from state to `Router`, called by `main` and by tests alike.

pub mod guard;
pub mod listener;
pub mod routes;
mod rules;
pub mod tls;

pub use listener::{ConnectionLimits, serve};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;

use crate::adapter_rules::AdapterRules;
use crate::apis::{
    self, ApiGroup, ApiGroupList, ApiResource, ApiResourceList, CUSTOM_GROUP, EXTERNAL_GROUP,
    ExternalMetricValue, LabelSelectorJson, MetricValue, ObjectReference, RESOURCE_GROUP,
};
use crate::cache::QueryCache;
use crate::catalog::{
    Catalog, DEPLOYMENTS, NAMESPACES, PODS, POLICY_METRICS, SCALE_ON_FAILURE_REPLICAS, Scope,
};
use crate::error::ApiError;
use crate::health::FailurePolicies;
use crate::inventory::PodInventory;
use crate::policy::Decision;
use crate::promql::{self, MatcherError};
use crate::quantity::Quantity;
use crate::selector::LabelSelector;
use crate::telemetry::{Metrics, RequestLabels, RouteLabels};
use routes::{CustomRequest, ObjectName, Route};

/// Everything the handlers share.
pub struct AppState {
    /// The metrics served.
    pub catalog: Catalog,
    /// Backend answers, shared and coalesced.
    pub cache: Arc<QueryCache>,
    /// Pods by namespace.
    pub inventory: Arc<PodInventory>,
    /// The adapter's own metrics.
    pub metrics: Arc<Metrics>,
    /// The `rate()` window of the built-in metrics.
    pub rate_window: Duration,
    /// The scale-on-failure policies.
    pub policies: Arc<FailurePolicies>,
    /// Authentication, authorization and request limits.
    pub guard: guard::Guard,
    /// Prometheus Adapter rules (`--adapter-config`), served next to the built-in metrics.
    pub rules: Option<Arc<AdapterRules>>,
}

/// The route kind a response was produced by, for self-metrics.
#[derive(Debug, Clone, Copy)]
struct RouteKind(&'static str);

/// The router for `state`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(livez))
        .route("/healthz/{check}", get(livez))
        .route("/livez", get(livez))
        .route("/livez/{check}", get(livez))
        .route("/readyz", get(readyz))
        .route("/readyz/{check}", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/api", get(core_api_versions))
        .route("/apis", any(api))
        .route("/apis/{*rest}", any(api))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::protect,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path_kind = match request.uri().path() {
        "/healthz" | "/livez" | "/readyz" => "health",
        p if p.starts_with("/healthz/")
            || p.starts_with("/livez/")
            || p.starts_with("/readyz/") =>
        {
            "health"
        }
        "/metrics" => "metrics",
        "/version" => "version",
        _ => "other",
    };
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteKind>()
        .map_or(path_kind, |k| k.0);
    let code = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { route, code })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

fn json(value: impl Serialize) -> Response {
    axum::Json(value).into_response()
}

async fn not_found() -> Response {
    ApiError::PathNotFound.into_response()
}

async fn api(State(state): State<Arc<AppState>>, method: Method, uri: Uri) -> Response {
    let (kind, result) = match routes::route(uri.path()) {
        Err(error) => ("unknown", Err(error)),
        Ok(_) if method != Method::GET && method != Method::HEAD => {
            ("unknown", Err(ApiError::MethodNotAllowed))
        }
        Ok(route) => (route.kind(), dispatch(&state, route, uri.query()).await),
    };
    let mut response = result.unwrap_or_else(|error| {
        if matches!(error, ApiError::Backend(_) | ApiError::InventoryUnavailable) {
            tracing::warn!(path = uri.path(), %error, "metrics request failed");
        }
        error.into_response()
    });
    response.extensions_mut().insert(RouteKind(kind));
    response
}

async fn dispatch(
    state: &AppState,
    route: Route,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    Ok(match route {
        Route::Groups => json(ApiGroupList::served(serves_resource_metrics(state))),
        Route::Group(CUSTOM_GROUP) => json(ApiGroup::custom().document()),
        Route::Group(EXTERNAL_GROUP) => json(ApiGroup::external().document()),
        Route::Group(_) | Route::ResourceDiscovery if !serves_resource_metrics(state) => {
            return Err(ApiError::PathNotFound);
        }
        Route::Group(_) => json(ApiGroup::resource().document()),
        Route::ResourceDiscovery => json(ApiResourceList::new(
            RESOURCE_GROUP,
            "v1beta1",
            vec![
                ApiResource::resource_metrics("nodes", "NodeMetrics", false),
                ApiResource::resource_metrics("pods", "PodMetrics", true),
            ],
        )),
        Route::PodMetrics { .. } | Route::NodeMetrics { .. } => match &state.rules {
            Some(rules) if serves_resource_metrics(state) => {
                json(rules::resource_metrics(state, rules, &route, query).await?)
            }
            _ => return Err(ApiError::PathNotFound),
        },
        Route::CustomDiscovery(version) => json(ApiResourceList::new(
            CUSTOM_GROUP,
            version.as_str(),
            state
                .catalog
                .custom_resources()
                .map(|(resource, metric, namespaced)| {
                    ApiResource::custom(resource, metric, namespaced)
                })
                .chain(policy_metrics(state).map(|m| ApiResource::custom(DEPLOYMENTS, m, true)))
                .chain(rule_resources(state))
                .collect(),
        )),
        Route::ExternalDiscovery => json(ApiResourceList::new(
            EXTERNAL_GROUP,
            "v1beta1",
            state
                .catalog
                .metrics()
                .iter()
                .map(|m| m.name.as_str())
                .chain(policy_metrics(state))
                .map(ApiResource::external)
                .chain(rule_external_metrics(state))
                .collect(),
        )),
        Route::Custom(request) => json(custom_metric(state, &request, query).await?),
        Route::External { namespace, metric } => {
            json(external_metric(state, &namespace, &metric, query).await?)
        }
    })
}

/// Whether `metrics.k8s.io` is served: only with Prometheus Adapter `resourceRules`.
fn serves_resource_metrics(state: &AppState) -> bool {
    state
        .rules
        .as_ref()
        .is_some_and(|r| r.current().config.resource_rules.is_some())
}

/// The custom metrics the Prometheus Adapter rules found at the last relist.
fn rule_resources(state: &AppState) -> Vec<ApiResource> {
    state.rules.as_ref().map_or_else(Vec::new, |rules| {
        rules
            .registry()
            .custom_resources()
            .map(|(resource, metric, namespaced)| {
                ApiResource::custom(&resource.qualified(), metric, namespaced)
            })
            .collect()
    })
}

/// The external metrics the Prometheus Adapter rules found at the last relist.
fn rule_external_metrics(state: &AppState) -> Vec<ApiResource> {
    state.rules.as_ref().map_or_else(Vec::new, |rules| {
        rules
            .registry()
            .external_metrics()
            .map(ApiResource::external)
            .collect()
    })
}

/// The scale-on-failure metrics, served only when a policy is configured.
fn policy_metrics(state: &AppState) -> impl Iterator<Item = &str> + '_ {
    POLICY_METRICS
        .into_iter()
        .filter(|_| !state.policies.is_empty())
}

/// A policy metric's value in a decision.
fn policy_value(decision: &Decision, metric: &str) -> Quantity {
    let value = if metric == SCALE_ON_FAILURE_REPLICAS {
        decision.replicas
    } else {
        decision.failing_now.len() as u32
    };
    Quantity::from_millis(i64::from(value) * 1000)
}

/// `deployments.apps/<name>/<policy metric>`: one item per policy whose target is in the namespace.
fn deployment_metric(
    state: &AppState,
    request: &CustomRequest,
) -> Result<serde_json::Value, ApiError> {
    let namespace = request.namespace.as_deref().ok_or(ApiError::PathNotFound)?;
    let policies: Vec<_> = match &request.name {
        ObjectName::One(name) => state
            .policies
            .for_deployment(namespace, name)
            .into_iter()
            .collect(),
        ObjectName::All => state
            .policies
            .all()
            .iter()
            .filter(|p| p.config.target.namespace == namespace)
            .collect(),
    };
    let mut values = Vec::new();
    for policy in policies {
        let decision = match policy.latest() {
            None => continue,
            Some(Ok(decision)) => decision,
            // A named request must say why; a wildcard leaves the policy out.
            Some(Err(cause)) if matches!(request.name, ObjectName::One(_)) => {
                return Err(ApiError::PolicyUnavailable(cause));
            }
            Some(Err(_)) => continue,
        };
        values.push(MetricValue {
            described_object: ObjectReference {
                kind: "Deployment".into(),
                namespace: Some(namespace.to_owned()),
                name: policy.config.target.deployment.clone(),
                api_version: "apps/v1".into(),
            },
            metric: request.metric.clone(),
            selector: None,
            timestamp: decision.decided_at,
            window_seconds: None,
            value: policy_value(&decision, &request.metric),
        });
    }
    if let ObjectName::One(name) = &request.name
        && values.is_empty()
    {
        return Err(ApiError::ObjectMetricNotFound {
            resource: request.resource.clone(),
            name: name.clone(),
            metric: request.metric.clone(),
        });
    }
    Ok(apis::metric_value_list(request.version, &values))
}

/// The external form: one item per policy in the namespace, labelled `deployment` and `policy`.
fn external_policy_metric(
    state: &AppState,
    namespace: &str,
    metric: &str,
    query: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let selector = selector_param(query, "labelSelector")?.unwrap_or_default();
    let items = state
        .policies
        .all()
        .iter()
        .filter(|p| p.config.target.namespace == namespace)
        .filter_map(|policy| {
            let labels: std::collections::BTreeMap<String, String> = [
                (
                    "deployment".to_owned(),
                    policy.config.target.deployment.clone(),
                ),
                ("policy".to_owned(), policy.config.name.clone()),
            ]
            .into();
            if !selector.matches(&labels) {
                return None;
            }
            let decision = policy.latest()?.ok()?;
            Some(ExternalMetricValue {
                metric_name: metric.to_owned(),
                metric_labels: labels,
                timestamp: apis::rfc3339(decision.decided_at),
                window: None,
                value: policy_value(&decision, metric),
            })
        })
        .collect();
    Ok(apis::external_metric_value_list(items))
}

/// The first value of `key`, decoded as a form (the aggregator re-encodes queries that way).
fn param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A selector parameter; absent or empty means "no selector".
fn selector_param(query: Option<&str>, key: &str) -> Result<Option<LabelSelector>, ApiError> {
    match param(query, key) {
        None => Ok(None),
        Some(text) => {
            let selector: LabelSelector =
                text.parse().map_err(|e| ApiError::bad_selector(key, e))?;
            Ok((!selector.selects_all()).then_some(selector))
        }
    }
}

fn metric_matchers(selector: Option<&LabelSelector>, key: &str) -> Result<Vec<String>, ApiError> {
    let Some(selector) = selector else {
        return Ok(Vec::new());
    };
    promql::matchers(selector).map_err(|error| match error {
        MatcherError::UnsupportedOperator(_) => ApiError::BadRequest(error.to_string()),
        MatcherError::InvalidLabelName(_) => ApiError::bad_selector(key, error),
    })
}

/// A value fit for the wire, or `None` (logged) for NaN, ±Inf and out-of-range values: the object then
/// counts as missing, never as 0.
fn quantity(value: f64, object: &str) -> Option<Quantity> {
    Quantity::from_f64(value)
        .inspect_err(|error| tracing::debug!(object, %error, "value not served"))
        .ok()
}

async fn custom_metric(
    state: &AppState,
    request: &CustomRequest,
    query: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let metric_not_found = || ApiError::MetricNotFound {
        group: CUSTOM_GROUP,
        resource: request.resource.clone(),
        metric: request.metric.clone(),
    };
    let object_not_found = |name: &str| ApiError::ObjectMetricNotFound {
        resource: request.resource.clone(),
        name: name.to_owned(),
        metric: request.metric.clone(),
    };
    if request.resource == DEPLOYMENTS && policy_metrics(state).any(|m| m == request.metric) {
        return deployment_metric(state, request);
    }
    // A rule the user configured wins over a built-in metric of the same name.
    if let Some(rules) = &state.rules
        && let Some(result) = rules::custom(state, rules, request, query).await
    {
        return result;
    }
    let def = match request.resource.as_str() {
        PODS | NAMESPACES => state.catalog.pod_metric(&request.metric),
        _ => None,
    }
    .ok_or_else(metric_not_found)?;
    let metric_selector = selector_param(query, "metricLabelSelector")?;
    let matchers = metric_matchers(metric_selector.as_ref(), "metricLabelSelector")?;
    let pod_selector = selector_param(query, "labelSelector")?.unwrap_or_default();
    if !state.inventory.is_synced() {
        return Err(ApiError::InventoryUnavailable);
    }
    let echo = metric_selector
        .as_ref()
        .map(LabelSelectorJson::from_selector);
    let window = def.window(state.rate_window);
    let value = |described_object, timestamp, value| MetricValue {
        described_object,
        metric: request.metric.clone(),
        selector: echo.clone(),
        timestamp,
        window_seconds: Some(window.as_secs() as i64),
        value,
    };

    let values = match (request.resource.as_str(), &request.namespace) {
        (PODS, Some(namespace)) => {
            let pods = match &request.name {
                ObjectName::All => state.inventory.select(namespace, &pod_selector),
                ObjectName::One(name) => state
                    .inventory
                    .get(namespace, name)
                    .filter(|p| p.is_live())
                    .into_iter()
                    .collect(),
            };
            // No pods, no question to ask the backend.
            let answer = if pods.is_empty() {
                None
            } else {
                let promql =
                    def.per_pod_query(Scope::Namespace(namespace), &matchers, state.rate_window);
                Some(
                    state
                        .cache
                        .query(&promql)
                        .await
                        .map_err(ApiError::Backend)?,
                )
            };
            let by_pod: HashMap<&str, f64> = answer
                .iter()
                .flat_map(|a| &a.samples)
                .filter_map(|s| Some((s.labels.get("pod")?.as_str(), s.value)))
                .collect();
            let timestamp = answer.as_ref().map_or(0, |a| a.fetched_at);
            pods.iter()
                .filter_map(|pod| {
                    let v = quantity(*by_pod.get(pod.name.as_str())?, &pod.name)?;
                    Some(value(pod_reference(namespace, &pod.name), timestamp, v))
                })
                .collect::<Vec<_>>()
        }
        (NAMESPACES, None) => {
            let (scope, namespaces) = match &request.name {
                ObjectName::All => (Scope::AllNamespaces, state.inventory.namespaces()),
                ObjectName::One(ns) => (Scope::Namespace(ns), vec![ns.clone()]),
            };
            let answer = state
                .cache
                .query(&def.per_pod_query(scope, &matchers, state.rate_window))
                .await
                .map_err(ApiError::Backend)?;
            namespaces
                .iter()
                .filter_map(|ns| {
                    // Only live pods count: a deleted pod's trailing rate() must not.
                    let live: std::collections::HashSet<String> = state
                        .inventory
                        .select(ns, &LabelSelector::everything())
                        .iter()
                        .map(|p| p.name.clone())
                        .collect();
                    let samples: Vec<f64> = answer
                        .samples
                        .iter()
                        .filter(|s| s.labels.get("namespace") == Some(ns))
                        .filter(|s| s.labels.get("pod").is_some_and(|p| live.contains(p)))
                        .map(|s| s.value)
                        .collect();
                    if samples.is_empty() {
                        return None;
                    }
                    let v = quantity(samples.iter().sum(), ns)?;
                    Some(value(namespace_reference(ns), answer.fetched_at, v))
                })
                .collect()
        }
        _ => return Err(ApiError::PathNotFound),
    };
    if let ObjectName::One(name) = &request.name
        && values.len() != 1
    {
        return Err(object_not_found(name));
    }
    Ok(apis::metric_value_list(request.version, &values))
}

fn pod_reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        kind: "Pod".into(),
        namespace: Some(namespace.to_owned()),
        name: name.to_owned(),
        api_version: "v1".into(),
    }
}

fn namespace_reference(name: &str) -> ObjectReference {
    ObjectReference {
        kind: "Namespace".into(),
        namespace: None,
        name: name.to_owned(),
        api_version: "v1".into(),
    }
}

async fn external_metric(
    state: &AppState,
    namespace: &str,
    metric: &str,
    query: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    if policy_metrics(state).any(|m| m == metric) {
        return external_policy_metric(state, namespace, metric, query);
    }
    if let Some(rules) = &state.rules
        && let Some(result) = rules::external(state, rules, namespace, metric, query).await
    {
        return result;
    }
    let def = state
        .catalog
        .external_metric(metric)
        .ok_or_else(|| ApiError::MetricNotFound {
            group: EXTERNAL_GROUP,
            resource: EXTERNAL_GROUP.to_owned(),
            metric: metric.to_owned(),
        })?;
    // Here `labelSelector` carries the HPA's metric selector, not a pod selector.
    let selector = selector_param(query, "labelSelector")?;
    let matchers = metric_matchers(selector.as_ref(), "labelSelector")?;
    let promql = def.total_query(Scope::Namespace(namespace), &matchers, state.rate_window);
    let answer = state
        .cache
        .query(&promql)
        .await
        .map_err(ApiError::Backend)?;
    let window = def.window(state.rate_window).as_secs() as i64;
    let items = answer
        .samples
        .iter()
        .filter_map(|sample| {
            Some(ExternalMetricValue {
                metric_name: metric.to_owned(),
                metric_labels: sample.labels.clone(),
                timestamp: apis::rfc3339(answer.fetched_at),
                window: Some(window),
                value: quantity(sample.value, namespace)?,
            })
        })
        .collect();
    Ok(apis::external_metric_value_list(items))
}

/// One health check's outcome.
type Check = (&'static str, Result<(), String>);

/// Renders `/livez`, `/readyz` and their `/<check>` forms as the generic apiserver does: `ok`, or with
/// `?verbose` or a failure one line per check. Reasons and information lines go only to a caller cleared
/// for [`guard::HealthDetails`]; others read `reason withheld`, as kube-apiserver writes it.
fn health_report(
    endpoint: &str,
    checks: Vec<Check>,
    only: Option<&str>,
    query: Option<&str>,
    info: Vec<String>,
    details: bool,
) -> Response {
    let excluded: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.into_owned())
        .collect();
    let verbose =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, _)| k == "verbose");
    let checks: Vec<_> = checks
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == *name) && !excluded.iter().any(|e| e == name))
        .collect();
    if checks.is_empty() {
        return (StatusCode::NOT_FOUND, "no such health check\n").into_response();
    }
    let healthy = checks.iter().all(|(_, r)| r.is_ok());
    let text = if healthy && !verbose {
        "ok".to_owned()
    } else {
        let mut lines: Vec<String> = checks
            .iter()
            .map(|(name, result)| match result {
                Ok(()) => format!("[+]{name} ok"),
                Err(reason) if details => format!("[-]{name} failed: {reason}"),
                Err(_) => format!("[-]{name} failed: reason withheld"),
            })
            .collect();
        if details {
            lines.extend(info);
        }
        lines.push(format!(
            "{endpoint} check {}",
            if healthy { "passed" } else { "failed" }
        ));
        lines.join("\n") + "\n"
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut response = (code, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn check_name(uri: &Uri) -> Option<&str> {
    uri.path().splitn(3, '/').nth(2)
}

async fn livez(uri: Uri, details: Option<Extension<guard::HealthDetails>>) -> Response {
    let endpoint = if uri.path().starts_with("/healthz") {
        "healthz"
    } else {
        "livez"
    };
    health_report(
        endpoint,
        vec![("ping", Ok(()))],
        check_name(&uri),
        uri.query(),
        vec![],
        details.is_some(),
    )
}

async fn readyz(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    details: Option<Extension<guard::HealthDetails>>,
) -> Response {
    let inventory = if state.inventory.is_synced() {
        Ok(())
    } else {
        Err(match state.inventory.streams().describe_unlisted() {
            Some(streams) => format!("waiting for the first list of {streams}"),
            None => "the pod inventory has not synced yet".to_owned(),
        })
    };
    // Readiness never depends on the metrics backend: an APIService without ready endpoints degrades
    // discovery for the whole cluster. Its state is shown as information only.
    let health = state.cache.health();
    let ago = |t: i64| format!("{}s ago", crate::unix_now() - t);
    let mut info = vec![format!(
        "[i]metrics-backend (information, not a readiness check): last success {}, last error {}",
        health.last_success.map_or("never".to_owned(), ago),
        health
            .last_error
            .map_or("none".to_owned(), |(t, e)| format!("{}: {e}", ago(t)))
    )];
    // A lost watch leaves what is known in place; turning unready would only take discovery down with it.
    info.extend(
        state
            .inventory
            .streams()
            .lost(std::time::Instant::now())
            .into_iter()
            .map(|lost| {
                format!(
                    "[i]watch {} (information, not a readiness check): failing for {}s, serving what was last seen: {}",
                    lost.id,
                    lost.failing_for.as_secs(),
                    lost.error
                )
            }),
    );
    health_report(
        "readyz",
        vec![
            ("ping", Ok(())),
            ("serving-cert", Ok(())),
            ("pod-inventory", inventory),
        ],
        check_name(&uri),
        uri.query(),
        info,
        details.is_some(),
    )
}

/// `/api`: no core group here. kubectl's discovery starts with `/api`, so answering it (empty) lets kubectl talk
/// to the adapter directly, as the quick start and `kubectl top` against a lone adapter do; behind the
/// aggregator this path is never forwarded.
async fn core_api_versions() -> Response {
    json(
        serde_json::json!({"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}),
    )
}

/// `/version`, as Kubernetes components answer it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    major: &'static str,
    minor: &'static str,
    git_version: String,
    git_commit: &'static str,
    git_tree_state: &'static str,
    build_date: &'static str,
    go_version: &'static str,
    compiler: &'static str,
    platform: String,
}

async fn version() -> Response {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json(VersionInfo {
        major: env!("CARGO_PKG_VERSION_MAJOR"),
        minor: env!("CARGO_PKG_VERSION_MINOR"),
        git_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        git_commit: option_env!("XROAD_METRICS_ADAPTER_GIT_COMMIT").unwrap_or(""),
        git_tree_state: "",
        build_date: "",
        go_version: "",
        compiler: "rustc",
        platform: format!("{}/{arch}", std::env::consts::OS),
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn failing() -> Vec<Check> {
        vec![
            ("ping", Ok(())),
            (
                "pod-inventory",
                Err("waiting for the first list of pods".into()),
            ),
        ]
    }

    #[tokio::test]
    async fn a_failed_check_names_its_reason_only_to_a_cleared_caller() {
        let info = || vec!["[i]metrics-backend: last error at http://10.0.0.1:9090".to_owned()];
        let withheld = health_report("readyz", failing(), None, None, info(), false);
        assert_eq!(withheld.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body(withheld).await,
            "[+]ping ok\n[-]pod-inventory failed: reason withheld\nreadyz check failed\n"
        );
        let shown = health_report("readyz", failing(), None, None, info(), true);
        assert_eq!(
            body(shown).await,
            "[+]ping ok\n[-]pod-inventory failed: waiting for the first list of pods\n\
             [i]metrics-backend: last error at http://10.0.0.1:9090\nreadyz check failed\n"
        );
    }
}
