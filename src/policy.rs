//! Scale-on-failure: turns per-pod health and the load into the replica count the HPA reads
//! (`xroad_scale_on_failure_replicas`, an Object metric with `AverageValue: 1`).
//!
//! `replicas = min(max(minHealthy, ceil(load / capacityPerPod)) + min(failing, maxExtra), maxReplicas)`, where
//! a pod counts as failing only after failing for `failFor`, and stops counting only after being well for
//! `recoverFor` (the HPA controller's replica_calculator.go). Pure: time is an argument.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub mod runner;

/// A pod's health as the signals see it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodState {
    /// Serving.
    Healthy,
    /// Failing liveness or health checks: capacity lost.
    Failing,
    /// Drained on purpose (health check 503): neither capacity nor a failure to compensate.
    Maintenance,
    /// Not enough information, e.g. still starting.
    Unknown,
}

impl PodState {
    /// The label value used in metrics and output.
    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Healthy => "healthy",
            PodState::Failing => "failing",
            PodState::Maintenance => "maintenance",
            PodState::Unknown => "unknown",
        }
    }
}

/// One pod's assessed health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHealth {
    /// The pod name.
    pub pod: String,
    /// Its state.
    pub state: PodState,
    /// Why, one line per signal that spoke.
    pub reasons: Vec<String>,
    /// When the pod's own status says its failure began (Unix seconds), if it says. `failFor` counts from
    /// then, so an adapter that has just started, or a second replica, counts a long-failing pod at once
    /// instead of waiting `failFor` again (the HPA would scale to the minimum in between).
    pub failing_since: Option<i64>,
}

/// The policy's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleOnFailurePolicy {
    /// The load one healthy pod carries at target.
    pub capacity_per_pod: f64,
    /// Never fewer healthy pods than this.
    pub min_healthy: u32,
    /// At most this many replicas for failing pods.
    pub max_extra: u32,
    /// Never more replicas than this.
    pub max_replicas: Option<u32>,
    /// How long a pod must fail before it counts.
    pub fail_for: Duration,
    /// How long a counted pod must be well before it stops counting.
    pub recover_for: Duration,
}

/// What the policy decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaDecision {
    /// The replica count to serve.
    pub replicas: u32,
    /// The load the decision used.
    pub load: f64,
    /// `ceil(load / capacityPerPod)`.
    pub for_load: u32,
    /// Pods counted as failing (after hysteresis), sorted.
    pub counted_failing: Vec<String>,
    /// Pods failing now (before hysteresis), sorted: the `unhealthy_pods` value.
    pub failing_now: Vec<String>,
    /// Pods in maintenance, sorted.
    pub maintenance: Vec<String>,
    /// Every pod's health, by name.
    pub pods: BTreeMap<String, PodHealth>,
    /// When it was decided (Unix seconds).
    pub decided_at: i64,
    /// A sentence saying how the number came about.
    pub explanation: String,
}

/// Per-pod hysteresis: the counted state flips only after the observed state has held long enough.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Hysteresis {
    counted: bool,
    pending_since: Option<i64>,
}

impl Hysteresis {
    fn update(
        &mut self,
        failing: bool,
        now: i64,
        failing_since: Option<i64>,
        fail_for: Duration,
        recover_for: Duration,
    ) -> bool {
        if failing == self.counted {
            self.pending_since = None;
            return self.counted;
        }
        let observed = self.pending_since.unwrap_or(now);
        let since = match failing_since {
            Some(at) if failing => observed.min(at),
            _ => observed,
        };
        self.pending_since = Some(since);
        let needed = if failing { fail_for } else { recover_for };
        if now - since >= needed.as_secs() as i64 {
            self.counted = failing;
            self.pending_since = None;
        }
        self.counted
    }
}

/// A policy with its per-pod memory.
#[derive(Debug, Clone)]
pub struct PolicyTracker {
    policy: ScaleOnFailurePolicy,
    pods: HashMap<String, Hysteresis>,
}

impl PolicyTracker {
    /// A tracker that has seen nothing yet.
    pub fn new(policy: ScaleOnFailurePolicy) -> Self {
        Self {
            policy,
            pods: HashMap::new(),
        }
    }

    /// The parameters.
    pub fn policy(&self) -> &ScaleOnFailurePolicy {
        &self.policy
    }

    /// Takes in the target's pods' health and the load at `now`; pods no longer present are forgotten.
    pub fn evaluate(&mut self, now: i64, load: f64, pods: &[PodHealth]) -> ReplicaDecision {
        let p = &self.policy;
        self.pods
            .retain(|name, _| pods.iter().any(|h| &h.pod == name));
        let mut counted_failing = Vec::new();
        let mut failing_now = Vec::new();
        let mut maintenance = Vec::new();
        for health in pods {
            let failing = health.state == PodState::Failing;
            if failing {
                failing_now.push(health.pod.clone());
            }
            if health.state == PodState::Maintenance {
                maintenance.push(health.pod.clone());
            }
            let tracker = self.pods.entry(health.pod.clone()).or_default();
            if tracker.update(
                failing,
                now,
                health.failing_since,
                p.fail_for,
                p.recover_for,
            ) {
                counted_failing.push(health.pod.clone());
            }
        }
        counted_failing.sort();
        failing_now.sort();
        maintenance.sort();

        let load = if load.is_finite() { load.max(0.0) } else { 0.0 };
        let for_load = (load / p.capacity_per_pod).ceil().min(u32::MAX as f64) as u32;
        let base = for_load.max(p.min_healthy);
        let extra = (counted_failing.len() as u32).min(p.max_extra);
        let unclamped = base.saturating_add(extra);
        let replicas = p.max_replicas.map_or(unclamped, |max| unclamped.min(max));
        let mut explanation = format!(
            "max(minHealthy {}, ceil(load {load:.3} / capacityPerPod {})={for_load}) + failing {}",
            p.min_healthy,
            p.capacity_per_pod,
            counted_failing.len()
        );
        if extra < counted_failing.len() as u32 {
            explanation.push_str(&format!(" (capped at maxExtra {})", p.max_extra));
        }
        explanation.push_str(&format!(" = {unclamped}"));
        if replicas < unclamped {
            explanation.push_str(&format!(", capped at maxReplicas {replicas}"));
        }
        let pending = failing_now
            .iter()
            .filter(|p| !counted_failing.contains(p))
            .count();
        if pending > 0 {
            explanation.push_str(&format!(
                "; {pending} pod(s) failing for less than failFor {}s do not count yet",
                p.fail_for.as_secs()
            ));
        }
        ReplicaDecision {
            replicas,
            load,
            for_load,
            counted_failing,
            failing_now,
            maintenance,
            pods: pods.iter().map(|h| (h.pod.clone(), h.clone())).collect(),
            decided_at: now,
            explanation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScaleOnFailurePolicy {
        ScaleOnFailurePolicy {
            capacity_per_pod: 100.0,
            min_healthy: 2,
            max_extra: 5,
            max_replicas: None,
            fail_for: Duration::from_secs(30),
            recover_for: Duration::from_secs(60),
        }
    }

    fn pods(states: &[PodState]) -> Vec<PodHealth> {
        states
            .iter()
            .enumerate()
            .map(|(i, state)| PodHealth {
                pod: format!("pod-{i:02}"),
                state: *state,
                reasons: vec![],
                failing_since: None,
            })
            .collect()
    }

    use PodState::*;

    #[test]
    fn healthy_pods_get_what_the_load_needs() {
        let mut tracker = PolicyTracker::new(policy());
        let d = tracker.evaluate(0, 1000.0, &pods(&[Healthy; 10]));
        assert_eq!((d.replicas, d.for_load), (10, 10));
        assert_eq!(
            d.explanation,
            "max(minHealthy 2, ceil(load 1000.000 / capacityPerPod 100)=10) + failing 0 = 10"
        );
        assert_eq!(
            tracker.evaluate(0, 1001.0, &pods(&[Healthy; 10])).replicas,
            11,
            "ceil"
        );
    }

    #[test]
    fn min_healthy_holds_at_low_load() {
        let mut tracker = PolicyTracker::new(policy());
        assert_eq!(tracker.evaluate(0, 0.0, &pods(&[Healthy; 3])).replicas, 2);
        assert_eq!(
            tracker.evaluate(0, f64::NAN, &pods(&[Healthy; 3])).replicas,
            2
        );
    }

    #[test]
    fn failing_pods_add_replicas_after_fail_for() {
        let mut tracker = PolicyTracker::new(policy());
        let mut states = vec![Healthy; 10];
        assert_eq!(tracker.evaluate(0, 1000.0, &pods(&states)).replicas, 10);
        states[3] = Failing;
        states[7] = Failing;
        let early = tracker.evaluate(10, 1000.0, &pods(&states));
        assert_eq!(
            (early.replicas, early.failing_now.len()),
            (10, 2),
            "not yet: failing for 0 s"
        );
        assert!(
            early
                .explanation
                .ends_with("2 pod(s) failing for less than failFor 30s do not count yet")
        );
        assert_eq!(tracker.evaluate(39, 1000.0, &pods(&states)).replicas, 10);
        let counted = tracker.evaluate(40, 1000.0, &pods(&states));
        assert_eq!(counted.replicas, 12);
        assert_eq!(counted.counted_failing, ["pod-03", "pod-07"]);
    }

    #[test]
    fn recovered_pods_stop_counting_after_recover_for() {
        let mut tracker = PolicyTracker::new(policy());
        let mut states = vec![Healthy; 10];
        states[0] = Failing;
        tracker.evaluate(0, 1000.0, &pods(&states));
        assert_eq!(tracker.evaluate(30, 1000.0, &pods(&states)).replicas, 11);
        states[0] = Healthy;
        assert_eq!(tracker.evaluate(40, 1000.0, &pods(&states)).replicas, 11);
        assert_eq!(tracker.evaluate(99, 1000.0, &pods(&states)).replicas, 11);
        assert_eq!(tracker.evaluate(100, 1000.0, &pods(&states)).replicas, 10);
    }

    #[test]
    fn a_flapping_pod_never_counts() {
        let mut tracker = PolicyTracker::new(policy());
        for t in (0..600).step_by(10) {
            let state = if (t / 10) % 2 == 0 { Failing } else { Healthy };
            let mut states = vec![Healthy; 10];
            states[5] = state;
            assert_eq!(
                tracker.evaluate(t, 1000.0, &pods(&states)).replicas,
                10,
                "at {t}s"
            );
        }
    }

    #[test]
    fn maintenance_is_neither_capacity_nor_failure() {
        let mut tracker = PolicyTracker::new(policy());
        let mut states = vec![Healthy; 10];
        states[2] = Maintenance;
        tracker.evaluate(0, 1000.0, &pods(&states));
        let d = tracker.evaluate(120, 1000.0, &pods(&states));
        assert_eq!(
            (d.replicas, d.maintenance.as_slice()),
            (10, ["pod-02".to_string()].as_slice())
        );
        assert!(d.failing_now.is_empty());
    }

    #[test]
    fn extra_replicas_and_the_total_are_capped() {
        let mut capped = PolicyTracker::new(ScaleOnFailurePolicy {
            max_extra: 1,
            max_replicas: Some(10),
            ..policy()
        });
        let states = [vec![Failing; 3], vec![Healthy; 7]].concat();
        capped.evaluate(0, 950.0, &pods(&states));
        let d = capped.evaluate(30, 950.0, &pods(&states));
        assert_eq!(d.replicas, 10);
        assert_eq!(
            d.explanation,
            "max(minHealthy 2, ceil(load 950.000 / capacityPerPod 100)=10) + failing 3 (capped at maxExtra 1) = 11, capped at maxReplicas 10"
        );
    }

    #[test]
    fn pods_that_disappear_are_forgotten() {
        let mut tracker = PolicyTracker::new(policy());
        let failing = pods(&[Failing, Healthy]);
        tracker.evaluate(0, 100.0, &failing);
        assert_eq!(tracker.evaluate(30, 100.0, &failing).replicas, 3);
        // The failing pod was deleted and replaced by a healthy one.
        let replaced = vec![
            failing[1].clone(),
            PodHealth {
                pod: "pod-new".into(),
                state: Healthy,
                reasons: vec![],
                failing_since: None,
            },
        ];
        assert_eq!(tracker.evaluate(31, 100.0, &replaced).replicas, 2);
    }

    #[test]
    fn a_failure_dated_by_the_pod_counts_from_that_date_even_for_a_new_tracker() {
        // An adapter that restarts at t=1000 sees a pod crash-looping since t=900: failFor (30 s) is over.
        let mut restarted = PolicyTracker::new(policy());
        let failing = vec![PodHealth {
            failing_since: Some(900),
            ..pods(&[Failing])[0].clone()
        }];
        let decision = restarted.evaluate(1000, 100.0, &failing);
        assert_eq!(decision.counted_failing, ["pod-00"]);
        // A date in the future (clock skew) counts as now.
        let mut skewed = PolicyTracker::new(policy());
        let ahead = vec![PodHealth {
            failing_since: Some(2000),
            ..failing[0].clone()
        }];
        assert!(
            skewed
                .evaluate(1000, 100.0, &ahead)
                .counted_failing
                .is_empty()
        );
        assert_eq!(
            skewed.evaluate(1030, 100.0, &ahead).counted_failing,
            ["pod-00"]
        );
    }
}
