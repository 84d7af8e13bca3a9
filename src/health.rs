//! Per-pod health for the scale-on-failure policies: the pod's status, kubelet liveness-probe failures from
//! Prometheus, and the Security Server health check on port 5588 (X-Road's PR-OPMON, UG-SS and the Sidecar user guide), combined
//! into one state per pod; and the loop that feeds them, with the load, to each policy.
//!
//! Classification, debouncing and assessment are pure functions; probing and the loop are the I/O edge.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::cache::QueryCache;
use crate::catalog::{Catalog, Scope};
use crate::config::{HealthCheckConfig, ScaleOnFailureConfig, SignalsConfig};
use crate::inventory::{PodInfo, PodInventory};
use crate::policy::{Decision, PodHealth, PodState, PolicyTracker, ScaleOnFailurePolicy};
use crate::promql;
use crate::telemetry::{Metrics, PodStateLabels, PolicyLabels};
use crate::unix_now;

/// What one health-check request said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// 200.
    Ok,
    /// 500 with a reason line; `reason` is a bounded key, `detail` the server's text.
    Failing {
        /// A key from a bounded set (`ocsp_fetch`, `timeout`, …, `other`).
        reason: &'static str,
        /// The body's first line.
        detail: String,
    },
    /// 503: maintenance mode, an intentional drain.
    Maintenance,
    /// No usable answer: refused, timed out, reset, or an unexpected status.
    Unreachable(String),
}

/// Maps a 500 body to its reason key by prefix; unknown text is `other` (the label set stays bounded).
fn failure_reason(body: &str) -> &'static str {
    const REASONS: &[(&str, &str)] = &[
        ("No authentication key available", "auth_key_missing"),
        ("No certificate chain available", "auth_cert_chain"),
        ("No end entity certificate available", "auth_cert_missing"),
        (
            "Getting OCSP response for authentication key failed",
            "ocsp_fetch",
        ),
        ("Authentication key OCSP response status", "ocsp_status"),
        ("ServerConf is not available", "serverconf_unavailable"),
        ("Server Conf database did not respond", "serverconf_db"),
        ("Global configuration is expired", "globalconf_expired"),
        ("At least one HSM are non operational", "hsm"),
        ("Memory usage above threshold", "memory"),
        ("Fetching health check response timed out for", "timeout"),
        ("Fetching health check response failed for", "error"),
        (
            "Fetching health check response was interrupted for",
            "interrupted",
        ),
    ];
    REASONS
        .iter()
        .find(|(prefix, _)| body.starts_with(prefix))
        .map_or("other", |(_, key)| key)
}

/// Classifies a health-check answer.
///
/// ```
/// use xroad_metrics_adapter::health::{classify, CheckOutcome};
/// assert_eq!(classify(200, ""), CheckOutcome::Ok);
/// assert_eq!(classify(503, "Health check interface is in maintenance mode."), CheckOutcome::Maintenance);
/// assert!(matches!(classify(500, "Global configuration is expired\n"),
///                  CheckOutcome::Failing { reason: "globalconf_expired", .. }));
/// ```
pub fn classify(status: u16, body: &str) -> CheckOutcome {
    match status {
        200 => CheckOutcome::Ok,
        503 => CheckOutcome::Maintenance,
        500 => {
            let detail = body.lines().next().unwrap_or_default().trim().to_owned();
            CheckOutcome::Failing {
                reason: failure_reason(&detail),
                detail,
            }
        }
        other => CheckOutcome::Unreachable(format!("unexpected HTTP status {other}")),
    }
}

/// The debounced result of the active check, like a kubelet probe's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveState {
    /// Passed `successThreshold` times in a row.
    Healthy,
    /// Failed `failureThreshold` times in a row; the last reason.
    Failing(String),
    /// Answered 503.
    Maintenance,
}

/// Consecutive-result counting for one pod.
#[derive(Debug, Clone, Default)]
pub struct CheckTracker {
    failures: u32,
    successes: u32,
    state: Option<ActiveState>,
}

impl CheckTracker {
    /// Takes one outcome in; returns the debounced state (`None` until there is one).
    pub fn record(
        &mut self,
        outcome: &CheckOutcome,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> Option<ActiveState> {
        match outcome {
            CheckOutcome::Maintenance => {
                self.failures = 0;
                self.successes = 0;
                self.state = Some(ActiveState::Maintenance);
            }
            CheckOutcome::Ok => {
                self.failures = 0;
                self.successes += 1;
                let was_failing = matches!(self.state, Some(ActiveState::Failing(_)));
                if !was_failing || self.successes >= success_threshold {
                    self.state = Some(ActiveState::Healthy);
                }
            }
            CheckOutcome::Failing { .. } | CheckOutcome::Unreachable(_) => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= failure_threshold {
                    let why = match outcome {
                        CheckOutcome::Failing { reason, detail } => format!("{reason}: {detail}"),
                        CheckOutcome::Unreachable(why) => format!("unreachable: {why}"),
                        _ => unreachable!("matched above"),
                    };
                    self.state = Some(ActiveState::Failing(why));
                }
            }
        }
        self.state.clone()
    }
}

/// Container waiting reasons that mean the container cannot run.
const BROKEN_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "InvalidImageName",
];

/// What the pod's status says is wrong, and since when, as far as the status tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFailure {
    /// Why.
    pub why: String,
    /// When it began (Unix seconds), from the status's own time stamps.
    pub since: Option<i64>,
}

/// Why the pod's status says it is failing, if it does. A pod younger than `startup_grace` that is not yet
/// Ready is starting, not failing: the Sidecar's startup probe allows minutes.
pub fn pod_status_failure(
    pod: &PodInfo,
    now: i64,
    restart_window: Duration,
    startup_grace: Duration,
) -> Option<StatusFailure> {
    // A crash-looping pod went unready when its container first failed.
    let unready_since = pod.ready_changed.filter(|_| !pod.ready);
    for container in &pod.containers {
        if let Some(reason) = container
            .waiting_reason
            .as_deref()
            .filter(|r| BROKEN_WAITING_REASONS.contains(r))
        {
            return Some(StatusFailure {
                why: format!("container {} is waiting: {reason}", container.name),
                since: unready_since,
            });
        }
        if let Some(at) = container.last_terminated
            && now - at <= restart_window.as_secs() as i64
        {
            return Some(StatusFailure {
                why: format!(
                    "container {} restarted {}s ago ({} restarts)",
                    container.name,
                    now - at,
                    container.restarts
                ),
                since: Some(at),
            });
        }
    }
    let age = pod.created.map_or(i64::MAX, |created| now - created);
    let past_startup = age > startup_grace.as_secs() as i64;
    let startup_over = pod
        .created
        .map(|created| created + startup_grace.as_secs() as i64);
    let failure = |why: String, since: Option<i64>| Some(StatusFailure { why, since });
    match pod.phase.as_str() {
        "Unknown" => failure("phase Unknown (node unreachable?)".into(), None),
        "Pending" if past_startup => failure(format!("Pending for {age}s"), startup_over),
        "Running" if !pod.ready && past_startup => {
            let since = pod
                .ready_changed
                .map_or(String::new(), |t| format!(" for {}s", now - t));
            failure(format!("not Ready{since}"), unready_since.max(startup_over))
        }
        _ => None,
    }
}

/// Combines the signals into one state: maintenance (503) wins, then any failure, then any sign of health.
pub fn assess(
    pod: &PodInfo,
    now: i64,
    signals: &SignalsConfig,
    liveness_failures: Option<f64>,
    active: Option<&ActiveState>,
) -> PodHealth {
    let health = |state, reasons, failing_since| PodHealth {
        pod: pod.name.clone(),
        state,
        reasons,
        failing_since,
    };
    if active == Some(&ActiveState::Maintenance) {
        return health(
            PodState::Maintenance,
            vec!["health check: maintenance mode (503)".into()],
            None,
        );
    }
    let mut reasons = Vec::new();
    let mut failing_since = None;
    if signals.pod_status
        && let Some(failure) =
            pod_status_failure(pod, now, signals.restart_window, signals.startup_grace)
    {
        reasons.push(format!("pod status: {}", failure.why));
        failing_since = failure.since;
    }
    if let Some(count) = liveness_failures.filter(|c| *c > 0.0) {
        reasons.push(format!(
            "liveness probe failed {} time(s) in the last {}s",
            count.round(),
            signals.probe_window.as_secs()
        ));
    }
    if let Some(ActiveState::Failing(why)) = active {
        reasons.push(format!("health check: {why}"));
    }
    if !reasons.is_empty() {
        return health(PodState::Failing, reasons, failing_since);
    }
    match active {
        Some(ActiveState::Healthy) => {
            health(PodState::Healthy, vec!["health check: ok".into()], None)
        }
        _ if pod.ready && pod.phase == "Running" => {
            health(PodState::Healthy, vec!["pod status: Ready".into()], None)
        }
        _ => health(
            PodState::Unknown,
            vec![format!("pod status: {}, not Ready yet", pod.phase)],
            None,
        ),
    }
}

/// The active health checker: probes pods' health-check endpoints and debounces the answers per pod.
pub struct HealthChecker {
    client: reqwest::Client,
    trackers: Mutex<HashMap<String, CheckTracker>>,
}

/// How much of a health-check body is read: the reason is one short line.
const MAX_BODY: usize = 4096;

impl Default for HealthChecker {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            // The check asks "is this pod well", not "who is it": pod IPs carry no verifiable name.
            .tls_danger_accept_invalid_certs(true)
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            client,
            trackers: Mutex::new(HashMap::new()),
        }
    }
}

impl HealthChecker {
    /// One request to `url`.
    pub async fn check(&self, url: &str, timeout: Duration) -> CheckOutcome {
        let request = async {
            let mut response = self.client.get(url).send().await?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while body.len() < MAX_BODY
                && let Some(chunk) = response.chunk().await?
            {
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, body))
        };
        match tokio::time::timeout(timeout, request).await {
            Err(_) => {
                CheckOutcome::Unreachable(format!("no answer within {}s", timeout.as_secs_f64()))
            }
            Ok(Err(error)) => CheckOutcome::Unreachable(crate::error_chain::root_cause(&error)),
            Ok(Ok((status, body))) => classify(status, &String::from_utf8_lossy(&body)),
        }
    }

    /// Probes every pod with an IP, concurrently; returns each pod's debounced state.
    pub async fn probe(
        &self,
        pods: &[Arc<PodInfo>],
        config: &HealthCheckConfig,
    ) -> HashMap<String, ActiveState> {
        let checks = pods.iter().filter_map(|pod| {
            let url = check_url(config, *pod.ips.first()?);
            Some(async move { (pod.name.clone(), self.check(&url, config.timeout).await) })
        });
        let outcomes = futures::future::join_all(checks).await;
        let mut trackers = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        let present: HashSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        trackers.retain(|name, _| present.contains(name.as_str()));
        outcomes
            .into_iter()
            .filter_map(|(name, outcome)| {
                let state = trackers.entry(name.clone()).or_default().record(
                    &outcome,
                    config.failure_threshold,
                    config.success_threshold,
                )?;
                Some((name, state))
            })
            .collect()
    }
}

/// The health-check URL of a pod at `ip` (its primary address; an IPv6 address in brackets).
pub fn check_url(config: &HealthCheckConfig, ip: IpAddr) -> String {
    // `SocketAddr` writes `[v6]:port` and `v4:port`.
    let address = std::net::SocketAddr::new(ip, config.port);
    format!("{}://{address}{}", config.scheme, config.path)
}

/// What the policies read besides health: pods, the backend and the catalogue.
pub struct Inputs {
    /// Pods and Deployments.
    pub inventory: Arc<PodInventory>,
    /// Backend answers.
    pub cache: Arc<QueryCache>,
    /// The load metrics.
    pub catalog: Catalog,
    /// The `rate()` window of the catalogue's metrics.
    pub rate_window: Duration,
    /// Where the policies' gauges go.
    pub metrics: Arc<Metrics>,
}

/// A policy's latest outcome.
pub type Outcome = Result<Arc<Decision>, String>;

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
    pub async fn evaluate(&self, inputs: &Inputs, now: i64) -> Outcome {
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
            match inputs.cache.query(&promql).await {
                Ok(answer) => Some(by_pod(&answer.samples)),
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
        let load_answer = inputs.cache.query(&load_query).await.map_err(|e| {
            format!(
                "unable to fetch the load metric {}: {e}",
                self.config.load_metric
            )
        })?;
        let per_pod = by_pod(&load_answer.samples);
        let load: f64 = pods
            .iter()
            .filter_map(|p| per_pod.get(&p.name))
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
    pub async fn tick(&self, inputs: &Inputs) {
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

    fn export(&self, metrics: &Metrics, decision: &Decision) {
        let target = &self.config.target;
        let labels = PolicyLabels {
            namespace: target.namespace.clone(),
            deployment: target.deployment.clone(),
            policy: self.config.name.clone(),
        };
        metrics
            .scale_on_failure_replicas
            .get_or_create(&labels)
            .set(decision.replicas.into());
        metrics
            .unhealthy_pods
            .get_or_create(&labels)
            .set(decision.failing_now.len() as i64);
        let mut exported = self.exported_pods.lock().unwrap_or_else(|e| e.into_inner());
        let state_labels = |pod: &str, state: PodState| PodStateLabels {
            namespace: target.namespace.clone(),
            pod: pod.to_owned(),
            state: state.as_str(),
        };
        const STATES: [PodState; 4] = [
            PodState::Healthy,
            PodState::Failing,
            PodState::Maintenance,
            PodState::Unknown,
        ];
        for gone in exported.iter().filter(|p| !decision.pods.contains_key(*p)) {
            for state in STATES {
                metrics.pod_health.remove(&state_labels(gone, state));
            }
        }
        for (pod, health) in &decision.pods {
            for state in STATES {
                metrics
                    .pod_health
                    .get_or_create(&state_labels(pod, state))
                    .set(i64::from(state == health.state));
            }
        }
        *exported = decision.pods.keys().cloned().collect();
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
    pub async fn run(self: Arc<Self>, inputs: Arc<Inputs>) {
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

fn by_pod(samples: &[crate::source::Sample]) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter_map(|s| Some((s.labels.get("pod")?.clone(), s.value)))
        .collect()
}

/// Every configured policy.
#[derive(Default)]
pub struct FailurePolicies {
    policies: Vec<Arc<FailurePolicy>>,
}

impl FailurePolicies {
    /// The policies of the configuration.
    pub fn new(configs: &[ScaleOnFailureConfig]) -> Self {
        Self {
            policies: configs
                .iter()
                .cloned()
                .map(|c| Arc::new(FailurePolicy::new(c)))
                .collect(),
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

    /// The policy for a Deployment.
    pub fn for_deployment(&self, namespace: &str, deployment: &str) -> Option<&Arc<FailurePolicy>> {
        self.policies.iter().find(|p| {
            p.config.target.namespace == namespace && p.config.target.deployment == deployment
        })
    }

    /// Starts one evaluation loop per policy.
    pub fn spawn(&self, inputs: Arc<Inputs>) {
        for policy in &self.policies {
            tokio::spawn(policy.clone().run(inputs.clone()));
        }
    }
}

#[cfg(test)]
mod tests;
