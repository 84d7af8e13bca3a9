//! A model of the HPA controller loop (autoscaling/v2 without `behavior`), written from
//! the HPA controller's replica_calculator.go: each sync takes the max of the metrics' proposals,
//! keeps the highest recommendation of the downscale stabilization window, and clamps to
//! `[min, min(max, max(2 × current, 4))]`. The per-metric formulas are the library's `hpa` module.
#![allow(unreachable_pub)]

use std::collections::VecDeque;

/// The HPA's sync period (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: i64 = 15;
/// `--horizontal-pod-autoscaler-downscale-stabilization`.
pub const DOWNSCALE_WINDOW: i64 = 300;

pub struct HpaModel {
    pub replicas: u32,
    pub min: u32,
    pub max: u32,
    recommendations: VecDeque<(i64, u32)>,
}

impl HpaModel {
    pub fn new(replicas: u32, min: u32, max: u32) -> Self {
        Self {
            replicas,
            min,
            max,
            recommendations: VecDeque::new(),
        }
    }

    /// One sync at `now` with each metric's proposal; returns the new replica count.
    pub fn sync(&mut self, now: i64, proposals: &[u32]) -> u32 {
        let desired = proposals.iter().copied().max().unwrap_or(self.replicas);
        self.recommendations.push_back((now, desired));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now - t > DOWNSCALE_WINDOW)
        {
            self.recommendations.pop_front();
        }
        let stabilized = self
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(desired);
        let upper = self.max.min((2 * self.replicas).max(4));
        self.replicas = stabilized.clamp(self.min, upper);
        self.replicas
    }
}
