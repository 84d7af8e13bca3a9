use super::*;

/// The fields of a custom-metrics request for pods `a` and `b` in `sidecar`, as the Prometheus Adapter
/// fills them.
fn pods_request() -> Data {
    Data::from([
        (
            "Series",
            Value::Str("container_network_receive_packets_total".into()),
        ),
        (
            "LabelMatchers",
            Value::Str(r#"namespace="sidecar",pod=~"a|b""#.into()),
        ),
        (
            "LabelValuesByName",
            Value::Map(BTreeMap::from([
                ("namespace".into(), "sidecar".into()),
                ("pod".into(), "a|b".into()),
            ])),
        ),
        ("GroupBy", Value::Str("pod".into())),
        ("GroupBySlice", Value::List(vec!["pod".into()])),
    ])
}

fn render(template: &str, data: &Data) -> Result<String, TemplateError> {
    template.parse::<Template>()?.render(data)
}

#[test]
fn the_sidecar_guides_rule_renders_as_the_prometheus_adapter_renders_it() {
    assert_eq!(
        render(
            "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
            &pods_request()
        )
        .unwrap(),
        r#"sum(rate(container_network_receive_packets_total{namespace="sidecar",pod=~"a|b"}[1m])) by (pod)"#
    );
}

#[test]
fn slices_and_maps_print_in_go_format() {
    let data = pods_request();
    assert_eq!(render("<<.GroupBySlice>>", &data).unwrap(), "[pod]");
    assert_eq!(
        render("<<.LabelValuesByName>>", &data).unwrap(),
        "map[namespace:sidecar pod:a|b]"
    );
}

#[test]
fn index_reads_a_label_value_and_a_missing_key_is_empty() {
    let data = pods_request();
    assert_eq!(
        render(r#"pod=~"<<index .LabelValuesByName "pod">>""#, &data).unwrap(),
        r#"pod=~"a|b""#
    );
    assert_eq!(
        render(r#"[<<index .LabelValuesByName "node">>]"#, &data).unwrap(),
        "[]"
    );
    assert_eq!(render("<<index .GroupBySlice 0>>", &data).unwrap(), "pod");
    assert!(matches!(
        render("<<index .GroupBySlice 3>>", &data),
        Err(TemplateError::Render(_))
    ));
}

#[test]
fn range_joins_a_slice_with_the_index_variable() {
    let mut data = pods_request();
    data.insert(
        "GroupBySlice",
        Value::List(vec!["namespace".into(), "pod".into()]),
    );
    assert_eq!(
        render(
            "by (<<range $i, $l := .GroupBySlice>><<if $i>>,<<end>><<$l>><<end>>)",
            &data
        )
        .unwrap(),
        "by (namespace,pod)"
    );
    assert_eq!(
        render("<<range .GroupBySlice>>[<<.>>]<<end>>", &data).unwrap(),
        "[namespace][pod]"
    );
    assert_eq!(
        render("<<range .GroupBySlice>><<$.Series>> <<end>>", &data).unwrap(),
        "container_network_receive_packets_total container_network_receive_packets_total "
    );
}

#[test]
fn empty_values_take_the_else_branches() {
    let external = Data::from([
        ("Series", Value::Str("xroad_opmon_requests_total".into())),
        ("LabelMatchers", Value::Str(String::new())),
        ("GroupBy", Value::Str(String::new())),
        ("GroupBySlice", Value::List(vec![])),
    ]);
    assert_eq!(
        render(
            "sum(<<.Series>><<if .LabelMatchers>>{<<.LabelMatchers>>}<<end>>)<<range .GroupBySlice>>x<<else>> by (deployment)<<end>>",
            &external
        )
        .unwrap(),
        "sum(xroad_opmon_requests_total) by (deployment)"
    );
    assert_eq!(render("<<len .GroupBySlice>>", &external).unwrap(), "0");
}

#[test]
fn trim_markers_remove_the_surrounding_spaces() {
    assert_eq!(
        render("sum( <<- .GroupBy ->> )", &pods_request()).unwrap(),
        "sum(pod)"
    );
}

#[test]
fn unsupported_or_malformed_templates_fail_to_parse() {
    for bad in [
        "<<.Series",
        "<<printf \"%s\" .Series>>",
        "<<.Series | printf \"%s\">>",
        "<<if .GroupBy>>x",
        "<<end>>",
        "<<with .GroupBy>><<.>><<end>>",
        "<<index>>",
        r#"<<index .LabelValuesByName "pod>>"#,
        "<</* comment */>>",
        "<<range i := .GroupBySlice>><<end>>",
    ] {
        assert!(
            matches!(bad.parse::<Template>(), Err(TemplateError::Parse(_))),
            "{bad}"
        );
    }
}

#[test]
fn unknown_fields_fail_when_rendered_as_in_go() {
    let template: Template = "<<.LabelMatchersByName>>".parse().unwrap();
    assert_eq!(
        template.render(&pods_request()),
        Err(TemplateError::Render(
            "can't evaluate field LabelMatchersByName".into()
        ))
    );
    let inside_range: Template = "<<range .GroupBySlice>><<.Series>><<end>>".parse().unwrap();
    assert!(inside_range.render(&pods_request()).is_err());
}
