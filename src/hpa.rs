//! A model of the HPA controller's replica calculation for a `Pods` metric with an `AverageValue` target,
//! written from the HPA controller's replica_calculator.go (kubernetes/kubernetes
//! `replica_calculator.go`). Used by the quick start and `query` to show what an HPA would do. Pure.

/// The default `--horizontal-pod-autoscaler-tolerance`.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// What the HPA would decide, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// `floor(Σ values / pods with values)` in milli-units, as the HPA reports it.
    pub average_millis: i64,
    /// Average ÷ target.
    pub ratio: f64,
    /// The replica count the metric proposes (before min/max clamping and stabilization).
    pub desired: u32,
    /// Why: which branch of the calculation applied.
    pub reason: &'static str,
}

/// Computes the HPA's proposal for a `Pods` metric.
///
/// `values_millis` holds one value per pod that reported one; `missing` counts the selected pods that did not;
/// `current` is `scale.spec.replicas`.
///
/// ```
/// use xroad_metrics_adapter::hpa::{pods_average_value, DEFAULT_TOLERANCE};
/// // Three pods at 12.5, 17.5 and 20 packets/s against a 10/s target: ratio 1.666, so ceil(1.666 × 3) = 5.
/// let r = pods_average_value(&[12_500, 17_500, 20_000], 0, 10_000, 3, DEFAULT_TOLERANCE).unwrap();
/// assert_eq!((r.average_millis, r.desired), (16_666, 5));
/// ```
pub fn pods_average_value(
    values_millis: &[i64],
    missing: usize,
    target_millis: i64,
    current: u32,
    tolerance: f64,
) -> Option<Recommendation> {
    if values_millis.is_empty() || target_millis <= 0 {
        // "did not receive metrics for targeted pods": the HPA keeps the current size.
        return None;
    }
    let count = values_millis.len();
    let average = values_millis.iter().sum::<i64>() / count as i64;
    let ratio = average as f64 / target_millis as f64;
    // The bounds form of Kubernetes ≥ 1.33 (`1 − tol ≤ r ≤ 1 + tol`), so that exactly 1.1 is within 0.1.
    let within = |r: f64| 1.0 - tolerance <= r && r <= 1.0 + tolerance;
    let recommendation = |desired: u32, reason| Recommendation {
        average_millis: average,
        ratio,
        desired,
        reason,
    };
    if missing == 0 {
        return Some(if within(ratio) {
            recommendation(current, "within tolerance: no change")
        } else {
            recommendation(
                (ratio * count as f64).ceil() as u32,
                "ceil(ratio × pods with metrics)",
            )
        });
    }
    // Missing pods count as at-target on a scale-down and as 0 on a scale-up.
    let fill = if ratio < 1.0 { target_millis } else { 0 };
    let total = values_millis.iter().sum::<i64>() + fill * missing as i64;
    let all = count + missing;
    let new_ratio = (total / all as i64) as f64 / target_millis as f64;
    if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Some(recommendation(
            current,
            "missing pods filled in: within tolerance or direction flipped",
        ));
    }
    let desired = (new_ratio * all as f64).ceil() as u32;
    if (new_ratio < 1.0 && desired > current) || (new_ratio > 1.0 && desired < current) {
        return Some(recommendation(
            current,
            "missing pods filled in: proposal contradicts direction",
        ));
    }
    Some(recommendation(
        desired,
        "missing pods filled in: ceil(ratio × all pods)",
    ))
}

/// The HPA's proposal for an `Object` (or `External`) metric with an `AverageValue` target:
/// ratio `V / (t × status)`; outside tolerance `ceil(V / t)`, inside it `status`.
///
/// ```
/// use xroad_metrics_adapter::hpa::{object_average_value, DEFAULT_TOLERANCE};
/// // A scale-on-failure value of 12 replicas against 10 running: ratio 1.2, so 12.
/// assert_eq!(object_average_value(12_000, 1_000, 10, DEFAULT_TOLERANCE), 12);
/// // 11 against 10 is ratio 1.1: inside the default tolerance, no change.
/// assert_eq!(object_average_value(11_000, 1_000, 10, DEFAULT_TOLERANCE), 10);
/// assert_eq!(object_average_value(11_000, 1_000, 10, 0.0), 11);
/// ```
pub fn object_average_value(
    value_millis: i64,
    target_millis: i64,
    status: u32,
    tolerance: f64,
) -> u32 {
    if status == 0 || target_millis <= 0 {
        return (value_millis as f64 / target_millis.max(1) as f64).ceil() as u32;
    }
    let ratio = value_millis as f64 / (target_millis as f64 * status as f64);
    if 1.0 - tolerance <= ratio && ratio <= 1.0 + tolerance {
        status
    } else {
        (value_millis as f64 / target_millis as f64).ceil() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(values: &[i64], missing: usize, target: i64, current: u32) -> u32 {
        pods_average_value(values, missing, target, current, DEFAULT_TOLERANCE)
            .unwrap()
            .desired
    }

    #[test]
    fn at_target_keeps_the_current_size() {
        assert_eq!(desired(&[100_000; 10], 0, 100_000, 10), 10);
    }

    #[test]
    fn tolerance_bounds_are_inclusive() {
        assert_eq!(
            desired(&[110_000; 10], 0, 100_000, 10),
            10,
            "ratio exactly 1.1 does not scale"
        );
        assert_eq!(desired(&[111_000; 10], 0, 100_000, 10), 12);
    }

    #[test]
    fn scales_up_and_down_proportionally() {
        assert_eq!(desired(&[200_000; 4], 0, 100_000, 4), 8);
        assert_eq!(desired(&[50_000; 4], 0, 100_000, 4), 2);
    }

    #[test]
    fn failed_pods_reporting_nothing_do_not_add_capacity() {
        // The reference's worked example: 8 survivors at 125, 2 broken pods missing → stays at 10.
        assert_eq!(desired(&[125_000; 8], 2, 100_000, 10), 10);
    }

    #[test]
    fn no_values_means_no_recommendation() {
        assert!(pods_average_value(&[], 3, 100, 3, DEFAULT_TOLERANCE).is_none());
    }
}
