//! One metric's replica proposal, as the HPA controller computes it (kubernetes/kubernetes
//! `pkg/controller/podautoscaler/replica_calculator.go`): how pods are grouped, how missing and unready pods
//! are filled in, and the formula of each metric source and target type. Pure.

use std::collections::BTreeMap;

use super::Tolerance;

/// A pod of the scale target, with what the controller reads of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    /// The pod name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The `Ready` condition, if the pod has one.
    pub ready: Option<ReadyCondition>,
    /// `status.startTime`, Unix seconds.
    pub started: Option<i64>,
}

/// A pod's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadyCondition {
    /// `status: "True"`.
    pub status: bool,
    /// `lastTransitionTime`, Unix seconds.
    pub changed: i64,
}

impl Pod {
    /// A running, Ready pod (started long ago): the common case in tests and examples.
    pub fn running(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            phase: "Running".to_owned(),
            deleting: false,
            ready: Some(ReadyCondition {
                status: true,
                changed: 0,
            }),
            started: Some(0),
        }
    }

    /// `Running` with a `Ready=True` condition: the pods counted by `Value` targets.
    fn is_running_and_ready(&self) -> bool {
        self.phase == "Running" && self.ready.is_some_and(|r| r.status)
    }
}

/// One pod's value from the metrics API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The value in milli-units (`MilliValue()`).
    pub millis: i64,
    /// The item's `timestamp`, Unix seconds.
    pub timestamp: i64,
    /// The item's `windowSeconds` (the controller assumes 60 when absent).
    pub window: i64,
}

impl Sample {
    /// A value with the default window, dated so that the CPU start-up rule trusts it.
    pub fn of(millis: i64) -> Self {
        Self {
            millis,
            timestamp: i64::MAX / 4,
            window: 60,
        }
    }
}

/// The values of a Pods or Resource metric, by pod name (the metrics API's items, keyed as the controller
/// keys them; a repeated name keeps the last).
pub type Samples = BTreeMap<String, Sample>;

/// The controller's CPU start-up settings, which decide whether a young pod's CPU sample is used
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`, `--horizontal-pod-autoscaler-initial-readiness-delay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuStartup {
    /// Seconds after start during which a sample is ignored unless the pod is Ready and the sample's window
    /// began after it became Ready (default 300).
    pub initialization_period: i64,
    /// Seconds after start during which an unready pod counts as never having been ready (default 30).
    pub readiness_delay: i64,
    /// The time of the evaluation, Unix seconds.
    pub now: i64,
}

impl CpuStartup {
    /// The controller's defaults, at `now`.
    pub fn defaults(now: i64) -> Self {
        Self {
            initialization_period: 300,
            readiness_delay: 30,
            now,
        }
    }
}

/// How the controller sorted the pods of the scale target for one metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    /// Pods with a value that count (`readyPodCount`).
    pub ready: Vec<String>,
    /// `Pending` pods, and for CPU the pods whose sample is not trusted yet: set aside, counted as 0 on a
    /// scale-up only.
    pub unready: Vec<String>,
    /// Running pods without a value: filled in with the target on a scale-down and 0 on a scale-up.
    pub missing: Vec<String>,
    /// Deleting and `Failed` pods: left out.
    pub ignored: Vec<String>,
    /// Values for pods that are not among the target's pods; the controller averages them in.
    pub extraneous: Vec<String>,
}

/// Why a metric gives no proposal: the controller's error, word for word where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unable {
    /// The scale target's selector selects no pod.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every value was for an ignored or unready pod.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoValues,
    /// No value belonged to a pod with a request (Utilization).
    #[error("no metrics returned matched known pods")]
    NoMatchingRequests,
    /// A pod lacks a resource request that a Utilization target needs.
    #[error("{0}")]
    MissingRequest(String),
    /// The target's value is not usable (zero or negative).
    #[error("the target value must be positive")]
    BadTarget,
}

/// What the controller reports as the metric's current value (`status.currentMetrics[].current`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Current {
    /// `averageValue`, milli-units.
    AverageValue(i64),
    /// `value`, milli-units.
    Value(i64),
    /// `averageUtilization` (percent of the requests) and the raw `averageValue` in milli-units.
    Utilization {
        /// Percent of the requests.
        percent: i64,
        /// The average usage per pod, milli-units.
        average_millis: i64,
    },
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The replica count the metric asks for, before the limits and the behavior.
    pub replicas: u32,
    /// The value the controller reports for the metric.
    pub current: Current,
    /// The usage ratio the decision was taken on (after missing and unready pods were filled in, if they were).
    pub ratio: f64,
    /// Which branch of the calculation applied, in words.
    pub reason: String,
    /// How the pods were grouped, for Pods and Resource metrics.
    pub groups: Option<Groups>,
}

fn to_replicas(value: f64) -> u32 {
    // The controller's int32 conversion; a replica count is never negative.
    value.ceil().clamp(0.0, f64::from(i32::MAX)) as u32
}

/// Sorts the pods as the controller's `groupPods` does. `cpu` applies the CPU start-up rule to pods with a
/// value; without it (every metric but CPU) readiness is not consulted.
pub fn group(pods: &[Pod], samples: &Samples, cpu: Option<CpuStartup>) -> Groups {
    let mut groups = Groups::default();
    for pod in pods {
        let name = pod.name.clone();
        if pod.deleting || pod.phase == "Failed" {
            groups.ignored.push(name);
        } else if pod.phase == "Pending" {
            groups.unready.push(name);
        } else if let Some(sample) = samples.get(&pod.name) {
            if cpu.is_some_and(|cpu| cpu_sample_unready(pod, sample, cpu)) {
                groups.unready.push(name);
            } else {
                groups.ready.push(name);
            }
        } else {
            groups.missing.push(name);
        }
    }
    let targeted: std::collections::HashSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    groups.extraneous = samples
        .keys()
        .filter(|name| !targeted.contains(name.as_str()))
        .cloned()
        .collect();
    groups
}

/// The controller's rule for trusting a pod's CPU sample: a pod without a Ready condition or start time is
/// unready; in its initialization period, it is unready unless Ready and the sample's window started after it
/// became Ready; later, only a pod that never became Ready within the readiness delay is.
fn cpu_sample_unready(pod: &Pod, sample: &Sample, cpu: CpuStartup) -> bool {
    let (Some(ready), Some(started)) = (pod.ready, pod.started) else {
        return true;
    };
    if started + cpu.initialization_period > cpu.now {
        !ready.status || sample.timestamp < ready.changed + sample.window
    } else {
        !ready.status && started + cpu.readiness_delay > ready.changed
    }
}

/// `floor(Σ values / count) / target`, and the average.
fn usage_ratio(values: &Samples, target: i64) -> (f64, i64) {
    // Saturating where Go's int64 would wrap: a value that large is a broken metric either way.
    let total = values
        .values()
        .fold(0i64, |sum, s| sum.saturating_add(s.millis));
    let average = total / values.len() as i64;
    (average as f64 / target as f64, average)
}

/// The first steps of the Pods and Resource calculations: the pods grouped, and the values that count (the
/// ignored and unready pods' taken out).
fn counted(
    samples: &Samples,
    pods: &[Pod],
    target: i64,
    cpu: Option<CpuStartup>,
) -> Result<(Groups, Samples), Unable> {
    if target <= 0 {
        return Err(Unable::BadTarget);
    }
    if pods.is_empty() {
        return Err(Unable::NoPods);
    }
    let groups = group(pods, samples, cpu);
    let mut values = samples.clone();
    for name in groups.ignored.iter().chain(&groups.unready) {
        values.remove(name);
    }
    if values.is_empty() {
        return Err(Unable::NoValues);
    }
    Ok((groups, values))
}

/// How one of the two calculations measures usage, and what a missing pod counts as on a scale-down.
struct Usage<'a> {
    /// The usage ratio of a set of values.
    ratio: &'a dyn Fn(&Samples) -> Result<f64, Unable>,
    /// A missing pod's value on a scale-down.
    missing_down: &'a dyn Fn(&str) -> i64,
}

/// The decision shared by the Pods and Resource calculations, given the ratio of the counted `values`:
/// without missing pods (and unready ones on a scale-up) `ceil(ratio × ready pods)` outside the tolerance;
/// otherwise missing pods take their scale-down value below 1 and 0 above it (nothing at exactly 1), unready
/// pods 0 on a scale-up, and the ratio is taken again, the size held where that is within the tolerance,
/// reverses the direction, or gives a count that contradicts it.
fn propose(
    mut values: Samples,
    groups: &Groups,
    ratio: f64,
    usage: Usage<'_>,
    spec: u32,
    tolerance: Tolerance,
) -> Result<(u32, f64, &'static str), Unable> {
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        return Ok(if tolerance.is_within(ratio) {
            (spec, ratio, "within tolerance, no change")
        } else {
            let replicas = to_replicas(ratio * groups.ready.len() as f64);
            (replicas, ratio, "ceil(ratio × pods with values)")
        });
    }
    for name in &groups.missing {
        let value = if ratio < 1.0 {
            (usage.missing_down)(name)
        } else if ratio > 1.0 {
            0
        } else {
            // At exactly 1 the controller fills nothing in: the ratio is taken again as it was.
            continue;
        };
        values.insert(name.clone(), Sample::of(value));
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            values.insert(name.clone(), Sample::of(0));
        }
    }
    let new_ratio = (usage.ratio)(&values)?;
    if tolerance.is_within(new_ratio) {
        return Ok((
            spec,
            new_ratio,
            "missing or unready pods filled in: within tolerance, no change",
        ));
    }
    if (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok((
            spec,
            new_ratio,
            "missing or unready pods filled in: the direction flipped, no change",
        ));
    }
    let replicas = to_replicas(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && replicas > spec) || (new_ratio > 1.0 && replicas < spec) {
        return Ok((
            spec,
            new_ratio,
            "missing or unready pods filled in: the count contradicts the direction, no change",
        ));
    }
    Ok((
        replicas,
        new_ratio,
        "missing or unready pods filled in: ceil(ratio × pods counted)",
    ))
}

/// A `Pods` metric (and a Resource metric with an `AverageValue` target, `cpu` set for CPU):
/// `calcPlainMetricReplicas`. `spec` is the scale target's `spec.replicas`.
pub fn pods_average_value(
    samples: &Samples,
    pods: &[Pod],
    target: i64,
    spec: u32,
    tolerance: Tolerance,
    cpu: Option<CpuStartup>,
) -> Result<Proposal, Unable> {
    let (groups, values) = counted(samples, pods, target, cpu)?;
    let (ratio, average) = usage_ratio(&values, target);
    let usage = Usage {
        ratio: &|values| Ok(usage_ratio(values, target).0),
        missing_down: &|_| target,
    };
    let (replicas, ratio, reason) = propose(values, &groups, ratio, usage, spec, tolerance)?;
    Ok(Proposal {
        replicas,
        current: Current::AverageValue(average),
        ratio,
        reason: reason.to_owned(),
        groups: Some(groups),
    })
}

/// `(Σ usage × 100 / Σ requests)` over the pods that have a request, and the raw average usage.
fn utilization(
    values: &Samples,
    requests: &BTreeMap<String, i64>,
    target_percent: i64,
) -> Result<(f64, i64, i64), Unable> {
    let (mut usage, mut requested, mut counted) = (0i64, 0i64, 0i64);
    for (name, sample) in values {
        if let Some(request) = requests.get(name) {
            usage = usage.saturating_add(sample.millis);
            requested = requested.saturating_add(*request);
            counted += 1;
        }
    }
    if requested == 0 {
        return Err(Unable::NoMatchingRequests);
    }
    let percent = usage.saturating_mul(100) / requested;
    Ok((
        percent as f64 / target_percent as f64,
        percent,
        usage / counted,
    ))
}

/// A Resource (or ContainerResource) metric with a `Utilization` target: `GetResourceReplicas`. `requests`
/// holds each pod's request of the resource in milli-units; a pod without one is an error, as in the
/// controller. The request is the pod-level one where set, else the sum over the containers (restartable init
/// containers included) or the named container's: see [`super::spec::pod_request`].
pub fn resource_utilization(
    samples: &Samples,
    pods: &[Pod],
    requests: &BTreeMap<String, i64>,
    target_percent: i64,
    spec: u32,
    tolerance: Tolerance,
    cpu: Option<CpuStartup>,
) -> Result<Proposal, Unable> {
    let (groups, values) = counted(samples, pods, target_percent, cpu)?;
    if let Some(pod) = pods.iter().find(|p| !requests.contains_key(&p.name)) {
        return Err(Unable::MissingRequest(format!(
            "missing request for the resource in Pod {}",
            pod.name
        )));
    }
    let (ratio, percent, average) = utilization(&values, requests, target_percent)?;
    let usage = Usage {
        ratio: &|values| Ok(utilization(values, requests, target_percent)?.0),
        // On a scale-down a missing pod counts as using its whole request, or the target if that is higher.
        missing_down: &|name| {
            requests.get(name).copied().unwrap_or_default() * target_percent.max(100) / 100
        },
    };
    let (replicas, ratio, reason) = propose(values, &groups, ratio, usage, spec, tolerance)?;
    Ok(Proposal {
        replicas,
        current: Current::Utilization {
            percent,
            average_millis: average,
        },
        ratio,
        reason: reason.to_owned(),
        groups: Some(groups),
    })
}

/// A ratio against a whole-target value (`Value` targets): `spec` when within tolerance, else
/// `ceil(ratio × ready pods)`; from 0 replicas, `ceil(ratio)` whatever the tolerance.
fn value_replicas(
    ratio: f64,
    spec: u32,
    pods: &[Pod],
    tolerance: Tolerance,
) -> Result<(u32, &'static str), Unable> {
    if spec == 0 {
        return Ok((to_replicas(ratio), "from 0 replicas: ceil(ratio)"));
    }
    if tolerance.is_within(ratio) {
        return Ok((spec, "within tolerance, no change"));
    }
    if pods.is_empty() {
        return Err(Unable::NoPods);
    }
    let ready = pods.iter().filter(|p| p.is_running_and_ready()).count();
    Ok((
        to_replicas(ratio * ready as f64),
        "ceil(ratio × Running and Ready pods)",
    ))
}

/// An `Object` metric with a `Value` target, or an `External` metric's sum with one: ratio `value / target`.
pub fn value(
    value: i64,
    target: i64,
    spec: u32,
    pods: &[Pod],
    tolerance: Tolerance,
) -> Result<Proposal, Unable> {
    if target <= 0 {
        return Err(Unable::BadTarget);
    }
    let ratio = value as f64 / target as f64;
    let (replicas, reason) = value_replicas(ratio, spec, pods, tolerance)?;
    Ok(Proposal {
        replicas,
        current: Current::Value(value),
        ratio,
        reason: reason.to_owned(),
        groups: None,
    })
}

/// An `Object` metric with an `AverageValue` target, or an `External` metric's sum with one: ratio
/// `value / (target × status.replicas)`; outside tolerance `ceil(value / target)`. `status` is the scale
/// target's `status.replicas`.
pub fn average_value(
    value: i64,
    target: i64,
    status: u32,
    tolerance: Tolerance,
) -> Result<Proposal, Unable> {
    if target <= 0 {
        return Err(Unable::BadTarget);
    }
    let ratio = value as f64 / (target as f64 * f64::from(status));
    let (replicas, reason) = if tolerance.is_within(ratio) {
        (status, "within tolerance, no change")
    } else {
        (
            to_replicas(value as f64 / target as f64),
            "ceil(value ÷ target)",
        )
    };
    // The controller reports ceil(value / status.replicas); with 0 replicas that is its +Inf cast.
    let average = if status == 0 {
        i64::MAX
    } else {
        (value as f64 / f64::from(status)).ceil() as i64
    };
    Ok(Proposal {
        replicas,
        current: Current::AverageValue(average),
        ratio,
        reason: reason.to_owned(),
        groups: None,
    })
}

/// Sums an External metric's items as the controller does (saturating at the int64 maximum).
pub fn external_sum(items: &[i64]) -> i64 {
    items.iter().fold(0i64, |sum, v| sum.saturating_add(*v))
}
