//! The HPA controller loop over simulated time (autoscaling/v2 without `behavior`): each sync takes the
//! highest of the metrics' proposals and normalizes it with the library's model of the controller
//! (`hpa::behavior::without_behavior`), remembering its recommendations as the controller does.
#![allow(unreachable_pub)]

use xroad_metrics_adapter::hpa::{self, Limits, Memory};

/// The HPA's sync period (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: i64 = hpa::DEFAULT_SYNC_PERIOD;

pub struct HpaModel {
    pub replicas: u32,
    limits: Limits,
    memory: Memory,
}

impl HpaModel {
    pub fn new(replicas: u32, min: u32, max: u32) -> Self {
        Self {
            replicas,
            limits: Limits { min, max },
            memory: Memory::default(),
        }
    }

    /// One sync at `now` with each metric's proposal; returns the new replica count.
    pub fn sync(&mut self, now: i64, proposals: &[u32]) -> u32 {
        let desired = proposals.iter().copied().max().unwrap_or(self.replicas);
        let normalized = hpa::behavior::without_behavior(
            self.replicas,
            desired,
            self.limits,
            hpa::DEFAULT_DOWNSCALE_WINDOW,
            &self.memory,
            now,
        );
        self.memory.recommendations.push((now, desired));
        self.memory
            .recommendations
            .retain(|(t, _)| now - t <= hpa::DEFAULT_DOWNSCALE_WINDOW);
        self.replicas = normalized.replicas;
        self.replicas
    }
}
