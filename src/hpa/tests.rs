//! The controller's cases, written from its published algorithm (`replica_calculator.go`, `horizontal.go`)
//! and the behaviour its documentation describes: one table per step of a sync.

use std::collections::BTreeMap;

use super::behavior::{self, Behavior, Limits, Memory, Policy, PolicyKind, Select};
use super::calculator::{self, CpuStartup, Pod, ReadyCondition, Sample, Samples};
use super::*;

const NOW: i64 = 1_000_000;

fn pods(n: usize) -> Vec<Pod> {
    (0..n).map(|i| Pod::running(&format!("pod-{i}"))).collect()
}

fn samples(values: &[i64]) -> Samples {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("pod-{i}"), Sample::of(*v)))
        .collect()
}

fn with_phase(mut pods: Vec<Pod>, index: usize, phase: &str) -> Vec<Pod> {
    pods[index].phase = phase.to_owned();
    pods
}

/// A Pods-metric case: the pods, their values, the target and `spec.replicas`.
struct PodsCase {
    name: &'static str,
    pods: Vec<Pod>,
    values: Samples,
    target: i64,
    spec: u32,
    tolerance: Tolerance,
    replicas: u32,
    average: i64,
}

#[test]
fn pods_metrics_propose_as_the_controller() {
    let case = |name, pods, values, target, spec, replicas, average| PodsCase {
        name,
        pods,
        values,
        target,
        spec,
        tolerance: DEFAULT_TOLERANCE,
        replicas,
        average,
    };
    let deleting = {
        let mut p = pods(4);
        p[3].deleting = true;
        p
    };
    let mut extraneous = samples(&[10_000, 10_000]);
    extraneous.insert("other-pod".to_owned(), Sample::of(40_000));
    let cases = [
        case(
            "scale up",
            pods(3),
            samples(&[20_000, 10_000, 30_000]),
            15_000,
            3,
            4,
            20_000,
        ),
        case(
            "scale down",
            pods(5),
            samples(&[12_000; 5]),
            20_000,
            5,
            3,
            12_000,
        ),
        case(
            "within tolerance",
            pods(3),
            samples(&[20_000, 21_000, 21_000]),
            20_000,
            3,
            3,
            20_666,
        ),
        case(
            "tolerance bound is inclusive",
            pods(10),
            samples(&[110_000; 10]),
            100_000,
            10,
            10,
            110_000,
        ),
        case(
            "just outside the tolerance",
            pods(10),
            samples(&[111_000; 10]),
            100_000,
            10,
            12,
            111_000,
        ),
        // 8 survivors at 125 and 2 broken pods reporting nothing: filled with 0 on a scale-up, ratio 1: no change.
        case(
            "missing pods above target",
            pods(10),
            samples(&[125_000; 8]),
            100_000,
            10,
            10,
            125_000,
        ),
        // 8 pods exactly at target, 2 report nothing: at a ratio of exactly 1 nothing is filled in.
        case(
            "missing pods at target",
            pods(10),
            samples(&[100_000; 8]),
            100_000,
            10,
            10,
            100_000,
        ),
        case(
            "missing pods at target, mixed values",
            pods(5),
            samples(&[20_000, 19_000, 21_000]),
            20_000,
            5,
            5,
            20_000,
        ),
        // Below target the missing pods count at the target: (4 × 25 + 6 × 100) / 10 = 70 → 7.
        case(
            "missing pods below target",
            pods(10),
            samples(&[25_000; 4]),
            100_000,
            10,
            7,
            25_000,
        ),
        // A surge pod without a value: filled with the target, ceil(0.725 × 3) = 3 contradicts the scale-down.
        case(
            "rolling update with surge",
            pods(3),
            samples(&[10_000, 10_000]),
            17_000,
            2,
            2,
            10_000,
        ),
        // 6 pods stuck Pending, the 4 running at a quarter of the target: the controller scales down on the 4.
        case(
            "pending pods set aside on a scale-down",
            (0..10).fold(pods(10), |p, i| {
                if i >= 4 {
                    with_phase(p, i, "Pending")
                } else {
                    p
                }
            }),
            samples(&[25_000; 4]),
            100_000,
            10,
            1,
            25_000,
        ),
        // At twice the target the 6 Pending pods count as 0: (4 × 200) / 10 = 80, the direction flips: no change.
        case(
            "pending pods count as 0 on a scale-up",
            (0..10).fold(pods(10), |p, i| {
                if i >= 4 {
                    with_phase(p, i, "Pending")
                } else {
                    p
                }
            }),
            samples(&[200_000; 4]),
            100_000,
            10,
            10,
            200_000,
        ),
        // With 2 Pending: (4 × 200) / 6 = 133 → ceil(1.333 × 6) = 8.
        case(
            "fewer pending pods still damp the scale-up",
            with_phase(with_phase(pods(6), 4, "Pending"), 5, "Pending"),
            samples(&[200_000; 4]),
            100_000,
            6,
            8,
            200_000,
        ),
        // Deleting and Failed pods are left out, values and all.
        case(
            "deleting pods ignored",
            deleting,
            samples(&[200_000, 200_000, 200_000, 0]),
            100_000,
            4,
            6,
            200_000,
        ),
        case(
            "failed pods ignored",
            with_phase(pods(4), 3, "Failed"),
            samples(&[50_000, 50_000, 50_000, 500_000]),
            100_000,
            4,
            2,
            50_000,
        ),
        // A value for a pod outside the selector is averaged in, but only the target's pods are counted:
        // average (10 + 10 + 40) / 3 = 20 against 10 → ceil(2 × 2) = 4.
        case(
            "values of other pods are averaged in",
            pods(2),
            extraneous,
            10_000,
            2,
            4,
            20_000,
        ),
    ];
    for c in cases {
        let p =
            calculator::pods_average_value(&c.values, &c.pods, c.target, c.spec, c.tolerance, None)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(
            (p.replicas, p.current),
            (c.replicas, Current::AverageValue(c.average)),
            "{}: {p:?}",
            c.name
        );
    }
}

#[test]
fn tolerances_apply_per_direction() {
    let strict_up = Tolerance {
        scale_down: 0.1,
        scale_up: 0.0,
    };
    let propose = |values: &[i64]| {
        calculator::pods_average_value(&samples(values), &pods(10), 100_000, 10, strict_up, None)
            .unwrap()
            .replicas
    };
    assert_eq!(
        propose(&[105_000; 10]),
        11,
        "1.05 scales up with scaleUp.tolerance 0"
    );
    assert_eq!(
        propose(&[95_000; 10]),
        10,
        "0.95 is within the scale-down tolerance"
    );
}

#[test]
fn pods_metrics_without_usable_values_give_the_controllers_errors() {
    let none = calculator::pods_average_value(&samples(&[]), &[], 100, 3, DEFAULT_TOLERANCE, None);
    assert_eq!(none, Err(Unable::NoPods));
    let all_pending = calculator::pods_average_value(
        &samples(&[100]),
        &with_phase(pods(1), 0, "Pending"),
        100,
        1,
        DEFAULT_TOLERANCE,
        None,
    );
    assert_eq!(
        all_pending.unwrap_err().to_string(),
        "did not receive metrics for targeted pods (pods might be unready)"
    );
}

#[test]
fn resource_utilization_uses_requests_and_cpu_readiness() {
    let requests: BTreeMap<String, i64> = (0..3).map(|i| (format!("pod-{i}"), 1000)).collect();
    let propose = |pods: &[Pod], values: Samples, target: i64, spec: u32| {
        calculator::resource_utilization(
            &values,
            pods,
            &requests,
            target,
            spec,
            DEFAULT_TOLERANCE,
            Some(CpuStartup::defaults(NOW)),
        )
    };
    // 900m of 1000m in each of 3 pods against 50%: 90% → ceil(1.8 × 3) = 6.
    let up = propose(&pods(3), samples(&[900, 900, 900]), 50, 3).unwrap();
    assert_eq!(up.replicas, 6);
    assert_eq!(
        up.current,
        Current::Utilization {
            percent: 90,
            average_millis: 900
        }
    );
    // A pod without a value on a scale-down counts as using its whole request: (100 + 100 + 1000) / 3000 = 40%
    // against 50% is 0.8 → ceil(0.8 × 3) = 3: no change.
    let down = propose(&pods(3), samples(&[100, 100]), 50, 3).unwrap();
    assert_eq!(down.replicas, 3, "{down:?}");
    // A young pod that is not Ready has an untrusted CPU sample: set aside, then counted as 0 on a scale-up.
    let mut young = pods(3);
    young[2].started = Some(NOW - 10);
    young[2].ready = Some(ReadyCondition {
        status: false,
        changed: NOW - 10,
    });
    let hot = propose(&young, samples(&[900, 900, 2000]), 50, 3).unwrap();
    assert_eq!(hot.groups.as_ref().unwrap().unready, ["pod-2"]);
    // Ratio on the two trusted pods 1.8; with pod-2 at 0: 1800 / 3000 = 60% → 1.2 → ceil(1.2 × 3) = 4.
    assert_eq!(hot.replicas, 4, "{hot:?}");
    let missing = calculator::resource_utilization(
        &samples(&[500]),
        &pods(2),
        &BTreeMap::from([("pod-0".to_owned(), 1000)]),
        50,
        2,
        DEFAULT_TOLERANCE,
        None,
    );
    assert!(
        matches!(missing, Err(Unable::MissingRequest(_))),
        "{missing:?}"
    );
}

#[test]
fn object_and_external_metrics_propose_as_the_controller() {
    // Value: ratio × Running and Ready pods (one of the 4 is not Ready).
    let mut four = pods(4);
    four[3].ready = Some(ReadyCondition {
        status: false,
        changed: 0,
    });
    let value = calculator::value(20_000, 10_000, 4, &four, DEFAULT_TOLERANCE).unwrap();
    assert_eq!((value.replicas, value.current), (6, Current::Value(20_000)));
    let within = calculator::value(10_500, 10_000, 4, &four, DEFAULT_TOLERANCE).unwrap();
    assert_eq!(within.replicas, 4);
    // From 0 replicas the tolerance and the pods do not count: ceil(ratio).
    let from_zero = calculator::value(25_000, 10_000, 0, &[], DEFAULT_TOLERANCE).unwrap();
    assert_eq!(from_zero.replicas, 3);
    // AverageValue: ratio against status.replicas, proposal ceil(value / target).
    let average = calculator::average_value(12_000, 1_000, 10, DEFAULT_TOLERANCE).unwrap();
    assert_eq!(
        (average.replicas, average.current),
        (12, Current::AverageValue(1_200))
    );
    let inside = calculator::average_value(11_000, 1_000, 10, DEFAULT_TOLERANCE).unwrap();
    assert_eq!(inside.replicas, 10, "1.1 is inside the default tolerance");
    let strict = calculator::average_value(11_000, 1_000, 10, Tolerance::both(0.0)).unwrap();
    assert_eq!(strict.replicas, 11);
    // External: the items are summed first.
    assert_eq!(calculator::external_sum(&[1, 2, i64::MAX]), i64::MAX);
    let external = calculator::average_value(
        calculator::external_sum(&[30_000, 45_000]),
        10_000,
        3,
        DEFAULT_TOLERANCE,
    )
    .unwrap();
    assert_eq!(external.replicas, 8);
}

fn memory(recommendations: &[(i64, u32)]) -> Memory {
    Memory {
        recommendations: recommendations
            .iter()
            .map(|(age, r)| (NOW - age, *r))
            .collect(),
        ..Memory::default()
    }
}

const LIMITS: Limits = Limits { min: 2, max: 20 };

#[test]
fn without_behavior_the_highest_recent_recommendation_wins_and_growth_is_capped() {
    let cases = [
        // (current, proposal, recommendations (age, replicas), expected, ScalingLimited reason)
        (10, 4, vec![], 4, "DesiredWithinRange"),
        (10, 4, vec![(60, 8)], 8, "DesiredWithinRange"),
        (10, 4, vec![(301, 8)], 4, "DesiredWithinRange"),
        (10, 1, vec![], 2, "TooFewReplicas"),
        (3, 12, vec![], 6, "ScaleUpLimit"),
        (1, 12, vec![], 4, "ScaleUpLimit"),
        (15, 40, vec![], 20, "TooManyReplicas"),
    ];
    for (current, proposal, recent, expected, reason) in cases {
        let n = behavior::without_behavior(current, proposal, LIMITS, 300, &memory(&recent), NOW);
        assert_eq!(
            (n.replicas, n.scaling_limited.reason),
            (expected, reason),
            "{current} → {proposal} with {recent:?}"
        );
    }
    let stabilized = behavior::without_behavior(10, 4, LIMITS, 300, &memory(&[(60, 8)]), NOW);
    assert_eq!(stabilized.able_to_scale.reason, "ScaleDownStabilized");
}

#[test]
fn behavior_policies_and_windows_limit_the_change() {
    let defaults = Behavior::defaults(300);
    let quick = Behavior {
        scale_down: behavior::Rules {
            stabilization_window: 0,
            ..defaults.scale_down.clone()
        },
        ..defaults.clone()
    };
    let pods_per = |value, period| Policy {
        kind: PolicyKind::Pods,
        value,
        period,
    };
    let percent_per = |value, period| Policy {
        kind: PolicyKind::Percent,
        value,
        period,
    };
    let with_down = |select, policies: Vec<Policy>| Behavior {
        scale_down: behavior::Rules {
            stabilization_window: 0,
            select,
            policies,
        },
        ..defaults.clone()
    };
    let slow_up = Behavior {
        scale_up: behavior::Rules {
            stabilization_window: 120,
            select: Select::Max,
            policies: vec![pods_per(1, 60)],
        },
        ..quick.clone()
    };
    let cases: Vec<(&str, Behavior, u32, u32, Memory, u32, &str)> = vec![
        (
            "default scale-up: 4 pods or 100% per 15 s",
            defaults.clone(),
            3,
            15,
            Memory::default(),
            7,
            "ScaleUpLimit",
        ),
        (
            "default scale-up doubles large counts",
            defaults.clone(),
            8,
            19,
            Memory::default(),
            16,
            "ScaleUpLimit",
        ),
        (
            "default scale-down waits for the window",
            defaults.clone(),
            10,
            4,
            memory(&[(100, 10)]),
            10,
            "DesiredWithinRange",
        ),
        (
            "default scale-down without history",
            defaults.clone(),
            10,
            4,
            Memory::default(),
            4,
            "DesiredWithinRange",
        ),
        // 7 × 0.5 = 3.5 is truncated to 3 (a scale-up's percent rounds up).
        (
            "percent scale-down truncates",
            with_down(Select::Max, vec![percent_per(50, 60)]),
            7,
            2,
            Memory::default(),
            3,
            "ScaleDownLimit",
        ),
        (
            "Min picks the smaller change",
            with_down(Select::Min, vec![pods_per(1, 60), percent_per(50, 60)]),
            10,
            3,
            Memory::default(),
            9,
            "ScaleDownLimit",
        ),
        (
            "Max picks the larger change",
            with_down(Select::Max, vec![pods_per(1, 60), percent_per(50, 60)]),
            10,
            3,
            Memory::default(),
            5,
            "ScaleDownLimit",
        ),
        (
            "Disabled never scales down",
            with_down(Select::Disabled, vec![pods_per(1, 60)]),
            10,
            3,
            Memory::default(),
            10,
            "ScaleDownLimit",
        ),
        (
            "a recent scale-up uses up the period's allowance",
            slow_up.clone(),
            5,
            9,
            Memory {
                scale_ups: vec![(NOW - 30, 1)],
                ..Memory::default()
            },
            5,
            "ScaleUpLimit",
        ),
        (
            "the up window keeps the lowest recent recommendation",
            slow_up,
            5,
            9,
            memory(&[(60, 5)]),
            5,
            "DesiredWithinRange",
        ),
        (
            "min still applies",
            quick.clone(),
            3,
            1,
            Memory::default(),
            2,
            "TooFewReplicas",
        ),
        (
            "max still applies",
            quick,
            18,
            30,
            Memory::default(),
            20,
            "TooManyReplicas",
        ),
    ];
    for (name, behavior, current, proposal, memory, expected, reason) in cases {
        let n = behavior::with_behavior(current, proposal, LIMITS, &behavior, &memory, NOW);
        assert_eq!(
            (n.replicas, n.scaling_limited.reason),
            (expected, reason),
            "{name}: {n:?}"
        );
    }
}

fn spec(min: u32, max: u32, metrics: usize) -> HpaSpec {
    HpaSpec {
        limits: Limits { min, max },
        metrics: (0..metrics)
            .map(|i| MetricSource::Pods {
                name: format!("m{i}"),
                selector: crate::selector::LabelSelector::everything(),
                target: 1000,
            })
            .collect(),
        behavior: None,
        tolerance: DEFAULT_TOLERANCE,
        downscale_window: DEFAULT_DOWNSCALE_WINDOW,
    }
}

#[test]
fn a_sync_takes_the_highest_proposal_and_freezes_on_failures_that_would_scale_down() {
    let at = |current| Situation {
        current,
        now: NOW,
        ..Situation::default()
    };
    let failed =
        || Err::<u32, _>("unable to fetch metrics from custom metrics API: boom".to_owned());
    let hpa = spec(1, 10, 2);
    assert_eq!(decide(&hpa, &at(0), &[Ok(3), Ok(2)]), Decision::Disabled);
    assert_eq!(
        decide(&spec(1, 4, 2), &at(6), &[Ok(3), Ok(2)]),
        Decision::AboveMax(4)
    );
    assert_eq!(
        decide(&spec(3, 10, 2), &at(2), &[Ok(3), Ok(2)]),
        Decision::BelowMin(3)
    );
    let highest = decide(&hpa, &at(4), &[Ok(3), Ok(6)]);
    assert!(
        matches!(
            highest,
            Decision::Scaled {
                metric: 1,
                proposal: 6,
                ..
            }
        ),
        "{highest:?}"
    );
    assert_eq!(highest.replicas(4), 6);
    let up_despite_failure = decide(&hpa, &at(4), &[failed(), Ok(6)]);
    assert_eq!(up_despite_failure.replicas(4), 6);
    let frozen = decide(&hpa, &at(4), &[failed(), Ok(2)]);
    assert!(
        matches!(
            frozen,
            Decision::Frozen {
                first: (0, _),
                invalid: 1
            }
        ),
        "{frozen:?}"
    );
    assert_eq!(frozen.replicas(4), 4);
    assert_eq!(decide(&hpa, &at(4), &[failed(), failed()]).replicas(4), 4);
}

#[test]
fn an_hpa_object_is_read_with_the_api_servers_defaults() {
    let hpa: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "secondary", "namespace": "sidecar"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "secondary"},
            "maxReplicas": 8,
            "behavior": {"scaleUp": {"tolerance": "0"}, "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
            "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": "packets"}, "target": {"type": "AverageValue", "averageValue": "500m"}}},
                {"type": "External", "external": {"metric": {"name": "messages", "selector": {"matchLabels": {"service": "x"}}},
                 "target": {"type": "Value", "averageValue": "50"}}}
            ]
        }
    }))
    .unwrap();
    let spec = HpaSpec::from_k8s(&hpa, spec::ControllerFlags::default()).unwrap();
    assert_eq!(spec.limits, Limits { min: 1, max: 8 });
    assert_eq!(
        spec.tolerance,
        Tolerance {
            scale_down: 0.1,
            scale_up: 0.0
        }
    );
    let behavior = spec.behavior.unwrap();
    assert_eq!(behavior.scale_up, Behavior::defaults(300).scale_up);
    assert_eq!(
        behavior.scale_down.stabilization_window, 300,
        "the flag fills an unset window"
    );
    assert_eq!(
        behavior.scale_down.policies,
        [Policy {
            kind: PolicyKind::Pods,
            value: 1,
            period: 60
        }]
    );
    assert!(matches!(
        spec.metrics[0],
        MetricSource::Pods { target: 500, .. }
    ));
    assert!(
        matches!(
            spec.metrics[1],
            MetricSource::External {
                target: Target::AverageValue(50_000),
                ..
            }
        ),
        "averageValue wins whatever the type says: {:?}",
        spec.metrics[1]
    );
    let mut no_metrics = hpa.clone();
    no_metrics.spec.metrics = None;
    let cpu = HpaSpec::from_k8s(&no_metrics, spec::ControllerFlags::default()).unwrap();
    assert_eq!(
        cpu.metrics,
        [MetricSource::Resource {
            resource: "cpu".into(),
            container: None,
            target: Target::Utilization(80)
        }]
    );
    let mut bad = hpa;
    bad.spec.metrics.as_mut().unwrap()[0]
        .pods
        .as_mut()
        .unwrap()
        .target
        .type_ = "Value".into();
    assert_eq!(
        HpaSpec::from_k8s(&bad, spec::ControllerFlags::default())
            .unwrap_err()
            .to_string(),
        "spec.metrics[0]: target type \"Value\" is not one of AverageValue"
    );
}

#[test]
fn extreme_values_give_an_answer_not_a_panic() {
    let huge = samples(&[i64::MAX / 2, i64::MAX / 2, i64::MAX / 2]);
    let p = calculator::pods_average_value(&huge, &pods(3), 1, 3, DEFAULT_TOLERANCE, None).unwrap();
    assert_eq!(
        p.replicas,
        i32::MAX as u32,
        "capped as the controller caps int32"
    );
    let requests: BTreeMap<String, i64> =
        (0..3).map(|i| (format!("pod-{i}"), i64::MAX / 2)).collect();
    let u =
        calculator::resource_utilization(&huge, &pods(3), &requests, 1, 3, DEFAULT_TOLERANCE, None)
            .unwrap();
    // Saturated usage over saturated requests: a ratio, whatever it is, and no overflow.
    assert!(u.ratio.is_finite(), "{u:?}");
    assert_eq!(
        calculator::value(i64::MAX, 1, 0, &[], DEFAULT_TOLERANCE)
            .unwrap()
            .replicas,
        i32::MAX as u32
    );
    let zero = calculator::average_value(5, 1, 0, DEFAULT_TOLERANCE).unwrap();
    assert_eq!(zero.replicas, 5, "from 0 replicas: ceil(value / target)");
    assert_eq!(
        calculator::value(1, 0, 3, &pods(3), DEFAULT_TOLERANCE),
        Err(Unable::BadTarget)
    );
    // Found by the `hpa` fuzz target: a time at the edge of i64 minus a window.
    let late = memory(&[(0, 3)]);
    // Every window reaches back to the recommendation of 3: the up window holds the count at 5.
    let n = behavior::with_behavior(5, 9, LIMITS, &Behavior::defaults(i64::MAX), &late, i64::MIN);
    assert_eq!(n.replicas, 5);
    let n = behavior::without_behavior(5, 3, LIMITS, i64::MAX, &late, i64::MIN);
    assert_eq!(n.replicas, 3);
}
