//! Golden wire documents; the fixtures under `tests/fixtures/` are the shapes kube-apiserver and
//! the Go types of `k8s.io/metrics` produce.

use super::*;

fn golden(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn secondary_pod_value(selector: Option<LabelSelectorJson>) -> MetricValue {
    MetricValue {
        described_object: ObjectReference {
            kind: "Pod".into(),
            namespace: Some("sidecar".into()),
            name: "security-server-sidecar-secondary-7d9f8-abcde".into(),
            api_version: "v1".into(),
        },
        metric: "xroad_messages_per_second".into(),
        selector,
        timestamp: 1_740_823_200,
        window_seconds: Some(120),
        value: Quantity::from_f64(12.5).unwrap(),
    }
}

#[test]
fn api_group_list_matches_the_contract() {
    assert_eq!(
        serde_json::to_value(ApiGroupList::served()).unwrap(),
        golden("apigrouplist.json")
    );
}

#[test]
fn api_group_document_has_kind_and_prefers_v1beta2() {
    let json = serde_json::to_value(ApiGroup::custom().document()).unwrap();
    assert_eq!(json["kind"], "APIGroup");
    assert_eq!(json["preferredVersion"]["version"], "v1beta2");
}

#[test]
fn api_resource_list_always_emits_singular_name() {
    let list = ApiResourceList::new(
        CUSTOM_GROUP,
        "v1beta2",
        vec![
            ApiResource::custom("pods", "xroad_messages_per_second", true),
            ApiResource::custom("namespaces", "xroad_messages_per_second", false),
        ],
    );
    assert_eq!(
        serde_json::to_value(list).unwrap(),
        golden("apiresourcelist-v1beta2.json")
    );
}

fn to_json(list: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(list).unwrap()
}

#[test]
fn v1beta2_metric_value_list_nests_the_metric_identifier() {
    let json = to_json(metric_value_list(
        CustomVersion::V1Beta2,
        vec![secondary_pod_value(None)],
    ));
    assert_eq!(json, golden("metricvaluelist-v1beta2.json"));
}

#[test]
fn v1beta1_metric_value_list_is_flat_with_a_null_selector() {
    let json = to_json(metric_value_list(
        CustomVersion::V1Beta1,
        vec![secondary_pod_value(None)],
    ));
    assert_eq!(json, golden("metricvaluelist-v1beta1.json"));
}

#[test]
fn empty_lists_have_empty_items_not_null() {
    let json = to_json(metric_value_list(CustomVersion::V1Beta2, vec![]));
    assert_eq!(json["items"], serde_json::json!([]));
    assert_eq!(
        to_json(external_metric_value_list(vec![]))["items"],
        serde_json::json!([])
    );
}

#[test]
fn metric_selector_is_echoed_as_a_label_selector() {
    let selector: LabelSelector = "succeeded=true,service_code in (b,a),x!=y,!z"
        .parse()
        .unwrap();
    let value = secondary_pod_value(Some(LabelSelectorJson::from_selector(&selector)));
    let json = to_json(metric_value_list(CustomVersion::V1Beta2, vec![value]));
    assert_eq!(
        json["items"][0]["metric"]["selector"],
        serde_json::json!({
            "matchLabels": {"succeeded": "true"},
            "matchExpressions": [
                {"key": "service_code", "operator": "In", "values": ["a", "b"]},
                {"key": "x", "operator": "NotIn", "values": ["y"]},
                {"key": "z", "operator": "DoesNotExist"},
            ]
        })
    );
}

#[test]
fn external_metric_value_list_matches_the_contract() {
    let json = to_json(external_metric_value_list(vec![ExternalMetricValue {
        metric_name: "xroad_messages_per_second".into(),
        metric_labels: [(
            "deployment".to_string(),
            "security-server-sidecar-secondary".to_string(),
        )]
        .into(),
        timestamp: rfc3339(1_740_823_200),
        window: Some(120),
        value: Quantity::from_f64(125.0).unwrap(),
    }]));
    assert_eq!(json, golden("externalmetricvaluelist.json"));
}

#[test]
fn status_matches_the_contract() {
    let status = Status::failure(
        404,
        "NotFound",
        "the server could not find the metric xroad_messages_per_second for pods",
    )
    .with_details(StatusDetails {
        group: Some(CUSTOM_GROUP.into()),
        kind: Some("pods".into()),
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_value(status).unwrap(),
        golden("status-notfound.json")
    );
}

#[test]
fn timestamps_are_rfc3339_utc_whole_seconds() {
    assert_eq!(rfc3339(1_740_823_200), "2025-03-01T10:00:00Z");
}

/// Pod values as a wildcard answers them: one namespace, metric, selector, time and window.
fn pod_values(count: usize, selector: Option<LabelSelectorJson>) -> Vec<MetricValue> {
    let namespace: Arc<str> = "sidecar".into();
    (0..count)
        .map(|i| MetricValue {
            described_object: ObjectReference {
                kind: "Pod".into(),
                namespace: Some(namespace.clone()),
                name: format!("security-server-sidecar-secondary-{i}"),
                api_version: "v1".into(),
            },
            metric: "container_network_receive_packets_per_second".into(),
            selector: selector.clone(),
            timestamp: 1_700_000_000,
            window_seconds: Some(120),
            value: Quantity::from_millis(i as i64 * 1250 - 3000),
        })
        .collect()
}

#[test]
fn the_fast_encoding_writes_the_same_bytes_as_serde() {
    let selector = LabelSelectorJson::from_selector(&"interface=eth0,x notin (a)".parse().unwrap());
    let mut mixed = pod_values(3, None);
    // Items that do not fit the first one's template: another namespace, another time, another kind, a
    // name that needs escaping.
    mixed[1].described_object.namespace = Some("other".into());
    mixed[2].timestamp += 15;
    mixed.push(MetricValue {
        described_object: ObjectReference {
            kind: "Namespace".into(),
            namespace: None,
            name: "sidecar".into(),
            api_version: "v1".into(),
        },
        ..pod_values(1, None).remove(0)
    });
    mixed.push(MetricValue {
        described_object: ObjectReference {
            name: "quote\"back\\slash\u{7f}\u{1}".into(),
            ..pod_values(1, None).remove(0).described_object
        },
        ..pod_values(1, None).remove(0)
    });
    for version in [CustomVersion::V1Beta1, CustomVersion::V1Beta2] {
        for values in [
            vec![],
            pod_values(1, None),
            pod_values(500, None),
            pod_values(20, Some(selector.clone())),
            mixed.clone(),
        ] {
            let list = metric_value_list(version, values);
            assert_eq!(
                String::from_utf8(list.to_json()).unwrap(),
                serde_json::to_string(&list).unwrap(),
                "{version:?}"
            );
        }
    }
}
