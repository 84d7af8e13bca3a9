use super::*;
use crate::compat::naming::metric_name;

/// The X-Road Sidecar guide's rule (v1.1–1.4), as operators run it today.
const SIDECAR_GUIDE_RULE: &str = r#"
rules:
- seriesQuery: 'container_network_receive_packets_total{namespace="sidecar"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
  name: {matches: "^(.*)_total", as: "${1}_per_minute"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"#;

fn served_name(rule: &Rule, series: &str) -> Option<String> {
    metric_name(&rule.filters, &rule.naming, series)
}

#[test]
fn the_sidecar_guides_rule_loads_and_is_warned_about_its_short_window() {
    let config = AdapterConfig::parse(SIDECAR_GUIDE_RULE).unwrap();
    let rule = &config.rules[0];
    assert_eq!(
        served_name(rule, "container_network_receive_packets_total").as_deref(),
        Some("container_network_receive_packets_per_minute")
    );
    assert_eq!(
        rule.resources.describe(),
        "namespace -> namespaces, node -> nodes, pod -> pods"
    );
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].contains("rate window of 60s"));
}

#[test]
fn the_helm_charts_default_rules_name_series_as_the_adapter_does() {
    let config = AdapterConfig::parse("rules:\n  default: true\nprometheus:\n  url: http://prometheus.default.svc\n  port: 9090\nreplicas: 1\n").unwrap();
    assert_eq!(config.rules.len(), 6);
    // Discovery gives rules 1-3 only container_ series and rules 4-6 only the others (their seriesQuery).
    let names = |series: &str| -> Vec<String> {
        let rules = if series.starts_with("container_") {
            &config.rules[..3]
        } else {
            &config.rules[3..]
        };
        rules
            .iter()
            .filter_map(|r| served_name(r, series))
            .collect()
    };
    assert_eq!(
        names("container_network_receive_packets_total"),
        ["network_receive_packets"]
    );
    assert_eq!(names("container_cpu_usage_seconds_total"), ["cpu_usage"]);
    assert_eq!(
        names("container_memory_working_set_bytes"),
        ["memory_working_set_bytes"]
    );
    // Rules 4-6 (non-container series): counters lose _total or _seconds_total, gauges keep their name.
    assert_eq!(names("http_requests_total"), ["http_requests"]);
    assert_eq!(names("process_cpu_seconds_total"), ["process_cpu"]);
    assert_eq!(names("kube_pod_info"), ["kube_pod_info"]);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn helm_values_combine_custom_external_and_resource_rules() {
    let values = r#"
image: {repository: registry.k8s.io/prometheus-adapter/prometheus-adapter}
rules:
  default: false
  custom:
  - seriesQuery: 'xroad_opmon_requests_total{namespace!="",pod!=""}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
    name: {matches: "^xroad_opmon_requests_total$", as: "xroad_messages_per_second"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
  external:
  - seriesQuery: '{__name__="xroad_opmon_requests_total",deployment!=""}'
    resources: {namespaced: false}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (deployment)'
  resource:
    cpu:
      containerQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[3m])) by (<<.GroupBy>>)'
      nodeQuery: 'sum(rate(node_cpu_seconds_total{mode!="idle",<<.LabelMatchers>>}[3m])) by (<<.GroupBy>>)'
      resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}
      containerLabel: container
    memory:
      containerQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""}) by (<<.GroupBy>>)'
      nodeQuery: 'sum(node_memory_MemTotal_bytes{<<.LabelMatchers>>} - node_memory_MemAvailable_bytes{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
      resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}
      containerLabel: container
    window: 3m
"#;
    let config = AdapterConfig::parse(values).unwrap();
    assert_eq!(config.rules.len(), 1);
    assert_eq!(
        served_name(&config.rules[0], "xroad_opmon_requests_total").as_deref(),
        Some("xroad_messages_per_second")
    );
    assert_eq!(config.external_rules.len(), 1);
    assert!(!config.external_rules[0].resources.namespaced);
    let resource = config.resource_rules.unwrap();
    assert_eq!(resource.window, Duration::from_secs(180));
    assert_eq!(resource.memory.container_label, "container");
}

#[test]
fn unknown_keys_are_errors_with_their_line_and_column() {
    let text = "rules:
- seriesQuery: 'up'
  metricsQuery: 'up'
  metricQuery: 'typo'
";
    let error = AdapterConfig::parse(text).unwrap_err().to_string();
    assert!(error.contains("metricQuery"), "{error}");
    assert!(error.contains("line 4") || error.contains("4:3"), "{error}");
}

#[test]
fn each_broken_rule_is_named_by_section_and_position() {
    let both = "externalRules:\n- seriesQuery: up\n  metricsQuery: up\n\
                - seriesQuery: up\n  seriesFilters: [{is: a, isNot: b}]\n  metricsQuery: up\n";
    assert_eq!(
        AdapterConfig::parse(both).unwrap_err().to_string(),
        "externalRules[1]: a seriesFilters entry needs exactly one of is and isNot"
    );
    let template =
        "rules:\n- seriesQuery: up\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers}'\n";
    assert!(
        AdapterConfig::parse(template)
            .unwrap_err()
            .to_string()
            .starts_with("rules[0]: metricsQuery: template: unclosed action")
    );
    let regex = "rules:\n- seriesQuery: up\n  name: {matches: '('}\n  metricsQuery: up\n";
    assert!(
        AdapterConfig::parse(regex)
            .unwrap_err()
            .to_string()
            .starts_with("rules[0]: name.matches \"(\" is not a valid regular expression")
    );
}

#[test]
fn queries_that_cannot_be_matched_to_objects_are_warned_about() {
    let text = "rules:
- seriesQuery: up
  resources: {template: <<.Resource>>}
  metricsQuery: 'sum(up{<<.LabelMatchers>>})'
";
    let config = AdapterConfig::parse(text).unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert!(config.warnings[0].contains("does not group by"));
    let no_namespace = "rules:
- seriesQuery: up
  resources: {overrides: {pod: {resource: pod}}}
  metricsQuery: 'sum(up{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
";
    let config = AdapterConfig::parse(no_namespace).unwrap();
    assert!(config.warnings[0].contains("no label maps to namespaces"));
}

#[test]
fn the_chart_values_may_point_at_an_existing_configmap_instead() {
    assert!(matches!(
        AdapterConfig::parse("rules:
  existing: my-adapter-config
"),
        Err(RulesError::Existing(name)) if name == "my-adapter-config"
    ));
}

#[test]
fn only_adapter_configs_are_recognised_as_such() {
    assert!(looks_like_adapter_config(SIDECAR_GUIDE_RULE));
    assert!(looks_like_adapter_config(
        "rules: {default: true}
"
    ));
    assert!(!looks_like_adapter_config(
        "prometheus: {url: http://p:9090}
"
    ));
    assert!(!looks_like_adapter_config(""));
}
