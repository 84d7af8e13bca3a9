//! Metrics served by Prometheus Adapter rules (`--adapter-config`): custom and external requests answered from
//! the relisted registry with each rule's own query (`../shared/reference/prometheus-adapter-compat.md` §4).
//!
//! Where the rule's query groups by the resource label, the query names no objects: the namespace scopes it
//! and the objects are picked from the answer, so no `=~"a|b|…"` regex grows with the pod count. Otherwise the
//! object names are listed, regex-escaped, as the Prometheus Adapter lists them.

use std::collections::{BTreeMap, HashSet};

use super::routes::{CustomRequest, ObjectName};
use super::{AppState, quantity, selector_param};
use crate::adapter_rules::AdapterRules;
use crate::apis::{self, ExternalMetricValue, MetricValue, ObjectReference};
use crate::catalog::PODS;
use crate::compat::query::{Objects, QueryError, custom_query, external_query, groups_by_resource};
use crate::compat::resources::{GroupResource, parse_group_resource, resolve};
use crate::error::ApiError;
use crate::promql::MatcherError;

fn query_error(error: QueryError, key: &str) -> ApiError {
    match error {
        QueryError::Selector(MatcherError::UnsupportedOperator(_)) => {
            ApiError::BadRequest(error.to_string())
        }
        QueryError::Selector(e @ MatcherError::InvalidLabelName(_)) => {
            ApiError::bad_selector(key, e)
        }
        other => ApiError::RuleQuery(other.to_string()),
    }
}

fn reference(resource: &GroupResource, namespace: Option<&str>, name: &str) -> ObjectReference {
    let known = resolve(&resource.group, &resource.resource);
    ObjectReference {
        kind: known.map_or_else(|| resource.resource.clone(), |k| k.kind.to_owned()),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        api_version: known.map_or_else(
            || {
                format!("{}/v1", resource.group)
                    .trim_start_matches('/')
                    .to_owned()
            },
            |k| k.api_version(),
        ),
    }
}

/// A custom-metrics request a rule serves; `None` when no rule serves that resource and metric.
pub(super) async fn custom(
    state: &AppState,
    rules: &AdapterRules,
    request: &CustomRequest,
    query: Option<&str>,
) -> Option<Result<serde_json::Value, ApiError>> {
    let resource = parse_group_resource(&request.resource);
    let source = rules.registry().custom(&resource, &request.metric)?.clone();
    let rule = &rules.config.rules[source.rule];
    Some(
        async {
            let metric_selector = selector_param(query, "metricLabelSelector")?.unwrap_or_default();
            let object_selector = selector_param(query, "labelSelector")?;
            let namespace = request.namespace.as_deref();
            let wanted: Option<Vec<String>> = match (&request.name, namespace) {
                (ObjectName::One(name), _) => Some(vec![name.clone()]),
                (ObjectName::All, Some(ns)) if resource.resource == PODS && resource.group.is_empty() => {
                    if !state.inventory.is_synced() {
                        return Err(ApiError::InventoryUnavailable);
                    }
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
                return Ok(apis::metric_value_list(request.version, &[]));
            }
            // One name is one equality matcher; many are a regex only where the answer cannot be sorted out.
            let objects = match &wanted {
                Some(names) if names.len() == 1 || !groups_by_resource(rule) => Objects::Named(names),
                _ => Objects::InScope,
            };
            let promql = custom_query(rule, &source.series, &resource, namespace, objects, &metric_selector)
                .map_err(|e| query_error(e, "metricLabelSelector"))?;
            let answer = state.cache.query(&promql).await.map_err(ApiError::Backend)?;
            let label = rule
                .resources
                .label_for_resource(&resource)
                .expect("custom_query succeeded, so the resource has a label");
            let wanted: Option<HashSet<&String>> = wanted.as_ref().map(|w| w.iter().collect());
            let mut values: BTreeMap<String, MetricValue> = BTreeMap::new();
            for sample in &answer.samples {
                let Some(name) = sample.labels.get(&label) else {
                    continue;
                };
                if wanted.as_ref().is_some_and(|w| !w.contains(name)) {
                    continue;
                }
                let Some(value) = quantity(sample.value, name) else {
                    continue;
                };
                values.insert(
                    name.clone(),
                    MetricValue {
                        described_object: reference(&resource, namespace, name),
                        metric: request.metric.clone(),
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
                return Err(ApiError::ObjectMetricNotFound {
                    resource: request.resource.clone(),
                    name: name.clone(),
                    metric: request.metric.clone(),
                });
            }
            let values: Vec<MetricValue> = values.into_values().collect();
            Ok(apis::metric_value_list(request.version, &values))
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
) -> Option<Result<serde_json::Value, ApiError>> {
    let source = rules.registry().external(metric)?.clone();
    let rule = &rules.config.external_rules[source.rule];
    Some(
        async {
            let selector = selector_param(query, "labelSelector")?.unwrap_or_default();
            let promql = external_query(rule, &source.series, namespace, &selector)
                .map_err(|e| query_error(e, "labelSelector"))?;
            let answer = state
                .cache
                .query(&promql)
                .await
                .map_err(ApiError::Backend)?;
            let items = answer
                .samples
                .iter()
                .filter_map(|sample| {
                    let mut labels = sample.labels.clone();
                    labels.remove("__name__");
                    Some(ExternalMetricValue {
                        metric_name: metric.to_owned(),
                        metric_labels: labels,
                        timestamp: apis::rfc3339(answer.fetched_at),
                        window: None,
                        value: quantity(sample.value, metric)?,
                    })
                })
                .collect();
            Ok(apis::external_metric_value_list(items))
        }
        .await,
    )
}
