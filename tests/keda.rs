//! KEDA's External Scaler: a tonic client over real TLS against the adapter's gRPC server, backed by a real
//! Prometheus, as KEDA's operator calls it; and the wire encoding of every message, field by field.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use support::scaler::ScalerServer;
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use xroad_metrics_adapter::config::GrpcConfig;
use xroad_metrics_adapter::grpc::externalscaler::external_scaler_client::ExternalScalerClient;
use xroad_metrics_adapter::grpc::externalscaler::*;
use xroad_metrics_adapter::server::AppState;

/// A ScaledObject in `sidecar` whose trigger has this metadata.
fn scaled_object(metadata: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: "sidecar-secondary".into(),
        namespace: NAMESPACE.into(),
        scaler_metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

/// The Secondary pods' received packets, target 10 per pod: KEDA's view of the HPA request of the other tests.
fn rx_packets(activation: &str) -> ScaledObjectRef {
    scaled_object(&[
        ("scalerAddress", "xroad-metrics-adapter.xroad-metrics:9443"),
        ("metricName", "container_network_receive_packets_per_second"),
        ("labelSelector", SECONDARY_SELECTOR),
        ("targetValue", "10"),
        ("activationTargetValue", activation),
    ])
}

async fn sidecar_scaler(prometheus: &Prometheus) -> (Arc<AppState>, ScalerServer) {
    let state = support::state(&prometheus.url);
    let scaler = ScalerServer::start(state.clone(), GrpcConfig::default()).await;
    (state, scaler)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spec_and_the_value_are_what_the_metrics_api_serves() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (state, scaler) = sidecar_scaler(&prometheus).await;
    let mut client = scaler.client();

    let spec = client
        .get_metric_spec(rx_packets("0"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        spec.metric_specs,
        [MetricSpec {
            metric_name: "container_network_receive_packets_per_second".into(),
            target_size: 10,
            target_size_float: 10.0,
        }]
    );

    let answer = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(rx_packets("0")),
            metric_name: "container_network_receive_packets_per_second".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (status, list) = get(&state, &secondaries_rx_packets()).await;
    assert_eq!(status, 200);
    let served: f64 = values(&list)
        .iter()
        .map(|(_, v)| match v.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
            None => v.parse().unwrap(),
        })
        .sum();
    assert_eq!(served, 50.0, "12.5 + 17.5 + 20");
    assert_eq!(
        answer.metric_values,
        [MetricValue {
            metric_name: "container_network_receive_packets_per_second".into(),
            metric_value: 50,
            metric_value_float: served,
        }]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_is_active_strictly_above_its_activation_target() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (_state, scaler) = sidecar_scaler(&prometheus).await;
    let mut client = scaler.client();
    for (activation, active) in [("0", true), ("49.5", true), ("50", false), ("1000", false)] {
        let result = client
            .is_active(rx_packets(activation))
            .await
            .unwrap()
            .into_inner()
            .result;
        assert_eq!(result, active, "activationTargetValue {activation}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_metrics_and_policies_are_not_found_and_bad_metadata_names_its_key() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (_state, scaler) = sidecar_scaler(&prometheus).await;
    let mut client = scaler.client();

    let unknown = client
        .get_metric_spec(scaled_object(&[
            ("metricName", "no_such_metric"),
            ("targetValue", "1"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown
            .message()
            .contains("no_such_metric is not a served pod metric"),
        "{unknown:?}"
    );

    let policy = client
        .is_active(scaled_object(&[("policy", "nowhere")]))
        .await
        .unwrap_err();
    assert_eq!(policy.code(), tonic::Code::NotFound);

    let bad = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(scaled_object(&[
                ("metricName", "container_network_receive_packets_per_second"),
                ("targetValue", "ten"),
            ])),
            metric_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        bad.message(),
        "scalerMetadata.targetValue: \"ten\" is not a number of 0 or more"
    );

    let selector = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(scaled_object(&[
                ("metricName", "container_network_receive_packets_per_second"),
                ("targetValue", "10"),
                ("labelSelector", "run in (a"),
            ])),
            metric_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        selector.code(),
        tonic::Code::InvalidArgument,
        "{selector:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_down_is_unavailable_never_a_made_up_zero() {
    let state = support::state_with(
        "http://127.0.0.1:9",
        Duration::from_secs(15),
        Duration::ZERO,
    );
    let scaler = ScalerServer::start(state, GrpcConfig::default()).await;
    let error = scaler
        .client()
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(rx_packets("0")),
            metric_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    assert!(
        error.message().contains("cannot reach the metrics backend"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_activity_stream_pushes_each_change_and_ends_at_shutdown() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let state = support::state(&prometheus.url);
    let config = GrpcConfig {
        active_check_interval: Duration::from_millis(100),
        ..GrpcConfig::default()
    };
    let scaler = ScalerServer::start(state.clone(), config).await;
    let mut stream = scaler
        .client()
        .stream_is_active(rx_packets("0"))
        .await
        .unwrap()
        .into_inner();
    assert!(next(&mut stream).await.unwrap().unwrap().result);

    // The Secondary pods go away: no load, so the trigger turns inactive, and that is pushed.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    state
        .inventory
        .load(xroad_metrics_adapter::inventory::load_file(&empty).unwrap());
    assert!(!next(&mut stream).await.unwrap().unwrap().result);

    scaler.stop.send(true).unwrap();
    assert!(
        next(&mut stream).await.unwrap().is_none(),
        "the stream ends cleanly at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_follows_readiness() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let (_state, scaler) = sidecar_scaler(&prometheus).await;
    let mut health = HealthClient::new(scaler.channel.clone());
    for service in ["", "externalscaler.ExternalScaler"] {
        let status = eventually_status(&mut health, service).await;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    scaler.stop.send(true).unwrap();
}

async fn eventually_status(
    health: &mut tonic_health::pb::health_client::HealthClient<Channel>,
    service: &str,
) -> i32 {
    for _ in 0..50 {
        if let Ok(answer) = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
        {
            return answer.into_inner().status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no health answer for {service:?}");
}

/// The stream's next message, or its end, within 10 s.
async fn next(
    stream: &mut tonic::Streaming<IsActiveResponse>,
) -> Result<Option<IsActiveResponse>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message or the end within 10 s")
}

/// Field numbers and types are KEDA's wire contract: each message encoded by hand, byte for byte.
#[test]
fn every_message_encodes_with_kedas_field_numbers() {
    let double = |v: f64| v.to_le_bytes().to_vec();
    let spec = MetricSpec {
        metric_name: "m".into(),
        target_size: 5,
        target_size_float: 2.5,
    };
    assert_eq!(
        spec.encode_to_vec(),
        [vec![0x0a, 1, b'm', 0x10, 5, 0x19], double(2.5)].concat()
    );
    let value = MetricValue {
        metric_name: "m".into(),
        metric_value: 7,
        metric_value_float: 7.25,
    };
    assert_eq!(
        value.encode_to_vec(),
        [vec![0x0a, 1, b'm', 0x10, 7, 0x19], double(7.25)].concat()
    );
    let reference = ScaledObjectRef {
        name: "a".into(),
        namespace: "b".into(),
        scaler_metadata: HashMap::from([("k".to_owned(), "v".to_owned())]),
    };
    // The map is repeated entries of field 3, each with key = 1 and value = 2.
    assert_eq!(
        reference.encode_to_vec(),
        [
            0x0a, 1, b'a', 0x12, 1, b'b', 0x1a, 6, 0x0a, 1, b'k', 0x12, 1, b'v'
        ]
    );
    let request = GetMetricsRequest {
        scaled_object_ref: Some(ScaledObjectRef {
            name: "a".into(),
            ..Default::default()
        }),
        metric_name: "m".into(),
    };
    assert_eq!(
        request.encode_to_vec(),
        [0x0a, 3, 0x0a, 1, b'a', 0x12, 1, b'm']
    );
    assert_eq!(IsActiveResponse { result: true }.encode_to_vec(), [0x08, 1]);
    assert_eq!(
        GetMetricSpecResponse {
            metric_specs: vec![MetricSpec::default()]
        }
        .encode_to_vec(),
        [0x0a, 0]
    );
    assert_eq!(
        GetMetricsResponse {
            metric_values: vec![MetricValue::default()]
        }
        .encode_to_vec(),
        [0x0a, 0]
    );
}

/// A policy on the Secondary pods whose signals need nothing outside the test: 50 packets/s at 10 per pod.
const POLICY: &str = "scaleOnFailure:\n- name: secondaries\n  target: {namespace: sidecar, deployment: security-server-sidecar-secondary}\n  \
     load: {metric: container_network_receive_packets_per_second, capacityPerPod: 10}\n  minHealthy: 2\n  \
     signals:\n    probes: {enabled: false}\n    healthCheck: {enabled: false, period: 1s}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_trigger_gives_the_replica_count_the_policy_serves_the_hpa() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let mut config = xroad_metrics_adapter::config::Config::parse("c.yaml", POLICY).unwrap();
    config.prometheus.url = Some(prometheus.url.parse().unwrap());
    let settings = xroad_metrics_adapter::app::Settings {
        inventory: Some(INVENTORY.into()),
        ..Default::default()
    };
    let adapter = Arc::new(
        xroad_metrics_adapter::app::Adapter::build(
            settings,
            config,
            xroad_metrics_adapter::server::guard::Guard::anonymous(),
        )
        .await
        .unwrap(),
    );
    adapter
        .start(Duration::from_secs(60), "xroad-metrics")
        .await
        .unwrap();
    let scaler = ScalerServer::start(adapter.state.clone(), GrpcConfig::default()).await;
    let mut client = scaler.client();
    let policy = scaled_object(&[("policy", "secondaries")]);
    let spec = client
        .get_metric_spec(policy.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        spec.metric_specs[0].metric_name,
        "xroad_scale_on_failure_replicas"
    );
    assert_eq!(
        (
            spec.metric_specs[0].target_size,
            spec.metric_specs[0].target_size_float
        ),
        (1, 1.0)
    );
    let value = wait_for(
        "the policy's first decision",
        Duration::from_secs(20),
        || {
            let (mut client, policy) = (client.clone(), policy.clone());
            async move {
                client
                    .get_metrics(GetMetricsRequest {
                        scaled_object_ref: Some(policy),
                        metric_name: "xroad_scale_on_failure_replicas".into(),
                    })
                    .await
                    .ok()
                    .map(|answer| answer.into_inner().metric_values[0].clone())
            }
        },
    )
    .await;
    let (_, served) = get(
        &adapter.state,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/deployments.apps/security-server-sidecar-secondary/xroad_scale_on_failure_replicas",
    )
    .await;
    assert_eq!(served["items"][0]["value"], "5", "ceil(50 / 10)");
    assert_eq!((value.metric_value, value.metric_value_float), (5, 5.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_grpc_enabled_verifies_kedas_client_certificate_and_ends_streams_on_sigterm() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let clients = support::pki::Ca::new("keda-clients");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("keda-ca.crt");
    std::fs::write(&ca, &clients.pem).unwrap();
    let port = free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "grpc: {{enabled: true, port: {port}, clientCaFile: {}, activeCheckInterval: 1s}}\n",
            ca.display()
        ),
    )
    .unwrap();
    let mut adapter = support::served::ServedAdapter::start(&[
        "--prometheus-url",
        &prometheus.url,
        "--inventory",
        INVENTORY,
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    adapter.wait_ready(Duration::from_secs(20)).await;
    let server_ca = std::fs::read_to_string(&adapter.tls.ca_file).unwrap();
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}")).unwrap();
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&server_ca));

    // Without KEDA's client certificate the handshake is refused.
    let anonymous = endpoint
        .clone()
        .tls_config(tls.clone())
        .unwrap()
        .connect()
        .await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(channel) => ExternalScalerClient::new(channel)
            .is_active(rx_packets("0"))
            .await
            .is_err(),
    };
    assert!(refused, "a caller without a client certificate is served");

    let keda = clients.client("keda-operator", &[]);
    let channel = endpoint
        .tls_config(tls.identity(tonic::transport::Identity::from_pem(
            &keda.cert_pem,
            &keda.key_pem,
        )))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ExternalScalerClient::new(channel);
    let value = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(rx_packets("0")),
            metric_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value.metric_values[0].metric_value_float, 50.0);
    let mut stream = client
        .stream_is_active(rx_packets("0"))
        .await
        .unwrap()
        .into_inner();
    assert!(next(&mut stream).await.unwrap().unwrap().result);

    let (_, metrics) = adapter.get("/metrics").await.unwrap();
    assert!(
        metrics.contains(
            "xroad_metrics_adapter_grpc_calls_total{method=\"GetMetrics\",code=\"Ok\"} 1"
        ),
        "{metrics}"
    );

    // The kubelet stops the pod: the stream ends and the process exits cleanly, without waiting on it.
    let exit = adapter.terminate(Duration::from_secs(15)).await;
    assert!(next(&mut stream).await.map_or(true, |m| m.is_none()));
    assert_eq!(exit, Some(0), "{}", adapter.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_streams_are_bounded_like_calls() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let config = GrpcConfig {
        max_concurrent_calls: 1,
        ..GrpcConfig::default()
    };
    let scaler = ScalerServer::start(support::state(&prometheus.url), config).await;
    let mut client = scaler.client();
    let mut first = client
        .stream_is_active(rx_packets("0"))
        .await
        .unwrap()
        .into_inner();
    assert!(next(&mut first).await.unwrap().unwrap().result);
    let second = client.stream_is_active(rx_packets("0")).await.unwrap_err();
    assert_eq!(second.code(), tonic::Code::ResourceExhausted, "{second:?}");
    // A unary call has its own slots.
    assert!(
        client
            .is_active(rx_packets("0"))
            .await
            .unwrap()
            .into_inner()
            .result
    );
}
