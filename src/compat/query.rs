//! The PromQL a Prometheus Adapter rule runs for one request: the `metricsQuery` template's fields built as the
//! adapter builds them, with two deliberate differences: every value a request supplies is escaped for the
//! place it lands in (`.LabelMatchers` as string literals, `.LabelValuesByName` as a regex inside a
//! double-quoted string, where the adapter's own documentation places it), and a query that groups by the
//! resource label is not given the list of object names (the caller selects the objects from the answer
//! instead). Pure.

use std::collections::BTreeMap;

use super::resources::GroupResource;
use super::rules::Rule;
use super::template::{Data, TemplateError, Value};
use crate::promql::{self, MatcherError};
use crate::selector::{LabelSelector, Requirement};
use kube::core::Expression;

/// Why no query can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The rule maps no label to the resource (or to namespaces, for a namespaced request).
    #[error("unable to convert resource {0} into label")]
    NoLabel(String),
    /// The metric selector has `>`/`<` or a key that is no Prometheus label name.
    #[error(transparent)]
    Selector(#[from] MatcherError),
    /// The template failed or rendered nothing.
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// The template rendered an empty query.
    #[error("the metricsQuery of this metric renders an empty query")]
    Empty,
}

/// Which objects a custom-metrics request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objects<'a> {
    /// These names (one, or the objects a wildcard selected).
    Named(&'a [String]),
    /// Every object in scope: the answer carries the resource label and the caller picks the objects.
    InScope,
}

/// Whether a rule's query keeps the resource label, so that results can be matched to objects without
/// listing every object name in the query (the Prometheus Adapter's long `=~"a|b|…"` regexes, which grow with
/// the number of pods until backends refuse them).
pub fn groups_by_resource(rule: &Rule) -> bool {
    rule.metrics_query_text.contains(".GroupBy")
}

fn names_matcher(label: &str, names: &[String]) -> String {
    match names {
        [one] => promql::equal(label, one),
        many => format!(
            "{label}=~{}",
            promql::quote(
                &many
                    .iter()
                    .map(|n| promql::regex_literal(n))
                    .collect::<Vec<_>>()
                    .join("|")
            )
        ),
    }
}

/// `.LabelValuesByName` of a selector: the values each `=` or `in` requirement asks for, as a regex
/// alternation escaped for a double-quoted string.
fn selected_values(selector: &LabelSelector) -> BTreeMap<String, String> {
    selector
        .requirements()
        .iter()
        .filter_map(|requirement| match requirement {
            Requirement::Label(Expression::Equal(key, value)) => Some((
                key.clone(),
                promql::regex_alternation_in_string([value.as_str()]),
            )),
            Requirement::Label(Expression::In(key, values)) => Some((
                key.clone(),
                promql::regex_alternation_in_string(values.iter().map(String::as_str)),
            )),
            _ => None,
        })
        .collect()
}

/// Adds `<namespace label>="<namespace>"` to the matchers and to `.LabelValuesByName`.
fn scope_to_namespace(
    rule: &Rule,
    namespace: &str,
    matchers: &mut Vec<String>,
    values: &mut BTreeMap<String, String>,
) -> Result<(), QueryError> {
    let namespaces = GroupResource {
        group: String::new(),
        resource: "namespaces".into(),
    };
    let label = rule
        .resources
        .label_for_resource(&namespaces)
        .ok_or_else(|| QueryError::NoLabel("namespaces".into()))?;
    matchers.push(promql::equal(&label, namespace));
    values.insert(label, promql::regex_alternation_in_string([namespace]));
    Ok(())
}

fn render(rule: &Rule, data: Data) -> Result<String, QueryError> {
    let query = rule.metrics_query.render(&data)?;
    if query.trim().is_empty() {
        return Err(QueryError::Empty);
    }
    Ok(query)
}

/// The query for a custom-metrics request: `series` (the discovered series behind the metric), objects of
/// `resource` in `namespace` (none for cluster-scoped resources), and the `metricLabelSelector`.
pub fn custom_query(
    rule: &Rule,
    series: &str,
    resource: &GroupResource,
    namespace: Option<&str>,
    objects: Objects<'_>,
    metric_selector: &LabelSelector,
) -> Result<String, QueryError> {
    let resource_label = rule
        .resources
        .label_for_resource(resource)
        .ok_or_else(|| QueryError::NoLabel(resource.qualified()))?;
    let mut matchers = promql::matchers(metric_selector)?;
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    if let Some(namespace) = namespace {
        scope_to_namespace(rule, namespace, &mut matchers, &mut values)?;
    }
    if let Objects::Named(names) = objects {
        matchers.push(names_matcher(&resource_label, names));
        values.insert(
            resource_label.clone(),
            promql::regex_alternation_in_string(names.iter().map(String::as_str)),
        );
    }
    render(
        rule,
        Data::from([
            ("Series", Value::Str(series.to_owned())),
            ("LabelMatchers", Value::Str(matchers.join(","))),
            ("LabelValuesByName", Value::Map(values)),
            ("GroupBy", Value::Str(resource_label.clone())),
            ("GroupBySlice", Value::List(vec![resource_label])),
        ]),
    )
}

/// The query for an external-metrics request: the selector's matchers, then the namespace unless the rule
/// says `namespaced: false`. `.GroupBy` is empty, as in the Prometheus Adapter.
pub fn external_query(
    rule: &Rule,
    series: &str,
    namespace: &str,
    selector: &LabelSelector,
) -> Result<String, QueryError> {
    let mut matchers = promql::matchers(selector)?;
    let mut values = selected_values(selector);
    if rule.resources.namespaced && !namespace.is_empty() {
        scope_to_namespace(rule, namespace, &mut matchers, &mut values)?;
    }
    render(
        rule,
        Data::from([
            ("Series", Value::Str(series.to_owned())),
            ("LabelMatchers", Value::Str(matchers.join(","))),
            ("LabelValuesByName", Value::Map(values)),
            ("GroupBy", Value::Str(String::new())),
            ("GroupBySlice", Value::List(Vec::new())),
        ]),
    )
}

#[cfg(test)]
mod tests;
