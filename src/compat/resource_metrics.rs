//! `resourceRules`: the queries behind `metrics.k8s.io` (`kubectl top`, HPA CPU and memory) and how their
//! answers become per-container and per-node usage, as the Prometheus Adapter builds them
//! (the Prometheus Adapter's docs/config.md and its naming and resource code). Pure.

use std::collections::BTreeMap;

use super::query::QueryError;
use super::resources::GroupResource;
use super::rules::ResourceRule;
use super::template::{Data, Template, Value};
use crate::promql;
use crate::source::Sample;

fn label(rule: &ResourceRule, name: &str) -> Result<String, QueryError> {
    rule.resources
        .label_for_resource(&GroupResource::core(name))
        .ok_or_else(|| QueryError::NoLabel(name.into()))
}

/// Whether the query keeps its group-by labels, so the pods can be picked from a namespace-wide answer.
fn groups_by(text: &str) -> bool {
    text.contains(".GroupBy")
}

/// The container query for `pods` in `namespace`: by pod and container label. With `<<.GroupBy>>` in the
/// template the pods are not listed (the answer is filtered instead); otherwise they are, regex-escaped.
pub fn pod_query(
    rule: &ResourceRule,
    namespace: &str,
    pods: &[String],
) -> Result<String, QueryError> {
    let (namespace_label, pod_label) = (label(rule, "namespaces")?, label(rule, "pods")?);
    let mut matchers = vec![promql::equal(&namespace_label, namespace)];
    let mut values = BTreeMap::from([(namespace_label, namespace.to_owned())]);
    if !groups_by(&rule.container_query_text) || pods.len() == 1 {
        matchers.push(match pods {
            [one] => promql::equal(&pod_label, one),
            many => format!(
                "{pod_label}=~{}",
                promql::quote(
                    &many
                        .iter()
                        .map(|p| promql::regex_literal(p))
                        .collect::<Vec<_>>()
                        .join("|")
                )
            ),
        });
        values.insert(pod_label.clone(), pods.join("|"));
    }
    let group_by = vec![pod_label, rule.container_label.clone()];
    render(&rule.container_query, matchers, values, group_by)
}

/// The node query, for every node (the answer is filtered by name afterwards). `<<.LabelMatchers>>` is never
/// empty: the Prometheus Adapter always puts the node names there, so rules are written with a comma after it
/// (the chart's default is `{<<.LabelMatchers>>, id='/'}`), which an empty list would turn into a syntax
/// error. `node!=""` selects what a list of every node would, and keeps a node label holding `IP:port`
/// usable.
pub fn node_query(rule: &ResourceRule) -> Result<String, QueryError> {
    let node_label = label(rule, "nodes")?;
    render(
        &rule.node_query,
        vec![format!("{node_label}!=\"\"")],
        BTreeMap::new(),
        vec![node_label],
    )
}

fn render(
    template: &Template,
    matchers: Vec<String>,
    values: BTreeMap<String, String>,
    group_by: Vec<String>,
) -> Result<String, QueryError> {
    let query = template.render(&Data::from([
        ("LabelMatchers", Value::Str(matchers.join(","))),
        ("LabelValuesByName", Value::Map(values)),
        ("GroupBy", Value::Str(group_by.join(","))),
        ("GroupBySlice", Value::List(group_by)),
    ]))?;
    if query.trim().is_empty() {
        return Err(QueryError::Empty);
    }
    Ok(query)
}

/// NaN and negative usage become 0, as in the Prometheus Adapter.
fn usage_value(value: f64) -> f64 {
    if value.is_nan() || value < 0.0 {
        0.0
    } else {
        value
    }
}

/// CPU (cores) and memory (bytes).
pub type Usage = (f64, f64);

/// Per pod, per container usage from the CPU and memory answers. A pod with no CPU or no memory sample at all
/// is left out; a container with only one of them gets 0 for the other.
pub fn pod_usage(
    cpu: &[Sample],
    memory: &[Sample],
    pod_label: &str,
    container_label: &str,
) -> BTreeMap<String, BTreeMap<String, Usage>> {
    let mut pods: BTreeMap<String, BTreeMap<String, Usage>> = BTreeMap::new();
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for (samples, is_cpu) in [(cpu, true), (memory, false)] {
        for sample in samples {
            let (Some(pod), Some(container)) = (
                sample.labels.get(pod_label),
                sample.labels.get(container_label),
            ) else {
                continue;
            };
            let usage = pods
                .entry(pod.clone())
                .or_default()
                .entry(container.clone())
                .or_default();
            let flags = seen.entry(pod.clone()).or_default();
            if is_cpu {
                usage.0 = usage_value(sample.value);
                flags.0 = true;
            } else {
                usage.1 = usage_value(sample.value);
                flags.1 = true;
            }
        }
    }
    pods.retain(|pod, _| seen.get(pod).is_some_and(|(c, m)| *c && *m));
    pods
}

/// Per node usage; a node lacking either resource is left out.
pub fn node_usage(cpu: &[Sample], memory: &[Sample], node_label: &str) -> BTreeMap<String, Usage> {
    let by_node = |samples: &[Sample]| -> BTreeMap<String, f64> {
        samples
            .iter()
            .filter_map(|s| Some((s.labels.get(node_label)?.clone(), usage_value(s.value))))
            .collect()
    };
    let memory = by_node(memory);
    by_node(cpu)
        .into_iter()
        .filter_map(|(node, cpu)| Some((node.clone(), (cpu, *memory.get(&node)?))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::rules::AdapterConfig;

    /// The chart's `rules.resource` example.
    const RESOURCE_RULES: &str = include_str!("../../tests/fixtures/adapter-resource-rules.yaml");

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn pod_queries_scope_to_the_namespace_and_group_by_pod_and_container() {
        let rules = AdapterConfig::parse(RESOURCE_RULES)
            .unwrap()
            .resource_rules
            .unwrap();
        let pods = vec!["a.0".to_owned(), "b".to_owned()];
        assert_eq!(
            pod_query(&rules.cpu, "sidecar", &pods).unwrap(),
            r#"sum(rate(container_cpu_usage_seconds_total{namespace="sidecar",container!=""}[3m])) by (pod,container)"#
        );
        assert_eq!(
            pod_query(&rules.cpu, "sidecar", &pods[..1]).unwrap(),
            r#"sum(rate(container_cpu_usage_seconds_total{namespace="sidecar",pod="a.0",container!=""}[3m])) by (pod,container)"#
        );
        assert_eq!(
            node_query(&rules.memory).unwrap(),
            r#"sum(node_memory_MemTotal_bytes{node!=""} - node_memory_MemAvailable_bytes{node!=""}) by (node)"#
        );
    }

    #[test]
    fn the_built_in_cadvisor_rules_count_each_container_once_and_nodes_by_their_root_cgroup() {
        let rules = crate::compat::rules::default_resource_rules();
        assert_eq!(rules.window, std::time::Duration::from_secs(180));
        assert_eq!(
            pod_query(&rules.cpu, "sidecar", &["a".to_owned()]).unwrap(),
            r#"sum by (pod,container) (rate(container_cpu_usage_seconds_total{namespace="sidecar",pod="a",container!="",container!="POD"}[3m]))"#
        );
        assert_eq!(
            node_query(&rules.memory).unwrap(),
            r#"sum by (node) (container_memory_working_set_bytes{node!="",id="/"})"#
        );
    }

    #[test]
    fn node_queries_never_leave_a_dangling_comma() {
        // The Prometheus Adapter chart's default nodeQuery.
        let config = "resourceRules:\n  cpu:\n    containerQuery: 'x{<<.LabelMatchers>>}'\n    \
            nodeQuery: \"sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>, id='/'}[3m])) by (<<.GroupBy>>)\"\n    \
            resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}\n    \
            containerLabel: container\n  memory:\n    containerQuery: 'x{<<.LabelMatchers>>}'\n    nodeQuery: 'y{<<.LabelMatchers>>}'\n    \
            resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}\n    \
            containerLabel: container\n  window: 3m\n";
        let rules = AdapterConfig::parse(config)
            .unwrap()
            .resource_rules
            .unwrap();
        assert_eq!(
            node_query(&rules.cpu).unwrap(),
            r#"sum(rate(container_cpu_usage_seconds_total{node!="", id='/'}[3m])) by (node)"#
        );
    }

    #[test]
    fn usage_follows_the_prometheus_adapters_rules_for_gaps_nan_and_negatives() {
        let cpu = [
            sample(&[("pod", "a"), ("container", "app")], 0.25),
            sample(&[("pod", "a"), ("container", "sidecar")], f64::NAN),
            sample(&[("pod", "b"), ("container", "app")], 0.5),
        ];
        let memory = [
            sample(&[("pod", "a"), ("container", "app")], 1024.0),
            sample(&[("pod", "a"), ("container", "proxy")], -5.0),
        ];
        let pods = pod_usage(&cpu, &memory, "pod", "container");
        assert_eq!(
            pods.keys().collect::<Vec<_>>(),
            ["a"],
            "b has no memory sample"
        );
        assert_eq!(
            pods["a"],
            BTreeMap::from([
                ("app".to_owned(), (0.25, 1024.0)),
                ("proxy".to_owned(), (0.0, 0.0)),
                ("sidecar".to_owned(), (0.0, 0.0)),
            ])
        );
        let nodes = node_usage(
            &[
                sample(&[("node", "n1")], 1.5),
                sample(&[("node", "n2")], 1.0),
            ],
            &[sample(&[("node", "n1")], 2e9)],
            "node",
        );
        assert_eq!(nodes, BTreeMap::from([("n1".to_owned(), (1.5, 2e9))]));
    }
}
