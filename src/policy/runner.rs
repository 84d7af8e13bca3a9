//! The scale-on-failure loop: on each policy's period, gathers its pods' health and its load, decides, and
//! exports the decision on `/metrics`; the served `xroad_scale_on_failure_replicas` reads the latest one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::backends::Backends;
use crate::catalog::{Catalog, Scope};
use crate::config::ScaleOnFailureConfig;
use crate::inventory::PodInventory;
use crate::pod_health::{HealthChecker, assess};
use crate::policy::{PodHealth, PodState, PolicyTracker, ReplicaDecision, ScaleOnFailurePolicy};
use crate::promql;
use crate::telemetry::{Metrics, PodStateLabels, PolicyLabels};
use crate::unix_now;

/// What the policies read besides health: pods, the backend and the catalogue.
pub struct PolicyContext {
    /// Pods and Deployments.
    pub inventory: Arc<PodInventory>,
    /// The metrics backends.
    pub backends: Arc<Backends>,
    /// The load metrics.
    pub catalog: Catalog,
    /// The `rate()` window of the catalogue's metrics.
    pub rate_window: Duration,
    /// Where the policies' gauges go.
    pub metrics: Arc<Metrics>,
}

/// Every state a pod's `pod_health` series is exported for, one-hot.
const STATES: [PodState; 4] = [
    PodState::Healthy,
    PodState::Failing,
    PodState::Maintenance,
    PodState::Unknown,
];

/// A policy's latest outcome.
pub type Outcome = Result<Arc<ReplicaDecision>, String>;

/// One configured policy: its memory, its checker and its latest outcome.
pub struct FailurePolicy {
    /// Its configuration.
    pub config: ScaleOnFailureConfig,
    tracker: Mutex<PolicyTracker>,
    checker: HealthChecker,
    latest: RwLock<Option<(i64, Outcome)>>,
    exported_pods: Mutex<HashSet<String>>,
}

impl FailurePolicy {
    /// A policy that has not evaluated yet.
    pub fn new(config: ScaleOnFailureConfig) -> Self {
        let tracker = PolicyTracker::new(ScaleOnFailurePolicy {
            capacity_per_pod: config.capacity_per_pod,
            min_healthy: config.min_healthy,
            max_extra: config.max_extra,
            max_replicas: config.max_replicas,
            fail_for: config.fail_for,
            recover_for: config.recover_for,
        });
        Self {
            config,
            tracker: Mutex::new(tracker),
            checker: HealthChecker::default(),
            latest: RwLock::new(None),
            exported_pods: Mutex::new(HashSet::new()),
        }
    }

    /// How often the policy evaluates: the health-check period.
    pub fn period(&self) -> Duration {
        self.config.signals.health_check.period
    }

    /// Gathers every signal and the load once, and decides.
    pub async fn evaluate(&self, inputs: &PolicyContext, now: i64) -> Outcome {
        let target = &self.config.target;
        let deployment = inputs
            .inventory
            .deployment(&target.namespace, &target.deployment)
            .ok_or_else(|| {
                format!(
                    "deployment {}/{} not found",
                    target.namespace, target.deployment
                )
            })?;
        let pods = inputs
            .inventory
            .select(&target.namespace, &deployment.selector);
        let signals = &self.config.signals;

        let active = if signals.health_check.enabled {
            self.checker.probe(&pods, &signals.health_check).await
        } else {
            HashMap::new()
        };
        let liveness = if signals.probes {
            let promql = format!(
                "sum by (namespace, pod) (increase(prober_probe_total{{{},probe_type=\"Liveness\",result=\"failed\"}}[{}s]))",
                promql::equal("namespace", &target.namespace),
                signals.probe_window.as_secs()
            );
            let backend = inputs
                .backends
                .named(signals.probe_backend.as_deref())
                .ok_or("the probes' backend is not configured")?;
            match backend.query(&promql).await {
                Ok(answer) => Some(by_pod(&answer)),
                Err(error) => {
                    tracing::warn!(policy = self.config.name, %error, "liveness-probe signal unavailable");
                    None
                }
            }
        } else {
            None
        };

        let metric = inputs
            .catalog
            .pod_metric(&self.config.load_metric)
            .ok_or_else(|| format!("unknown load metric {}", self.config.load_metric))?;
        let load_query =
            metric.per_pod_query(Scope::Namespace(&target.namespace), &[], inputs.rate_window);
        let load_answer = inputs
            .backends
            .for_metric(&metric.name)
            .query(&load_query)
            .await
            .map_err(|e| {
                format!(
                    "unable to fetch the load metric {}: {e}",
                    self.config.load_metric
                )
            })?;
        let load: f64 = pods
            .iter()
            .filter_map(|p| load_answer.pod_value(&target.namespace, &p.name))
            .filter(|v| v.is_finite())
            .sum();

        let health: Vec<PodHealth> = pods
            .iter()
            .map(|pod| {
                let failures = liveness
                    .as_ref()
                    .map(|m| m.get(&pod.name).copied().unwrap_or(0.0));
                assess(pod, now, signals, failures, active.get(&pod.name))
            })
            .collect();
        let decision = self
            .tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evaluate(now, load, &health);
        Ok(Arc::new(decision))
    }

    /// Evaluates, records the outcome and exports it on `/metrics`.
    pub async fn tick(&self, inputs: &PolicyContext) {
        let now = unix_now();
        let outcome = self.evaluate(inputs, now).await;
        match &outcome {
            Ok(decision) => self.export(&inputs.metrics, decision),
            Err(error) => {
                tracing::warn!(policy = self.config.name, %error, "scale-on-failure evaluation failed")
            }
        }
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some((now, outcome));
    }

    fn export(&self, metrics: &Metrics, decision: &ReplicaDecision) {
        let labels = self.labels();
        metrics
            .scale_on_failure_replicas
            .get_or_create(&labels)
            .set(decision.replicas.into());
        metrics
            .unhealthy_pods
            .get_or_create(&labels)
            .set(decision.failing_now.len() as i64);
        let mut exported = self.exported_pods.lock().unwrap_or_else(|e| e.into_inner());
        for gone in exported.iter().filter(|p| !decision.pods.contains_key(*p)) {
            for state in STATES {
                metrics.pod_health.remove(&self.state_labels(gone, state));
            }
        }
        for (pod, health) in &decision.pods {
            for state in STATES {
                metrics
                    .pod_health
                    .get_or_create(&self.state_labels(pod, state))
                    .set(i64::from(state == health.state));
            }
        }
        *exported = decision.pods.keys().cloned().collect();
    }

    /// Removes the policy's series from `/metrics`: it is no longer configured.
    pub fn forget(&self, metrics: &Metrics) {
        let labels = self.labels();
        metrics.scale_on_failure_replicas.remove(&labels);
        metrics.unhealthy_pods.remove(&labels);
        let exported =
            std::mem::take(&mut *self.exported_pods.lock().unwrap_or_else(|e| e.into_inner()));
        for pod in &exported {
            for state in STATES {
                metrics.pod_health.remove(&self.state_labels(pod, state));
            }
        }
    }

    fn labels(&self) -> PolicyLabels {
        let target = &self.config.target;
        PolicyLabels {
            namespace: target.namespace.clone(),
            deployment: target.deployment.clone(),
            policy: self.config.name.clone(),
        }
    }

    fn state_labels(&self, pod: &str, state: PodState) -> PodStateLabels {
        PodStateLabels {
            namespace: self.config.target.namespace.clone(),
            pod: pod.to_owned(),
            state: state.as_str(),
        }
    }

    /// The latest outcome, or an error once it is older than three periods (the loop has stalled).
    pub fn latest(&self) -> Option<Outcome> {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        let (at, outcome) = latest.as_ref()?;
        let max_age =
            (self.period() * 3 + self.config.signals.health_check.timeout).as_secs() as i64;
        if unix_now() - at > max_age {
            return Some(Err(format!(
                "the last evaluation is {}s old",
                unix_now() - at
            )));
        }
        Some(outcome.clone())
    }

    /// Evaluates every `period` until the process ends.
    pub async fn run(self: Arc<Self>, inputs: Arc<PolicyContext>) {
        let mut interval = tokio::time::interval(self.period());
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // Before the first list every Deployment looks missing; the served metric stays absent (404)
            // instead of an evaluation that can only fail.
            if inputs.inventory.is_synced() {
                self.tick(&inputs).await;
            }
        }
    }
}

fn by_pod(answer: &crate::cache::Answer) -> BTreeMap<String, f64> {
    answer
        .series()
        .filter_map(|(labels, value)| Some((labels.get("pod")?.to_owned(), value)))
        .collect()
}

/// Every configured policy, with what they read; their loops run from [`FailurePolicies::spawn`] until
/// [`FailurePolicies::stop`] or the value is dropped.
pub struct FailurePolicies {
    policies: Vec<Arc<FailurePolicy>>,
    context: Arc<PolicyContext>,
    loops: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl FailurePolicies {
    /// The policies of the configuration. A policy configured exactly as one of `previous` is that policy,
    /// so that a reload keeps its memory (which pods have failed for how long) and its latest decision.
    pub fn new(
        configs: &[ScaleOnFailureConfig],
        context: Arc<PolicyContext>,
        previous: Option<&FailurePolicies>,
    ) -> Self {
        let kept = |config: &ScaleOnFailureConfig| {
            previous?
                .policies
                .iter()
                .find(|p| p.config == *config)
                .cloned()
        };
        Self {
            policies: configs
                .iter()
                .map(|c| kept(c).unwrap_or_else(|| Arc::new(FailurePolicy::new(c.clone()))))
                .collect(),
            context,
            loops: Mutex::new(Vec::new()),
        }
    }

    /// True when none is configured.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// All policies.
    pub fn all(&self) -> &[Arc<FailurePolicy>] {
        &self.policies
    }

    /// What the policies read.
    pub fn context(&self) -> &PolicyContext {
        &self.context
    }

    /// The policy for a Deployment.
    pub fn for_deployment(&self, namespace: &str, deployment: &str) -> Option<&Arc<FailurePolicy>> {
        self.policies.iter().find(|p| {
            p.config.target.namespace == namespace && p.config.target.deployment == deployment
        })
    }

    /// Starts one evaluation loop per policy.
    pub fn spawn(&self) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        for policy in &self.policies {
            let task = tokio::spawn(policy.clone().run(self.context.clone()));
            loops.push(task.abort_handle());
        }
    }

    /// Evaluates every policy once, now: a process that serves no loops (`explain --hpa-file`) has values to
    /// answer with.
    pub async fn tick_all(&self) {
        for policy in &self.policies {
            policy.tick(&self.context).await;
        }
    }

    /// Stops the loops.
    pub fn stop(&self) {
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|e| e.into_inner()));
        loops.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

impl Drop for FailurePolicies {
    fn drop(&mut self) {
        self.stop();
    }
}
