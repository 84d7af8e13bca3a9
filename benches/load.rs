//! The adapter under load at the size users run: 200, 1,000 and 10,000 pods in one namespace, the pods from a
//! kube API watch (the tests' fake of the kube API), the values from a real Prometheus, driven over TLS and
//! HTTP/2 by a real load client, `h2load` (Debian's `nghttp2-client`), with 4 connections of 10 streams.
//!
//! For each request shape it measures, in the same run:
//! - the adapter: requests per second, p50 and p99, and the backend queries it sent;
//! - the direct Prometheus query the adapter would otherwise send per request (HTTP/1.1, as Prometheus serves);
//! - the floor: a server with the adapter's TLS and HTTP stack answering a constant body of the same size
//!   from memory, so the ratio says how close to the limit each request is;
//! - resident memory with the pods listed, then with 1 and 20 hot metrics (answers of every pod cached),
//!   with glibc's defaults and as the image runs the adapter (the Dockerfile's `ENV`).
//!
//! Throughput is measured with 4 connections of 10 streams each; latency (p50, p99) one request at a time, so
//! that it compares servers without queueing. Each run lasts 3 s after a second of warm-up.
//!
//! Run with `cargo bench --bench load` (about nine minutes; needs Debian's `prometheus` and `nghttp2-client`,
//! which `scripts/install-deps.sh` installs); `LOAD_PODS=10000` runs one size.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_kube::FakeKube;
use support::served::ServedAdapter;
use support::*;
use xroad_metrics_adapter::catalog::{Catalog, Scope};
use xroad_metrics_adapter::server::{self, tls};

const NAMESPACE: &str = "load";
const METRIC: &str = "container_network_receive_packets_per_second";
const SIZES: [usize; 3] = [200, 1_000, 10_000];
/// Pods per `app` label value, and per `group` label value.
const APP: usize = 100;
const GROUP: usize = 1_000;
/// How long each measurement runs.
const RUN: Duration = Duration::from_secs(3);

fn pod_name(i: usize) -> String {
    format!("sidecar-{:03}-7d9f8c6b5-{i:05}", i / APP)
}

/// Pod `i`: labelled `app` (100 pods each) and `group` (1,000 each), running and ready.
fn pod(i: usize) -> Value {
    let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": pod_name(i), "namespace": NAMESPACE, "uid": format!("uid-{i}"),
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "labels": {"app": format!("app-{:03}", i / APP), "group": format!("g-{}", i / GROUP)}},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                      "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}]}})
}

/// One receive-packets counter per pod, from five minutes ago to half an hour ahead every 15 s: enough for
/// the 2-minute rate window, small enough for promtool at 10,000 pods.
fn openmetrics(pods: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = (now - 300) / 15 * 15;
    let mut out = String::from("# TYPE container_network_receive_packets counter\n");
    for i in 0..pods {
        let rate = 1.0 + (i % 50) as f64;
        let labels = format!(
            "namespace=\"{NAMESPACE}\",pod=\"{}\",container=\"\",interface=\"eth0\"",
            pod_name(i)
        );
        for t in (start..now + 1800).step_by(15) {
            let value = (t - start) as f64 * rate;
            out.push_str(&format!(
                "container_network_receive_packets_total{{{labels}}} {value} {t}\n"
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// What one `h2load` run measured.
struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// How `h2load` drives a server.
#[derive(Clone, Copy)]
enum Drive {
    /// 4 connections with 10 streams each (HTTP/1.1: one request at a time per connection): throughput.
    Throughput,
    /// One request at a time: latency without queueing, comparable between servers.
    Sequential,
}

/// Runs `h2load` against `url` for [`RUN`] after a second of warm-up; every answer must be 2xx.
async fn h2load(url: &str, http1: bool, drive: Drive) -> Load {
    let tool = require_tool("h2load", "apt-get install -y nghttp2-client");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = tokio::process::Command::new(tool);
    let (connections, streams) = match (drive, http1) {
        (Drive::Sequential, _) => ("1", "1"),
        (Drive::Throughput, true) => ("4", "1"),
        (Drive::Throughput, false) => ("4", "10"),
    };
    command.args(["-c", connections, "-m", streams]);
    if http1 {
        command.arg("--h1");
    }
    let output = command
        .args(["-D", &RUN.as_secs().to_string(), "--warm-up-time", "1"])
        .arg("--log-file")
        .arg(log.path())
        .arg(url)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "h2load failed: {text}");
    let codes: Vec<usize> = text
        .lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .map(|l| {
            l.split(", ")
                .filter_map(|c| c.split_whitespace().next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        codes.len() == 4 && codes[0] > 0 && codes[1..].iter().all(|c| *c == 0),
        "every answer 2xx from {url}:\n{text}"
    );
    let per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok())
        .unwrap_or_else(|| panic!("no req/s in h2load's output:\n{text}"));
    // One line per request: start time, status, microseconds to the end of the response.
    let mut micros: Vec<u64> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    micros.sort_unstable();
    let at = |q: f64| Duration::from_micros(micros[((micros.len() - 1) as f64 * q) as usize]);
    Load {
        per_second,
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// Throughput and sequential latency of one URL.
struct Measured {
    throughput: Load,
    sequential: Load,
}

async fn measure(url: &str, http1: bool) -> Measured {
    Measured {
        throughput: h2load(url, http1, Drive::Throughput).await,
        sequential: h2load(url, http1, Drive::Sequential).await,
    }
}

/// A server with the adapter's TLS and HTTP stack answering `/floor` with a constant body from memory.
struct Floor {
    port: u16,
    body: Arc<RwLock<axum::body::Bytes>>,
    _dir: tempfile::TempDir,
}

impl Floor {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls::ensure_self_signed(dir.path(), &["localhost".to_owned()]).unwrap();
        let config = tls::server_config(
            tls::ServingCert::load(&cert, &key).unwrap(),
            &tls::TlsOptions::default(),
        )
        .unwrap();
        let body = Arc::new(RwLock::new(axum::body::Bytes::new()));
        let app = axum::Router::new().route(
            "/floor",
            axum::routing::get({
                let body = body.clone();
                move || {
                    let body = body.read().unwrap().clone();
                    async move { ([("content-type", "application/json")], body) }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = server::ConnectionLimits::within_file_limit(
            0,
            server::listener::raise_file_limit(),
            Duration::from_secs(90),
        );
        tokio::spawn(server::serve(
            listener,
            config,
            app,
            limits,
            std::future::pending(),
        ));
        Self {
            port,
            body,
            _dir: dir,
        }
    }

    /// The floor for answers of `bytes` bytes.
    async fn measure(&self, bytes: usize) -> Measured {
        *self.body.write().unwrap() = axum::body::Bytes::from(vec![b' '; bytes]);
        measure(&format!("https://localhost:{}/floor", self.port), false).await
    }
}

/// The backend queries the adapter has sent, from its `/metrics`.
async fn backend_queries(adapter: &ServedAdapter) -> u64 {
    let (_, text) = adapter.get("/metrics").await.unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(
                "xroad_metrics_adapter_backend_query_duration_seconds_count{backend=\"prometheus\"} ",
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Hot metrics held at once in the memory measurement.
const HOT: usize = 20;

/// Resident memory with the pods listed and no answer cached, then with [`HOT`] answers of every pod cached
/// (one metric under distinct metric selectors: distinct queries, each answering one series per pod).
async fn hot_metrics(adapter: &ServedAdapter, pods: usize) -> String {
    let (listed, _) = adapter.memory();
    let mut one = 0.0;
    for i in 0..HOT {
        let path = format!(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{METRIC}?metricLabelSelector=interface%21%3Dunused-{i}"
        );
        let (code, body) = adapter.get(&path).await.unwrap();
        assert_eq!(code, 200, "{path}: {body}");
        let items = serde_json::from_str::<Value>(&body).unwrap()["items"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(items, pods, "{path}");
        if i == 0 {
            one = adapter.memory().0;
        }
    }
    let (hot, _) = adapter.memory();
    let per_series = (hot - listed) * 1024.0 * 1024.0 / (HOT * pods) as f64;
    format!(
        "RSS with the pods listed {listed:.1} MiB, with 1 hot metric {one:.1} MiB, with {HOT} {hot:.1} MiB \
         ({per_series:.0} bytes per cached series)"
    )
}

fn encode(promql: &str) -> String {
    form_urlencoded::byte_serialize(promql.as_bytes()).collect()
}

#[tokio::main]
async fn main() {
    let floor = Floor::start().await;
    let catalog = Catalog::builtin();
    let metric = catalog.pod_metric(METRIC).unwrap();
    let window = Duration::from_secs(120);
    let per_pod =
        |matchers: &[String]| metric.per_pod_query(Scope::Namespace(NAMESPACE), matchers, window);
    println!(
        "{:<28} {:>6} {:>8} | {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} | {:>8} {:>7}",
        "request",
        "pods",
        "bytes",
        "req/s",
        "direct",
        "floor",
        "p50",
        "p99",
        "direct",
        "direct",
        "floor",
        "floor",
        "p99 ÷",
        "floor ÷"
    );
    println!(
        "{:<28} {:>6} {:>8} | {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} | {:>8} {:>7}",
        "",
        "",
        "",
        "",
        "req/s",
        "req/s",
        "ms",
        "ms",
        "p50 ms",
        "p99 ms",
        "p50 ms",
        "p99 ms",
        "direct",
        "req/s"
    );
    let only: Option<usize> = std::env::var("LOAD_PODS").ok().and_then(|v| v.parse().ok());
    for pods in SIZES
        .into_iter()
        .filter(|n| only.is_none_or(|only| only == *n))
    {
        let (kube, _) = FakeKube::start().await;
        for i in 0..pods {
            kube.apply("pods", pod(i));
        }
        let prometheus = Prometheus::start_openmetrics(&openmetrics(pods)).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kube.kubeconfig(dir.path());
        let args = [
            "--prometheus-url",
            &prometheus.url,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--watch-namespace",
            NAMESPACE,
        ];
        // Memory with glibc's defaults, for comparison; the measured adapter runs as the image runs it.
        let defaults = ServedAdapter::start(&args).await;
        defaults.wait_ready(Duration::from_secs(120)).await;
        println!(
            "  {pods} pods, glibc defaults: {}",
            hot_metrics(&defaults, pods).await
        );
        drop(defaults);
        let adapter = ServedAdapter::start_with_env(&image_env(), &args).await;
        adapter.wait_ready(Duration::from_secs(120)).await;
        println!(
            "  {pods} pods, as the image runs it ({}): {}",
            image_env()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            hot_metrics(&adapter, pods).await
        );

        let base = format!("https://localhost:{}", adapter.tls.port);
        let pods_path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods");
        let first = pod_name(0);
        let mut shapes: Vec<(String, usize, String, String)> = vec![(
            "one named pod".into(),
            1,
            format!("{pods_path}/{first}/{METRIC}"),
            per_pod(&[format!("pod=\"{first}\"")]),
        )];
        shapes.push((
            "wildcard, 100 pods".into(),
            APP.min(pods),
            format!("{pods_path}/*/{METRIC}?labelSelector=app%3Dapp-000"),
            per_pod(&[]),
        ));
        if pods > GROUP {
            shapes.push((
                "wildcard, 1,000 pods".into(),
                GROUP,
                format!("{pods_path}/*/{METRIC}?labelSelector=group%3Dg-0"),
                per_pod(&[]),
            ));
        }
        shapes.push((
            "wildcard, every pod".into(),
            pods,
            format!("{pods_path}/*/{METRIC}"),
            per_pod(&[]),
        ));
        shapes.push((
            "namespaces/<ns>/metrics/<m>".into(),
            pods,
            format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/metrics/{METRIC}"),
            per_pod(&[]),
        ));
        shapes.push((
            "external metric".into(),
            pods,
            format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{METRIC}"),
            metric.total_query(Scope::Namespace(NAMESPACE), &[], window),
        ));

        let queries_before = backend_queries(&adapter).await;
        let started = std::time::Instant::now();
        for (name, selected, path, promql) in &shapes {
            let (code, body) = adapter.get(path).await.unwrap();
            assert_eq!(code, 200, "{path}: {body}");
            let served = serde_json::from_str::<Value>(&body).unwrap()["items"]
                .as_array()
                .map_or(0, Vec::len);
            let expected = if name.starts_with("namespaces") || name.starts_with("external") {
                1
            } else {
                *selected
            };
            assert_eq!(served, expected, "{path}");
            let ours = measure(&format!("{base}{path}"), false).await;
            let direct = measure(
                &format!("{}/api/v1/query?query={}", prometheus.url, encode(promql)),
                true,
            )
            .await;
            let limit = floor.measure(body.len()).await;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{name:<28} {pods:>6} {:>8} | {:>8.0} {:>8.0} {:>8.0} | {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} | {:>8.3} {:>7.2}",
                body.len(),
                ours.throughput.per_second,
                direct.throughput.per_second,
                limit.throughput.per_second,
                ms(ours.sequential.p50),
                ms(ours.sequential.p99),
                ms(direct.sequential.p50),
                ms(direct.sequential.p99),
                ms(limit.sequential.p50),
                ms(limit.sequential.p99),
                ours.sequential.p99.as_secs_f64() / direct.sequential.p99.as_secs_f64(),
                limit.throughput.per_second / ours.throughput.per_second,
            );
        }
        let elapsed = started.elapsed();
        let queries = backend_queries(&adapter).await - queries_before;
        // The adapter asks one query per (metric, namespace) for the pods and one for the external total,
        // each refreshed at most once per 15 s refresh interval.
        let bound = 2 * (elapsed.as_secs() / 15 + 1);
        let (rss, peak) = adapter.memory();
        println!(
            "  {pods} pods: {queries} backend queries in {:.0} s (bound: {bound}); after the load RSS {rss:.1} MiB \
             (peak {peak:.1} MiB)",
            elapsed.as_secs_f64(),
        );
    }
    println!(
        "req/s: 4 connections of 10 streams (Prometheus: 4 HTTP/1.1 connections); p50, p99: one request at a \
         time. p99 ÷ direct: the adapter's sequential p99 over the direct query's (lower is better); \
         floor ÷ req/s: the floor's throughput over the adapter's (1 is the limit)"
    );
}
