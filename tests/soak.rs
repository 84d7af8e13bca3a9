//! A few minutes of steady, mixed load on the served binary (a real Prometheus behind it): HPA-shaped
//! requests, one-off selectors that churn the cache, errors, and clients that connect, ask once and leave.
//! Resident memory must stay flat once the caches have filled: a leak of even a few hundred bytes per
//! request shows up as a slope over the ~100,000 requests sent.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::served::ServedAdapter;
use support::*;

/// How long the caches take to fill (two refresh intervals past the longest-lived one-off answer).
const WARM_UP: Duration = Duration::from_secs(40);
/// How long memory is watched afterwards.
const WATCHED: Duration = Duration::from_secs(80);
/// How far resident memory may move while watched.
const MARGIN_MIB: f64 = 8.0;

fn client(ca_file: &std::path::Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_file).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn resident_memory_stays_flat_under_minutes_of_steady_mixed_load() {
    let prometheus = Prometheus::start(&sidecar_traffic()).await;
    let adapter = ServedAdapter::start(&[
        "--prometheus-url",
        &prometheus.url,
        "--inventory",
        INVENTORY,
    ])
    .await;
    adapter.wait_ready(Duration::from_secs(20)).await;
    let base = format!("https://localhost:{}", adapter.tls.port);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (stop, sent, base) = (stop.clone(), sent.clone(), base.clone());
        let ca_file = adapter.tls.ca_file.clone();
        load.push(tokio::spawn(async move {
            let mut kept = client(&ca_file);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let path = match (worker, i % 4) {
                    // The HPA's question, again and again.
                    (0 | 1, _) => secondaries_rx_packets(),
                    // A selector asked once and never again.
                    (2, _) => format!(
                        "{}&metricLabelSelector=interface%3Dx{worker}-{i}",
                        secondaries_rx_packets()
                    ),
                    // Errors: an unknown metric, a bad selector, a missing path.
                    (3, 0) => format!("{V2}/namespaces/sidecar/pods/%2A/no_such_metric"),
                    (3, 1) => format!("{}&labelSelector=a%3D%3D%3Db", secondaries_rx_packets()),
                    (3, _) => "/apis/nowhere".to_owned(),
                    // Probes and discovery.
                    (4, _) => {
                        ["/readyz?verbose", "/livez", V2, "/metrics"][(i % 4) as usize].to_owned()
                    }
                    // A new connection for every request.
                    _ => {
                        kept = client(&ca_file);
                        secondaries_rx_packets()
                    }
                };
                if let Ok(response) = kept.get(format!("{base}{path}")).send().await {
                    let _ = response.bytes().await;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    let mut samples = Vec::new();
    let watched_from = std::time::Instant::now();
    while watched_from.elapsed() < WATCHED {
        samples.push(adapter.memory().0);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (low, high) = samples
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    let requests = sent.load(Ordering::Relaxed);
    println!(
        "{requests} requests in {:?}; resident memory while watched: {low:.1}–{high:.1} MiB ({samples:?})",
        WARM_UP + WATCHED
    );
    assert!(requests > 10_000, "only {requests} requests were sent");
    assert!(
        high - low <= MARGIN_MIB,
        "resident memory moved {:.1} MiB (> {MARGIN_MIB} MiB) over {WATCHED:?}: {samples:?}",
        high - low
    );
}
