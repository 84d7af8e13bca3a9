//! Health-check classification with the Security Server's real answers (as X-Road's UG-SS and the Sidecar user
//! guide document them), debouncing, pod-status signals and their combination.

use std::time::Duration;

use super::*;
use crate::inventory::ContainerHealth;

const NOW: i64 = 1_800_000_000;

fn signals() -> SignalsConfig {
    crate::config::Config::parse(
        "c.yaml",
        "scaleOnFailure:\n- name: p\n  target: {namespace: n, deployment: d}\n  load: {metric: m, capacityPerPod: 1}\n",
    )
    .unwrap()
    .scale_on_failure
    .remove(0)
    .signals
}

fn running_pod() -> PodInfo {
    PodInfo {
        namespace: "sidecar".into(),
        name: "secondary-1".into(),
        labels: Default::default(),
        ips: vec!["10.0.1.11".parse().unwrap()],
        phase: "Running".into(),
        ready: true,
        terminating: false,
        deployment: Some("security-server-sidecar-secondary".into()),
        created: Some(NOW - 3600),
        ready_changed: Some(NOW - 3000),
        containers: vec![ContainerHealth {
            name: "security-server-sidecar".into(),
            restarts: 0,
            last_terminated: None,
            waiting_reason: None,
        }],
    }
}

#[test]
fn every_documented_failure_reason_maps_to_its_key() {
    let cases = [
        (
            "No authentication key available. Signer might be down.\n",
            "auth_key_missing",
        ),
        (
            "No certificate chain available in authentication key.\n",
            "auth_cert_chain",
        ),
        (
            "No end entity certificate available for authentication key.\n",
            "auth_cert_missing",
        ),
        (
            "Getting OCSP response for authentication key failed.\n",
            "ocsp_fetch",
        ),
        (
            "Authentication key OCSP response status REVOKED\n",
            "ocsp_status",
        ),
        ("ServerConf is not available\n", "serverconf_unavailable"),
        (
            "Server Conf database did not respond as expected\n",
            "serverconf_db",
        ),
        ("Global configuration is expired\n", "globalconf_expired"),
        ("At least one HSM are non operational\n", "hsm"),
        ("Memory usage above threshold\n", "memory"),
        (
            "Fetching health check response timed out for: Authentication key OCSP status\n",
            "timeout",
        ),
        (
            "Fetching health check response failed for: Server conf database status\n",
            "error",
        ),
        (
            "Fetching health check response was interrupted for for: Global conf validity\n",
            "interrupted",
        ),
        ("Something new in X-Road 9\n", "other"),
    ];
    for (body, key) in cases {
        match classify(500, body) {
            CheckOutcome::Failing { reason, detail } => {
                assert_eq!(reason, key, "{body:?}");
                assert_eq!(detail, body.trim_end());
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
    assert_eq!(
        classify(404, "nope"),
        CheckOutcome::Unreachable("unexpected HTTP status 404".into())
    );
}

#[test]
fn debouncing_follows_failure_and_success_thresholds() {
    let mut tracker = CheckTracker::default();
    let fail = CheckOutcome::Failing {
        reason: "timeout",
        detail: "t".into(),
    };
    assert_eq!(
        tracker.record(&fail, 2, 2),
        None,
        "one failure is not enough and nothing was known before"
    );
    assert_eq!(
        tracker.record(&fail, 2, 2),
        Some(ActiveState::Failing("timeout: t".into()))
    );
    assert_eq!(
        tracker.record(&CheckOutcome::Ok, 2, 2),
        Some(ActiveState::Failing("timeout: t".into()))
    );
    assert_eq!(
        tracker.record(&CheckOutcome::Ok, 2, 2),
        Some(ActiveState::Healthy)
    );
    assert_eq!(
        tracker.record(&fail, 2, 2),
        Some(ActiveState::Healthy),
        "a single failure keeps it healthy"
    );
    assert_eq!(
        tracker.record(&CheckOutcome::Maintenance, 2, 2),
        Some(ActiveState::Maintenance)
    );
    assert_eq!(
        tracker.record(&CheckOutcome::Unreachable("refused".into()), 1, 1),
        Some(ActiveState::Failing("unreachable: refused".into()))
    );
}

#[test]
fn pod_status_failures_name_their_cause() {
    let window = Duration::from_secs(300);
    let grace = Duration::from_secs(600);
    assert_eq!(pod_status_failure(&running_pod(), NOW, window, grace), None);

    let mut crashing = running_pod();
    crashing.containers[0].waiting_reason = Some("CrashLoopBackOff".into());
    crashing.ready = false;
    crashing.ready_changed = Some(NOW - 600);
    assert_eq!(
        pod_status_failure(&crashing, NOW, window, grace).unwrap(),
        StatusFailure {
            why: "container security-server-sidecar is waiting: CrashLoopBackOff".into(),
            since: Some(NOW - 600)
        },
        "failing since it went unready"
    );

    let mut restarted = running_pod();
    restarted.containers[0].restarts = 3;
    restarted.containers[0].last_terminated = Some(NOW - 40);
    assert_eq!(
        pod_status_failure(&restarted, NOW, window, grace).unwrap(),
        StatusFailure {
            why: "container security-server-sidecar restarted 40s ago (3 restarts)".into(),
            since: Some(NOW - 40)
        }
    );
    restarted.containers[0].last_terminated = Some(NOW - 400);
    assert_eq!(
        pod_status_failure(&restarted, NOW, window, grace),
        None,
        "outside the restart window"
    );

    let mut not_ready = running_pod();
    not_ready.ready = false;
    not_ready.ready_changed = Some(NOW - 90);
    assert_eq!(
        pod_status_failure(&not_ready, NOW, window, grace).unwrap(),
        StatusFailure {
            why: "not Ready for 90s".into(),
            since: Some(NOW - 90)
        }
    );

    let mut starting = not_ready;
    starting.created = Some(NOW - 120);
    assert_eq!(
        pod_status_failure(&starting, NOW, window, grace),
        None,
        "starting, within the startup grace"
    );

    let mut pending = starting;
    pending.phase = "Pending".into();
    assert_eq!(pod_status_failure(&pending, NOW, window, grace), None);
    pending.created = Some(NOW - 700);
    assert_eq!(
        pod_status_failure(&pending, NOW, window, grace).unwrap(),
        StatusFailure {
            why: "Pending for 700s".into(),
            since: Some(NOW - 100),
        },
        "failing since the startup grace ran out"
    );
}

#[test]
fn maintenance_wins_then_failures_then_health() {
    let signals = signals();
    let pod = running_pod();
    let state = |failures, active: Option<ActiveState>| {
        assess(&pod, NOW, &signals, failures, active.as_ref()).state
    };
    assert_eq!(state(None, None), PodState::Healthy);
    assert_eq!(
        state(Some(0.0), Some(ActiveState::Healthy)),
        PodState::Healthy
    );
    assert_eq!(
        state(Some(2.0), Some(ActiveState::Healthy)),
        PodState::Failing
    );
    assert_eq!(
        state(None, Some(ActiveState::Failing("ocsp_fetch: x".into()))),
        PodState::Failing
    );
    assert_eq!(
        state(Some(5.0), Some(ActiveState::Maintenance)),
        PodState::Maintenance
    );

    let health = assess(
        &pod,
        NOW,
        &signals,
        Some(3.0),
        Some(&ActiveState::Failing("timeout: t".into())),
    );
    assert_eq!(
        health.reasons,
        [
            "liveness probe failed 3 time(s) in the last 120s",
            "health check: timeout: t"
        ]
    );

    let mut starting = running_pod();
    starting.ready = false;
    starting.created = Some(NOW - 30);
    assert_eq!(
        assess(&starting, NOW, &signals, None, None).state,
        PodState::Unknown
    );
}

#[tokio::test]
async fn an_ipv6_pod_is_checked_at_its_bracketed_address() {
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async { "Health check OK" });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = HealthCheckConfig {
        enabled: true,
        scheme: "http".into(),
        port,
        path: "/".into(),
        period: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        failure_threshold: 1,
        success_threshold: 1,
    };
    let ip: IpAddr = "::1".parse().unwrap();
    assert_eq!(check_url(&config, ip), format!("http://[::1]:{port}/"));
    assert_eq!(
        check_url(&config, "10.0.1.11".parse().unwrap()),
        format!("http://10.0.1.11:{port}/")
    );
    let pod = PodInfo {
        ips: vec![ip, "10.255.255.1".parse().unwrap()],
        ..running_pod()
    };
    let states = HealthChecker::default()
        .probe(&[Arc::new(pod)], &config)
        .await;
    assert_eq!(states.get("secondary-1"), Some(&ActiveState::Healthy));
}
