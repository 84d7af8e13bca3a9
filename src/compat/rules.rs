//! A Prometheus Adapter configuration file, as-is: `rules`, `externalRules` and `resourceRules`, or the Helm
//! chart's values with `rules.default/custom/external/resource` (the Prometheus Adapter's `docs/config.md` and
//! its Helm chart's `values.yaml`). Strict like the adapter's `yaml.UnmarshalStrict`: unknown keys are errors with line and column.
//! Pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::naming::{Filter, Naming, NamingError};
use super::resources::{ResourceMapping, ResourceTable, ResourcesError};
use super::template::{Template, TemplateError};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    external_rules: Vec<RawRule>,
    resource_rules: Option<RawResourceRules>,
}

/// The chart's values: only `rules` is read; the rest of the chart's settings are not ours to check.
#[derive(Debug, Deserialize)]
struct RawHelmValues {
    rules: RawHelmRules,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHelmRules {
    #[serde(default)]
    default: bool,
    #[serde(default)]
    custom: Vec<RawRule>,
    #[serde(default)]
    external: Vec<RawRule>,
    existing: Option<String>,
    resource: Option<RawResourceRules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    series_query: String,
    #[serde(default)]
    series_filters: Vec<RawFilter>,
    #[serde(default)]
    resources: RawResources,
    #[serde(default)]
    name: RawName,
    metrics_query: String,
    /// Ours, not the Prometheus Adapter's: the named backend the rule reads.
    backend: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFilter {
    is: Option<String>,
    is_not: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    overrides: BTreeMap<String, RawGroupResource>,
    template: Option<String>,
    namespaced: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupResource {
    #[serde(default)]
    group: String,
    resource: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawName {
    #[serde(default)]
    matches: String,
    #[serde(default, rename = "as")]
    as_: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawResourceRules {
    cpu: RawResourceRule,
    memory: RawResourceRule,
    window: String,
    /// Ours, not the Prometheus Adapter's: the named backend the rules read.
    backend: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawResourceRule {
    container_query: String,
    node_query: String,
    #[serde(default)]
    resources: RawResources,
    container_label: String,
}

/// Why a Prometheus Adapter configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// YAML syntax, unknown keys or wrong types; the text carries line and column.
    #[error("{0}")]
    Syntax(String),
    /// A rule's regex, template or mapping.
    #[error("{section}[{index}]: {message}")]
    Rule {
        /// `rules`, `externalRules`, `resourceRules`.
        section: &'static str,
        /// The rule's position.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The Helm values name a ConfigMap instead of rules.
    #[error(
        "rules.existing names the ConfigMap {0:?}: pass that ConfigMap's config.yaml instead of the chart values"
    )]
    Existing(String),
}

/// One discovery rule (`rules` or `externalRules`).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Sent as `match[]` to `/api/v1/series`.
    pub series_query: String,
    /// `seriesFilters`.
    pub filters: Vec<Filter>,
    /// `name`.
    pub naming: Naming,
    /// `resources`.
    pub resources: ResourceMapping,
    /// `metricsQuery`, parsed.
    pub metrics_query: Template,
    /// `metricsQuery` as written.
    pub metrics_query_text: String,
    /// The backend it reads (ours, not the Prometheus Adapter's); the default one without.
    pub backend: Option<String>,
}

/// One of `resourceRules.cpu` and `.memory`.
#[derive(Debug, Clone)]
pub struct ResourceRule {
    /// Per-container usage, grouped by pod and container.
    pub container_query: Template,
    /// `containerQuery` as written.
    pub container_query_text: String,
    /// Per-node usage.
    pub node_query: Template,
    /// Label ↔ resource mapping (pod, namespace, node).
    pub resources: ResourceMapping,
    /// The label naming the container.
    pub container_label: String,
}

/// `resourceRules`: what `metrics.k8s.io` serves.
#[derive(Debug, Clone)]
pub struct ResourceRules {
    /// CPU, in cores.
    pub cpu: ResourceRule,
    /// Memory, in bytes.
    pub memory: ResourceRule,
    /// The `window` reported with each value.
    pub window: Duration,
    /// The backend they read (ours, not the Prometheus Adapter's); the default one without.
    pub backend: Option<String>,
}

/// A whole Prometheus Adapter configuration.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// `rules`: custom metrics.
    pub rules: Vec<Rule>,
    /// `externalRules`: external metrics.
    pub external_rules: Vec<Rule>,
    /// `resourceRules`: resource metrics.
    pub resource_rules: Option<ResourceRules>,
    /// Things that work but are probably not what the author meant.
    pub warnings: Vec<String>,
    /// What the rules' resource names resolve against.
    pub resources: Arc<ResourceTable>,
}

/// The resource metrics served without a `resourceRules` of the operator's: cAdvisor's CPU and working set,
/// as metrics-server reports them (`kubectl top`, CPU and memory HPAs) with nothing else installed. Pods sum
/// their containers, leaving out the pod-level cgroup (`container=""`, which would count everything twice) and
/// dockershim's pause container (`container="POD"`); nodes read their root cgroup (`id="/"`), the Prometheus
/// Adapter documentation's node query. The `node` label is the one the Prometheus Operator gives every target
/// behind a Node endpoint (the kubelet's).
pub const CADVISOR_RESOURCE_RULES: &str = r#"
resourceRules:
  cpu:
    containerQuery: 'sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!="",container!="POD"}[3m]))'
    nodeQuery: 'sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,id="/"}[3m]))'
    resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}
    containerLabel: container
  memory:
    containerQuery: 'sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!="",container!="POD"})'
    nodeQuery: 'sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,id="/"})'
    resources: {overrides: {node: {resource: node}, namespace: {resource: namespace}, pod: {resource: pod}}}
    containerLabel: container
  window: 3m
"#;

/// [`CADVISOR_RESOURCE_RULES`], parsed once.
pub fn default_resource_rules() -> &'static ResourceRules {
    static RULES: std::sync::OnceLock<ResourceRules> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        AdapterConfig::parse(CADVISOR_RESOURCE_RULES)
            .ok()
            .and_then(|c| c.resource_rules)
            .expect("the built-in resource rules parse (a unit test checks them)")
    })
}

/// The Helm chart's default rules (`templates/configmap.yaml`, `rules.default: true`)
pub const HELM_DEFAULT_RULES: &str = r#"
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  seriesFilters: []
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name:
    matches: ^container_(.*)_seconds_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  seriesFilters:
  - isNot: ^container_.*_seconds_total$
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name:
    matches: ^container_(.*)_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  seriesFilters:
  - isNot: ^container_.*_total$
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name:
    matches: ^container_(.*)$
    as: ""
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>,container!="POD"}) by (<<.GroupBy>>)
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  seriesFilters:
  - isNot: .*_total$
  resources:
    template: <<.Resource>>
  name:
    matches: ""
    as: ""
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  seriesFilters:
  - isNot: .*_seconds_total
  resources:
    template: <<.Resource>>
  name:
    matches: ^(.*)_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)
- seriesQuery: '{namespace!="",__name__!~"^container_.*"}'
  seriesFilters: []
  resources:
    template: <<.Resource>>
  name:
    matches: ^(.*)_seconds_total$
    as: ""
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)
"#;

fn syntax(error: serde_saphyr::Error) -> RulesError {
    RulesError::Syntax(error.to_string())
}

fn mapping(
    raw: &RawResources,
    namespaced_default: bool,
    table: &Arc<ResourceTable>,
) -> Result<ResourceMapping, ResourcesError> {
    let overrides = raw
        .overrides
        .iter()
        .map(|(label, r)| (label.clone(), (r.group.clone(), r.resource.clone())))
        .collect();
    ResourceMapping::new(
        &overrides,
        raw.template.as_deref(),
        raw.namespaced.unwrap_or(namespaced_default),
        table.clone(),
    )
}

fn rule(raw: &RawRule, table: &Arc<ResourceTable>) -> Result<Rule, String> {
    let filters = raw
        .series_filters
        .iter()
        .map(|f| Filter::new(f.is.as_deref(), f.is_not.as_deref()))
        .collect::<Result<Vec<_>, NamingError>>()
        .map_err(|e| e.to_string())?;
    let naming = Naming::new(&raw.name.matches, &raw.name.as_).map_err(|e| e.to_string())?;
    let resources = mapping(&raw.resources, true, table).map_err(|e| e.to_string())?;
    let metrics_query = raw
        .metrics_query
        .parse()
        .map_err(|e: TemplateError| format!("metricsQuery: {e}"))?;
    if raw.series_query.trim().is_empty() {
        return Err("seriesQuery is empty".into());
    }
    Ok(Rule {
        series_query: raw.series_query.clone(),
        filters,
        naming,
        resources,
        metrics_query,
        metrics_query_text: raw.metrics_query.clone(),
        backend: raw.backend.clone(),
    })
}

fn rules(
    section: &'static str,
    raw: &[RawRule],
    table: &Arc<ResourceTable>,
) -> Result<Vec<Rule>, RulesError> {
    raw.iter()
        .enumerate()
        .map(|(index, r)| {
            rule(r, table).map_err(|message| RulesError::Rule {
                section,
                index,
                message,
            })
        })
        .collect()
}

fn resource_rules(
    raw: &RawResourceRules,
    table: &Arc<ResourceTable>,
) -> Result<ResourceRules, RulesError> {
    let invalid = |message: String| RulesError::Rule {
        section: "resourceRules",
        index: 0,
        message,
    };
    let one = |raw: &RawResourceRule, which: &str| -> Result<ResourceRule, RulesError> {
        let parse = |text: &str, field: &str| {
            text.parse::<Template>()
                .map_err(|e| invalid(format!("{which}.{field}: {e}")))
        };
        Ok(ResourceRule {
            container_query: parse(&raw.container_query, "containerQuery")?,
            container_query_text: raw.container_query.clone(),
            node_query: parse(&raw.node_query, "nodeQuery")?,
            resources: mapping(&raw.resources, true, table)
                .map_err(|e| invalid(format!("{which}: {e}")))?,
            container_label: raw.container_label.clone(),
        })
    };
    Ok(ResourceRules {
        cpu: one(&raw.cpu, "cpu")?,
        memory: one(&raw.memory, "memory")?,
        window: crate::duration::parse(&raw.window).map_err(|e| invalid(format!("window: {e}")))?,
        backend: raw.backend.clone(),
    })
}

/// Whether `text` is a Prometheus Adapter configuration (or the chart's values) rather than ours. A file
/// that is not valid YAML is judged by its top-level keys as written, so that its syntax error is reported
/// by the right parser rather than as "unknown field `rules`".
pub fn looks_like_adapter_config(text: &str) -> bool {
    const KEYS: [&str; 3] = ["rules", "externalRules", "resourceRules"];
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<serde_json::Value>(text, options) {
        Ok(serde_json::Value::Object(top)) => KEYS.iter().any(|k| top.contains_key(*k)),
        Ok(_) => false,
        Err(_) => text.lines().any(|line| {
            KEYS.iter().any(|key| {
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
        }),
    }
}

impl AdapterConfig {
    /// The backends the rules name (`backend:`, ours).
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .chain(&self.external_rules)
            .filter_map(|r| r.backend.as_deref())
            .chain(
                self.resource_rules
                    .iter()
                    .filter_map(|r| r.backend.as_deref()),
            )
    }

    /// Parses a Prometheus Adapter `config.yaml`, or the Helm chart's values (recognised by `rules` being a
    /// mapping), with the built-in resources only.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        Self::parse_with(text, Arc::default())
    }

    /// [`AdapterConfig::parse`], resolving resource names against `resources`.
    pub fn parse_with(text: &str, resources: Arc<ResourceTable>) -> Result<Self, RulesError> {
        let helm = {
            let mut options = serde_saphyr::Options::default();
            options.strict_booleans = true;
            let value: serde_json::Value =
                serde_saphyr::from_str_with_options(text, options).map_err(syntax)?;
            value.get("rules").is_some_and(serde_json::Value::is_object)
        };
        let raw = if helm {
            let values: RawHelmValues = serde_saphyr::from_str(text).map_err(syntax)?;
            if let Some(existing) = values.rules.existing {
                return Err(RulesError::Existing(existing));
            }
            let mut rules = Vec::new();
            if values.rules.default {
                rules = serde_saphyr::from_str(HELM_DEFAULT_RULES).map_err(syntax)?;
            }
            rules.extend(values.rules.custom);
            RawConfig {
                rules,
                external_rules: values.rules.external,
                resource_rules: values.rules.resource,
            }
        } else if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(syntax)?
        };
        let rules_parsed = rules("rules", &raw.rules, &resources)?;
        let external = rules("externalRules", &raw.external_rules, &resources)?;
        let warnings = warnings(&raw, &rules_parsed);
        Ok(Self {
            rules: rules_parsed,
            external_rules: external,
            resource_rules: raw
                .resource_rules
                .as_ref()
                .map(|raw| resource_rules(raw, &resources))
                .transpose()?,
            warnings,
            resources,
        })
    }
}

/// The mistakes users of the Prometheus Adapter report most.
fn warnings(raw: &RawConfig, rules: &[Rule]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, (raw, rule)) in raw.rules.iter().zip(rules).enumerate() {
        if !raw.metrics_query.contains(".GroupBy") {
            warnings.push(format!(
                "rules[{index}]: metricsQuery does not group by <<.GroupBy>>, so its values cannot be matched to objects"
            ));
        }
        if rule
            .resources
            .label_for_resource(&super::resources::GroupResource {
                group: String::new(),
                resource: "namespaces".into(),
            })
            .is_none()
        {
            warnings.push(format!(
                "rules[{index}]: no label maps to namespaces, so namespaced requests cannot be served"
            ));
        }
        for window in rate_windows(&raw.metrics_query) {
            if window < Duration::from_secs(120) {
                warnings.push(format!(
                    "rules[{index}]: a rate window of {window:?} holds fewer than 4 samples at a 30 s scrape interval; \
                     use at least 2m"
                ));
            }
        }
    }
    warnings
}

/// The `[…]` windows of `rate(`/`irate(`/`increase(` in a query that parse as durations.
fn rate_windows(query: &str) -> Vec<Duration> {
    query
        .match_indices('[')
        .filter_map(|(i, _)| {
            let end = query[i..].find(']')?;
            crate::duration::parse(&query[i + 1..i + end]).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests;
