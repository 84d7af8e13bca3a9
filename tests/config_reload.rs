//! Reloading the adapter's own `--config`: a valid edit is put in force whole while requests keep being
//! answered, and anything else leaves the configuration in force serving, logged and counted.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::served::ServedAdapter;
use support::*;
use xroad_metrics_adapter::app::{Adapter, AppError, Settings};
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::server::guard::Guard;

const RATE_METRIC: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/container_network_receive_packets_per_second";

const POLICY_METRIC: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/xroad_scale_on_failure_replicas";

/// A policy on the Sidecar's Secondaries whose signals need nothing outside the test.
const POLICY: &str = "scaleOnFailure:\n- name: secondaries\n  target: {namespace: sidecar, deployment: security-server-sidecar-secondary}\n  \
     load: {metric: container_network_receive_packets_per_second, capacityPerPod: 10}\n  minHealthy: 2\n  \
     signals:\n    probes: {enabled: false}\n    healthCheck: {enabled: false, period: 1s}\n";

fn with_window(window: &str) -> String {
    format!("rateWindow: {window}\n")
}

fn parsed(yaml: &str) -> Config {
    Config::parse("config.yaml", yaml).unwrap()
}

/// The `windowSeconds` of the first value of the rate metric.
async fn served_window(adapter: &ServedAdapter) -> Option<i64> {
    let (code, text) = adapter.get(RATE_METRIC).await?;
    let list: serde_json::Value = serde_json::from_str(&text).ok()?;
    (code == 200).then(|| list["items"][0]["windowSeconds"].as_i64())?
}

async fn reloads(adapter: &ServedAdapter, reason: &str) -> bool {
    let series = format!(
        "xroad_metrics_adapter_config_reloads_total{{file=\"config\",reason=\"{reason}\"}} 1"
    );
    adapter
        .get("/metrics")
        .await
        .is_some_and(|(_, text)| text.contains(&series))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_configuration_is_put_in_force_without_a_failed_request_and_a_broken_one_is_refused()
 {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, with_window("2m")).unwrap();
    let adapter = Arc::new(
        ServedAdapter::start(&[
            "--prometheus-url",
            &prometheus.url,
            "--inventory",
            INVENTORY,
            "--config",
            config.to_str().unwrap(),
            "--config-reload-interval",
            "1s",
        ])
        .await,
    );
    adapter.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(served_window(&adapter).await, Some(120));

    // The HPA's request, asked without pause for the whole test: none may fail during a reload.
    let stop = Arc::new(AtomicBool::new(false));
    let hpa = tokio::spawn({
        let (adapter, stop) = (adapter.clone(), stop.clone());
        async move {
            let mut codes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                codes.push(adapter.get(RATE_METRIC).await.map_or(0, |(code, _)| code));
            }
            codes
        }
    });

    // An edit, picked up by the file check: a new window and a policy, served together.
    std::fs::write(&config, with_window("5m") + POLICY).unwrap();
    eventually(
        "the edited configuration is served",
        Duration::from_secs(15),
        || {
            let adapter = adapter.clone();
            async move { served_window(&adapter).await == Some(300) }
        },
    )
    .await;
    let (_, discovery) = adapter
        .get("/apis/custom.metrics.k8s.io/v1beta2")
        .await
        .unwrap();
    assert!(
        discovery.contains("deployments.apps/xroad_scale_on_failure_replicas"),
        "{discovery}"
    );
    eventually("the new policy decides", Duration::from_secs(15), || {
        let adapter = adapter.clone();
        async move {
            adapter
                .get(POLICY_METRIC)
                .await
                .is_some_and(|(code, _)| code == 200)
        }
    })
    .await;

    // A broken file, signalled: refused, and the configuration in force keeps serving.
    std::fs::write(&config, "rateWindow: [\n").unwrap();
    adapter.hang_up();
    eventually(
        "the broken configuration is counted",
        Duration::from_secs(15),
        || {
            let adapter = adapter.clone();
            async move { reloads(&adapter, "invalid").await }
        },
    )
    .await;
    assert_eq!(served_window(&adapter).await, Some(300));

    stop.store(true, Ordering::Relaxed);
    let codes = hpa.await.unwrap();
    assert!(codes.len() > 20, "{} requests", codes.len());
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert!(reloads(&adapter, "applied").await);
    assert!(
        adapter
            .log_text()
            .contains("the configuration in force keeps serving"),
        "{}",
        adapter.log_text()
    );
}

/// The adapter of the Sidecar inventory, with `--config` at `yaml`.
async fn adapter(prometheus: &Prometheus, yaml: &str) -> Adapter {
    let mut config = parsed(yaml);
    config.prometheus.url = Some(prometheus.url.parse().unwrap());
    let settings = Settings {
        inventory: Some(INVENTORY.into()),
        ..Settings::default()
    };
    Adapter::build(settings, config, Guard::anonymous())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reload_keeps_what_did_not_change() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let adapter = adapter(&prometheus, &(with_window("2m") + POLICY)).await;
    let before = adapter.state.configured();
    let mut next = adapter.config();

    next.rate_window = Duration::from_secs(300);
    assert!(adapter.reload(next.clone()).unwrap());
    let after = adapter.state.configured();
    assert_eq!(after.rate_window, Duration::from_secs(300));
    assert!(
        Arc::ptr_eq(
            before.backends.default_backend(),
            after.backends.default_backend()
        ),
        "the same backend keeps its cache"
    );
    assert!(
        Arc::ptr_eq(&before.policies.all()[0], &after.policies.all()[0]),
        "an unchanged policy keeps its memory"
    );

    assert!(
        !adapter.reload(next.clone()).unwrap(),
        "the configuration in force: nothing to do"
    );

    next.scale_on_failure[0].min_healthy = 3;
    next.refresh_interval = Duration::from_secs(5);
    adapter.reload(next).unwrap();
    let changed = adapter.state.configured();
    assert!(
        !Arc::ptr_eq(
            after.backends.default_backend(),
            changed.backends.default_backend()
        ),
        "a new refresh interval is a new cache"
    );
    assert!(!Arc::ptr_eq(
        &after.policies.all()[0],
        &changed.policies.all()[0]
    ));
    assert_eq!(changed.policies.all()[0].config.min_healthy, 3);
}

#[tokio::test]
async fn a_reload_that_only_a_restart_can_apply_or_that_does_not_fit_is_refused_whole() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let adapter = adapter(&prometheus, &with_window("2m")).await;

    let mut collecting = adapter.config();
    collecting.rate_window = Duration::from_secs(300);
    collecting.opmonitor = Some(opmonitor::config("http://127.0.0.1:9/"));
    let refused = adapter.reload(collecting).unwrap_err();
    assert!(matches!(refused, AppError::RestartRequired(_)), "{refused}");
    assert!(refused.to_string().contains("opmonitor"), "{refused}");

    let mut unknown_load = parsed(POLICY);
    unknown_load.prometheus = adapter.config().prometheus;
    unknown_load.rate_window = Duration::from_secs(300);
    unknown_load.scale_on_failure[0].load_metric = "no_such_metric".into();
    let refused = adapter.reload(unknown_load).unwrap_err();
    assert!(refused.to_string().contains("no_such_metric"), "{refused}");

    assert_eq!(
        adapter.state.configured().rate_window,
        Duration::from_secs(120),
        "neither reload changed anything"
    );
    assert_eq!(adapter.config(), {
        let mut config = parsed(&with_window("2m"));
        config.prometheus.url = Some(prometheus.url.parse().unwrap());
        config
    });
}
