//! The HorizontalPodAutoscaler (`autoscaling/v2`) as the controller reads it: its metrics and targets in
//! milli-units, its limits, its behavior with the API server's defaults applied, its tolerances. Also what
//! the controller reads of a pod (phase, readiness, resource requests). Pure conversions from the API types.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::core::v1 as core;

use super::Tolerance;
use super::behavior::{Behavior, Limits, Policy, PolicyKind, Rules, Select};
use super::calculator::{Pod, ReadyCondition};
use crate::selector::LabelSelector;

/// Why an HPA cannot be modelled: what the API server's validation would refuse, said the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    field: String,
    message: String,
}

/// A target as the controller uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `value`, milli-units.
    Value(i64),
    /// `averageValue`, milli-units.
    AverageValue(i64),
    /// `averageUtilization`, percent.
    Utilization(i64),
}

/// One entry of `spec.metrics`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// `type: Pods`.
    Pods {
        /// The metric.
        name: String,
        /// The metric label selector.
        selector: LabelSelector,
        /// Always `AverageValue`.
        target: i64,
    },
    /// `type: Object`.
    Object {
        /// The metric.
        name: String,
        /// The metric label selector.
        selector: LabelSelector,
        /// `describedObject`: apiVersion, kind, name.
        object: (String, String, String),
        /// `Value` or `AverageValue`.
        target: Target,
    },
    /// `type: External`.
    External {
        /// The metric.
        name: String,
        /// The metric label selector.
        selector: LabelSelector,
        /// `Value` or `AverageValue` (the controller takes `averageValue` whenever it is set).
        target: Target,
    },
    /// `type: Resource` or `ContainerResource`.
    Resource {
        /// `cpu`, `memory`, ….
        resource: String,
        /// The container, for `ContainerResource`.
        container: Option<String>,
        /// `Utilization` or `AverageValue`.
        target: Target,
    },
}

impl MetricSource {
    /// Object and External metrics can scale from zero (`HPAScaleToZero`).
    pub fn is_object_or_external(&self) -> bool {
        matches!(self, Self::Object { .. } | Self::External { .. })
    }

    /// How `kubectl describe hpa` names the metric.
    pub fn describe(&self) -> String {
        let with = |name: &str, selector: &LabelSelector| {
            if selector.selects_all() {
                name.to_owned()
            } else {
                format!("{name}{{{selector}}}")
            }
        };
        match self {
            Self::Pods { name, selector, .. } => format!("Pods {}", with(name, selector)),
            Self::Object {
                name,
                selector,
                object,
                ..
            } => format!(
                "Object {} on {} {}",
                with(name, selector),
                object.1,
                object.2
            ),
            Self::External { name, selector, .. } => {
                format!("External {}", with(name, selector))
            }
            Self::Resource {
                resource,
                container: Some(container),
                ..
            } => format!("ContainerResource {resource} of container {container}"),
            Self::Resource { resource, .. } => format!("Resource {resource}"),
        }
    }
}

/// An HPA's spec, ready for [`super::decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct HpaSpec {
    /// `[minReplicas, maxReplicas]`.
    pub limits: Limits,
    /// `spec.metrics` (CPU at 80% when empty, as the API server defaults it).
    pub metrics: Vec<MetricSource>,
    /// `spec.behavior` with defaults; `None` when the HPA has none (the legacy path).
    pub behavior: Option<Behavior>,
    /// The tolerances in force for this HPA.
    pub tolerance: Tolerance,
    /// The downscale stabilization window of the legacy path, seconds.
    pub downscale_window: i64,
}

/// The controller's flags that shape an HPA's decisions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerFlags {
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, seconds.
    pub downscale_window: i64,
}

impl Default for ControllerFlags {
    fn default() -> Self {
        Self {
            tolerance: super::DEFAULT_TOLERANCE.scale_up,
            downscale_window: super::DEFAULT_DOWNSCALE_WINDOW,
        }
    }
}

fn millis(
    quantity: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<i64, String> {
    let value =
        crate::quantity::parse(&quantity.0).map_err(|e| format!("{:?}: {e}", quantity.0))?;
    // MilliValue() rounds up.
    Ok((value * 1000.0).ceil() as i64)
}

fn metric_selector(identifier: &autoscaling::MetricIdentifier) -> Result<LabelSelector, String> {
    identifier
        .selector
        .as_ref()
        .map_or(Ok(LabelSelector::everything()), |s| {
            LabelSelector::from_k8s(s).map_err(|e| format!("metric selector: {e}"))
        })
}

fn target(target: &autoscaling::MetricTarget, allowed: &[&str]) -> Result<Target, String> {
    let kind = target.type_.as_str();
    if !allowed.contains(&kind) {
        return Err(format!(
            "target type {kind:?} is not one of {}",
            allowed.join(", ")
        ));
    }
    let missing = |field: &str| format!("target type {kind} needs {field}");
    match kind {
        "Value" => Ok(Target::Value(millis(
            target.value.as_ref().ok_or_else(|| missing("value"))?,
        )?)),
        "AverageValue" => Ok(Target::AverageValue(millis(
            target
                .average_value
                .as_ref()
                .ok_or_else(|| missing("averageValue"))?,
        )?)),
        _ => Ok(Target::Utilization(i64::from(
            target
                .average_utilization
                .ok_or_else(|| missing("averageUtilization"))?,
        ))),
    }
}

fn metric(spec: &autoscaling::MetricSpec) -> Result<MetricSource, String> {
    let absent = |field: &str| format!("type {} needs {field}", spec.type_);
    match spec.type_.as_str() {
        "Pods" => {
            let source = spec.pods.as_ref().ok_or_else(|| absent("pods"))?;
            match target(&source.target, &["AverageValue"])? {
                Target::AverageValue(target) => Ok(MetricSource::Pods {
                    name: source.metric.name.clone(),
                    selector: metric_selector(&source.metric)?,
                    target,
                }),
                other => Err(format!(
                    "a Pods metric takes an AverageValue target, not {other:?}"
                )),
            }
        }
        "Object" => {
            let source = spec.object.as_ref().ok_or_else(|| absent("object"))?;
            let object = &source.described_object;
            Ok(MetricSource::Object {
                name: source.metric.name.clone(),
                selector: metric_selector(&source.metric)?,
                object: (
                    object.api_version.clone().unwrap_or_default(),
                    object.kind.clone(),
                    object.name.clone(),
                ),
                target: target(&source.target, &["Value", "AverageValue"])?,
            })
        }
        "External" => {
            let source = spec.external.as_ref().ok_or_else(|| absent("external"))?;
            // The controller reads averageValue first, whatever the type says.
            let chosen = if source.target.average_value.is_some() {
                autoscaling::MetricTarget {
                    type_: "AverageValue".to_owned(),
                    ..source.target.clone()
                }
            } else {
                source.target.clone()
            };
            Ok(MetricSource::External {
                name: source.metric.name.clone(),
                selector: metric_selector(&source.metric)?,
                target: target(&chosen, &["Value", "AverageValue"])?,
            })
        }
        "Resource" => {
            let source = spec.resource.as_ref().ok_or_else(|| absent("resource"))?;
            Ok(MetricSource::Resource {
                resource: source.name.clone(),
                container: None,
                target: target(&source.target, &["Utilization", "AverageValue"])?,
            })
        }
        "ContainerResource" => {
            let source = spec
                .container_resource
                .as_ref()
                .ok_or_else(|| absent("containerResource"))?;
            Ok(MetricSource::Resource {
                resource: source.name.clone(),
                container: Some(source.container.clone()),
                target: target(&source.target, &["Utilization", "AverageValue"])?,
            })
        }
        other => Err(format!("unknown metric source type {other:?}")),
    }
}

fn rules(
    rules: Option<&autoscaling::HPAScalingRules>,
    mut defaults: Rules,
) -> Result<(Rules, Option<f64>), String> {
    let Some(rules) = rules else {
        return Ok((defaults, None));
    };
    if let Some(select) = &rules.select_policy {
        defaults.select = match select.as_str() {
            "Max" => Select::Max,
            "Min" => Select::Min,
            "Disabled" => Select::Disabled,
            other => {
                return Err(format!(
                    "selectPolicy {other:?} is not Max, Min or Disabled"
                ));
            }
        };
    }
    if let Some(window) = rules.stabilization_window_seconds {
        defaults.stabilization_window = i64::from(window);
    }
    if let Some(policies) = &rules.policies {
        defaults.policies = policies
            .iter()
            .map(|p| {
                Ok(Policy {
                    kind: match p.type_.as_str() {
                        "Pods" => PolicyKind::Pods,
                        "Percent" => PolicyKind::Percent,
                        other => {
                            return Err(format!("policy type {other:?} is not Pods or Percent"));
                        }
                    },
                    value: i64::from(p.value),
                    period: i64::from(p.period_seconds),
                })
            })
            .collect::<Result<_, String>>()?;
    }
    let tolerance = rules
        .tolerance
        .as_ref()
        .map(|t| crate::quantity::parse(&t.0).map_err(|e| format!("tolerance {:?}: {e}", t.0)))
        .transpose()?;
    Ok((defaults, tolerance))
}

impl HpaSpec {
    /// Reads `hpa` as the controller would, with the controller's `flags`. A tolerance set in
    /// `behavior` is used: the API server keeps the field only when the `HPAConfigurableTolerance` gate is on
    /// (Kubernetes 1.33 alpha, 1.35 beta), and the controller needs the same gate.
    pub fn from_k8s(
        hpa: &autoscaling::HorizontalPodAutoscaler,
        flags: ControllerFlags,
    ) -> Result<Self, SpecError> {
        let spec = &hpa.spec;
        let mut metrics = spec
            .metrics
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, m)| {
                metric(m).map_err(|message| SpecError {
                    field: format!("spec.metrics[{index}]"),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if metrics.is_empty() {
            metrics.push(MetricSource::Resource {
                resource: "cpu".to_owned(),
                container: None,
                target: Target::Utilization(80),
            });
        }
        let mut tolerance = Tolerance::both(flags.tolerance);
        let behavior = match &spec.behavior {
            None => None,
            Some(behavior) => {
                let defaults = Behavior::defaults(flags.downscale_window);
                let behavior_error = |message| SpecError {
                    field: "spec.behavior".to_owned(),
                    message,
                };
                let (scale_up, up) =
                    rules(behavior.scale_up.as_ref(), defaults.scale_up).map_err(behavior_error)?;
                let (scale_down, down) = rules(behavior.scale_down.as_ref(), defaults.scale_down)
                    .map_err(behavior_error)?;
                tolerance.scale_up = up.unwrap_or(tolerance.scale_up);
                tolerance.scale_down = down.unwrap_or(tolerance.scale_down);
                Some(Behavior {
                    scale_up,
                    scale_down,
                })
            }
        };
        Ok(Self {
            limits: Limits {
                min: spec.min_replicas.unwrap_or(1).max(0) as u32,
                max: spec.max_replicas.max(0) as u32,
            },
            metrics,
            behavior,
            tolerance,
            downscale_window: flags.downscale_window,
        })
    }
}

fn unix(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    time.0.as_second()
}

/// What the controller reads of a pod.
pub fn pod(pod: &core::Pod) -> Pod {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| ReadyCondition {
            status: c.status == "True",
            changed: c.last_transition_time.as_ref().map_or(0, unix),
        });
    Pod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".to_owned()),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        started: status.and_then(|s| s.start_time.as_ref()).map(unix),
    }
}

/// A pod's request of `resource` in milli-units, as the controller sums it (`calculateRequests`): the
/// pod-level request when the pod sets one and no container is named; otherwise the named container's, or
/// the sum over the containers and restartable (sidecar) init containers, each of which must set it.
pub fn pod_request(
    pod: &core::Pod,
    resource: &str,
    container: Option<&str>,
) -> Result<i64, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let Some(spec) = &pod.spec else {
        return Err(format!("Pod {name} has no spec"));
    };
    let request_of = |requests: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| { requests.and_then(|r| r.get(resource)).map(millis) };
    if container.is_none()
        && let Some(request) = request_of(spec.resources.as_ref().and_then(|r| r.requests.as_ref()))
    {
        return request;
    }
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut total = 0;
    for c in spec.containers.iter().chain(sidecars) {
        if container.is_none_or(|wanted| wanted == c.name) {
            let request = request_of(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
                .ok_or_else(|| {
                    format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    )
                })??;
            total += request;
            if container.is_some() {
                return Ok(total);
            }
        }
    }
    match container {
        Some(wanted) => Err(format!("container {wanted} not found in Pod {name}")),
        None => Ok(total),
    }
}
