//! The custom and external metrics APIs end to end against a real Prometheus (Debian's `prometheus` and
//! `promtool`), with exact expected values: the counters grow linearly, so every `rate()` is known.
//! Requests go through the adapter's router in process; `kubectl.rs` covers the real TLS socket.

mod support;

use support::*;

#[tokio::test]
async fn wildcard_pods_get_exact_rates_for_both_cadvisor_layouts_without_double_counting() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let (code, list) = get(&state, &secondaries_rx_packets()).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "MetricValueList");
    assert_eq!(list["apiVersion"], "custom.metrics.k8s.io/v1beta2");
    // A: containerd sandbox plus its app-container copy → 12.5, not 25. B: dockershim "POD" → 17.5.
    // C: two interfaces, 15 + 5. The deleted pod (99/s) and the node (1000/s) never appear.
    assert_eq!(values(&list), pairs(&SECONDARIES_RX_PACKETS));
    let item = &list["items"][0];
    assert_eq!(
        item["describedObject"],
        serde_json::json!({"kind": "Pod", "namespace": "sidecar", "name": SECONDARY_A, "apiVersion": "v1"})
    );
    assert_eq!(
        item["metric"],
        serde_json::json!({"name": "container_network_receive_packets_per_second", "selector": null})
    );
    assert_eq!(item["windowSeconds"], 120);
    assert!(item["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn transmit_and_byte_rates_are_served_per_pod() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let cases = [
        (
            "container_network_transmit_packets_per_second",
            vec![(SECONDARY_A, "7250m"), (SECONDARY_B, "8500m")],
        ),
        (
            "container_network_receive_bytes_per_second",
            vec![(SECONDARY_A, "18750")],
        ),
        (
            "container_network_transmit_bytes_per_second",
            vec![(SECONDARY_A, "9062500m")],
        ),
    ];
    for (metric, expected) in cases {
        let (code, list) = get(&state, &wildcard(V2, metric, SECONDARY_SELECTOR)).await;
        assert_eq!(code, 200, "{metric}: {list}");
        assert_eq!(values(&list), pairs(&expected), "{metric}");
    }
}

#[tokio::test]
async fn v1beta1_serves_the_same_values_in_the_flat_shape() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let (code, list) = get(
        &state,
        &wildcard(
            V1,
            "container_network_receive_packets_per_second",
            SECONDARY_SELECTOR,
        ),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list["apiVersion"], "custom.metrics.k8s.io/v1beta1");
    assert_eq!(
        values(&list)[1],
        (SECONDARY_B.to_owned(), "17500m".to_owned())
    );
    let item = &list["items"][1];
    assert_eq!(
        item["metricName"],
        "container_network_receive_packets_per_second"
    );
    assert_eq!(item["window"], 120);
    assert!(item["selector"].is_null() && item.get("metric").is_none());
}

#[tokio::test]
async fn legacy_per_minute_name_serves_exactly_what_the_sidecar_guide_rule_returned() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let (code, list) = get(&state, &secondaries_legacy_per_minute()).await;
    assert_eq!(code, 200, "{list}");
    // The rule summed every series of a pod, so A's app-container copy counts twice, as it did before.
    assert_eq!(values(&list), pairs(&SECONDARIES_LEGACY_PER_MINUTE));
    assert_eq!(list["items"][0]["windowSeconds"], 60);

    // The Prometheus Adapter rule of the guide, rendered as it rendered it (pod-name regex and all).
    let rule = format!(
        "sum(rate(container_network_receive_packets_total{{namespace=\"sidecar\",pod=~\"{SECONDARY_A}|{SECONDARY_B}|{SECONDARY_C}\"}}[1m])) by (pod)"
    );
    let direct = prometheus.query(&rule).await;
    for sample in direct["data"]["result"].as_array().unwrap() {
        let pod = sample["metric"]["pod"].as_str().unwrap();
        let value: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
        let served = values(&list).into_iter().find(|(p, _)| p == pod).unwrap().1;
        let expected = xroad_metrics_adapter::quantity::Quantity::from_f64(value)
            .unwrap()
            .to_string();
        assert_eq!(served, expected, "{pod}: the rule gave {value}");
    }
}

#[tokio::test]
async fn selectors_matching_no_pods_return_empty_items_not_an_error() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    for selector in ["run=nobody", "run in (a,b),!run"] {
        let (code, list) = get(
            &state,
            &wildcard(V2, "container_network_receive_packets_per_second", selector),
        )
        .await;
        assert_eq!(code, 200, "{selector}");
        assert_eq!(list["items"], serde_json::json!([]), "{selector}");
    }
    let (code, list) = get(
        &state,
        &format!("{V2}/namespaces/empty-ns/pods/%2A/container_network_receive_packets_per_second"),
    )
    .await;
    assert_eq!((code, list["items"].clone()), (200, serde_json::json!([])));
}

#[tokio::test]
async fn set_based_selectors_as_the_aggregator_encodes_them() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    // `run in (security-server-sidecar-primary,security-server-sidecar-secondary)`, form-encoded with `+`.
    let path = format!(
        "{V2}/namespaces/sidecar/pods/%2A/container_network_receive_packets_per_second?labelSelector=run+in+%28security-server-sidecar-primary%2Csecurity-server-sidecar-secondary%29"
    );
    let (code, list) = get(&state, &path).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(values(&list).len(), 4);
    assert_eq!(values(&list)[0], (PRIMARY.to_owned(), "3".to_owned()));
}

#[tokio::test]
async fn metric_label_selector_filters_series_and_is_echoed() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let path = format!(
        "{}&metricLabelSelector=interface%3Deth1",
        secondaries_rx_packets()
    );
    let (code, list) = get(&state, &path).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(values(&list), pairs(&[(SECONDARY_C, "5")]));
    assert_eq!(
        list["items"][0]["metric"]["selector"],
        serde_json::json!({"matchLabels": {"interface": "eth1"}})
    );
}

#[tokio::test]
async fn a_named_pod_gets_exactly_one_item_or_a_404() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let (code, list) = get(&state, &format!("{V2}/namespaces/sidecar/pods/{SECONDARY_B}/container_network_receive_packets_per_second")).await;
    assert_eq!(code, 200);
    assert_eq!(values(&list), pairs(&[(SECONDARY_B, "17500m")]));

    for missing in [DELETED, "no-such-pod"] {
        let (code, status) = get(&state, &format!("{V2}/namespaces/sidecar/pods/{missing}/container_network_receive_packets_per_second")).await;
        assert_eq!(code, 404);
        assert_eq!(
            status["message"],
            format!(
                "the server could not find the metric container_network_receive_packets_per_second for pods {missing}"
            )
        );
    }
}

#[tokio::test]
async fn a_namespace_gets_the_sum_of_its_live_pods() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let (code, list) = get(
        &state,
        &format!("{V2}/namespaces/sidecar/metrics/container_network_receive_packets_per_second"),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    // 3 + 12.5 + 17.5 + 20: the deleted pod's trailing rate and the node are excluded.
    assert_eq!(values(&list), pairs(&[("sidecar", "53")]));
    assert_eq!(
        list["items"][0]["describedObject"],
        serde_json::json!({"kind": "Namespace", "name": "sidecar", "apiVersion": "v1"})
    );
}

#[tokio::test]
async fn external_metrics_are_namespace_totals_filtered_by_label_selector() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let base = "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/container_network_receive_packets_per_second";
    let (code, list) = get(&state, base).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "ExternalMetricValueList");
    // Every pod Prometheus knows in the namespace, the deleted one included: external metrics are series
    // totals, not pod lists. 3 + 12.5 + 17.5 + 20 + 99 = 152.
    assert_eq!(list["items"][0]["value"], "152");
    assert_eq!(list["items"][0]["metricLabels"], serde_json::json!({}));

    let (_, filtered) = get(&state, &format!("{base}?labelSelector=interface%3Deth1")).await;
    assert_eq!(filtered["items"][0]["value"], "5");
    let (code, none) = get(&state, &format!("{base}?labelSelector=interface%3Dwlan9")).await;
    assert_eq!((code, none["items"].clone()), (200, serde_json::json!([])));
}

#[tokio::test]
async fn bad_requests_get_a_status_that_names_the_problem() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state(&prometheus.url);
    let metric = "container_network_receive_packets_per_second";
    let cases = [
        (
            format!("{V2}/namespaces/sidecar/pods/%2A/xroad_no_such_metric"),
            404,
            "NotFound",
            "the server could not find the metric xroad_no_such_metric for pods",
        ),
        (
            format!("{V2}/namespaces/sidecar/pods/%2A/{metric}?labelSelector=run+in+%28%29"),
            400,
            "BadRequest",
            "unable to parse labelSelector: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            format!("{V2}/namespaces/sidecar/pods/%2A/{metric}?metricLabelSelector=interface%3E1"),
            400,
            "BadRequest",
            "operator not supported for metric selectors: >",
        ),
        (
            format!(
                "{V2}/namespaces/sidecar/pods/%2A/{metric}?metricLabelSelector=app.kubernetes.io%2Fname%3Dx"
            ),
            400,
            "BadRequest",
            "unable to parse metricLabelSelector: label name \"app.kubernetes.io/name\" is not a valid Prometheus label name",
        ),
        (
            format!("{V2}/nodes/node-1/{metric}"),
            404,
            "NotFound",
            "the server could not find the metric container_network_receive_packets_per_second for nodes",
        ),
        (
            format!("{V2}/namespaces/sidecar/pods/bar"),
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/nope".to_owned(),
            404,
            "NotFound",
            "the server could not find the metric nope for external.metrics.k8s.io",
        ),
    ];
    for (path, code, reason, message) in cases {
        let (got, status) = get(&state, &path).await;
        assert_eq!(got, code, "{path}: {status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], code);
        assert_eq!(status["reason"], reason, "{path}");
        assert_eq!(status["message"], message, "{path}");
    }
}

#[tokio::test]
async fn prometheus_down_gives_a_500_that_says_why() {
    let state = state(&format!("http://127.0.0.1:{}", free_port()));
    let (code, status) = get(&state, &secondaries_rx_packets()).await;
    assert_eq!(code, 500, "{status}");
    assert_eq!(status["reason"], "InternalError");
    let message = status["message"].as_str().unwrap();
    assert!(message.starts_with("Internal error occurred: unable to fetch metrics: cannot reach the metrics backend at http://127.0.0.1:"), "{message}");
    assert!(message.contains("refused"), "{message}");
    // Discovery never touches the backend.
    let (code, _) = get(&state, V2).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_prometheus_outage_serves_the_last_good_values_then_fails() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = state_with(
        &prometheus.url,
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(2),
    );
    let path = secondaries_rx_packets();
    let (code, before) = get(&state, &path).await;
    assert_eq!(code, 200);
    drop(prometheus);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (code, during) = get(&state, &path).await;
    assert_eq!(
        (code, values(&during)),
        (200, values(&before)),
        "within maxStaleness"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (code, after) = get(&state, &path).await;
    assert_eq!(code, 500, "past maxStaleness: {after}");
}

#[tokio::test]
async fn discovery_lists_every_metric_for_pods_and_namespaces() {
    let state = state("http://127.0.0.1:9");
    let (code, list) = get(&state, V2).await;
    assert_eq!(code, 200);
    assert_eq!(list["groupVersion"], "custom.metrics.k8s.io/v1beta2");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"pods/container_network_receive_packets_per_second"));
    assert!(names.contains(&"namespaces/container_network_receive_packets_per_minute"));
    assert!(list["resources"][0]["singularName"] == "");
    let (_, external) = get(&state, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(external["resources"][0]["kind"], "ExternalMetricValueList");
    let (_, groups) = get(&state, "/apis").await;
    assert_eq!(
        groups["groups"][0]["preferredVersion"]["version"],
        "v1beta2"
    );
}

#[tokio::test]
async fn health_version_and_self_metrics_endpoints() {
    let state = state("http://127.0.0.1:9");
    assert_eq!(
        get(&state, "/healthz").await,
        (200, serde_json::json!("ok"))
    );
    assert_eq!(get(&state, "/livez").await, (200, serde_json::json!("ok")));
    let (code, ready) = get(&state, "/readyz?verbose").await;
    assert_eq!(code, 200);
    let ready = ready.as_str().unwrap();
    assert!(
        ready.contains("[+]pod-inventory ok") && ready.ends_with("readyz check passed\n"),
        "{ready}"
    );
    assert!(ready.contains("[i]metrics-backend"), "{ready}");
    assert_eq!(get(&state, "/readyz/pod-inventory").await.0, 200);
    assert_eq!(get(&state, "/readyz/nonexistent").await.0, 404);
    let (_, version) = get(&state, "/version").await;
    assert_eq!(version["compiler"], "rustc");
    assert_eq!(get(&state, "/openapi/v2").await.0, 404);
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("xroad_metrics_adapter_http_requests_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn readiness_waits_for_the_pod_inventory_and_only_for_it() {
    let state = state("http://127.0.0.1:9");
    let configured = state.configured();
    let unsynced = std::sync::Arc::new(xroad_metrics_adapter::server::AppState::new(
        xroad_metrics_adapter::server::Configured {
            catalog: configured.catalog.clone(),
            backends: configured.backends.clone(),
            rate_window: configured.rate_window,
            policies: configured.policies.clone(),
        },
        std::sync::Arc::new(xroad_metrics_adapter::inventory::PodInventory::new()),
        state.metrics.clone(),
        xroad_metrics_adapter::server::guard::Guard::anonymous(),
        None,
    ));
    let (code, text) = get(&unsynced, "/readyz").await;
    assert_eq!(code, 500);
    assert!(
        text.as_str().unwrap().contains("[-]pod-inventory failed"),
        "{text}"
    );
    let (code, status) = get(&unsynced, &secondaries_rx_packets()).await;
    assert_eq!(
        (code, status["message"].as_str().unwrap()),
        (
            500,
            "Internal error occurred: unable to list matching resources"
        )
    );
}

#[tokio::test]
async fn other_methods_get_405_with_a_status() {
    use tower::ServiceExt;
    let state = state("http://127.0.0.1:9");
    let request = axum::http::Request::post(V2)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = xroad_metrics_adapter::server::app(state)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["reason"], "MethodNotAllowed");
}
