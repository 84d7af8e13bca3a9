//! Scale-on-failure end to end: scenario tests that replay time through the policy and a model of the HPA
//! controller; the active health check against fake Security Server health endpoints (the answers of
//! X-Road's PR-OPMON, UG-SS and the Sidecar user guide, byte for byte, on loopback addresses standing in for pod IPs);
//! kubelet liveness-probe failures from a real Prometheus; and the served Object metric through the real
//! `kubectl`.

mod support;

use std::time::Duration;

use support::health_endpoint::{Answer, HealthEndpoint};
use support::hpa_model::{HpaModel, SYNC_PERIOD};
use support::*;
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::hpa::{self, DEFAULT_TOLERANCE};
use xroad_metrics_adapter::pod_health::{CheckOutcome, HealthChecker};
use xroad_metrics_adapter::policy::{PodHealth, PodState, PolicyTracker, ScaleOnFailurePolicy};
use xroad_metrics_adapter::quantity::Quantity;

// ---------------------------------------------------------------------------------------------------------
// Scenarios: the policy and the modelled HPA over simulated time.
// ---------------------------------------------------------------------------------------------------------

/// Total load 1000 msg/s, 100 per pod at target: 10 pods needed.
const LOAD: f64 = 1000.0;
const TARGET_PER_POD: i64 = 100_000;

/// A simulated Deployment behind a Service: pods share the load evenly among those that serve.
struct Cluster {
    hpa: HpaModel,
    tracker: PolicyTracker,
    /// State of pod i at time t.
    state_of: Box<dyn Fn(usize, i64) -> PodState>,
    tolerance: hpa::Tolerance,
}

impl Cluster {
    fn new(state_of: impl Fn(usize, i64) -> PodState + 'static) -> Self {
        Self {
            hpa: HpaModel::new(10, 2, 30),
            tracker: PolicyTracker::new(ScaleOnFailurePolicy {
                capacity_per_pod: 100.0,
                min_healthy: 2,
                max_extra: 5,
                max_replicas: None,
                fail_for: Duration::from_secs(30),
                recover_for: Duration::from_secs(60),
            }),
            state_of: Box::new(state_of),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// One HPA sync: the Pods metric (per-pod throughput; failing pods report nothing, maintenance pods 0)
    /// and the policy's Object metric with `AverageValue: 1`.
    fn sync(&mut self, t: i64, with_policy: bool) -> u32 {
        let n = self.hpa.replicas as usize;
        let states: Vec<PodState> = (0..n).map(|i| (self.state_of)(i, t)).collect();
        let serving = states
            .iter()
            .filter(|s| **s == PodState::Healthy)
            .count()
            .max(1);
        // Failing pods report nothing, maintenance pods 0.
        let pods: Vec<hpa::Pod> = (0..n)
            .map(|i| hpa::Pod::running(&format!("pod-{i}")))
            .collect();
        let values: hpa::Samples = states
            .iter()
            .enumerate()
            .filter_map(|(i, state)| {
                let value = match state {
                    PodState::Healthy => (LOAD / serving as f64 * 1000.0) as i64,
                    PodState::Maintenance => 0,
                    _ => return None,
                };
                Some((format!("pod-{i}"), hpa::Sample::of(value)))
            })
            .collect();
        let pods = hpa::calculator::pods_average_value(
            &values,
            &pods,
            TARGET_PER_POD,
            self.hpa.replicas,
            self.tolerance,
            None,
        )
        .map_or(self.hpa.replicas, |r| r.replicas);
        let mut proposals = vec![pods];
        if with_policy {
            let health: Vec<PodHealth> = states
                .iter()
                .enumerate()
                .map(|(i, state)| PodHealth {
                    pod: format!("pod-{i}"),
                    state: *state,
                    reasons: vec![],
                    failing_since: None,
                })
                .collect();
            let decision = self.tracker.evaluate(t, LOAD, &health);
            proposals.push(
                hpa::calculator::average_value(
                    i64::from(decision.replicas) * 1000,
                    1000,
                    self.hpa.replicas,
                    self.tolerance,
                )
                .map_or(self.hpa.replicas, |p| p.replicas),
            );
        }
        self.hpa.sync(t, &proposals)
    }

    /// Replica counts at each sync from 0 to `until`.
    fn run(&mut self, until: i64, with_policy: bool) -> Vec<(i64, u32)> {
        (0..=until)
            .step_by(SYNC_PERIOD as usize)
            .map(|t| (t, self.sync(t, with_policy)))
            .collect()
    }
}

fn at(timeline: &[(i64, u32)], t: i64) -> u32 {
    timeline
        .iter()
        .rev()
        .find(|(time, _)| *time <= t)
        .unwrap()
        .1
}

#[test]
fn two_failing_pods_of_ten_bring_two_more_and_give_them_back_after_recovery() {
    // Pods 3 and 7 fail from t=60 s to t=600 s; pods added later are healthy.
    let mut cluster = Cluster::new(|i, t| {
        if (i == 3 || i == 7) && (60..600).contains(&t) {
            PodState::Failing
        } else {
            PodState::Healthy
        }
    });
    let timeline = cluster.run(1200, true);
    assert_eq!(at(&timeline, 45), 10);
    assert_eq!(
        at(&timeline, 75),
        10,
        "failing for less than failFor (30 s) does not count yet"
    );
    assert_eq!(at(&timeline, 90), 12, "counted at 90 s: 10 + 2");
    assert_eq!(at(&timeline, 585), 12, "stable while they fail");
    // Recovered at 600, stop counting at 660, then the 300 s downscale stabilization window.
    assert_eq!(at(&timeline, 900), 12, "still inside the scale-down window");
    assert_eq!(
        at(&timeline, 975),
        10,
        "back to 10 after recoverFor + the scale-down window"
    );
    assert!(
        timeline.iter().all(|(_, r)| *r == 10 || *r == 12),
        "no other size: {timeline:?}"
    );
}

#[test]
fn without_the_policy_the_hpa_stays_at_ten_while_two_pods_fail() {
    let mut cluster = Cluster::new(|i, t| {
        if (i == 3 || i == 7) && t >= 60 {
            PodState::Failing
        } else {
            PodState::Healthy
        }
    });
    let timeline = cluster.run(600, false);
    assert!(timeline.iter().all(|(_, r)| *r == 10), "{timeline:?}");
}

#[test]
fn a_pod_in_maintenance_changes_nothing() {
    let mut cluster = Cluster::new(|i, t| {
        if i == 4 && t >= 60 {
            PodState::Maintenance
        } else {
            PodState::Healthy
        }
    });
    let timeline = cluster.run(900, true);
    assert!(timeline.iter().all(|(_, r)| *r == 10), "{timeline:?}");
}

#[test]
fn a_flapping_pod_causes_no_oscillation() {
    // Fails and recovers every 20 s: never failing for failFor (30 s) in a row.
    let mut cluster = Cluster::new(|i, t| {
        if i == 5 && (t / 20) % 2 == 1 {
            PodState::Failing
        } else {
            PodState::Healthy
        }
    });
    let timeline = cluster.run(1200, true);
    assert!(timeline.iter().all(|(_, r)| *r == 10), "{timeline:?}");
}

#[test]
fn one_failure_in_ten_is_inside_the_default_tolerance_and_tolerance_zero_fixes_it() {
    let one_failing = |i: usize, t: i64| {
        if i == 0 && t >= 60 {
            PodState::Failing
        } else {
            PodState::Healthy
        }
    };
    let mut default = Cluster::new(one_failing);
    assert_eq!(
        at(&default.run(300, true), 300),
        10,
        "11/10 = 1.1 is within the inclusive 10 % band"
    );
    let mut strict = Cluster::new(one_failing);
    strict.tolerance = hpa::Tolerance::both(0.0);
    assert_eq!(
        at(&strict.run(300, true), 300),
        11,
        "behavior.scaleUp.tolerance: 0"
    );
}

// ---------------------------------------------------------------------------------------------------------
// The active health check against fake Security Server health endpoints.
// ---------------------------------------------------------------------------------------------------------
#[tokio::test]
async fn health_check_answers_are_classified_like_the_security_server_means_them() {
    let port = free_port();
    let _a = HealthEndpoint::start("127.0.0.21", port, Answer::Healthy).await;
    let _b = HealthEndpoint::start(
        "127.0.0.22",
        port,
        Answer::Failing(
            "Fetching health check response timed out for: Authentication key OCSP status",
        ),
    )
    .await;
    let _c = HealthEndpoint::start("127.0.0.23", port, Answer::Maintenance).await;
    let _d = HealthEndpoint::start("127.0.0.24", port, Answer::Hang).await;
    let checker = HealthChecker::default();
    let timeout = Duration::from_secs(1);
    let url = |ip: &str| format!("http://{ip}:{port}/");

    assert_eq!(
        checker.check(&url("127.0.0.21"), timeout).await,
        CheckOutcome::Ok
    );
    assert_eq!(
        checker.check(&url("127.0.0.22"), timeout).await,
        CheckOutcome::Failing {
            reason: "timeout",
            detail: "Fetching health check response timed out for: Authentication key OCSP status"
                .into()
        }
    );
    assert_eq!(
        checker.check(&url("127.0.0.23"), timeout).await,
        CheckOutcome::Maintenance
    );
    let started = std::time::Instant::now();
    assert_eq!(
        checker.check(&url("127.0.0.24"), timeout).await,
        CheckOutcome::Unreachable("no answer within 1s".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout bounds a hung socket"
    );
    match checker.check(&url("127.0.0.25"), timeout).await {
        CheckOutcome::Unreachable(why) => assert!(why.contains("refused"), "{why}"),
        other => panic!("a closed port is unreachable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// End to end: real Prometheus (load and liveness-probe failures), fake health endpoints, served metric.
// ---------------------------------------------------------------------------------------------------------

/// The Sidecar inventory with the Secondary pods' IPs moved to loopback addresses the fakes listen on.
fn loopback_inventory(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(INVENTORY)
        .unwrap()
        .replace("podIP: 10.42.0.1", "podIP: 127.0.0.3");
    let path = dir.join("inventory.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Liveness-probe counters as the kubelet exports them: pod B fails every 30 s, the others succeed.
fn probe_counters() -> Vec<Counter> {
    let probe = |pod: &str, result: &str, per_second: f64| {
        Counter::new(
            "prober_probe_total",
            &[
                ("namespace", NAMESPACE),
                ("pod", pod),
                ("container", "security-server-sidecar"),
                ("probe_type", "Liveness"),
                ("result", result),
            ],
            per_second,
        )
    };
    vec![
        probe(SECONDARY_A, "successful", 0.1),
        probe(SECONDARY_B, "failed", 1.0 / 30.0),
        probe(SECONDARY_C, "successful", 0.1),
    ]
}

fn policy_yaml(port: u16) -> String {
    format!(
        "scaleOnFailure:\n- name: secondaries\n  target: {{namespace: sidecar, deployment: security-server-sidecar-secondary}}\n  \
         load: {{metric: container_network_receive_packets_per_second, capacityPerPod: 10}}\n  minHealthy: 2\n  failFor: 0s\n  recoverFor: 0s\n  \
         signals:\n    healthCheck: {{port: {port}, timeout: 1s, failureThreshold: 1}}\n"
    )
}

fn policy_config(port: u16) -> Config {
    Config::parse("test.yaml", &policy_yaml(port)).unwrap()
}

const DEPLOYMENT_PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary";

#[tokio::test(flavor = "multi_thread")]
async fn failing_pods_raise_the_served_replica_count_and_kubectl_reads_it() {
    let prometheus = Prometheus::start(&[sidecar_traffic(), probe_counters()].concat()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Secondary A (127.0.0.31) healthy, B (.32) healthy on 5588 but failing its liveness probe, C (.33) in
    // maintenance.
    let _a = HealthEndpoint::start("127.0.0.31", port, Answer::Healthy).await;
    let _b = HealthEndpoint::start("127.0.0.32", port, Answer::Healthy).await;
    let _c = HealthEndpoint::start("127.0.0.33", port, Answer::Maintenance).await;
    let state = adapter(
        &prometheus.url,
        policy_config(port),
        &loopback_inventory(dir.path()),
    )
    .await;

    let (code, status) = get(
        &state,
        &format!("{DEPLOYMENT_PATH}/xroad_scale_on_failure_replicas"),
    )
    .await;
    assert_eq!(code, 404, "nothing evaluated yet: {status}");

    let configured = state.configured();
    let policy = configured.policies.all()[0].clone();
    policy.tick(configured.policies.context()).await;
    let decision = policy.latest().unwrap().unwrap();
    assert_eq!(decision.load, 50.0, "12.5 + 17.5 + 20 packets/s");
    assert_eq!(decision.failing_now, [SECONDARY_B]);
    assert_eq!(decision.maintenance, [SECONDARY_C]);
    assert!(
        decision.pods[SECONDARY_B].reasons[0].starts_with("liveness probe failed"),
        "{:?}",
        decision.pods[SECONDARY_B]
    );
    assert_eq!(
        decision.explanation,
        "max(minHealthy 2, ceil(load 50.000 / capacityPerPod 10)=5) + failing 1 = 6"
    );

    let (code, list) = get(
        &state,
        &format!("{DEPLOYMENT_PATH}/xroad_scale_on_failure_replicas"),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        list["items"][0]["describedObject"],
        serde_json::json!({"kind": "Deployment", "namespace": "sidecar", "name": "security-server-sidecar-secondary", "apiVersion": "apps/v1"})
    );
    assert_eq!(list["items"][0]["value"], "6");
    let (_, unhealthy) = get(&state, &format!("{DEPLOYMENT_PATH}/unhealthy_pods")).await;
    assert_eq!(unhealthy["items"][0]["value"], "1");
    let (_, external) = get(
        &state,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/xroad_scale_on_failure_replicas?labelSelector=deployment%3Dsecurity-server-sidecar-secondary",
    )
    .await;
    assert_eq!(external["items"][0]["value"], "6");
    assert_eq!(
        external["items"][0]["metricLabels"]["policy"],
        "secondaries"
    );
    let (_, metrics) = get(&state, "/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("xroad_scale_on_failure_replicas{namespace=\"sidecar\",deployment=\"security-server-sidecar-secondary\",policy=\"secondaries\"} 6"), "{metrics}");
    assert!(metrics.contains(&format!("xroad_pod_health_state{{namespace=\"sidecar\",pod=\"{SECONDARY_C}\",state=\"maintenance\"}} 1")));

    // The real kubectl over TLS reads the same value.
    let adapter = TlsAdapter::start(state.clone()).await;
    let list = adapter
        .kubectl_json(
            dir.path(),
            &format!("{DEPLOYMENT_PATH}/xroad_scale_on_failure_replicas"),
        )
        .await;
    assert_eq!(list["items"][0]["value"], "6");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_endpoint_and_a_hung_one_both_count_as_failing() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _a = HealthEndpoint::start(
        "127.0.0.31",
        port,
        Answer::Failing("Getting OCSP response for authentication key failed."),
    )
    .await;
    let _b = HealthEndpoint::start("127.0.0.32", port, Answer::Hang).await;
    let _c = HealthEndpoint::start("127.0.0.33", port, Answer::Healthy).await;
    let state = adapter(
        &prometheus.url,
        policy_config(port),
        &loopback_inventory(dir.path()),
    )
    .await;
    let configured = state.configured();
    let policy = configured.policies.all()[0].clone();
    policy.tick(configured.policies.context()).await;
    let decision = policy.latest().unwrap().unwrap();
    assert_eq!(decision.failing_now, [SECONDARY_A, SECONDARY_B]);
    assert_eq!(
        decision.pods[SECONDARY_A].reasons,
        ["health check: ocsp_fetch: Getting OCSP response for authentication key failed."]
    );
    assert_eq!(
        decision.pods[SECONDARY_B].reasons,
        ["health check: unreachable: no answer within 1s"]
    );
    assert_eq!(decision.replicas, 7, "5 for the load + 2 failing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_without_its_load_metric_fails_loudly_instead_of_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let state = adapter(
        &format!("http://127.0.0.1:{}", free_port()),
        policy_config(port),
        &loopback_inventory(dir.path()),
    )
    .await;
    let configured = state.configured();
    let policy = configured.policies.all()[0].clone();
    policy.tick(configured.policies.context()).await;
    let (code, status) = get(
        &state,
        &format!("{DEPLOYMENT_PATH}/xroad_scale_on_failure_replicas"),
    )
    .await;
    assert_eq!(code, 500, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("Internal error occurred: unable to compute the scale-on-failure metrics: unable to fetch the load metric container_network_receive_packets_per_second"),
        "{message}"
    );
    let (code, _) = get(&state, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/other/xroad_scale_on_failure_replicas").await;
    assert_eq!(code, 404, "no policy for that Deployment");
}

#[tokio::test]
async fn discovery_lists_the_policy_metrics_only_when_a_policy_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let with = adapter(
        "http://127.0.0.1:9",
        policy_config(5588),
        &loopback_inventory(dir.path()),
    )
    .await;
    let (_, list) = get(&with, "/apis/custom.metrics.k8s.io/v1beta2").await;
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"deployments.apps/xroad_scale_on_failure_replicas"),
        "{names:?}"
    );
    assert!(names.contains(&"deployments.apps/unhealthy_pods"));
    let (_, external) = get(&with, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert!(
        external
            .to_string()
            .contains("\"name\":\"xroad_scale_on_failure_replicas\""),
        "{external}"
    );
    let without = state("http://127.0.0.1:9");
    let (_, list) = get(&without, "/apis/custom.metrics.k8s.io/v1beta2").await;
    assert!(!list.to_string().contains("xroad_scale_on_failure_replicas"));
}

/// The Secondary pods of the fixture with their signals: A healthy, B failing its liveness probe (the probe
/// counters), C answering its health check with an expired global configuration; their traffic in a real
/// Prometheus, and the policy's configuration file.
struct FailingSidecar {
    prometheus: Prometheus,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    _endpoints: [HealthEndpoint; 3],
}

impl FailingSidecar {
    async fn start() -> Self {
        let prometheus = Prometheus::start(&[sidecar_traffic(), probe_counters()].concat()).await;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let endpoints = [
            HealthEndpoint::start("127.0.0.31", port, Answer::Healthy).await,
            HealthEndpoint::start("127.0.0.32", port, Answer::Healthy).await,
            HealthEndpoint::start(
                "127.0.0.33",
                port,
                Answer::Failing("Global configuration is expired"),
            )
            .await,
        ];
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, policy_yaml(port)).unwrap();
        Self {
            prometheus,
            dir,
            config,
            _endpoints: endpoints,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_prints_each_pods_health_the_load_and_the_replica_count() {
    let sidecar = FailingSidecar::start().await;
    let (prometheus, dir, config) = (&sidecar.prometheus, sidecar.dir.path(), &sidecar.config);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
        .args(["explain", "--prometheus-url", &prometheus.url, "--config"])
        .arg(config)
        .arg("--inventory")
        .arg(loopback_inventory(dir))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("policy secondaries: deployment sidecar/security-server-sidecar-secondary"),
        "{stdout}"
    );
    let line = |pod: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(pod))
            .unwrap_or_else(|| panic!("{pod}: {stdout}"))
            .to_owned()
    };
    assert!(
        line(SECONDARY_A).contains("healthy") && line(SECONDARY_A).contains("health check: ok")
    );
    assert!(
        line(SECONDARY_B).contains("failing")
            && line(SECONDARY_B).contains("liveness probe failed")
    );
    assert!(
        line(SECONDARY_C).contains("failing")
            && line(SECONDARY_C).contains("globalconf_expired: Global configuration is expired")
    );
    assert!(
        stdout.contains(
            "load: container_network_receive_packets_per_second = 50.000 (capacityPerPod 10)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "replicas: max(minHealthy 2, ceil(load 50.000 / capacityPerPod 10)=5) + failing 2 = 7"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("an HPA Object metric (AverageValue 1) with 3 replicas running proposes 7"),
        "{stdout}"
    );
}

/// The Sidecar's HPA on all three kinds of metric this adapter serves.
const SIDECAR_HPA: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: secondary, namespace: sidecar}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: security-server-sidecar-secondary}
  minReplicas: 2
  maxReplicas: 6
  behavior:
    scaleUp:
      tolerance: '0'
      policies: [{type: Pods, value: 2, periodSeconds: 60}]
  metrics:
  - type: Pods
    pods:
      metric: {name: container_network_receive_packets_per_second}
      target: {type: AverageValue, averageValue: '10'}
  - type: Object
    object:
      describedObject: {apiVersion: apps/v1, kind: Deployment, name: security-server-sidecar-secondary}
      metric: {name: xroad_scale_on_failure_replicas}
      target: {type: AverageValue, averageValue: '1'}
  - type: External
    external:
      metric: {name: container_network_receive_packets_per_second}
      target: {type: AverageValue, averageValue: '40'}
";

#[tokio::test(flavor = "multi_thread")]
async fn explain_hpa_file_walks_an_hpa_through_one_sync() {
    let sidecar = FailingSidecar::start().await;
    let (prometheus, dir, config) = (&sidecar.prometheus, sidecar.dir.path(), &sidecar.config);
    let hpa = dir.join("hpa.yaml");
    std::fs::write(&hpa, SIDECAR_HPA).unwrap();
    let inventory = loopback_inventory(dir);
    let explain = |output: &'static str| {
        let (config, hpa, inventory, url) = (
            config.clone(),
            hpa.clone(),
            inventory.clone(),
            prometheus.url.clone(),
        );
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_xroad-metrics-adapter"))
                .args([
                    "explain",
                    "--prometheus-url",
                    &url,
                    "--output",
                    output,
                    "--config",
                ])
                .arg(&config)
                .arg("--inventory")
                .arg(&inventory)
                .arg("--hpa-file")
                .arg(&hpa)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
        }
    };
    let json: serde_json::Value = serde_json::from_str(&explain("json").await).unwrap();
    let metric = |i: usize| &json["metrics"][i];
    // The Pods metric: 12.5, 17.5 and 20 packets/s against 10: ratio 1.667, ceil(1.667 × 3) = 5.
    assert_eq!(metric(0)["current"], "averageValue 16666m", "{json:#}");
    assert_eq!(metric(0)["proposal"], 5, "{json:#}");
    // The policy: load 50 over capacity 10 plus the 2 failing pods = 7, against averageValue 1.
    assert_eq!(metric(1)["value"], "7", "{json:#}");
    assert_eq!(metric(1)["proposal"], 7, "{json:#}");
    // The External metric: whatever sum the adapter serves, the proposal is ceil(sum / 40).
    let sum = metric(2)["value"]
        .as_str()
        .unwrap()
        .parse::<Quantity>()
        .unwrap();
    assert_eq!(
        metric(2)["proposal"],
        (sum.as_f64() / 40.0).ceil() as u64,
        "{json:#}"
    );
    // The highest, 7, is held to 3 + 2 by the scale-up policy.
    assert_eq!(
        json["steps"][0],
        "highest proposal: 7 from metric [1] Object xroad_scale_on_failure_replicas on Deployment security-server-sidecar-secondary"
    );
    assert_eq!(
        json["conditions"]["ScalingLimited"], "ScaleUpLimit",
        "{json:#}"
    );
    assert_eq!(json["next_replicas"], 5, "{json:#}");
    assert_eq!(
        json["tolerance"]["scale_up"], 0.0,
        "the HPA's own tolerance"
    );
    let text = explain("text").await;
    for line in [
        "HPA sidecar/secondary scales Deployment/security-server-sidecar-secondary: spec.replicas 3 (status.replicas 3), min 2, max 6",
        "current averageValue 16666m, ratio 1.667 -> proposes 5: ceil(ratio × pods with values)",
        "limits and rate: 5 (ScaleUpLimit: the desired replica count is increasing faster than the maximum scale rate)",
        "-> 5 replicas (now 3)",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}
