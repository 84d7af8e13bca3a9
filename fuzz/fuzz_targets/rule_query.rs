//! Any object name, namespace and selector value: a Prometheus Adapter rule's query, rendered with them in every
//! template field, has the same shape outside its string literals as with harmless values. Nothing a request
//! supplies can leave the string it is placed in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::compat::query::{Objects, custom_query};
use xroad_metrics_adapter::compat::resources::GroupResource;
use xroad_metrics_adapter::compat::rules::AdapterConfig;
use xroad_metrics_adapter::selector::LabelSelector;

const RULES: &str = r#"
rules:
- seriesQuery: 'up'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on(pod) up{pod=~"<<index .LabelValuesByName "pod">>",namespace=~"<<index .LabelValuesByName "namespace">>"}'
"#;

/// The query with every double-quoted string literal's contents removed.
fn outside_strings(query: &str) -> String {
    let mut out = String::new();
    let mut chars = query.chars();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => {
                in_string = false;
                out.push(c);
            }
            (true, _) => {}
            (false, '"') => {
                in_string = true;
                out.push(c);
            }
            (false, _) => out.push(c),
        }
    }
    assert!(!in_string, "unterminated string in {query:?}");
    out
}

fuzz_target!(|input: (&str, &str, &str)| {
    let (name, namespace, value) = input;
    let config = AdapterConfig::parse(RULES).unwrap();
    let rule = &config.rules[0];
    let pods = GroupResource {
        group: String::new(),
        resource: "pods".into(),
    };
    let render = |name: &str, namespace: &str, value: &str| {
        let selector: LabelSelector = format!("interface in ({value})").parse().ok()?;
        let names = [name.to_owned(), "b".to_owned()];
        custom_query(rule, "up", &pods, Some(namespace), Objects::Named(&names), &selector).ok()
    };
    let (Some(hostile), Some(harmless)) = (render(name, namespace, value), render("a", "ns", "x")) else {
        return;
    };
    assert_eq!(outside_strings(&hostile), outside_strings(&harmless), "{hostile}");
});
