//! The scale-on-failure metrics as served: `deployments.apps/<name>/<metric>` (an Object metric) and its
//! external form, read from each policy's latest decision.

use super::Configured;
use super::params::selector_param;
use super::routes::{CustomRequest, ObjectName};
use crate::apis::{
    self, ExternalMetricValue, ExternalMetricValueList, MetricValue, MetricValueList,
    ObjectReference,
};
use crate::catalog::{POLICY_METRICS, SCALE_ON_FAILURE_REPLICAS};
use crate::error::ApiError;
use crate::policy::ReplicaDecision;
use crate::quantity::Quantity;

/// The scale-on-failure metrics, served only when a policy is configured.
pub(super) fn policy_metrics(configured: &Configured) -> impl Iterator<Item = &str> + '_ {
    POLICY_METRICS
        .into_iter()
        .filter(|_| !configured.policies.is_empty())
}

/// A policy metric's value in a decision.
fn policy_value(decision: &ReplicaDecision, metric: &str) -> Quantity {
    let value = if metric == SCALE_ON_FAILURE_REPLICAS {
        decision.replicas
    } else {
        decision.failing_now.len() as u32
    };
    Quantity::from_millis(i64::from(value) * 1000)
}

/// `deployments.apps/<name>/<policy metric>`: one item per policy whose target is in the namespace.
pub(super) fn deployment_metric(
    configured: &Configured,
    request: &CustomRequest,
) -> Result<MetricValueList, ApiError> {
    let namespace = request.namespace.as_deref().ok_or(ApiError::PathNotFound)?;
    let policies: Vec<_> = match &request.name {
        ObjectName::One(name) => configured
            .policies
            .for_deployment(namespace, name)
            .into_iter()
            .collect(),
        ObjectName::All => configured
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
                namespace: Some(namespace.into()),
                name: policy.config.target.deployment.clone(),
                api_version: "apps/v1".into(),
            },
            metric: request.metric.as_str().into(),
            selector: None,
            timestamp: decision.decided_at,
            window_seconds: None,
            value: policy_value(&decision, &request.metric),
        });
    }
    if let ObjectName::One(name) = &request.name
        && values.is_empty()
    {
        return Err(request.object_not_found(name));
    }
    Ok(apis::metric_value_list(request.version, values))
}

/// The external form: one item per policy in the namespace, labelled `deployment` and `policy`.
pub(super) fn external_policy_metric(
    configured: &Configured,
    namespace: &str,
    metric: &str,
    query: Option<&str>,
) -> Result<ExternalMetricValueList, ApiError> {
    let selector = selector_param(query, "labelSelector")?.unwrap_or_default();
    let items = configured
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
