//! The shipped examples are valid: the adapter configuration loads, and every metric an example HPA names is
//! one the adapter serves with that configuration.

use std::path::Path;

use xroad_metrics_adapter::catalog::{Catalog, POLICY_METRICS};
use xroad_metrics_adapter::config::Config;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples");

#[test]
fn the_example_configuration_loads_with_its_policy() {
    let config = Config::load(&Path::new(EXAMPLES).join("adapter-config.yaml")).unwrap();
    let policy = &config.scale_on_failure[0];
    assert_eq!(
        policy.target.deployment,
        "security-server-sidecar-secondary"
    );
    assert!(Catalog::builtin().pod_metric(&policy.load_metric).is_some());
    let opmonitor = config
        .opmonitor
        .expect("the example configures the op-monitor collector");
    assert_eq!(
        opmonitor.security_server.server_code.as_deref(),
        Some("sidecar")
    );
    assert_eq!(opmonitor.page_size, 10_000);
}

#[test]
fn the_example_hpa_names_only_served_metrics() {
    let text = std::fs::read_to_string(Path::new(EXAMPLES).join("hpa-secondary.yaml")).unwrap();
    let hpa: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    let catalog = Catalog::builtin();
    let metrics = hpa["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2);
    for metric in metrics {
        let kind = metric["type"].as_str().unwrap();
        let source = &metric[kind.to_ascii_lowercase()];
        let name = source["metric"]["name"].as_str().unwrap();
        match kind {
            "Pods" => assert!(catalog.pod_metric(name).is_some(), "{name}"),
            "Object" => {
                assert!(POLICY_METRICS.contains(&name), "{name}");
                assert_eq!(
                    source["target"],
                    serde_json::json!({"type": "AverageValue", "averageValue": "1"})
                );
            }
            other => panic!("unexpected metric type {other}"),
        }
    }
}
