//! What a relist of Prometheus Adapter rules serves: from the series each distinct `seriesQuery` found (their
//! names and label names only), the registry of `<resource>/<metric>` and external metric names
//! (the Prometheus Adapter's docs/config.md and its naming and resource code). Pure: the caller fetches the series.

use std::collections::{BTreeMap, BTreeSet};

use super::naming::metric_name;
use super::resources::GroupResource;
use super::rules::{AdapterConfig, Rule};
use crate::source::SeriesKeys;

/// Where a served metric comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The rule's position in its section.
    pub rule: usize,
    /// The series name the rule's query runs over (`.Series`).
    pub series: String,
}

/// The metrics a relist found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    custom: BTreeMap<(GroupResource, String), Source>,
    external: BTreeMap<String, Source>,
    /// Whether objects of each custom metric's resource live in namespaces.
    namespaced: BTreeMap<GroupResource, bool>,
}

/// A `seriesQuery` and the backend it is sent to (`None`: the default one).
pub type SeriesQuery = (Option<String>, String);

/// The distinct `seriesQuery` strings of `config`, per backend: one `/api/v1/series` request each per relist,
/// shared by custom and external rules.
pub fn series_queries(config: &AdapterConfig) -> BTreeSet<SeriesQuery> {
    config
        .rules
        .iter()
        .chain(&config.external_rules)
        .map(series_query)
        .collect()
}

fn series_query(rule: &Rule) -> SeriesQuery {
    (rule.backend.clone(), rule.series_query.clone())
}

/// Rules that give one key to two series: reported, and the later one wins (as in the Prometheus Adapter).
pub type Collisions = Vec<String>;

impl Registry {
    /// The registry for `config`, given the series each `seriesQuery` found (a query missing from `found`
    /// contributes nothing).
    pub fn build(
        config: &AdapterConfig,
        found: &BTreeMap<SeriesQuery, Vec<SeriesKeys>>,
    ) -> (Self, Collisions) {
        let mut registry = Registry::default();
        let mut collisions = Vec::new();
        let series_of = |rule: &Rule| {
            found
                .get(&series_query(rule))
                .map_or(&[][..], Vec::as_slice)
        };
        for (index, rule) in config.rules.iter().enumerate() {
            for series in series_of(rule) {
                let Some(metric) = metric_name(&rule.filters, &rule.naming, &series.name) else {
                    continue;
                };
                for label in &series.labels {
                    let Some(resource) = rule.resources.resource_for_label(label) else {
                        continue;
                    };
                    let source = Source {
                        rule: index,
                        series: series.name.clone(),
                    };
                    let namespaced = config.resources.is_namespaced(&resource);
                    registry.namespaced.insert(resource.clone(), namespaced);
                    let key = (resource, metric.clone());
                    if let Some(previous) = registry.custom.insert(key.clone(), source.clone())
                        && previous != source
                    {
                        collisions.push(format!(
                            "{}/{}: rules[{}] ({}) replaces rules[{}] ({})",
                            key.0.qualified(),
                            key.1,
                            source.rule,
                            source.series,
                            previous.rule,
                            previous.series
                        ));
                    }
                }
            }
        }
        for (index, rule) in config.external_rules.iter().enumerate() {
            for series in series_of(rule) {
                let Some(metric) = metric_name(&rule.filters, &rule.naming, &series.name) else {
                    continue;
                };
                let source = Source {
                    rule: index,
                    series: series.name.clone(),
                };
                if let Some(previous) = registry.external.insert(metric.clone(), source.clone())
                    && previous != source
                {
                    collisions.push(format!(
                        "external {metric}: externalRules[{}] ({}) replaces externalRules[{}] ({})",
                        source.rule, source.series, previous.rule, previous.series
                    ));
                }
            }
        }
        (registry, collisions)
    }

    /// Where `metric` for `resource` comes from.
    pub fn custom(&self, resource: &GroupResource, metric: &str) -> Option<&Source> {
        self.custom.get(&(resource.clone(), metric.to_owned()))
    }

    /// Where the external `metric` comes from.
    pub fn external(&self, metric: &str) -> Option<&Source> {
        self.external.get(metric)
    }

    /// `(resource, metric, namespaced)` of every custom metric, for the discovery document.
    pub fn custom_resources(&self) -> impl Iterator<Item = (&GroupResource, &str, bool)> {
        self.custom.keys().map(|(resource, metric)| {
            let namespaced = self.namespaced.get(resource).copied().unwrap_or(true);
            (resource, metric.as_str(), namespaced)
        })
    }

    /// Every external metric name.
    pub fn external_metrics(&self) -> impl Iterator<Item = &str> {
        self.external.keys().map(String::as_str)
    }

    /// How many entries the registry holds.
    pub fn len(&self) -> usize {
        self.custom.len() + self.external.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::resources::ResourceTable;

    fn series(name: &str, labels: &[&str]) -> SeriesKeys {
        SeriesKeys {
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn gr(group: &str, resource: &str) -> GroupResource {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }

    fn helm_defaults() -> AdapterConfig {
        AdapterConfig::parse("rules: {default: true}\n").unwrap()
    }

    const CONTAINER_QUERY: &str =
        r#"{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}"#;
    const OTHER_QUERY: &str = r#"{namespace!="",__name__!~"^container_.*"}"#;

    #[test]
    fn the_chart_defaults_serve_pods_and_namespaces_for_each_discovered_series() {
        let config = helm_defaults();
        assert_eq!(
            series_queries(&config),
            BTreeSet::from([
                (None, CONTAINER_QUERY.to_owned()),
                (None, OTHER_QUERY.to_owned())
            ])
        );
        let found = BTreeMap::from([
            (
                (None, CONTAINER_QUERY.to_owned()),
                vec![
                    series(
                        "container_network_receive_packets_total",
                        &["namespace", "pod", "container", "interface"],
                    ),
                    series(
                        "container_cpu_usage_seconds_total",
                        &["namespace", "pod", "container", "cpu"],
                    ),
                ],
            ),
            (
                (None, OTHER_QUERY.to_owned()),
                vec![series(
                    "kube_deployment_status_replicas",
                    &["namespace", "deployment", "job"],
                )],
            ),
        ]);
        let (registry, collisions) = Registry::build(&config, &found);
        assert!(collisions.is_empty(), "{collisions:?}");
        let served: Vec<(String, &str, bool)> = registry
            .custom_resources()
            .map(|(r, m, namespaced)| (r.qualified(), m, namespaced))
            .collect();
        // As with the Prometheus Adapter, the `job` label Prometheus adds to every series maps to
        // jobs.batch through the `<<.Resource>>` template: one reason the chart defaults register so much.
        assert_eq!(
            served,
            [
                ("namespaces".to_owned(), "cpu_usage", false),
                (
                    "namespaces".to_owned(),
                    "kube_deployment_status_replicas",
                    false
                ),
                ("namespaces".to_owned(), "network_receive_packets", false),
                ("pods".to_owned(), "cpu_usage", true),
                ("pods".to_owned(), "network_receive_packets", true),
                (
                    "deployments.apps".to_owned(),
                    "kube_deployment_status_replicas",
                    true
                ),
                (
                    "jobs.batch".to_owned(),
                    "kube_deployment_status_replicas",
                    true
                ),
            ]
        );
        assert_eq!(
            registry.custom(&gr("", "pods"), "network_receive_packets"),
            Some(&Source {
                rule: 1,
                series: "container_network_receive_packets_total".into()
            })
        );
        assert!(registry.external_metrics().next().is_none());
    }

    #[test]
    fn a_failed_or_empty_query_contributes_nothing() {
        let (registry, _) = Registry::build(&helm_defaults(), &BTreeMap::new());
        assert!(registry.is_empty());
    }

    #[test]
    fn two_series_with_one_name_are_reported_and_the_later_wins() {
        let config = AdapterConfig::parse(
            "rules:\n- seriesQuery: '{__name__=~\"a_total|b_total\"}'\n  resources: {template: <<.Resource>>}\n  name: {matches: '^.*_(total)$'}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
        )
        .unwrap();
        let found = BTreeMap::from([(
            (None, config.rules[0].series_query.clone()),
            vec![series("a_total", &["pod"]), series("b_total", &["pod"])],
        )]);
        let (registry, collisions) = Registry::build(&config, &found);
        assert_eq!(
            collisions,
            ["pods/total: rules[0] (b_total) replaces rules[0] (a_total)"]
        );
        assert_eq!(
            registry.custom(&gr("", "pods"), "total").unwrap().series,
            "b_total"
        );
    }

    #[test]
    fn external_rules_register_names_without_resources() {
        let config = AdapterConfig::parse(
            "externalRules:\n- seriesQuery: '{__name__=\"xroad_opmon_requests_total\"}'\n  resources: {namespaced: false}\n  name: {matches: ^xroad_opmon_requests_total$, as: xroad_messages_total}\n  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]))'\n",
        )
        .unwrap();
        let found = BTreeMap::from([(
            (None, config.external_rules[0].series_query.clone()),
            vec![series("xroad_opmon_requests_total", &["namespace", "pod"])],
        )]);
        let (registry, _) = Registry::build(&config, &found);
        assert_eq!(
            registry.external_metrics().collect::<Vec<_>>(),
            ["xroad_messages_total"]
        );
        assert_eq!(registry.custom_resources().count(), 0);
    }

    #[test]
    fn scope_comes_from_the_resource_not_a_hard_coded_list() {
        let table = ResourceTable::default();
        assert!(!table.is_namespaced(&gr("", "nodes")));
        assert!(!table.is_namespaced(&gr("", "persistentvolumes")));
        assert!(table.is_namespaced(&gr("apps", "deployments")));
        assert!(
            table.is_namespaced(&gr("example.com", "widgets")),
            "unknown: assumed namespaced"
        );
    }
}
