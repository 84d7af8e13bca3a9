//! From the highest proposal to the replica count the controller sets (kubernetes/kubernetes
//! `pkg/controller/podautoscaler/horizontal.go`): the stabilization windows, the `behavior` rate policies, the
//! min/max clamp, and the controller's memory of recent recommendations and scale events they read. Pure.

/// A `behavior.scaleUp` or `behavior.scaleDown` rule set, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub stabilization_window: i64,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<Policy>,
}

/// `selectPolicy`: which policy's limit applies when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One rate policy: at most `value` pods or percent per `period` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `Pods` or `Percent`.
    pub kind: PolicyKind,
    /// `value`.
    pub value: i64,
    /// `periodSeconds`.
    pub period: i64,
}

/// A policy's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A number of pods.
    Pods,
    /// A percentage of the replicas at the period's start.
    Percent,
}

/// `spec.behavior`, defaults applied (`pkg/apis/autoscaling/v2/defaults.go`).
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// `scaleUp`.
    pub scale_up: Rules,
    /// `scaleDown`.
    pub scale_down: Rules,
}

impl Behavior {
    /// The API server's defaults for an HPA that has a `behavior`: up at most 4 pods or 100% (whichever is
    /// more) per 15 s with no window; down at most 100% per 15 s over `downscale_window` (the controller's
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, for an unset `scaleDown` window).
    pub fn defaults(downscale_window: i64) -> Self {
        Self {
            scale_up: Rules {
                stabilization_window: 0,
                select: Select::Max,
                policies: vec![
                    Policy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period: 15,
                    },
                    Policy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period: 15,
                    },
                ],
            },
            scale_down: Rules {
                stabilization_window: downscale_window,
                select: Select::Max,
                policies: vec![Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: 15,
                }],
            },
        }
    }
}

/// What the controller remembers per HPA between syncs (in memory only: a restarted controller forgets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// Its recent unstabilized recommendations: (Unix seconds, replicas).
    pub recommendations: Vec<(i64, u32)>,
    /// Its recent scale-ups: (Unix seconds, pods added).
    pub scale_ups: Vec<(i64, u32)>,
    /// Its recent scale-downs: (Unix seconds, pods removed).
    pub scale_downs: Vec<(i64, u32)>,
}

/// The `AbleToScale` and `ScalingLimited` conditions the step sets, as the controller words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The reason, e.g. `ScaleDownStabilized`.
    pub reason: &'static str,
    /// The message.
    pub message: &'static str,
}

/// The normalization of one sync's proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The proposal after the stabilization window(s).
    pub stabilized: u32,
    /// The replica count the controller sets.
    pub replicas: u32,
    /// `AbleToScale`: stabilized or not.
    pub able_to_scale: Condition,
    /// `ScalingLimited`: whether the limits changed the count (`limited`), and which limit applied.
    pub limited: bool,
    /// The `ScalingLimited` reason and message.
    pub scaling_limited: Condition,
}

const READY: Condition = Condition {
    reason: "ReadyForNewScale",
    message: "recommended size matches current size",
};
const WITHIN_RANGE: Condition = Condition {
    reason: "DesiredWithinRange",
    message: "the desired count is within the acceptable range",
};
const TOO_MANY: Condition = Condition {
    reason: "TooManyReplicas",
    message: "the desired replica count is more than the maximum replica count",
};
const TOO_FEW: Condition = Condition {
    reason: "TooFewReplicas",
    message: "the desired replica count is less than the minimum replica count",
};
const UP_LIMIT: Condition = Condition {
    reason: "ScaleUpLimit",
    message: "the desired replica count is increasing faster than the maximum scale rate",
};
const DOWN_LIMIT: Condition = Condition {
    reason: "ScaleDownLimit",
    message: "the desired replica count is decreasing faster than the maximum scale rate",
};
const UP_STABILIZED: Condition = Condition {
    reason: "ScaleUpStabilized",
    message: "recent recommendations were lower than current one, applying the lowest recent recommendation",
};
const DOWN_STABILIZED: Condition = Condition {
    reason: "ScaleDownStabilized",
    message: "recent recommendations were higher than current one, applying the highest recent recommendation",
};

/// `[min, max]` from the HPA's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `minReplicas` (default 1).
    pub min: u32,
    /// `maxReplicas`.
    pub max: u32,
}

/// Without a `behavior`: the highest recommendation of the last `downscale_window` seconds, then
/// `[min, min(max, max(2 × current, 4))]` (`normalizeDesiredReplicas`).
pub fn without_behavior(
    current: u32,
    proposal: u32,
    limits: Limits,
    downscale_window: i64,
    memory: &Memory,
    now: i64,
) -> Normalized {
    let cutoff = now.saturating_sub(downscale_window);
    let stabilized = memory
        .recommendations
        .iter()
        .filter(|(at, _)| *at >= cutoff)
        .map(|(_, r)| *r)
        .fold(proposal, u32::max);
    let able_to_scale = if stabilized == proposal {
        READY
    } else {
        DOWN_STABILIZED
    };
    let scale_up_limit = current.saturating_mul(2).max(4);
    let (upper, over) = if limits.max > scale_up_limit {
        (scale_up_limit, UP_LIMIT)
    } else {
        (limits.max, TOO_MANY)
    };
    let (replicas, scaling_limited) = if stabilized < limits.min {
        (limits.min, TOO_FEW)
    } else if stabilized > upper {
        (upper, over)
    } else {
        (stabilized, WITHIN_RANGE)
    };
    Normalized {
        stabilized,
        replicas,
        able_to_scale,
        limited: replicas != stabilized,
        scaling_limited,
    }
}

/// With a `behavior`: stabilize between the lowest recommendation of the up window and the highest of the down
/// window, then limit the change by the direction's policies, then clamp to `[min, max]`
/// (`normalizeDesiredReplicasWithBehaviors`).
pub fn with_behavior(
    current: u32,
    proposal: u32,
    limits: Limits,
    behavior: &Behavior,
    memory: &Memory,
    now: i64,
) -> Normalized {
    let up_cutoff = now.saturating_sub(behavior.scale_up.stabilization_window);
    let down_cutoff = now.saturating_sub(behavior.scale_down.stabilization_window);
    // The controller compares with time.After, so a recommendation made exactly at the cutoff is out.
    let (mut up, mut down) = (proposal, proposal);
    for &(at, recommendation) in &memory.recommendations {
        if at > up_cutoff {
            up = up.min(recommendation);
        }
        if at > down_cutoff {
            down = down.max(recommendation);
        }
    }
    let stabilized = current.max(up).min(down);
    let able_to_scale = match (stabilized == proposal, proposal >= current) {
        (true, _) => READY,
        (false, true) => UP_STABILIZED,
        (false, false) => DOWN_STABILIZED,
    };
    let (replicas, scaling_limited) =
        rate_limit(current, stabilized, limits, behavior, memory, now);
    Normalized {
        stabilized,
        replicas,
        able_to_scale,
        limited: replicas != stabilized,
        scaling_limited,
    }
}

fn rate_limit(
    current: u32,
    desired: u32,
    limits: Limits,
    behavior: &Behavior,
    memory: &Memory,
    now: i64,
) -> (u32, Condition) {
    let current = i64::from(current);
    let desired_wide = i64::from(desired);
    let changed_within = |events: &[(i64, u32)], period: i64| -> i64 {
        events
            .iter()
            .filter(|(at, _)| *at > now.saturating_sub(period))
            .map(|(_, n)| i64::from(*n))
            .sum()
    };
    let period_start = |policy: &Policy| {
        current - changed_within(&memory.scale_ups, policy.period)
            + changed_within(&memory.scale_downs, policy.period)
    };
    if desired_wide > current {
        let rules = &behavior.scale_up;
        let limit = match rules.select {
            Select::Disabled => current,
            select => {
                let proposals = rules.policies.iter().map(|policy| {
                    let start = period_start(policy);
                    match policy.kind {
                        PolicyKind::Pods => start + policy.value,
                        PolicyKind::Percent => {
                            (start as f64 * (1.0 + policy.value as f64 / 100.0)).ceil() as i64
                        }
                    }
                });
                let chosen = if select == Select::Min {
                    proposals.min()
                } else {
                    proposals.max()
                };
                chosen.unwrap_or(current)
            }
        }
        .max(current);
        let (upper, reason) = if i64::from(limits.max) > limit {
            (limit, UP_LIMIT)
        } else {
            (i64::from(limits.max), TOO_MANY)
        };
        if desired_wide > upper {
            return (upper as u32, reason);
        }
    } else if desired_wide < current {
        let rules = &behavior.scale_down;
        let limit = match rules.select {
            Select::Disabled => current,
            select => {
                let proposals = rules.policies.iter().map(|policy| {
                    let start = period_start(policy);
                    match policy.kind {
                        PolicyKind::Pods => start - policy.value,
                        // The controller truncates towards zero here.
                        PolicyKind::Percent => {
                            (start as f64 * (1.0 - policy.value as f64 / 100.0)) as i64
                        }
                    }
                });
                // For a scale-down the smallest change is the highest count.
                let chosen = if select == Select::Min {
                    proposals.max()
                } else {
                    proposals.min()
                };
                chosen.unwrap_or(current)
            }
        }
        .min(current);
        let (lower, reason) = if i64::from(limits.min) < limit {
            (limit, DOWN_LIMIT)
        } else {
            (i64::from(limits.min), TOO_FEW)
        };
        if desired_wide < lower {
            return (lower.max(0) as u32, reason);
        }
    }
    (desired, WITHIN_RANGE)
}
