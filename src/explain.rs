//! `explain --hpa`: reads what the HPA controller reads for one HorizontalPodAutoscaler (the HPA, its scale
//! target's Scale, the pods of its selector, and each metric from the metrics APIs) from a cluster or from
//! files, evaluates one sync with [`crate::hpa`], and reports every step. The I/O edge of the HPA model.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt;

use crate::hpa::spec::{self, ControllerFlags};
use crate::hpa::{
    self, Current, Decision, HpaSpec, Memory, MetricSource, Samples, Situation, Target,
};
use crate::quantity::Quantity;
use crate::selector::LabelSelector;

/// Why an HPA cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The HPA, its target or its pods could not be read.
    #[error("{0}")]
    Read(String),
    /// The HPA is not one the controller would accept.
    #[error("HPA {name}: {source}")]
    Spec {
        /// `namespace/name`.
        name: String,
        /// What is wrong.
        source: spec::SpecError,
    },
}

fn read_error(what: impl std::fmt::Display) -> ExplainError {
    ExplainError::Read(what.to_string())
}

/// The scale subresource of the HPA's target, as the controller reads it.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleTarget {
    /// `Kind/name`.
    pub reference: String,
    /// `spec.replicas`: the controller's "current" count.
    pub spec_replicas: u32,
    /// `status.replicas`: what AverageValue targets divide by.
    pub status_replicas: u32,
    /// `status.selector`: the pods the HPA considers.
    pub selector: String,
}

/// Everything one sync reads, but the metrics.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The HPA object.
    pub hpa: HorizontalPodAutoscaler,
    /// Its target's scale.
    pub scale: ScaleTarget,
    /// The pods of `scale.selector` in the HPA's namespace.
    pub pods: Vec<Pod>,
    /// The time of the evaluation, Unix seconds.
    pub now: i64,
}

/// Where the metrics come from: the cluster's aggregated APIs (the HPA's own path), or this adapter's router
/// in process (no cluster: an inventory file stands in for it).
pub enum MetricsApi {
    /// `GET /apis/...` through the kube-apiserver's aggregation layer.
    Cluster(kube::Client),
    /// The adapter's router, as `serve` mounts it.
    InProcess(axum::Router),
}

impl MetricsApi {
    async fn get(&self, path: &str) -> Result<Value, String> {
        match self {
            Self::Cluster(client) => {
                let request = axum::http::Request::get(path)
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                client.request::<Value>(request).await.map_err(|e| match e {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                })
            }
            Self::InProcess(router) => {
                let request = axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .map_err(|e| e.to_string())?;
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let ok = response.status().is_success();
                let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
                    .await
                    .map_err(|e| e.to_string())?;
                let json: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                if ok {
                    Ok(json)
                } else {
                    Err(json["message"].as_str().unwrap_or_default().to_owned())
                }
            }
        }
    }

    /// The custom metrics API's resource for an object kind: from discovery in a cluster, else the kind's
    /// plural by the usual English rules (as `kubectl` guesses it).
    async fn resource_of(&self, api_version: &str, kind: &str) -> Result<String, String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let plural = match self {
            Self::Cluster(client) => {
                let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
                kube::discovery::pinned_kind(client, &gvk)
                    .await
                    .map_err(|e| format!("cannot resolve {api_version} {kind}: {e}"))?
                    .0
                    .plural
            }
            Self::InProcess(_) => guess_plural(kind),
        };
        Ok(if group.is_empty() {
            plural
        } else {
            format!("{plural}.{group}")
        })
    }
}

fn guess_plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with("ss")
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        format!("{lower}es")
    } else if let Some(stem) = lower
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// A path segment, escaped as Go's `url.PathEscape` does for client-go (`*` becomes `%2A`).
fn encode(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn query(pairs: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(key, value);
    }
    let query = query.finish();
    if query.is_empty() {
        query
    } else {
        format!("?{query}")
    }
}

fn millis_of(value: &Value) -> Result<i64, String> {
    let text = value.as_str().ok_or("an item without a value")?;
    let parsed = crate::quantity::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    Ok((parsed * 1000.0).ceil() as i64)
}

fn unix_of(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|_| serde_json::from_value::<Time>(value.clone()).ok())
        .map_or(0, |t| t.0.as_second())
}

/// A Pods metric's items by pod, as the controller's metrics client keys them.
fn pod_samples(list: &Value) -> Result<Samples, String> {
    let mut samples = Samples::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["describedObject"]["name"]
            .as_str()
            .ok_or("an item without describedObject.name")?;
        samples.insert(
            name.to_owned(),
            hpa::Sample {
                millis: millis_of(&item["value"])?,
                timestamp: unix_of(&item["timestamp"]),
                window: item["windowSeconds"].as_i64().unwrap_or(60),
            },
        );
    }
    Ok(samples)
}

/// A `metrics.k8s.io` PodMetrics list, summed per pod for `resource` (or taken from one container), as the
/// controller reads it: a pod missing the resource in any container has no value.
fn resource_samples(
    list: &Value,
    resource: &str,
    container: Option<&str>,
) -> Result<Samples, String> {
    let mut samples = Samples::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"]
            .as_str()
            .ok_or("a PodMetrics without a name")?;
        let containers = item["containers"].as_array().cloned().unwrap_or_default();
        let usage = |c: &Value| c["usage"].get(resource).map(millis_of).transpose();
        let value = match container {
            Some(wanted) => match containers.iter().find(|c| c["name"] == wanted) {
                Some(c) => usage(c)?,
                None => None,
            },
            None if containers.is_empty() => None,
            None => containers
                .iter()
                .map(usage)
                .collect::<Result<Option<Vec<i64>>, String>>()?
                .map(|values| values.iter().fold(0i64, |sum, v| sum.saturating_add(*v))),
        };
        if let Some(millis) = value {
            let window = item["window"]
                .as_str()
                .and_then(|w| crate::duration::parse(w).ok())
                .map_or(60, |d| d.as_secs() as i64);
            samples.insert(
                name.to_owned(),
                hpa::Sample {
                    millis,
                    timestamp: unix_of(&item["timestamp"]),
                    window,
                },
            );
        }
    }
    Ok(samples)
}

/// One metric of the HPA: what was read and what it proposes.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    /// How `kubectl describe hpa` would name it.
    pub metric: String,
    /// The target, e.g. `averageValue 10`.
    pub target: String,
    /// The request this explanation made (through the same path as the HPA's).
    pub request: String,
    /// Per pod (Pods and Resource metrics), the value read or why there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodLine>,
    /// An Object metric's value, or an External metric's sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value the HPA reports as current, e.g. `averageValue 12500m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The usage ratio the proposal was taken on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The replica count proposed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal: Option<u32>,
    /// Why: the branch of the calculation, or the error the HPA would report.
    pub reason: String,
}

/// One pod's line in a Pods or Resource metric.
#[derive(Debug, Clone, Serialize)]
pub struct PodLine {
    /// The pod.
    pub pod: String,
    /// The value, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `ready`, `missing` (filled in), `unready` (set aside), `ignored` (deleting or Failed) or `other`
    /// (not a pod of the target; averaged in).
    pub group: &'static str,
}

/// The controller's memory, as far as the HPA's status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// What was assumed, in words.
    pub assumed: Vec<String>,
    /// What cannot be seen, in words.
    pub unknown: Vec<String>,
}

/// The whole explanation of one sync.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `namespace/name`.
    pub hpa: String,
    /// The scale target.
    pub scale: ScaleTarget,
    /// `minReplicas`.
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// The tolerances in force, and where they come from.
    pub tolerance: ToleranceReport,
    /// The legacy path's downscale window, or the behavior's rules in words.
    pub behavior: Vec<String>,
    /// Each metric, in `spec.metrics` order.
    pub metrics: Vec<MetricReport>,
    /// What the controller remembers, as far as can be seen.
    pub memory: MemoryReport,
    /// The steps from the proposals to the next count, in words.
    pub steps: Vec<String>,
    /// The replica count the controller will set at its next sync.
    pub next_replicas: u32,
    /// The `ScalingLimited` and `AbleToScale` reasons the controller will report, when it scales.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<BTreeMap<&'static str, &'static str>>,
}

/// The tolerances in force.
#[derive(Debug, Clone, Serialize)]
pub struct ToleranceReport {
    /// Below 1.
    pub scale_down: f64,
    /// Above 1.
    pub scale_up: f64,
    /// Where they come from.
    pub source: String,
}

/// The `--tolerance`-style overrides of `explain`: a value given on the command line wins over the HPA's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// Both directions.
    pub scale_up: Option<f64>,
    /// Below 1.
    pub scale_down: Option<f64>,
}

fn describe_target(target: Target) -> String {
    match target {
        Target::Value(v) => format!("value {}", Quantity::from_millis(v)),
        Target::AverageValue(v) => format!("averageValue {}", Quantity::from_millis(v)),
        Target::Utilization(p) => format!("averageUtilization {p}%"),
    }
}

fn describe_current(current: Current) -> String {
    match current {
        Current::AverageValue(v) if v == i64::MAX => "averageValue (∞: 0 replicas)".to_owned(),
        Current::AverageValue(v) => format!("averageValue {}", Quantity::from_millis(v)),
        Current::Value(v) => format!("value {}", Quantity::from_millis(v)),
        Current::Utilization {
            percent,
            average_millis,
        } => format!(
            "averageUtilization {percent}% (averageValue {})",
            Quantity::from_millis(average_millis)
        ),
    }
}

fn pod_lines(
    pods: &[hpa::Pod],
    samples: &Samples,
    groups: &hpa::calculator::Groups,
) -> Vec<PodLine> {
    let group_of: HashMap<&str, &'static str> = [
        (&groups.ready, "ready"),
        (&groups.missing, "missing"),
        (&groups.unready, "unready"),
        (&groups.ignored, "ignored"),
        (&groups.extraneous, "other"),
    ]
    .into_iter()
    .flat_map(|(names, group)| names.iter().map(move |n| (n.as_str(), group)))
    .collect();
    pods.iter()
        .map(|p| p.name.as_str())
        .chain(groups.extraneous.iter().map(String::as_str))
        .map(|name| PodLine {
            pod: name.to_owned(),
            value: samples
                .get(name)
                .map(|s| Quantity::from_millis(s.millis).to_string()),
            group: group_of.get(name).copied().unwrap_or("ready"),
        })
        .collect()
}

struct Evaluation<'a> {
    api: &'a MetricsApi,
    namespace: &'a str,
    observed: &'a Observed,
    pods: Vec<hpa::Pod>,
    tolerance: hpa::Tolerance,
}

impl Evaluation<'_> {
    /// One metric, fetched as the controller's metrics client fetches it and computed as its replica
    /// calculator computes it. Errors are worded as the HPA words them in its conditions and Events.
    async fn metric(&self, source: &MetricSource) -> MetricReport {
        let ns = encode(self.namespace);
        let scale = &self.observed.scale;
        let mut report = MetricReport {
            metric: source.describe(),
            target: String::new(),
            request: String::new(),
            pods: Vec::new(),
            value: None,
            current: None,
            ratio: None,
            proposal: None,
            reason: String::new(),
        };
        let outcome: Result<hpa::Proposal, String> =
            match source {
                MetricSource::Pods {
                    name,
                    selector,
                    target,
                } => {
                    report.target = describe_target(Target::AverageValue(*target));
                    report.request = format!(
                        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/%2A/{}{}",
                        encode(name),
                        query(&[
                            ("labelSelector", scale.selector.clone()),
                            ("metricLabelSelector", selector.to_string()),
                        ])
                    );
                    let samples = self
                        .fetch_samples(&report.request, "custom", pod_samples)
                        .await;
                    self.with_pods(&mut report, samples, |samples| {
                        hpa::calculator::pods_average_value(
                            samples,
                            &self.pods,
                            *target,
                            scale.spec_replicas,
                            self.tolerance,
                            None,
                        )
                    })
                    .map_err(|e| format!("unable to get metric {name}: {e}"))
                }
                MetricSource::Object {
                    name,
                    selector,
                    object,
                    target,
                } => {
                    report.target = describe_target(*target);
                    let (api_version, kind, object_name) = object;
                    let path =
                        if kind == "Namespace" && !api_version.contains('/') {
                            Ok(format!(
                                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/metrics/{}",
                                encode(name)
                            ))
                        } else {
                            self.api.resource_of(api_version, kind).await.map(|resource| {
                        format!(
                            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{}/{}/{}",
                            encode(&resource),
                            encode(object_name),
                            encode(name)
                        )
                    })
                        };
                    let value = match path {
                        Ok(path) => {
                            report.request = format!(
                                "{path}{}",
                                query(&[("metricLabelSelector", selector.to_string())])
                            );
                            self.fetch_object(&report.request).await
                        }
                        Err(e) => Err(e),
                    };
                    value
                        .inspect(|v| report.value = Some(Quantity::from_millis(*v).to_string()))
                        .and_then(|value| self.by_target(value, *target))
                        .map_err(|e| {
                            format!(
                                "unable to get metric {name} on {kind} {}/{object_name}: {e}",
                                self.namespace
                            )
                        })
                }
                MetricSource::External {
                    name,
                    selector,
                    target,
                } => {
                    report.target = describe_target(*target);
                    report.request = format!(
                        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{}{}",
                        encode(name),
                        query(&[("labelSelector", selector.to_string())])
                    );
                    self.fetch_external(&report.request)
                        .await
                        .inspect(|v| report.value = Some(Quantity::from_millis(*v).to_string()))
                        .and_then(|sum| self.by_target(sum, *target))
                        .map_err(|e| {
                            format!(
                                "unable to get external metric {}/{name}/{selector}: {e}",
                                self.namespace
                            )
                        })
                }
                MetricSource::Resource {
                    resource,
                    container,
                    target,
                } => {
                    report.target = describe_target(*target);
                    report.request = format!(
                        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods{}",
                        query(&[("labelSelector", scale.selector.clone())])
                    );
                    let cpu = (resource == "cpu")
                        .then(|| hpa::calculator::CpuStartup::defaults(self.observed.now));
                    let samples = self
                        .fetch_samples(&report.request, "resource", |list| {
                            resource_samples(list, resource, container.as_deref())
                        })
                        .await;
                    self.with_pods(&mut report, samples, |samples| match *target {
                        Target::Utilization(percent) => self
                            .requests(resource, container.as_deref())
                            .map_err(hpa::Unable::MissingRequest)
                            .and_then(|requests| {
                                hpa::calculator::resource_utilization(
                                    samples,
                                    &self.pods,
                                    &requests,
                                    percent,
                                    scale.spec_replicas,
                                    self.tolerance,
                                    cpu,
                                )
                            }),
                        Target::AverageValue(value) | Target::Value(value) => {
                            hpa::calculator::pods_average_value(
                                samples,
                                &self.pods,
                                value,
                                scale.spec_replicas,
                                self.tolerance,
                                cpu,
                            )
                        }
                    })
                    .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"))
                }
            };
        match outcome {
            Ok(proposal) => {
                report.current = Some(describe_current(proposal.current));
                report.ratio = Some(proposal.ratio);
                report.proposal = Some(proposal.replicas);
                report.reason = proposal.reason;
            }
            Err(error) => report.reason = error,
        }
        report
    }

    /// Pods and Resource metrics: the proposal from the per-pod values, and a line per pod in `report`.
    fn with_pods(
        &self,
        report: &mut MetricReport,
        samples: Result<Samples, String>,
        propose: impl FnOnce(&Samples) -> Result<hpa::Proposal, hpa::Unable>,
    ) -> Result<hpa::Proposal, String> {
        let samples = samples?;
        let proposal = propose(&samples).map_err(|e| e.to_string())?;
        if let Some(groups) = &proposal.groups {
            report.pods = pod_lines(&self.pods, &samples, groups);
        }
        Ok(proposal)
    }

    async fn fetch_samples(
        &self,
        path: &str,
        api: &str,
        read: impl Fn(&Value) -> Result<Samples, String>,
    ) -> Result<Samples, String> {
        let list = self
            .api
            .get(path)
            .await
            .map_err(|e| format!("unable to fetch metrics from {api} metrics API: {e}"))?;
        let samples = read(&list)?;
        if samples.is_empty() && list["items"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("no metrics returned from {api} metrics API"));
        }
        Ok(samples)
    }

    async fn fetch_object(&self, path: &str) -> Result<i64, String> {
        let list = self
            .api
            .get(path)
            .await
            .map_err(|e| format!("unable to fetch metrics from custom metrics API: {e}"))?;
        // The server answers a named object with a list of one (the client-go custom metrics client
        // insists on exactly one).
        match list["items"].as_array().map(Vec::as_slice) {
            Some([item]) => millis_of(&item["value"]),
            Some(items) => Err(format!(
                "the custom metrics API server returned {} results when we asked for exactly one",
                items.len()
            )),
            None => millis_of(&list["value"]),
        }
    }

    async fn fetch_external(&self, path: &str) -> Result<i64, String> {
        let list = self
            .api
            .get(path)
            .await
            .map_err(|e| format!("unable to fetch metrics from external metrics API: {e}"))?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Err("no metrics returned from external metrics API".to_owned());
        }
        let values = items
            .iter()
            .map(|i| millis_of(&i["value"]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(hpa::calculator::external_sum(&values))
    }

    fn by_target(&self, value: i64, target: Target) -> Result<hpa::Proposal, String> {
        let scale = &self.observed.scale;
        match target {
            Target::AverageValue(t) => {
                hpa::calculator::average_value(value, t, scale.status_replicas, self.tolerance)
            }
            Target::Value(t) | Target::Utilization(t) => {
                hpa::calculator::value(value, t, scale.spec_replicas, &self.pods, self.tolerance)
            }
        }
        .map_err(|e| e.to_string())
    }

    fn requests(
        &self,
        resource: &str,
        container: Option<&str>,
    ) -> Result<BTreeMap<String, i64>, String> {
        self.observed
            .pods
            .iter()
            .map(|pod| {
                let name = pod.metadata.name.clone().unwrap_or_default();
                spec::pod_request(pod, resource, container).map(|r| (name, r))
            })
            .collect()
    }
}

/// The controller's memory as the HPA's status lets it be inferred: the last sync's desired count stands
/// for its latest recommendation (unless a limit changed it), and a rescale in the last sync is a scale event.
fn memory_from_status(
    hpa: &HorizontalPodAutoscaler,
    spec: &HpaSpec,
    now: i64,
    sync_period: i64,
) -> (Memory, MemoryReport) {
    let mut memory = Memory::default();
    let mut report = MemoryReport {
        assumed: Vec::new(),
        unknown: vec![
            "the controller keeps its recommendations and scale events in memory only; older ones than the last \
             sync are not visible"
                .to_owned(),
        ],
    };
    let Some(status) = &hpa.status else {
        report
            .unknown
            .push("the HPA has no status yet: the controller has not synced it".to_owned());
        return (memory, report);
    };
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
    };
    let desired = status.desired_replicas.max(0) as u32;
    let limited = condition("ScalingLimited").is_some_and(|(s, _)| s == "True");
    let last_sync = now.saturating_sub(sync_period);
    if limited {
        report.unknown.push(format!(
            "the last sync's recommendation: a limit changed it to {desired} ({})",
            condition("ScalingLimited").map(|c| c.1).unwrap_or_default()
        ));
    } else if status.last_scale_time.is_some() || status.current_metrics.is_some() {
        memory.recommendations.push((last_sync, desired));
        report.assumed.push(format!(
            "the controller recommended {desired} one sync period ({sync_period} s) ago (status.desiredReplicas)"
        ));
    }
    if let Some(last) = &status.last_scale_time {
        let at = last.0.as_second();
        let longest = spec.behavior.as_ref().map_or(0, |b| {
            b.scale_up
                .policies
                .iter()
                .chain(&b.scale_down.policies)
                .map(|p| p.period)
                .max()
                .unwrap_or(0)
        });
        let before = status.current_replicas.unwrap_or_default().max(0) as u32;
        let ago = now.saturating_sub(at);
        if spec.behavior.is_some() && ago < longest {
            if before != desired {
                let (list, change) = if desired > before {
                    (&mut memory.scale_ups, desired - before)
                } else {
                    (&mut memory.scale_downs, before - desired)
                };
                list.push((at, change));
                report.assumed.push(format!(
                    "the last scale, {ago} s ago, went from {before} to {desired} (status.lastScaleTime, currentReplicas)"
                ));
            } else {
                report.unknown.push(format!(
                    "a scale {ago} s ago (status.lastScaleTime) of a size the status no longer shows: the rate \
                     limits may allow less than shown"
                ));
            }
        }
    }
    (memory, report)
}

fn describe_behavior(spec: &HpaSpec) -> Vec<String> {
    let Some(behavior) = &spec.behavior else {
        return vec![format!(
            "no behavior: the highest recommendation of the last {} s wins; growth is capped at max(2 × current, 4)",
            spec.downscale_window
        )];
    };
    let rules = |direction: &str, rules: &hpa::behavior::Rules| {
        let policies: Vec<String> = rules
            .policies
            .iter()
            .map(|p| {
                let unit = match p.kind {
                    hpa::behavior::PolicyKind::Pods => " pods",
                    hpa::behavior::PolicyKind::Percent => "%",
                };
                format!("{}{unit} per {} s", p.value, p.period)
            })
            .collect();
        format!(
            "{direction}: window {} s, selectPolicy {:?}, policies {}",
            rules.stabilization_window,
            rules.select,
            policies.join(", ")
        )
    };
    vec![
        rules("scaleUp", &behavior.scale_up),
        rules("scaleDown", &behavior.scale_down),
    ]
}

/// Evaluates one sync of `observed.hpa` with metrics from `api`.
pub async fn explain(
    observed: &Observed,
    api: &MetricsApi,
    flags: ControllerFlags,
    overrides: Overrides,
    sync_period: i64,
) -> Result<Report, ExplainError> {
    let hpa = &observed.hpa;
    let namespace = hpa
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = format!(
        "{namespace}/{}",
        hpa.metadata.name.as_deref().unwrap_or_default()
    );
    let mut spec = HpaSpec::from_k8s(hpa, flags).map_err(|source| ExplainError::Spec {
        name: name.clone(),
        source,
    })?;
    let from_hpa = spec.tolerance != hpa::Tolerance::both(flags.tolerance);
    spec.tolerance.scale_up = overrides.scale_up.unwrap_or(spec.tolerance.scale_up);
    spec.tolerance.scale_down = overrides.scale_down.unwrap_or(spec.tolerance.scale_down);
    let tolerance = ToleranceReport {
        scale_down: spec.tolerance.scale_down,
        scale_up: spec.tolerance.scale_up,
        source: match (
            overrides.scale_up.is_some() || overrides.scale_down.is_some(),
            from_hpa,
        ) {
            (true, _) => "the command line".to_owned(),
            (false, true) => {
                "the HPA's behavior (scaleUp/scaleDown.tolerance), else --tolerance".to_owned()
            }
            (false, false) => {
                "--tolerance (the controller's --horizontal-pod-autoscaler-tolerance)".to_owned()
            }
        },
    };
    let evaluation = Evaluation {
        api,
        namespace: &namespace,
        observed,
        pods: observed.pods.iter().map(spec::pod).collect(),
        tolerance: spec.tolerance,
    };
    let mut metrics = Vec::new();
    for source in &spec.metrics {
        metrics.push(evaluation.metric(source).await);
    }
    let (memory, memory_report) = memory_from_status(hpa, &spec, observed.now, sync_period);
    let scaled_to_zero = hpa
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "ScaledToZero" && c.status == "True")
        });
    let situation = Situation {
        current: observed.scale.spec_replicas,
        scaled_to_zero,
        memory,
        now: observed.now,
    };
    let proposals: Vec<Result<u32, String>> = metrics
        .iter()
        .map(|m| m.proposal.ok_or_else(|| m.reason.clone()))
        .collect();
    let decision = hpa::decide(&spec, &situation, &proposals);
    let current = situation.current;
    let (steps, conditions) = steps(&decision, &metrics, current, &spec);
    Ok(Report {
        hpa: name,
        scale: observed.scale.clone(),
        min_replicas: spec.limits.min,
        max_replicas: spec.limits.max,
        tolerance,
        behavior: describe_behavior(&spec),
        metrics,
        memory: memory_report,
        steps,
        next_replicas: decision.replicas(current),
        conditions,
    })
}

type Conditions = Option<BTreeMap<&'static str, &'static str>>;

fn steps(
    decision: &Decision,
    metrics: &[MetricReport],
    current: u32,
    spec: &HpaSpec,
) -> (Vec<String>, Conditions) {
    match decision {
        Decision::Disabled => (
            vec![
                "spec.replicas is 0: scaling is disabled (ScalingActive=False, ScalingDisabled)"
                    .to_owned(),
            ],
            None,
        ),
        Decision::AboveMax(n) => (
            vec![format!(
                "spec.replicas {current} is above maxReplicas: set to {n} without reading metrics"
            )],
            None,
        ),
        Decision::BelowMin(n) => (
            vec![format!(
                "spec.replicas {current} is below minReplicas: set to {n} without reading metrics"
            )],
            None,
        ),
        Decision::Frozen { first, invalid } => (
            vec![format!(
                "{invalid} of {} metrics failed{}: no change (ScalingActive=False; first error, metric [{}]: {})",
                metrics.len(),
                if *invalid < metrics.len() {
                    ", and the others propose fewer replicas"
                } else {
                    ""
                },
                first.0,
                first.1
            )],
            None,
        ),
        Decision::Scaled {
            metric,
            proposal,
            invalid,
            normalized,
        } => {
            let mut steps = vec![format!(
                "highest proposal: {proposal} from metric [{metric}] {}",
                metrics[*metric].metric
            )];
            if *invalid > 0 {
                steps.push(format!(
                    "{invalid} metric(s) failed, but the others do not scale down, so the HPA acts on them"
                ));
            }
            let window = spec
                .behavior
                .as_ref()
                .map_or(spec.downscale_window, |b| b.scale_down.stabilization_window);
            steps.push(if normalized.stabilized == *proposal {
                format!(
                    "stabilization: {proposal} ({})",
                    normalized.able_to_scale.reason
                )
            } else {
                format!(
                    "stabilization: {} ({}: {}; scale-down window {window} s)",
                    normalized.stabilized,
                    normalized.able_to_scale.reason,
                    normalized.able_to_scale.message
                )
            });
            steps.push(format!(
                "limits and rate: {} ({}{})",
                normalized.replicas,
                normalized.scaling_limited.reason,
                if normalized.limited {
                    format!(": {}", normalized.scaling_limited.message)
                } else {
                    String::new()
                }
            ));
            let conditions = BTreeMap::from([
                ("AbleToScale", normalized.able_to_scale.reason),
                ("ScalingLimited", normalized.scaling_limited.reason),
            ]);
            (steps, Some(conditions))
        }
    }
}

/// Prints the report for people.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let scale = &report.scale;
    let _ = writeln!(
        out,
        "HPA {} scales {}: spec.replicas {} (status.replicas {}), min {}, max {}",
        report.hpa,
        scale.reference,
        scale.spec_replicas,
        scale.status_replicas,
        report.min_replicas,
        report.max_replicas
    );
    let _ = writeln!(
        out,
        "  pods: selector {}",
        if scale.selector.is_empty() {
            "<none>"
        } else {
            &scale.selector
        }
    );
    let t = &report.tolerance;
    let _ = writeln!(
        out,
        "  tolerance: -{} +{} (from {})",
        t.scale_down, t.scale_up, t.source
    );
    for line in &report.behavior {
        let _ = writeln!(out, "  {line}");
    }
    for (index, m) in report.metrics.iter().enumerate() {
        let _ = writeln!(out, "\n[{index}] {}, target {}", m.metric, m.target);
        let _ = writeln!(out, "    GET {}", m.request);
        for line in &m.pods {
            let note = match line.group {
                "ready" => "",
                "missing" => "  no value: filled in (target on a scale-down, 0 on a scale-up)",
                "unready" => "  Pending or not yet trusted: set aside (0 on a scale-up)",
                "ignored" => "  deleting or Failed: left out",
                _ => "  not a pod of the target: averaged in",
            };
            let _ = writeln!(
                out,
                "    {:<52} {:>12}{note}",
                line.pod,
                line.value.as_deref().unwrap_or("-")
            );
        }
        if let Some(value) = &m.value {
            let _ = writeln!(out, "    value {value}");
        }
        match (&m.current, m.proposal) {
            (Some(current), Some(proposal)) => {
                let _ = writeln!(
                    out,
                    "    current {current}, ratio {:.3} -> proposes {proposal}: {}",
                    m.ratio.unwrap_or_default(),
                    m.reason
                );
            }
            _ => {
                let _ = writeln!(out, "    no proposal: {}", m.reason);
            }
        }
    }
    let _ = writeln!(out, "\ncontroller memory:");
    for line in &report.memory.assumed {
        let _ = writeln!(out, "  assumed: {line}");
    }
    for line in &report.memory.unknown {
        let _ = writeln!(out, "  not visible: {line}");
    }
    let _ = writeln!(out, "\nnext sync:");
    for step in &report.steps {
        let _ = writeln!(out, "  {step}");
    }
    let _ = writeln!(
        out,
        "  -> {} replicas (now {})",
        report.next_replicas, scale.spec_replicas
    );
    out
}

/// Reads `namespace/name` and what the controller reads with it from a cluster.
pub async fn observe_cluster(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Observed, ExplainError> {
    use kube::api::{Api, DynamicObject, ListParams};
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| {
            read_error(format!(
                "cannot read HorizontalPodAutoscaler {namespace}/{name}: {e}"
            ))
        })?;
    let reference = &hpa.spec.scale_target_ref;
    let api_version = reference.api_version.clone().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &reference.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| {
            read_error(format!(
                "cannot resolve the scale target {api_version} {}: {e}",
                reference.kind
            ))
        })?;
    let scale = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .get_scale(&reference.name)
        .await
        .map_err(|e| {
            read_error(format!(
                "cannot read the scale of {} {namespace}/{}: {e}",
                reference.kind, reference.name
            ))
        })?;
    let status = scale.status.unwrap_or_default();
    let selector = status.selector.clone().unwrap_or_default();
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| read_error(format!("cannot list the pods of {selector}: {e}")))?
            .items
    };
    Ok(Observed {
        scale: ScaleTarget {
            reference: format!("{}/{}", reference.kind, reference.name),
            spec_replicas: scale
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or_default()
                .max(0) as u32,
            status_replicas: status.replicas.max(0) as u32,
            selector,
        },
        hpa,
        pods,
        now: crate::unix_now(),
    })
}

fn kube_yaml(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())
}

/// Reads an HPA manifest and, from an inventory snapshot (`kubectl get deploy,rs,pods -A -o yaml`), its scale
/// target and pods: `explain --hpa-file` without a cluster.
pub fn observe_files(
    hpa_file: &std::path::Path,
    inventory: &std::path::Path,
) -> Result<Observed, ExplainError> {
    let read = |path: &std::path::Path, limit| {
        let text = crate::files::read_text(path, limit)
            .map_err(|e| read_error(format!("cannot read {}: {e}", path.display())))?;
        kube_yaml(&text).map_err(|e| read_error(format!("{}: {e}", path.display())))
    };
    let mut hpa: HorizontalPodAutoscaler =
        serde_json::from_value(read(hpa_file, crate::files::CONFIG_LIMIT)?).map_err(|e| {
            read_error(format!(
                "{}: not a HorizontalPodAutoscaler (autoscaling/v2): {e}",
                hpa_file.display()
            ))
        })?;
    let namespace = hpa
        .metadata
        .namespace
        .get_or_insert_with(|| "default".to_owned())
        .clone();
    let list = read(inventory, crate::files::SNAPSHOT_LIMIT)?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let reference = hpa.spec.scale_target_ref.clone();
    let target = items
        .iter()
        .find(|i| {
            i["kind"] == reference.kind.as_str()
                && i["metadata"]["name"] == reference.name.as_str()
                && i["metadata"]["namespace"] == namespace.as_str()
        })
        .ok_or_else(|| {
            read_error(format!(
                "{}: no {} {namespace}/{} (the HPA's scaleTargetRef)",
                inventory.display(),
                reference.kind,
                reference.name
            ))
        })?;
    let selector_object: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(target["spec"]["selector"].clone()).map_err(|e| {
            read_error(format!(
                "{} {}: spec.selector: {e}",
                reference.kind, reference.name
            ))
        })?;
    let selector = LabelSelector::from_k8s(&selector_object).map_err(|e| {
        read_error(format!(
            "{} {}: spec.selector: {e}",
            reference.kind, reference.name
        ))
    })?;
    let pods: Vec<Pod> = items
        .iter()
        .filter(|i| i["kind"] == "Pod" && i["metadata"]["namespace"] == namespace.as_str())
        .filter_map(|i| serde_json::from_value::<Pod>(i.clone()).ok())
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .collect();
    let spec_replicas = target["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
    Ok(Observed {
        scale: ScaleTarget {
            reference: format!("{}/{}", reference.kind, reference.name),
            spec_replicas,
            status_replicas: target["status"]["replicas"]
                .as_u64()
                .map_or(pods.len() as u32, |r| r as u32),
            selector: selector.to_string(),
        },
        hpa,
        pods,
        now: crate::unix_now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `metrics.k8s.io` answer as metrics-server writes it (`PodMetricsList`), for two pods of two
    /// containers each.
    fn pod_metrics() -> Value {
        let pod = |name: &str, app: &str, sidecar: &str| {
            serde_json::json!({
                "metadata": {"name": name, "namespace": "sidecar"},
                "timestamp": "2026-11-30T10:00:00Z",
                "window": "15s",
                "containers": [
                    {"name": "app", "usage": {"cpu": app, "memory": "100Mi"}},
                    {"name": "envoy", "usage": {"cpu": sidecar, "memory": "20Mi"}}
                ]
            })
        };
        serde_json::json!({
            "kind": "PodMetricsList",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "items": [pod("a", "700m", "100m"), pod("b", "500000000n", "100m")]
        })
    }

    fn pod(name: &str, app_request: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "sidecar", "labels": {"run": "x"}},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": app_request}}},
                {"name": "envoy", "resources": {"requests": {"cpu": "100m"}}}
            ]},
            "status": {"phase": "Running", "startTime": "2026-11-30T09:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-30T09:00:10Z"}]}
        }))
        .unwrap()
    }

    fn observed(metrics: Value) -> Observed {
        let hpa = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h", "namespace": "sidecar"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 10,
                "metrics": [metrics]
            }
        }))
        .unwrap();
        Observed {
            hpa,
            scale: ScaleTarget {
                reference: "Deployment/x".to_owned(),
                spec_replicas: 2,
                status_replicas: 2,
                selector: "run=x".to_owned(),
            },
            pods: vec![pod("a", "400m"), pod("b", "400m")],
            now: 1_796_032_800, // 2026-11-30T10:00:00Z
        }
    }

    /// A router answering the resource metrics path with `body`.
    fn metrics_api(body: Value) -> MetricsApi {
        MetricsApi::InProcess(axum::Router::new().route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/sidecar/pods",
            axum::routing::get(move || std::future::ready(axum::Json(body.clone()))),
        ))
    }

    async fn explained(metric: Value, answer: Value) -> Report {
        explain(
            &observed(metric),
            &metrics_api(answer),
            ControllerFlags::default(),
            Overrides::default(),
            15,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn resource_utilization_sums_the_containers_against_the_requests() {
        let cpu = serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}});
        let report = explained(cpu, pod_metrics()).await;
        let metric = &report.metrics[0];
        // (800m + 600m) of (500m + 500m) requested = 140% against 50%: ratio 2.8, ceil(2.8 × 2) = 6.
        assert_eq!(
            metric.current.as_deref(),
            Some("averageUtilization 140% (averageValue 700m)"),
            "{report:#?}"
        );
        assert_eq!(metric.proposal, Some(6), "{report:#?}");
        assert_eq!(
            report.next_replicas, 4,
            "growth is capped at 2 × current without behavior"
        );
    }

    #[tokio::test]
    async fn container_resource_reads_one_container() {
        let app = serde_json::json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
            "target": {"type": "AverageValue", "averageValue": "300m"}}});
        let report = explained(app, pod_metrics()).await;
        // (700m + 500m) / 2 = 600m against 300m: ratio 2, 4 replicas.
        assert_eq!(report.metrics[0].proposal, Some(4), "{report:#?}");
    }

    #[tokio::test]
    async fn an_empty_answer_is_the_controllers_error_and_freezes_the_size() {
        let cpu = serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}});
        let report = explained(cpu, serde_json::json!({"items": []})).await;
        assert_eq!(
            report.metrics[0].reason,
            "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
        );
        assert_eq!(report.next_replicas, 2);
    }
}
