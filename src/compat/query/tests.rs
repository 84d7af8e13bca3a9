use super::*;
use crate::compat::rules::AdapterConfig;

fn rule(yaml: &str) -> Rule {
    AdapterConfig::parse(yaml).unwrap().rules.remove(0)
}

fn external_rule(yaml: &str) -> Rule {
    AdapterConfig::parse(yaml).unwrap().external_rules.remove(0)
}

/// The Sidecar guide's rule.
fn sidecar_rule() -> Rule {
    rule(
        r#"
rules:
- seriesQuery: 'container_network_receive_packets_total{namespace="sidecar"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total", as: "${1}_per_minute"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"#,
    )
}

fn pods() -> GroupResource {
    GroupResource {
        group: String::new(),
        resource: "pods".into(),
    }
}

fn selector(text: &str) -> LabelSelector {
    text.parse().unwrap()
}

const SERIES: &str = "container_network_receive_packets_total";

#[test]
fn one_pod_gets_an_equality_matcher_and_several_get_an_escaped_regex() {
    let rule = sidecar_rule();
    let one = vec!["secondary-a".to_owned()];
    assert_eq!(
        custom_query(
            &rule,
            SERIES,
            &pods(),
            Some("sidecar"),
            Objects::Named(&one),
            &selector("")
        )
        .unwrap(),
        r#"sum(rate(container_network_receive_packets_total{namespace="sidecar",pod="secondary-a"}[1m])) by (pod)"#
    );
    let two = vec!["ss.0".to_owned(), "ss.1".to_owned()];
    assert_eq!(
        custom_query(
            &rule,
            SERIES,
            &pods(),
            Some("sidecar"),
            Objects::Named(&two),
            &selector("")
        )
        .unwrap(),
        r#"sum(rate(container_network_receive_packets_total{namespace="sidecar",pod=~"ss\\.0|ss\\.1"}[1m])) by (pod)"#
    );
}

#[test]
fn a_query_grouped_by_the_resource_label_needs_no_name_list() {
    let rule = sidecar_rule();
    assert!(groups_by_resource(&rule));
    assert_eq!(
        custom_query(
            &rule,
            SERIES,
            &pods(),
            Some("sidecar"),
            Objects::InScope,
            &selector("interface=eth0")
        )
        .unwrap(),
        r#"sum(rate(container_network_receive_packets_total{interface="eth0",namespace="sidecar"}[1m])) by (pod)"#,
        "selector matchers first, then the namespace"
    );
}

#[test]
fn label_values_by_name_and_group_by_slice_reach_the_template() {
    let rule = rule(
        r#"
rules:
- seriesQuery: 'up'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'up{pod=~"<<index .LabelValuesByName "pod">>"} by (<<range .GroupBySlice>><<.>><<end>>)'
"#,
    );
    let names = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(
        custom_query(
            &rule,
            "up",
            &pods(),
            Some("ns"),
            Objects::Named(&names),
            &selector("")
        )
        .unwrap(),
        r#"up{pod=~"a|b"} by (pod)"#
    );
}

#[test]
fn a_rule_without_the_needed_label_cannot_serve_the_request() {
    let no_namespace = rule(
        "rules:\n- seriesQuery: up\n  resources: {overrides: {pod: {resource: pod}}}\n  metricsQuery: 'sum(up{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
    );
    assert_eq!(
        custom_query(
            &no_namespace,
            "up",
            &pods(),
            Some("ns"),
            Objects::InScope,
            &selector("")
        ),
        Err(QueryError::NoLabel("namespaces".into()))
    );
    let nodes = GroupResource {
        group: String::new(),
        resource: "nodes".into(),
    };
    assert_eq!(
        custom_query(
            &sidecar_rule(),
            SERIES,
            &nodes,
            None,
            Objects::InScope,
            &selector("")
        ),
        Err(QueryError::NoLabel("nodes".into()))
    );
}

#[test]
fn unsupported_metric_selectors_are_refused() {
    assert!(matches!(
        custom_query(
            &sidecar_rule(),
            SERIES,
            &pods(),
            Some("ns"),
            Objects::InScope,
            &selector("x>1")
        ),
        Err(QueryError::Selector(MatcherError::UnsupportedOperator(">")))
    ));
}

#[test]
fn external_rules_add_the_namespace_unless_not_namespaced_and_have_an_empty_group_by() {
    let namespaced = external_rule(
        "externalRules:\n- seriesQuery: up\n  resources: {overrides: {namespace: {resource: namespace}}}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (job<<.GroupBy>>)'\n",
    );
    assert_eq!(
        external_query(&namespaced, "up", "sidecar", &selector("job in (a,b)")).unwrap(),
        r#"sum(up{job=~"a|b",namespace="sidecar"}) by (job)"#
    );
    let cluster_wide = external_rule(
        "externalRules:\n- seriesQuery: up\n  resources: {namespaced: false}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (deployment)'\n",
    );
    assert_eq!(
        external_query(&cluster_wide, "up", "sidecar", &selector("deployment=web")).unwrap(),
        r#"sum(up{deployment="web"}) by (deployment)"#
    );
    let values = external_rule(
        "externalRules:\n- seriesQuery: up\n  resources: {namespaced: false}\n  metricsQuery: '<<.LabelValuesByName>>'\n",
    );
    assert_eq!(
        external_query(&values, "up", "ns", &selector("a=x,b in (y,z),c!=w")).unwrap(),
        "map[a:x b:y|z]"
    );
    let missing =
        external_rule("externalRules:\n- seriesQuery: up\n  metricsQuery: 'sum(<<.Series>>)'\n");
    assert_eq!(
        external_query(&missing, "up", "ns", &selector("")),
        Err(QueryError::NoLabel("namespaces".into())),
        "the shape of docs/sample-config.yaml's first external rule, which always failed"
    );
}

#[test]
fn an_empty_rendering_is_an_error() {
    let empty = external_rule(
        "externalRules:\n- seriesQuery: up\n  resources: {namespaced: false}\n  metricsQuery: '<<if .GroupBy>>x<<end>>'\n",
    );
    assert_eq!(
        external_query(&empty, "up", "ns", &selector("")),
        Err(QueryError::Empty)
    );
}

#[test]
fn values_with_quotes_or_backslashes_are_escaped_wherever_they_land() {
    // Kubernetes names cannot hold quotes, but nothing reaches PromQL unescaped either way.
    let names = vec![r#"a"b"#.to_owned()];
    assert_eq!(
        custom_query(
            &sidecar_rule(),
            SERIES,
            &pods(),
            Some("sidecar"),
            Objects::Named(&names),
            &selector("")
        )
        .unwrap(),
        r#"sum(rate(container_network_receive_packets_total{namespace="sidecar",pod="a\"b"}[1m])) by (pod)"#
    );
    let two = vec![r#"a\b"#.to_owned(), "c".to_owned()];
    assert_eq!(
        custom_query(
            &sidecar_rule(),
            SERIES,
            &pods(),
            Some("sidecar"),
            Objects::Named(&two),
            &selector("")
        )
        .unwrap(),
        r#"sum(rate(container_network_receive_packets_total{namespace="sidecar",pod=~"a\\\\b|c"}[1m])) by (pod)"#
    );
}

#[test]
fn a_hostile_name_stays_inside_its_string_in_every_template_field() {
    // Names are validated long before this, so this is the second wall: even so, nothing a request supplies
    // can close the string it is placed in.
    let rule = rule(
        r#"
rules:
- seriesQuery: 'up'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on(pod) up{pod=~"<<index .LabelValuesByName "pod">>"}'
"#,
    );
    let names = vec![r#"x"}) or up{a=~".*"#.to_owned()];
    assert_eq!(
        custom_query(
            &rule,
            "up",
            &pods(),
            Some("ns"),
            Objects::Named(&names),
            &selector("")
        )
        .unwrap(),
        r#"sum(up{namespace="ns",pod="x\"}) or up{a=~\".*"}) by (pod) * on(pod) up{pod=~"x\"\\}\\) or up\\{a=~\"\\.\\*"}"#
    );
}

#[test]
fn label_values_by_name_match_names_with_dots_exactly() {
    let rule = rule(
        r#"
rules:
- seriesQuery: 'up'
  resources: {overrides: {namespace: {resource: namespace}, node: {resource: node}}}
  metricsQuery: 'up{node=~"<<index .LabelValuesByName "node">>"}'
"#,
    );
    let nodes = GroupResource {
        group: String::new(),
        resource: "nodes".into(),
    };
    let names = vec!["ip-10-0-0-1.ec2.internal".to_owned(), "b".to_owned()];
    assert_eq!(
        custom_query(
            &rule,
            "up",
            &nodes,
            None,
            Objects::Named(&names),
            &selector("")
        )
        .unwrap(),
        r#"up{node=~"ip-10-0-0-1\\.ec2\\.internal|b"}"#
    );
}
