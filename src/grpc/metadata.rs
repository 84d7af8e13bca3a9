//! A KEDA trigger's `scalerMetadata`, read as this scaler's keys: which value it asks for, in which namespace,
//! its target and its activation threshold. KEDA passes the trigger's whole `metadata` map, its own keys
//! (`scalerAddress`, `enableTLS`, …) included, so keys not listed here are left alone. Pure.

use std::collections::HashMap;

/// What a trigger scales on.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The sum of a pod metric over the pods a label selector picks (KEDA divides it by the target).
    Pods {
        /// A served pod metric (`metricName`).
        metric: String,
        /// The pods (`labelSelector`); all pods of the namespace when empty.
        label_selector: String,
        /// A metric label selector (`metricLabelSelector`).
        metric_label_selector: Option<String>,
    },
    /// The replica count a scale-on-failure policy asks for (`policy`), served with a target of 1.
    Policy {
        /// The policy's name.
        name: String,
    },
}

/// One trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Where the pods or the policy's Deployment live (`namespace`, default the ScaledObject's).
    pub namespace: String,
    /// What is measured.
    pub subject: Subject,
    /// The target (`targetValue`): per pod for a pod metric, 1 for a policy.
    pub target: f64,
    /// Active above this (`activationTargetValue`, default 0).
    pub activation: f64,
}

impl Trigger {
    /// The metric name KEDA gives the HPA (prefixed `s<index>-` there).
    pub fn metric_name(&self) -> &str {
        match &self.subject {
            Subject::Pods { metric, .. } => metric,
            Subject::Policy { .. } => crate::catalog::SCALE_ON_FAILURE_REPLICAS,
        }
    }
}

/// A key with a bad value, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scalerMetadata.{key}: {why}")]
pub struct MetadataError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub why: String,
}

fn error(key: &'static str, why: impl Into<String>) -> MetadataError {
    MetadataError {
        key,
        why: why.into(),
    }
}

/// Reads `metadata` of a ScaledObject in `object_namespace`.
pub fn parse(
    object_namespace: &str,
    metadata: &HashMap<String, String>,
) -> Result<Trigger, MetadataError> {
    let get = |key: &str| {
        metadata
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let number = |key: &'static str| -> Result<Option<f64>, MetadataError> {
        get(key)
            .map(|text| {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| error(key, format!("{text:?} is not a number of 0 or more")))
            })
            .transpose()
    };
    let namespace = get("namespace").unwrap_or(object_namespace).to_owned();
    if namespace.is_empty() {
        return Err(error("namespace", "required: the ScaledObject has none"));
    }
    let (subject, target) = match (get("metricName"), get("policy")) {
        (Some(_), Some(_)) => {
            return Err(error("policy", "set metricName or policy, not both"));
        }
        (None, None) => {
            return Err(error(
                "metricName",
                "required (a served pod metric, e.g. xroad_messages_per_second), unless policy names a scale-on-failure policy",
            ));
        }
        (Some(metric), None) => {
            let target = number("targetValue")?
                .ok_or_else(|| error("targetValue", "required: the value one pod should carry"))?;
            if target == 0.0 {
                return Err(error("targetValue", "must be greater than 0"));
            }
            let subject = Subject::Pods {
                metric: metric.to_owned(),
                label_selector: get("labelSelector").unwrap_or_default().to_owned(),
                metric_label_selector: get("metricLabelSelector").map(str::to_owned),
            };
            (subject, target)
        }
        (None, Some(policy)) => {
            if get("targetValue").is_some_and(|t| t != "1") {
                return Err(error(
                    "targetValue",
                    "a policy's value is a replica count: its target is 1",
                ));
            }
            let subject = Subject::Policy {
                name: policy.to_owned(),
            };
            (subject, 1.0)
        }
    };
    Ok(Trigger {
        namespace,
        subject,
        target,
        activation: number("activationTargetValue")?.unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_pod_metric_trigger_reads_every_key_and_ignores_kedas_own() {
        let trigger = parse(
            "sidecar",
            &metadata(&[
                ("scalerAddress", "xroad-metrics-adapter.xroad-metrics:9443"),
                ("enableTLS", "true"),
                ("metricName", "xroad_messages_per_second"),
                ("labelSelector", "run=security-server-sidecar-secondary"),
                ("metricLabelSelector", "service_code=getRandom"),
                ("targetValue", "50"),
                ("activationTargetValue", "0.5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            trigger,
            Trigger {
                namespace: "sidecar".into(),
                subject: Subject::Pods {
                    metric: "xroad_messages_per_second".into(),
                    label_selector: "run=security-server-sidecar-secondary".into(),
                    metric_label_selector: Some("service_code=getRandom".into()),
                },
                target: 50.0,
                activation: 0.5,
            }
        );
    }

    #[test]
    fn a_policy_trigger_has_a_target_of_one_and_may_name_another_namespace() {
        let trigger = parse(
            "keda",
            &metadata(&[("policy", "secondaries"), ("namespace", "sidecar")]),
        )
        .unwrap();
        assert_eq!(trigger.namespace, "sidecar");
        assert_eq!(trigger.target, 1.0);
        assert_eq!(trigger.metric_name(), "xroad_scale_on_failure_replicas");
    }

    #[test]
    fn bad_metadata_names_the_key_and_why() {
        let err = |pairs: &[(&str, &str)]| parse("sidecar", &metadata(pairs)).unwrap_err();
        assert_eq!(err(&[("targetValue", "5")]).key, "metricName");
        assert_eq!(err(&[("metricName", "m")]).key, "targetValue");
        assert_eq!(
            err(&[("metricName", "m"), ("targetValue", "lots")]).to_string(),
            "scalerMetadata.targetValue: \"lots\" is not a number of 0 or more"
        );
        assert_eq!(
            err(&[("metricName", "m"), ("targetValue", "0")]).key,
            "targetValue"
        );
        assert_eq!(
            err(&[
                ("metricName", "m"),
                ("targetValue", "1"),
                ("activationTargetValue", "-1")
            ])
            .key,
            "activationTargetValue"
        );
        assert_eq!(err(&[("metricName", "m"), ("policy", "p")]).key, "policy");
        assert_eq!(
            err(&[("policy", "p"), ("targetValue", "3")]).key,
            "targetValue"
        );
        assert_eq!(
            parse("", &metadata(&[("policy", "p")])).unwrap_err().key,
            "namespace"
        );
    }
}
