//! Detection time of the scale-on-failure policy with the default settings (health check every 10 s,
//! failureThreshold 2, timeout 8 s; failFor 30 s): from the moment a pod's health check starts failing to the
//! moment the served `xroad_scale_on_failure_replicas` changes, through the real evaluation loop, a real
//! Prometheus and a fake Security Server health endpoint (500 OCSP failure, and a hung socket).
//!
//! The baseline is the bound the defaults imply, printed beside each measurement:
//! `failureThreshold × period (+ failureThreshold × timeout for a hung socket) + failFor + period`.
//! Each trial waits a different fraction of a period before the failure, so the phase against the loop varies.
//!
//! Run with `cargo bench --bench failure_detection` (about three minutes).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::health_endpoint::{Answer, HealthEndpoint};
use support::*;
use xroad_metrics_adapter::config::Config;

const PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/xroad_scale_on_failure_replicas";

async fn replicas(
    state: &std::sync::Arc<xroad_metrics_adapter::server::AppState>,
) -> Option<String> {
    let (code, list) = get(state, PATH).await;
    (code == 200).then(|| list["items"][0]["value"].as_str().unwrap().to_owned())
}

#[tokio::main]
async fn main() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        std::fs::read_to_string(INVENTORY)
            .unwrap()
            .replace("podIP: 10.42.0.1", "podIP: 127.0.0.4"),
    )
    .unwrap();
    let port = free_port();
    let yaml = format!(
        "scaleOnFailure:\n- name: secondaries\n  target: {{namespace: sidecar, deployment: security-server-sidecar-secondary}}\n  \
         load: {{metric: container_network_receive_packets_per_second, capacityPerPod: 10}}\n  signals:\n    healthCheck: {{port: {port}}}\n"
    );
    let config = Config::parse("bench.yaml", &yaml).unwrap();
    let check = config.scale_on_failure[0].signals.health_check.clone();
    let fail_for = config.scale_on_failure[0].fail_for;
    let trials = [
        (
            Answer::Failing("Getting OCSP response for authentication key failed."),
            0.0,
        ),
        (
            Answer::Failing("Getting OCSP response for authentication key failed."),
            0.5,
        ),
        (Answer::Hang, 0.25),
    ];
    println!(
        "defaults: health check every {:?}, timeout {:?}, failureThreshold {}, failFor {:?}",
        check.period, check.timeout, check.failure_threshold, fail_for
    );
    let endpoints = [
        HealthEndpoint::start("127.0.0.41", port, Answer::Healthy).await,
        HealthEndpoint::start("127.0.0.42", port, Answer::Healthy).await,
        HealthEndpoint::start("127.0.0.43", port, Answer::Healthy).await,
    ];
    for (trial, (failure, phase)) in trials.into_iter().enumerate() {
        endpoints[1].set(Answer::Healthy);
        let state = adapter(&prometheus.url, config.clone(), &inventory).await;
        state.configured().policies.spawn();
        let before = loop {
            if let Some(value) = replicas(&state).await {
                break value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::time::sleep(check.period.mul_f64(1.0 + phase)).await;
        endpoints[1].set(failure);
        let failed_at = Instant::now();
        let after = loop {
            let value = replicas(&state).await.unwrap();
            if value != before {
                break value;
            }
            assert!(
                failed_at.elapsed() < Duration::from_secs(180),
                "no change within 3 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let hung = failure == Answer::Hang;
        let bound = check.period * check.failure_threshold
            + if hung {
                check.timeout * check.failure_threshold
            } else {
                Duration::ZERO
            }
            + fail_for
            + check.period;
        println!(
            "trial {}: {} at phase {phase:.2}: replicas {before} -> {after} after {:.1} s (bound {:?}, ratio {:.2})",
            trial + 1,
            if hung {
                "hung health check"
            } else {
                "500 OCSP failure"
            },
            failed_at.elapsed().as_secs_f64(),
            bound,
            failed_at.elapsed().as_secs_f64() / bound.as_secs_f64()
        );
    }
}
