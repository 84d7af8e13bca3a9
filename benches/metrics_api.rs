//! Latency of the HPA's request, `pods/*/<metric>?labelSelector=…`, against a real Prometheus, reported as
//! ratios to the baseline measured in the same run: the same PromQL sent straight to Prometheus.
//!
//! - `direct`: POST /api/v1/query with the adapter's query (reqwest, keep-alive): the baseline.
//! - `adapter, cold`: through the adapter's router with the cache disabled, so every request also queries
//!   Prometheus (adapter overhead = cold - direct).
//! - `adapter, cached`: the usual path, an answer shared for `refreshInterval`.
//! - `adapter, cached, token` (in process): the cached path behind delegated access, with a token whose
//!   TokenReview and SubjectAccessReview answers are cached: the cost of authentication alone.
//! - `TLS, anonymous`: the cached path through the real HTTPS server (HTTP/2, keep-alive), anonymous.
//! - `TLS, delegated, front proxy`: as kube-apiserver sends it: front-proxy client certificate and
//!   `X-Remote-*` headers, authorized by SubjectAccessReview (the fake kube API of `tests/support`; answers
//!   cached for 10 s as in production).
//! - `TLS, delegated, token`: a token checked by TokenReview, then the same SubjectAccessReview.
//! - `KEDA GetMetrics, gRPC over TLS`: the same value as KEDA's operator asks the External Scaler for it (a
//!   tonic client on one HTTP/2 connection), the cached path underneath.
//!
//! Run with `cargo bench --bench metrics_api` (needs Debian's `prometheus`; `scripts/install-deps.sh`).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use futures::FutureExt;

use common::{Request, measure_interleaved, report};
use support::*;
use xroad_metrics_adapter::catalog::{Catalog, Scope};
use xroad_metrics_adapter::server::guard::Guard;

const WARMUP: usize = 50;
const ROUNDS: usize = 1000;

#[tokio::main]
async fn main() {
    let metric = "container_network_receive_packets_per_second";
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let promql = Catalog::builtin()
        .pod_metric(metric)
        .unwrap()
        .per_pod_query(Scope::Namespace(NAMESPACE), &[], Duration::from_secs(120));
    let path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/{metric}?labelSelector=run%3Dsecurity-server-sidecar-secondary"
    );

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/query", prometheus.url);
    let cold_state = state_with(
        &prometheus.url,
        Duration::from_nanos(1),
        Duration::from_secs(60),
    );
    let cached_state = guarded(&prometheus.url, Guard::anonymous()).await;
    let (_pki, kube, delegated_state) = delegated::delegated_state(&prometheus.url).await;
    let adapter = TlsAdapter::start(guarded(&prometheus.url, Guard::anonymous()).await).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&adapter.ca_file).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let tls_url = format!("https://localhost:{}{path}", adapter.port);

    const HPA: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
    let delegated = delegated::Setup::with_data().await;
    for kube in [&kube, &delegated.kube] {
        kube.allow(HPA, &format!("pods/{metric}"));
        kube.accept_token("hpa-token", serde_json::json!({"username": HPA}));
    }
    let delegated_url = format!("https://localhost:{}{path}", delegated.adapter.port);
    let scaler = support::scaler::ScalerServer::start(
        guarded(&prometheus.url, Guard::anonymous()).await,
        Default::default(),
    )
    .await;
    let keda = scaler.client();
    let trigger = xroad_metrics_adapter::grpc::externalscaler::GetMetricsRequest {
        scaled_object_ref: Some(
            xroad_metrics_adapter::grpc::externalscaler::ScaledObjectRef {
                name: "sidecar-secondary".into(),
                namespace: NAMESPACE.into(),
                scaler_metadata: [
                    ("metricName", metric),
                    ("labelSelector", SECONDARY_SELECTOR),
                    ("targetValue", "10"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            },
        ),
        metric_name: metric.to_owned(),
    };
    let proxy = delegated.client(Some(&delegated.pki.front_proxy()));
    let token_client = delegated.client(None);

    async fn ok(request: reqwest::RequestBuilder) {
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap();
    }
    let mut requests: Vec<(&str, Request)> = vec![
        (
            "direct Prometheus query",
            Box::new(|| ok(http.post(&url).form(&[("query", promql.as_str())])).boxed_local()),
        ),
        (
            "adapter, cold (no cache)",
            Box::new(|| {
                async {
                    let (code, list) = get(&cold_state, &path).await;
                    assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 3));
                }
                .boxed_local()
            }),
        ),
        (
            "adapter, cached",
            Box::new(|| async { assert_eq!(get(&cached_state, &path).await.0, 200) }.boxed_local()),
        ),
        (
            "adapter, cached, token",
            Box::new(|| {
                async {
                    let token = [("authorization", "Bearer hpa-token")];
                    assert_eq!(get_with(&delegated_state, &path, &token).await.0, 200)
                }
                .boxed_local()
            }),
        ),
        (
            "TLS, anonymous",
            Box::new(|| ok(https.get(&tls_url)).boxed_local()),
        ),
        (
            "TLS, delegated, front proxy",
            Box::new(|| {
                ok(proxy
                    .get(&delegated_url)
                    .header("X-Remote-User", HPA)
                    .header("X-Remote-Group", "system:serviceaccounts"))
                .boxed_local()
            }),
        ),
        (
            "TLS, delegated, token",
            Box::new(|| {
                ok(token_client.get(&delegated_url).bearer_auth("hpa-token")).boxed_local()
            }),
        ),
        (
            "KEDA GetMetrics, gRPC over TLS",
            Box::new(|| {
                let (mut keda, trigger) = (keda.clone(), trigger.clone());
                async move {
                    let answer = keda.get_metrics(trigger).await.unwrap().into_inner();
                    assert_eq!(answer.metric_values[0].metric_value_float, 50.0);
                }
                .boxed_local()
            }),
        ),
    ];
    let stats = measure_interleaved(&mut requests, WARMUP, ROUNDS).await;
    println!(
        "{ROUNDS} rounds after {WARMUP} warm-up rounds, each round one request of every kind in rotating order; 3 pods, \
         Prometheus on loopback"
    );
    for ((name, _), stats_of) in requests.iter().zip(&stats) {
        report(name, stats_of, &stats[0]);
    }
    let median = |i: usize| stats[i].median.as_secs_f64() * 1e6;
    println!(
        "authentication and authorization (cached reviews) add {:.1} µs in process (token); over TLS {:.1} µs \
         (front proxy) and {:.1} µs (token)",
        median(3) - median(2),
        median(5) - median(4),
        median(6) - median(4)
    );
}
