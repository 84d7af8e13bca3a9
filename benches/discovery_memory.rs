//! Memory of Prometheus Adapter discovery: the adapter's resident set with the Helm chart's default rules over
//! 100,000 series in a real Prometheus, against the same adapter without rules (the baseline, same script).
//!
//! The series: 1,000 pods, each with 40 `container_*` series (rules 1-3) and 60 application series with
//! `namespace`, `pod`, `job`, `service` and `instance` labels (rules 4-6, the ones that blow up the
//! Prometheus Adapter). Each adapter runs as its own process; the figures are `VmRSS` once serving (the first
//! relist is done before the port opens) and `VmHWM`, the peak.
//!
//! Run with `cargo bench --bench discovery_memory` (needs Debian's `prometheus`; `scripts/install-deps.sh`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::served::ServedAdapter;

use support::*;

const PODS: usize = 1_000;
const CONTAINER_METRICS: usize = 40;
const APP_METRICS: usize = 60;

fn series_data() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut out = String::new();
    let mut family = |name: String, labels: &dyn Fn(usize) -> String| {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        out.push_str(&format!(
            "# TYPE {} {kind}\n",
            name.trim_end_matches("_total")
        ));
        for pod in 0..PODS {
            for (i, t) in [now - 30, now - 15].into_iter().enumerate() {
                out.push_str(&format!("{name}{{{}}} {} {t}\n", labels(pod), i + 1));
            }
        }
    };
    for m in 0..CONTAINER_METRICS {
        let name = match m % 3 {
            0 => format!("container_metric_{m}_seconds_total"),
            1 => format!("container_metric_{m}_total"),
            _ => format!("container_metric_{m}_bytes"),
        };
        family(name, &|pod| {
            format!(
                "namespace=\"ns-{}\",pod=\"pod-{pod}\",container=\"app\",id=\"/kubepods/pod-{pod}/app\",image=\"registry.example.com/app:1.{pod}\"",
                pod % 50
            )
        });
    }
    for m in 0..APP_METRICS {
        let name = if m % 2 == 0 {
            format!("app_metric_{m}_total")
        } else {
            format!("app_metric_{m}")
        };
        family(name, &|pod| {
            format!(
                "namespace=\"ns-{}\",pod=\"pod-{pod}\",job=\"app\",service=\"svc-{}\",instance=\"10.0.{}.{}:8080\"",
                pod % 50,
                pod % 50,
                pod / 250,
                pod % 250
            )
        });
    }
    out.push_str("# EOF\n");
    out
}

/// `serve` with the built-in Sidecar pods, against `prometheus`, with `extra` flags, once ready.
async fn start_adapter(prometheus: &Prometheus, extra: &[&str]) -> ServedAdapter {
    let mut args = vec![
        "--prometheus-url",
        &prometheus.url,
        "--inventory",
        INVENTORY,
    ];
    args.extend_from_slice(extra);
    let adapter = ServedAdapter::start(&args).await;
    adapter.wait_ready(Duration::from_secs(60)).await;
    adapter
}

async fn discovered(adapter: &ServedAdapter) -> usize {
    let (_, body) = adapter
        .get("/apis/custom.metrics.k8s.io/v1beta2")
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list["resources"].as_array().unwrap().len()
}

#[tokio::main]
async fn main() {
    let series = PODS * (CONTAINER_METRICS + APP_METRICS);
    let prometheus = Prometheus::start_openmetrics(&series_data()).await;
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules.path(), "rules:\n  default: true\n").unwrap();

    let baseline = start_adapter(&prometheus, &[]).await;
    let with_rules = start_adapter(
        &prometheus,
        &["--adapter-config", rules.path().to_str().unwrap()],
    )
    .await;
    let (base_entries, rule_entries) = (discovered(&baseline).await, discovered(&with_rules).await);
    let (base_rss, base_peak) = baseline.memory();
    let (rss, peak) = with_rules.memory();
    println!("{series} series in Prometheus; the Helm chart's default rules");
    println!(
        "baseline (built-in metrics only): {base_entries:>5} discovery entries, RSS {base_rss:7.1} MiB, peak {base_peak:7.1} MiB"
    );
    println!(
        "with the default rules:           {rule_entries:>5} discovery entries, RSS {rss:7.1} MiB, peak {peak:7.1} MiB"
    );
    println!(
        "ratio to baseline: RSS {:.2}, peak {:.2}; discovery costs {:.1} MiB resident ({:.0} bytes per series)",
        rss / base_rss,
        peak / base_peak,
        rss - base_rss,
        (rss - base_rss) * 1024.0 * 1024.0 / series as f64
    );
}
