//! The HPA's request through a real aggregator, to the Prometheus Adapter v0.12.0 and to us, serving the same
//! rule from the same Prometheus (`tests/support/peers.rs`: kube-apiserver v1.37.2, 3 pods), reported as
//! ratios to the baseline measured in the same run: the query the Prometheus Adapter sends, straight to
//! Prometheus.
//!
//! - `direct`: the rule's PromQL for the 3 pods, POST /api/v1/query (reqwest, keep-alive): the baseline.
//! - `kube-apiserver, one pod`: a request kube-apiserver answers itself, for the aggregator's own share.
//! - `Prometheus Adapter`: `custom.metrics.k8s.io/v1beta1`, proxied by the aggregator.
//! - `xroad-metrics-adapter`: the same request as `v1beta2`.
//! - `…, direct`: each adapter asked directly over HTTPS (reqwest, keep-alive) with the admin's client
//!   certificate, without the aggregator.
//!
//! Both adapters run with delegated authentication; the aggregator's front-proxy certificate is verified and
//! its SubjectAccessReviews cached by each. Run with `cargo bench --bench side_by_side` (builds the control
//! plane and the peers first when missing, as the tests do; about 2 minutes).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use futures::FutureExt;

use common::{Request, measure_interleaved, report};
use support::eventually;
use support::peers::{DEPLOYMENT, NS, RULE_METRIC, SideBySide};

const WARMUP: usize = 30;
const ROUNDS: usize = 500;

#[tokio::main]
async fn main() {
    let peers = SideBySide::start().await;
    let client = peers.plane.client().await;
    let path = |version: &str| {
        format!(
            "/apis/custom.metrics.k8s.io/{version}/namespaces/{NS}/pods/%2A/{RULE_METRIC}?labelSelector=run%3D{DEPLOYMENT}"
        )
    };
    let pods = peers.kubelet.running.lock().unwrap().clone();
    let promql = format!(
        "sum(rate(container_network_receive_packets_total{{namespace=\"{NS}\",pod=~\"{}\"}}[1m])) by (pod)",
        pods.iter().cloned().collect::<Vec<_>>().join("|")
    );
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/query", peers.prometheus.url);
    let get = |path: String| {
        let client = client.clone();
        async move {
            let request = axum::http::Request::get(path).body(Vec::new()).unwrap();
            client.request_text(request).await
        }
    };
    // Both adapters discover the rule's series at their next relist.
    eventually(
        "both adapters serve the rule",
        std::time::Duration::from_secs(60),
        || async {
            let serves = |version| async move {
                get(path(version))
                    .await
                    .is_ok_and(|t| t.contains(DEPLOYMENT))
            };
            serves("v1beta1").await && serves("v1beta2").await
        },
    )
    .await;

    // The admin's client certificate, which both adapters trust through the cluster's client CA.
    let dir = peers.plane.dir.path();
    let identity = [dir.join("admin.crt"), dir.join("admin.key")]
        .map(|f| std::fs::read_to_string(f).unwrap())
        .concat();
    let https = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(peers.plane.ca.pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .build()
        .unwrap();
    let direct = |port: u16, version: &str| {
        let url = format!("https://localhost:{port}{}", path(version));
        let https = &https;
        move || {
            let url = url.clone();
            async move {
                let response = https.get(&url).send().await.unwrap();
                assert!(
                    response.status().is_success(),
                    "{url}: {}",
                    response.status()
                );
                response.bytes().await.unwrap();
            }
            .boxed_local()
        }
    };
    let answered = |path: String| {
        move || {
            let path = path.clone();
            async move {
                let text = get(path.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                assert!(
                    text.contains("\"value\"") || text.contains("\"kind\""),
                    "{text}"
                );
            }
            .boxed_local()
        }
    };
    let mut requests: Vec<(&str, Request)> = vec![
        (
            "direct Prometheus query",
            Box::new(|| {
                async {
                    let response = http
                        .post(&url)
                        .form(&[("query", promql.as_str())])
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                }
                .boxed_local()
            }),
        ),
        (
            "kube-apiserver, one pod",
            Box::new(answered(format!(
                "/api/v1/namespaces/{NS}/pods/{}",
                pods.iter().next().unwrap()
            ))),
        ),
        (
            "Prometheus Adapter (v1beta1)",
            Box::new(answered(path("v1beta1"))),
        ),
        (
            "xroad-metrics-adapter (v1beta2)",
            Box::new(answered(path("v1beta2"))),
        ),
        (
            "Prometheus Adapter, direct",
            Box::new(direct(peers.prometheus_adapter_port, "v1beta1")),
        ),
        (
            "xroad-metrics-adapter, direct",
            Box::new(direct(peers.adapter_port, "v1beta2")),
        ),
    ];
    let stats = measure_interleaved(&mut requests, WARMUP, ROUNDS).await;
    println!(
        "{ROUNDS} rounds after {WARMUP} warm-up rounds, each round one request of every kind in rotating order; \
         3 pods; through kube-apiserver v1.37.2's aggregator on loopback"
    );
    for ((name, _), stats_of) in requests.iter().zip(&stats) {
        report(name, stats_of, &stats[0]);
    }
    let median = |i: usize| stats[i].median.as_secs_f64() * 1e6;
    println!(
        "median past the aggregator's own share: Prometheus Adapter {:.0} µs, xroad-metrics-adapter {:.0} µs \
         (ratio {:.2})",
        median(2) - median(1),
        median(3) - median(1),
        (median(3) - median(1)) / (median(2) - median(1))
    );
}
