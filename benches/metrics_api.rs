//! Latency of the HPA's request, `pods/*/<metric>?labelSelector=…`, against a real Prometheus, reported as
//! ratios to the baseline measured in the same run: the same PromQL sent straight to Prometheus.
//!
//! - `direct`: POST /api/v1/query with the adapter's query (reqwest, keep-alive): the baseline.
//! - `adapter, cold`: through the adapter's router with the cache disabled, so every request also queries
//!   Prometheus (adapter overhead = cold - direct).
//! - `adapter, cached`: the usual path, an answer shared for `refreshInterval`.
//! - `adapter over TLS, cached`: the same through the real HTTPS server (HTTP/2, keep-alive).
//!
//! Run with `cargo bench --bench metrics_api` (needs Debian's `prometheus`; `scripts/install-deps.sh`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;
use xroad_metrics_adapter::catalog::{Catalog, Scope};

const WARMUP: usize = 50;
const ROUNDS: usize = 1000;

struct Stats {
    median: Duration,
    p99: Duration,
}

async fn measure<F, Fut>(mut request: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARMUP {
        request().await;
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        request().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    Stats {
        median: samples[ROUNDS / 2],
        p99: samples[ROUNDS * 99 / 100],
    }
}

fn report(name: &str, stats: &Stats, baseline: &Stats) {
    println!(
        "{name:<28} median {:>9.1} µs  p99 {:>9.1} µs  median ratio to direct {:>6.3}",
        stats.median.as_secs_f64() * 1e6,
        stats.p99.as_secs_f64() * 1e6,
        stats.median.as_secs_f64() / baseline.median.as_secs_f64()
    );
}

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
    let direct = measure(|| async {
        let response = http
            .post(&url)
            .form(&[("query", promql.as_str())])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        response.bytes().await.unwrap();
    })
    .await;

    let cold_state = state_with(
        &prometheus.url,
        Duration::from_nanos(1),
        Duration::from_secs(60),
    );
    let cold = measure(|| async {
        let (code, list) = get(&cold_state, &path).await;
        assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 3));
    })
    .await;

    let cached_state = state(&prometheus.url);
    let cached = measure(|| async {
        let (code, _) = get(&cached_state, &path).await;
        assert_eq!(code, 200);
    })
    .await;

    let adapter = TlsAdapter::start(state(&prometheus.url)).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&adapter.ca_file).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let tls_url = format!("https://127.0.0.1:{}{path}", adapter.port);
    let over_tls = measure(|| async {
        let response = https.get(&tls_url).send().await.unwrap();
        assert!(response.status().is_success());
        response.bytes().await.unwrap();
    })
    .await;

    println!(
        "{ROUNDS} requests each after {WARMUP} warm-up requests; 3 pods, Prometheus on loopback"
    );
    report("direct Prometheus query", &direct, &direct);
    report("adapter, cold (no cache)", &cold, &direct);
    report("adapter, cached", &cached, &direct);
    report("adapter over TLS, cached", &over_tls, &direct);
}
