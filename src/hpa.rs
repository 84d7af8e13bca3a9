//! A model of the HPA controller's replica calculation for a `Pods` metric with an `AverageValue` target,
//! written from the HPA controller's replica_calculator.go (kubernetes/kubernetes
//! `replica_calculator.go`). Used by the quick start and `query` to show what an HPA would do. Pure.

/// The tolerances around a ratio of 1 inside which the HPA keeps its size: `--horizontal-pod-autoscaler-tolerance`
/// for both directions, or `behavior.scaleUp.tolerance` / `behavior.scaleDown.tolerance` (Kubernetes 1.33+).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// How far below 1 the ratio may fall without a scale-down.
    pub scale_down: f64,
    /// How far above 1 the ratio may rise without a scale-up.
    pub scale_up: f64,
}

impl Tolerance {
    /// The same tolerance both ways.
    pub const fn both(tolerance: f64) -> Self {
        Self {
            scale_down: tolerance,
            scale_up: tolerance,
        }
    }

    /// `1 − scaleDown ≤ ratio ≤ 1 + scaleUp`, bounds included (the controller's `isWithin`).
    pub fn is_within(&self, ratio: f64) -> bool {
        1.0 - self.scale_down <= ratio && ratio <= 1.0 + self.scale_up
    }
}

/// The controller's default, 0.1 both ways.
pub const DEFAULT_TOLERANCE: Tolerance = Tolerance::both(0.1);

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
/// `values_millis` holds one value per running pod that reported one; `missing` counts the running pods that did
/// not; `pending` counts the `Pending` pods, which the controller sets aside whatever they report and counts
/// (as 0) only on a scale-up; `current` is `scale.spec.replicas`. Deleted and `Failed` pods are not counted.
///
/// ```
/// use xroad_metrics_adapter::hpa::{pods_average_value, DEFAULT_TOLERANCE};
/// // Three pods at 12.5, 17.5 and 20 packets/s against a 10/s target: ratio 1.666, so ceil(1.666 × 3) = 5.
/// let r = pods_average_value(&[12_500, 17_500, 20_000], 0, 0, 10_000, 3, DEFAULT_TOLERANCE).unwrap();
/// assert_eq!((r.average_millis, r.desired), (16_666, 5));
/// ```
pub fn pods_average_value(
    values_millis: &[i64],
    missing: usize,
    pending: usize,
    target_millis: i64,
    current: u32,
    tolerance: Tolerance,
) -> Option<Recommendation> {
    if values_millis.is_empty() || target_millis <= 0 {
        // "did not receive metrics for targeted pods": the HPA keeps the current size.
        return None;
    }
    let count = values_millis.len();
    let average = values_millis.iter().sum::<i64>() / count as i64;
    let ratio = average as f64 / target_millis as f64;
    let within = |r: f64| tolerance.is_within(r);
    let recommendation = |desired: u32, reason| Recommendation {
        average_millis: average,
        ratio,
        desired,
        reason,
    };
    let scale_up_with_pending = pending > 0 && ratio > 1.0;
    if !scale_up_with_pending && missing == 0 {
        return Some(if within(ratio) {
            recommendation(current, "within tolerance: no change")
        } else {
            recommendation(
                (ratio * count as f64).ceil() as u32,
                "ceil(ratio × pods with metrics)",
            )
        });
    }
    // Missing pods count as at-target on a scale-down and as 0 on a scale-up; at a ratio of exactly 1 they
    // are left out. Pending pods count as 0 on a scale-up only.
    let (fill, filled) = if ratio < 1.0 {
        (target_millis, missing)
    } else if ratio > 1.0 {
        (0, missing)
    } else {
        (0, 0)
    };
    let total = values_millis.iter().sum::<i64>() + fill * filled as i64;
    let all = count + filled + if scale_up_with_pending { pending } else { 0 };
    let new_ratio = (total / all as i64) as f64 / target_millis as f64;
    if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Some(recommendation(
            current,
            "missing or pending pods filled in: within tolerance or direction flipped",
        ));
    }
    let desired = (new_ratio * all as f64).ceil() as u32;
    if (new_ratio < 1.0 && desired > current) || (new_ratio > 1.0 && desired < current) {
        return Some(recommendation(
            current,
            "missing or pending pods filled in: proposal contradicts direction",
        ));
    }
    Some(recommendation(
        desired,
        "missing or pending pods filled in: ceil(ratio × all pods)",
    ))
}

/// The HPA's proposal for an `Object` (or `External`) metric with an `AverageValue` target:
/// ratio `V / (t × status)`; outside tolerance `ceil(V / t)`, inside it `status`.
///
/// ```
/// use xroad_metrics_adapter::hpa::{object_average_value, DEFAULT_TOLERANCE, Tolerance};
/// // A scale-on-failure value of 12 replicas against 10 running: ratio 1.2, so 12.
/// assert_eq!(object_average_value(12_000, 1_000, 10, DEFAULT_TOLERANCE), 12);
/// // 11 against 10 is ratio 1.1: inside the default tolerance, no change.
/// assert_eq!(object_average_value(11_000, 1_000, 10, DEFAULT_TOLERANCE), 10);
/// assert_eq!(object_average_value(11_000, 1_000, 10, Tolerance::both(0.0)), 11);
/// ```
pub fn object_average_value(
    value_millis: i64,
    target_millis: i64,
    status: u32,
    tolerance: Tolerance,
) -> u32 {
    if status == 0 || target_millis <= 0 {
        return (value_millis as f64 / target_millis.max(1) as f64).ceil() as u32;
    }
    let ratio = value_millis as f64 / (target_millis as f64 * status as f64);
    if tolerance.is_within(ratio) {
        status
    } else {
        (value_millis as f64 / target_millis as f64).ceil() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(values: &[i64], missing: usize, target: i64, current: u32) -> u32 {
        pods_average_value(values, missing, 0, target, current, DEFAULT_TOLERANCE)
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
        assert!(pods_average_value(&[], 3, 0, 100, 3, DEFAULT_TOLERANCE).is_none());
    }

    #[test]
    fn pods_without_values_at_exactly_the_target_leave_the_size_alone() {
        // The scale-on-failure doc's scenario: 10 pods, 2 broken ones report nothing, 8 exactly at target. The controller
        // fills missing pods only below or above a ratio of 1, so it stays at 10 (not 8).
        assert_eq!(desired(&[100_000; 8], 2, 100_000, 10), 10);
    }

    #[test]
    fn pending_pods_are_set_aside_unless_scaling_up() {
        // 4 running pods at a quarter of the target, 6 stuck Pending: the controller scales down on the 4.
        let low = pods_average_value(&[25_000; 4], 0, 6, 100_000, 10, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(low.desired, 1, "{low:?}");
        // At twice the target, the Pending pods count as 0: ratio (4 × 200) / 10 / 100 = 0.8 flips the
        // direction, so the size stays.
        let high = pods_average_value(&[200_000; 4], 0, 6, 100_000, 10, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(high.desired, 10, "{high:?}");
        // With 2 Pending: (4 × 200) / 6 = 133: ceil(1.33 × 6) = 8, not 8 from the 4 alone.
        let some = pods_average_value(&[200_000; 4], 0, 2, 100_000, 6, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(some.desired, 8, "{some:?}");
    }

    #[test]
    fn tolerances_apply_per_direction() {
        let strict_up = Tolerance {
            scale_down: 0.1,
            scale_up: 0.0,
        };
        let up = pods_average_value(&[105_000; 10], 0, 0, 100_000, 10, strict_up).unwrap();
        assert_eq!(
            up.desired, 11,
            "ratio 1.05 scales up with behavior.scaleUp.tolerance 0"
        );
        let down = pods_average_value(&[95_000; 10], 0, 0, 100_000, 10, strict_up).unwrap();
        assert_eq!(
            down.desired, 10,
            "ratio 0.95 is within the scale-down tolerance"
        );
    }
}
