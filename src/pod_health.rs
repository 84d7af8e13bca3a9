//! Per-pod health for the scale-on-failure policies: the pod's status, kubelet liveness-probe failures from
//! Prometheus, and the Security Server health check on port 5588 (X-Road's PR-OPMON, UG-SS and the Sidecar
//! user guide), combined into one state per pod.
//!
//! Classification, debouncing and assessment are pure functions; [`HealthChecker`] is the I/O edge that
//! probes the pods.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{HealthCheckConfig, SignalsConfig};
use crate::inventory::PodInfo;
use crate::policy::{PodHealth, PodState};

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
/// use xroad_metrics_adapter::pod_health::{classify, CheckOutcome};
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

#[cfg(test)]
mod tests;
