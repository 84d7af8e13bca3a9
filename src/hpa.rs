//! A model of the HPA controller (autoscaling/v2), written from its published algorithm
//! (kubernetes/kubernetes `pkg/controller/podautoscaler`: `replica_calculator.go`, `horizontal.go`) so that
//! `query` and `explain` can say what an HPA will do next, and why. Pure: the inputs are what the controller
//! reads (the HPA, its scale target, the pods, the metrics APIs' answers) and what it remembers.
//!
//! - [`calculator`]: one metric's proposal;
//! - [`behavior`]: from the highest proposal to the count it sets;
//! - [`spec`]: the HPA object as the controller reads it, defaults applied;
//! - [`decide`]: one sync, end to end.

pub mod behavior;
pub mod calculator;
pub mod spec;

pub use behavior::{Behavior, Limits, Memory, Normalized};
pub use calculator::{Current, Pod, Proposal, Sample, Samples, Unable};
pub use spec::{HpaSpec, MetricSource, Target};

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

/// The controller's `--horizontal-pod-autoscaler-downscale-stabilization` default, seconds.
pub const DEFAULT_DOWNSCALE_WINDOW: i64 = 300;

/// The controller's `--horizontal-pod-autoscaler-sync-period` default, seconds.
pub const DEFAULT_SYNC_PERIOD: i64 = 15;

/// What one sync decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `spec.replicas` is 0 (and scale-to-zero is not in use): the HPA does nothing.
    Disabled,
    /// `spec.replicas` is above `maxReplicas`: set to the maximum, metrics not read.
    AboveMax(u32),
    /// `spec.replicas` is below `minReplicas`: set to the minimum, metrics not read.
    BelowMin(u32),
    /// Every metric failed, or some failed while the others ask for fewer replicas: no change, and the
    /// first failure is what `ScalingActive=False` says.
    Frozen {
        /// The first failing metric's index in `spec.metrics` and its error.
        first: (usize, String),
        /// How many failed.
        invalid: usize,
    },
    /// The metrics decided.
    Scaled {
        /// The index of the metric whose proposal was the highest (the first of equals).
        metric: usize,
        /// The highest proposal.
        proposal: u32,
        /// Metrics that failed (the HPA still scales up on the others).
        invalid: usize,
        /// The stabilization, rate limits and clamp.
        normalized: Normalized,
    },
}

impl Decision {
    /// The replica count the controller sets (`current` when it changes nothing).
    pub fn replicas(&self, current: u32) -> u32 {
        match self {
            Self::Disabled | Self::Frozen { .. } => current,
            Self::AboveMax(n) | Self::BelowMin(n) => *n,
            Self::Scaled { normalized, .. } => normalized.replicas,
        }
    }
}

/// The controller's state for one HPA at a sync.
#[derive(Debug, Clone, Default)]
pub struct Situation {
    /// The scale target's `spec.replicas`.
    pub current: u32,
    /// The HPA reports `ScaledToZero=True` (the `HPAScaleToZero` feature gate).
    pub scaled_to_zero: bool,
    /// What the controller remembers of earlier syncs.
    pub memory: Memory,
    /// The sync's time, Unix seconds.
    pub now: i64,
}

/// One sync of `hpa` given each metric's proposal (in `spec.metrics` order): `reconcileAutoscaler` and
/// `computeReplicasForMetrics`.
pub fn decide(hpa: &HpaSpec, situation: &Situation, proposals: &[Result<u32, String>]) -> Decision {
    let current = situation.current;
    let limits = hpa.limits;
    if current == 0 {
        let can_scale_from_zero = situation.scaled_to_zero
            && (limits.min != 0 || hpa.metrics.iter().any(MetricSource::is_object_or_external));
        if !can_scale_from_zero {
            return Decision::Disabled;
        }
    } else if current > limits.max {
        return Decision::AboveMax(limits.max);
    } else if current < limits.min {
        return Decision::BelowMin(limits.min);
    }
    let mut best: Option<(usize, u32)> = None;
    let mut first_error = None;
    let mut invalid = 0;
    for (index, proposal) in proposals.iter().enumerate() {
        match proposal {
            Ok(replicas) => {
                // As the controller: a proposal of 0 is replaced by any later one.
                if best.is_none_or(|(_, b)| b == 0 || *replicas > b) {
                    best = Some((index, *replicas));
                }
            }
            Err(error) => {
                invalid += 1;
                first_error.get_or_insert((index, error.clone()));
            }
        }
    }
    let (metric, proposal) = match (best, first_error) {
        (Some((metric, proposal)), None) => (metric, proposal),
        (Some((metric, proposal)), Some(_)) if proposal >= current => (metric, proposal),
        (_, Some(first)) => return Decision::Frozen { first, invalid },
        (None, None) => {
            return Decision::Frozen {
                first: (0, "the HPA has no metrics".to_owned()),
                invalid: 0,
            };
        }
    };
    let mut normalized = match &hpa.behavior {
        None => behavior::without_behavior(
            current,
            proposal,
            limits,
            hpa.downscale_window,
            &situation.memory,
            situation.now,
        ),
        Some(rules) => behavior::with_behavior(
            current,
            proposal,
            limits,
            rules,
            &situation.memory,
            situation.now,
        ),
    };
    if current == 0 && limits.min != 0 && situation.scaled_to_zero {
        normalized.replicas = normalized.replicas.max(limits.min);
    }
    Decision::Scaled {
        metric,
        proposal,
        invalid,
        normalized,
    }
}

#[cfg(test)]
mod tests;
