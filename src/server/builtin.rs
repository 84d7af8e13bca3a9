//! The built-in metrics' values: per-pod and per-namespace custom metrics, and their external totals, from
//! the catalogue's queries answered through the cache and attributed to the pods the inventory knows.

use std::sync::Arc;

use super::params::{metric_matchers, quantity, selector_param};
use super::policies::{deployment_metric, external_policy_metric, policy_metrics};
use super::routes::{CustomRequest, ObjectName};
use super::{AppState, Configured, rules};
use crate::apis::{
    self, CUSTOM_GROUP, EXTERNAL_GROUP, ExternalMetricValue, ExternalMetricValueList,
    LabelSelectorJson, MetricValue, MetricValueList, ObjectReference,
};
use crate::catalog::{DEPLOYMENTS, NAMESPACES, PODS, Scope};
use crate::error::ApiError;

/// `custom.metrics.k8s.io` values: a policy metric, a rule-served metric, or a built-in one, in that order.
pub(super) async fn custom_metric(
    state: &AppState,
    configured: &Configured,
    request: &CustomRequest,
    query: Option<&str>,
) -> Result<MetricValueList, ApiError> {
    let metric_not_found = || ApiError::MetricNotFound {
        group: CUSTOM_GROUP,
        resource: request.resource.clone(),
        metric: request.metric.clone(),
    };
    if request.resource == DEPLOYMENTS && policy_metrics(configured).any(|m| m == request.metric) {
        return deployment_metric(configured, request);
    }
    // A rule the user configured wins over a built-in metric of the same name.
    if let Some(rules) = &state.rules
        && let Some(result) = rules::custom(state, rules, request, query).await
    {
        return result;
    }
    let def = match request.resource.as_str() {
        PODS | NAMESPACES => configured.catalog.pod_metric(&request.metric),
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
    let window = def.window(configured.rate_window);
    let metric: Arc<str> = request.metric.as_str().into();
    let value = |described_object, timestamp, value| MetricValue {
        described_object,
        metric: metric.clone(),
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
                let promql = def.per_pod_query(
                    Scope::Namespace(namespace),
                    &matchers,
                    configured.rate_window,
                );
                Some(
                    configured
                        .backends
                        .for_metric(&def.name)
                        .query(&promql)
                        .await
                        .map_err(ApiError::Backend)?,
                )
            };
            let timestamp = answer.as_ref().map_or(0, |a| a.fetched_at);
            let shared: Arc<str> = namespace.as_str().into();
            pods.iter()
                .filter_map(|pod| {
                    let v = answer.as_ref()?.pod_value(namespace, &pod.name)?;
                    let v = quantity(v, &pod.name)?;
                    Some(value(pod_reference(&shared, &pod.name), timestamp, v))
                })
                .collect::<Vec<_>>()
        }
        (NAMESPACES, None) => {
            let (scope, namespaces) = match &request.name {
                ObjectName::All => (Scope::AllNamespaces, state.inventory.namespaces()),
                ObjectName::One(ns) => (Scope::Namespace(ns), vec![ns.clone()]),
            };
            let answer = configured
                .backends
                .for_metric(&def.name)
                .query(&def.per_pod_query(scope, &matchers, configured.rate_window))
                .await
                .map_err(ApiError::Backend)?;
            namespaces
                .iter()
                .filter_map(|ns| {
                    // Only live pods count: a deleted pod's trailing rate() must not.
                    let generation = state.inventory.pod_generation();
                    let sum = answer.namespace_sum(ns, generation, || {
                        state
                            .inventory
                            .sum_live(ns, |pod| answer.pod_value(ns, pod))
                    })?;
                    let v = quantity(sum, ns)?;
                    Some(value(namespace_reference(ns), answer.fetched_at, v))
                })
                .collect()
        }
        _ => return Err(ApiError::PathNotFound),
    };
    if let ObjectName::One(name) = &request.name
        && values.len() != 1
    {
        return Err(request.object_not_found(name));
    }
    Ok(apis::metric_value_list(request.version, values))
}

fn pod_reference(namespace: &Arc<str>, name: &str) -> ObjectReference {
    ObjectReference {
        kind: "Pod".into(),
        namespace: Some(namespace.clone()),
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

/// `external.metrics.k8s.io` values, in the same order as [`custom_metric`].
pub(super) async fn external_metric(
    state: &AppState,
    configured: &Configured,
    namespace: &str,
    metric: &str,
    query: Option<&str>,
) -> Result<ExternalMetricValueList, ApiError> {
    if policy_metrics(configured).any(|m| m == metric) {
        return external_policy_metric(configured, namespace, metric, query);
    }
    if let Some(rules) = &state.rules
        && let Some(result) = rules::external(state, rules, namespace, metric, query).await
    {
        return result;
    }
    let def =
        configured
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
    let promql = def.total_query(
        Scope::Namespace(namespace),
        &matchers,
        configured.rate_window,
    );
    let answer = configured
        .backends
        .for_metric(&def.name)
        .query(&promql)
        .await
        .map_err(ApiError::Backend)?;
    let window = def.window(configured.rate_window).as_secs() as i64;
    let items = answer
        .series()
        .filter_map(|(labels, value)| {
            Some(ExternalMetricValue {
                metric_name: metric.to_owned(),
                metric_labels: labels.to_map(),
                timestamp: apis::rfc3339(answer.fetched_at),
                window: Some(window),
                value: quantity(value, namespace)?,
            })
        })
        .collect();
    Ok(apis::external_metric_value_list(items))
}
