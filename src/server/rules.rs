//! Metrics served by Prometheus Adapter rules (`--adapter-config`): custom and external requests answered from
//! the relisted registry with each rule's own query, and `metrics.k8s.io` from `resourceRules`
//! (the Prometheus Adapter's docs/config.md and its naming and resource code).
//!
//! Where the rule's query groups by the resource label, the query names no objects: the namespace scopes it
//! and the objects are picked from the answer, so no `=~"a|b|…"` regex grows with the pod count. Otherwise the
//! object names are listed, regex-escaped, as the Prometheus Adapter lists them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::AppState;
use super::params::{quantity, selector_param};
use super::routes::{CustomRequest, ObjectName, Route};
use crate::adapter_rules::AdapterRules;
use crate::apis::{
    self, ContainerMetrics, ExternalMetricValue, ExternalMetricValueList, MetricValue,
    MetricValueList, ObjectReference,
};
use crate::cache::QueryCache;
use crate::catalog::PODS;
use crate::compat::query::{Objects, QueryError, custom_query, external_query, groups_by_resource};
use crate::compat::resource_metrics::{Usage, node_query, node_usage, pod_query, pod_usage};
use crate::compat::resources::{GroupResource, ResourceTable};
use crate::compat::rules::ResourceRules;
use crate::error::ApiError;

/// The backend a rule reads (`backend:`, the default without one).
fn backend(state: &AppState, name: Option<&str>) -> Result<Arc<QueryCache>, ApiError> {
    state
        .configured()
        .backends
        .named(name)
        .cloned()
        .ok_or_else(|| {
            ApiError::RuleQuery(format!("the rule's backend {name:?} is not configured"))
        })
}

fn query_error(error: QueryError, key: &str) -> ApiError {
    match error {
        QueryError::Selector(error) => ApiError::unmatchable_selector(key, error),
        other => ApiError::RuleQuery(other.to_string()),
    }
}

fn reference(
    resources: &ResourceTable,
    resource: &GroupResource,
    namespace: Option<&str>,
    name: &str,
) -> ObjectReference {
    let known = resources.resolve(&resource.group, &resource.resource);
    ObjectReference {
        kind: known
            .as_ref()
            .map_or_else(|| resource.resource.clone().into(), |k| k.kind.clone()),
        namespace: namespace.map(Arc::from),
        name: name.to_owned(),
        api_version: known
            .map_or_else(
                || {
                    format!("{}/v1", resource.group)
                        .trim_start_matches('/')
                        .to_owned()
                },
                |k| k.api_version(),
            )
            .into(),
    }
}

/// A custom-metrics request a rule serves; `None` when no rule serves that resource and metric.
pub(super) async fn custom(
    state: &AppState,
    rules: &AdapterRules,
    request: &CustomRequest,
    query: Option<&str>,
) -> Option<Result<MetricValueList, ApiError>> {
    let loaded = rules.current();
    let resource = loaded
        .config
        .resources
        .parse_group_resource(&request.resource);
    let source = loaded.registry.custom(&resource, &request.metric)?.clone();
    let rule = &loaded.config.rules[source.rule];
    Some(
        async {
            let metric_selector = selector_param(query, "metricLabelSelector")?.unwrap_or_default();
            let object_selector = selector_param(query, "labelSelector")?;
            let namespace = request.namespace.as_deref();
            let pods = resource.resource == PODS && resource.group.is_empty();
            if pods && !state.inventory.is_synced() {
                return Err(ApiError::InventoryUnavailable);
            }
            let wanted: Option<Vec<String>> = match (&request.name, namespace) {
                // A pod the inventory doesn't hold has no value: no query is sent for it.
                (ObjectName::One(name), Some(ns)) if pods => {
                    Some(state.inventory.get(ns, name).filter(|p| p.is_live()).map(|p| p.name.clone()).into_iter().collect())
                }
                (ObjectName::One(name), _) => Some(vec![name.clone()]),
                (ObjectName::All, Some(ns)) if pods => {
                    let selector = object_selector.unwrap_or_default();
                    Some(state.inventory.select(ns, &selector).iter().map(|p| p.name.clone()).collect())
                }
                (ObjectName::All, _) if object_selector.is_some() => {
                    return Err(ApiError::BadRequest(format!(
                        "labelSelector on {} is not supported for rule-served metrics (only pods are listed)",
                        resource.qualified()
                    )));
                }
                (ObjectName::All, _) => None,
            };
            if wanted.as_ref().is_some_and(Vec::is_empty) {
                return match &request.name {
                    ObjectName::One(name) => Err(request.object_not_found(name)),
                    ObjectName::All => Ok(apis::metric_value_list(request.version, Vec::new())),
                };
            }
            // One name is one equality matcher; many are a regex only where the answer cannot be sorted out.
            let objects = match &wanted {
                Some(names) if names.len() == 1 || !groups_by_resource(rule) => Objects::Named(names),
                _ => Objects::InScope,
            };
            let promql = custom_query(rule, &source.series, &resource, namespace, objects, &metric_selector)
                .map_err(|e| query_error(e, "metricLabelSelector"))?;
            let answer = backend(state, rule.backend.as_deref())?.query(&promql).await.map_err(ApiError::Backend)?;
            let label = rule
                .resources
                .label_for_resource(&resource)
                .expect("custom_query succeeded, so the resource has a label");
            let wanted: Option<HashSet<&str>> = wanted.as_ref().map(|w| w.iter().map(String::as_str).collect());
            let mut values: BTreeMap<String, MetricValue> = BTreeMap::new();
            let metric: Arc<str> = request.metric.as_str().into();
            for (labels, value) in answer.series() {
                let Some(name) = labels.get(&label) else {
                    continue;
                };
                if wanted.as_ref().is_some_and(|w| !w.contains(name)) {
                    continue;
                }
                let Some(value) = quantity(value, name) else {
                    continue;
                };
                values.insert(
                    name.to_owned(),
                    MetricValue {
                        described_object: reference(&loaded.config.resources, &resource, namespace, name),
                        metric: metric.clone(),
                        selector: (!metric_selector.selects_all())
                            .then(|| apis::LabelSelectorJson::from_selector(&metric_selector)),
                        timestamp: answer.fetched_at,
                        window_seconds: None,
                        value,
                    },
                );
            }
            if let ObjectName::One(name) = &request.name
                && values.is_empty()
            {
                return Err(request.object_not_found(name));
            }
            let values: Vec<MetricValue> = values.into_values().collect();
            Ok(apis::metric_value_list(request.version, values))
        }
        .await,
    )
}

/// An external-metrics request a rule serves; `None` when no external rule serves `metric`.
pub(super) async fn external(
    state: &AppState,
    rules: &AdapterRules,
    namespace: &str,
    metric: &str,
    query: Option<&str>,
) -> Option<Result<ExternalMetricValueList, ApiError>> {
    let loaded = rules.current();
    let source = loaded.registry.external(metric)?.clone();
    let rule = &loaded.config.external_rules[source.rule];
    Some(
        async {
            let selector = selector_param(query, "labelSelector")?.unwrap_or_default();
            let promql = external_query(rule, &source.series, namespace, &selector)
                .map_err(|e| query_error(e, "labelSelector"))?;
            let answer = backend(state, rule.backend.as_deref())?
                .query(&promql)
                .await
                .map_err(ApiError::Backend)?;
            let items = answer
                .series()
                .filter_map(|(labels, value)| {
                    let mut labels = labels.to_map();
                    labels.remove("__name__");
                    Some(ExternalMetricValue {
                        metric_name: metric.to_owned(),
                        metric_labels: labels,
                        timestamp: apis::rfc3339(answer.fetched_at),
                        window: None,
                        value: quantity(value, metric)?,
                    })
                })
                .collect();
            Ok(apis::external_metric_value_list(items))
        }
        .await,
    )
}

/// A `metrics.k8s.io` request, from `resource` (the `resourceRules` in force): pods of one namespace (or all the inventory's
/// namespaces), or nodes.
pub(super) async fn resource_metrics(
    state: &AppState,
    resource: &ResourceRules,
    route: &Route,
    query: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let failed = |e: QueryError| ApiError::RuleQuery(e.to_string());
    let cache = backend(state, resource.backend.as_deref())?;
    let fetch = |promql: String| {
        let cache = cache.clone();
        async move { cache.query(&promql).await.map_err(ApiError::Backend) }
    };
    match route {
        Route::NodeMetrics { name } => {
            let (cpu, memory) = futures::try_join!(
                fetch(node_query(&resource.cpu).map_err(failed)?),
                fetch(node_query(&resource.memory).map_err(failed)?),
            )?;
            let label = resource
                .cpu
                .resources
                .label_for_resource(&GroupResource::core("nodes"))
                .unwrap_or_default();
            let timestamp = cpu.fetched_at.min(memory.fetched_at);
            // A node label holding `IP:port` (node-exporter's `instance`) names the node with that address.
            let by_node_name = |samples: &[crate::source::Sample]| -> Vec<crate::source::Sample> {
                samples
                    .iter()
                    .cloned()
                    .map(|mut sample| {
                        if let Some(node) = sample
                            .labels
                            .get(&label)
                            .and_then(|v| state.inventory.node_for(v))
                        {
                            sample.labels.insert(label.clone(), node);
                        }
                        sample
                    })
                    .collect()
            };
            let nodes = node_usage(
                &by_node_name(&cpu.samples()),
                &by_node_name(&memory.samples()),
                &label,
            );
            let item = |(node, (cpu, mem)): (&String, &Usage)| {
                apis::node_metrics(node, timestamp, resource.window, apis::usage(*cpu, *mem))
            };
            match name {
                Some(name) => nodes.get_key_value(name).map(item).ok_or_else(|| {
                    ApiError::ResourceMetricsNotFound(format!(
                        "nodemetrics.metrics.k8s.io {name:?}"
                    ))
                }),
                None => Ok(apis::resource_metrics_list(
                    "NodeMetricsList",
                    nodes.iter().map(item).collect(),
                )),
            }
        }
        Route::PodMetrics { namespace, name } => {
            if !state.inventory.is_synced() {
                return Err(ApiError::InventoryUnavailable);
            }
            let selector = selector_param(query, "labelSelector")?.unwrap_or_default();
            let namespaces = match namespace {
                Some(ns) => vec![ns.clone()],
                None => state.inventory.namespaces(),
            };
            let pod_label = resource
                .cpu
                .resources
                .label_for_resource(&GroupResource::core("pods"))
                .unwrap_or_default();
            let mut items = Vec::new();
            for ns in &namespaces {
                let pods: Vec<String> = match name {
                    Some(name) => state
                        .inventory
                        .get(ns, name)
                        .filter(|p| p.is_live())
                        .map(|p| p.name.clone())
                        .into_iter()
                        .collect(),
                    None => state
                        .inventory
                        .select(ns, &selector)
                        .iter()
                        .map(|p| p.name.clone())
                        .collect(),
                };
                if pods.is_empty() {
                    continue;
                }
                let (cpu, memory) = futures::try_join!(
                    fetch(pod_query(&resource.cpu, ns, &pods).map_err(failed)?),
                    fetch(pod_query(&resource.memory, ns, &pods).map_err(failed)?),
                )?;
                let timestamp = cpu.fetched_at.min(memory.fetched_at);
                let usage = pod_usage(
                    &cpu.samples(),
                    &memory.samples(),
                    &pod_label,
                    &resource.cpu.container_label,
                );
                for pod in &pods {
                    let Some(containers) = usage.get(pod) else {
                        continue;
                    };
                    let containers = containers
                        .iter()
                        .map(|(container, (cpu, mem))| ContainerMetrics {
                            name: container.clone(),
                            usage: apis::usage(*cpu, *mem),
                        })
                        .collect();
                    items.push(apis::pod_metrics(
                        ns,
                        pod,
                        timestamp,
                        resource.window,
                        containers,
                    ));
                }
            }
            match name {
                Some(name) => items.pop().ok_or_else(|| {
                    let ns = namespace.as_deref().unwrap_or_default();
                    ApiError::ResourceMetricsNotFound(format!(
                        "podmetrics.metrics.k8s.io \"{ns}/{name}\""
                    ))
                }),
                None => Ok(apis::resource_metrics_list("PodMetricsList", items)),
            }
        }
        _ => Err(ApiError::PathNotFound),
    }
}
