//! X-Road message throughput end to end. The op-monitor side is a faithful fake of the Security Server client
//! proxy (`tests/support/opmonitor.rs`, built from X-Road's PR-OPMON, UG-SS and the Sidecar user guide, since no X-Road
//! can run here); everything after it is real: the collector, its `/metrics` exposition, Prometheus, the
//! adapter's API and `kubectl`.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::opmonitor::{
    FakeOpMonitor, IP_A, IP_B, Reply, ServerVersion, config, record, steady_traffic,
};
use support::*;
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::inventory::{self, PodInventory};
use xroad_metrics_adapter::telemetry::Metrics;
use xroad_metrics_adapter::xroad::collector::{CollectError, Collector};

const NOW: i64 = 1_800_000_000;

fn sidecar_inventory() -> Arc<PodInventory> {
    let inventory = Arc::new(PodInventory::new());
    inventory.load(inventory::load_file(std::path::Path::new(INVENTORY)).unwrap());
    inventory
}

/// Sums `xroad_opmon_requests_total` lines of the exposition that contain every filter.
fn requests(exposition: &str, filters: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.starts_with("xroad_opmon_requests_total{") && filters.iter().all(|f| l.contains(f))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn every_kind_of_record_is_counted_exactly_once_under_its_pod() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    fake.set_now(NOW);
    let mut no_version = record(NOW - 70, IP_B, "Producer", true, "cats");
    no_version.as_object_mut().unwrap().remove("serviceVersion");
    no_version
        .as_object_mut()
        .unwrap()
        .remove("serviceSubsystemCode");
    let mut rest = record(NOW - 70, IP_B, "Producer", true, "cats");
    rest["restMethod"] = json!("GET");
    rest["restPath"] = json!("/cat/*");
    let mut rest_client = record(NOW - 70, IP_A, "Client", true, "cats");
    rest_client["serviceType"] = json!("REST");
    rest_client["restMethod"] = json!("GET");
    rest["serviceType"] = json!("REST");
    let mut failed = record(NOW - 70, IP_B, "Producer", false, "getRandom");
    failed["faultCode"] = json!("Server.ServiceFailed.InternalError");
    // OPM-01: SOAP and REST, each as Client and Producer, a failure, a self-record, missing optional fields,
    // an unknown IP and 0.0.0.0.
    fake.push(Reply::Page {
        records: vec![
            record(NOW - 70, IP_A, "Client", true, "getRandom"),
            rest_client,
            record(NOW - 70, IP_B, "Producer", true, "getRandom"),
            rest,
            failed,
            record(
                NOW - 70,
                IP_A,
                "Client",
                true,
                "getSecurityServerOperationalData",
            ),
            no_version,
            record(NOW - 70, "10.0.9.9", "Producer", true, "getRandom"),
            record(NOW - 70, "0.0.0.0", "Producer", true, "getRandom"),
        ],
        count: None,
        next: None,
    });
    let metrics = Metrics::default();
    let collector = Collector::new(config(&fake.url), &metrics).unwrap();
    let summary = collector.poll(&sidecar_inventory(), NOW).await.unwrap();
    assert_eq!((summary.pages, summary.counted), (1, 8));

    let exposition = metrics.encode();
    assert_eq!(
        requests(
            &exposition,
            &["pod=\"security-server-sidecar-secondary-7d9f8-abcde\""]
        ),
        2.0
    );
    assert_eq!(
        requests(
            &exposition,
            &["pod=\"security-server-sidecar-secondary-7d9f8-fghij\""]
        ),
        4.0
    );
    assert_eq!(
        requests(&exposition, &["security_server_type=\"producer\"", "fghij"]),
        4.0,
        "SOAP and REST producers of B"
    );
    assert_eq!(
        requests(&exposition, &["pod=\"\""]),
        2.0,
        "unattributed records are counted, not dropped"
    );
    assert_eq!(requests(&exposition, &["succeeded=\"false\""]), 1.0);
    assert_eq!(
        requests(
            &exposition,
            &["service_code=\"getSecurityServerOperationalData\""]
        ),
        0.0
    );
    assert_eq!(
        requests(&exposition, &["security_server_type=\"client\""]),
        2.0
    );
    assert_eq!(
        requests(
            &exposition,
            &[
                "service_code=\"cats\"",
                "service_version=\"\"",
                "service_subsystem_code=\"\""
            ]
        ),
        1.0
    );
    assert_eq!(value(&exposition, "xroad_opmon_records_total"), 9.0);
    assert_eq!(
        value(
            &exposition,
            "xroad_opmon_unattributed_records_total{reason=\"unknown_ip\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &exposition,
            "xroad_opmon_unattributed_records_total{reason=\"zero_ip\"}"
        ),
        1.0
    );
    assert!(
        exposition.contains("xroad_opmon_request_duration_seconds_bucket"),
        "{exposition}"
    );
    assert_eq!(
        fake.requests(),
        [(NOW - 65, NOW - 65)],
        "the first poll starts at the present: a restart never recounts"
    );
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn a_full_page_is_followed_at_once_and_no_record_is_counted_twice() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    fake.set_now(NOW + 30);
    let metrics = Metrics::default();
    let collector = Collector::new(config(&fake.url), &metrics).unwrap();
    let inventory = sidecar_inventory();
    fake.push(Reply::Page {
        records: vec![],
        count: None,
        next: None,
    });
    collector.poll(&inventory, NOW).await.unwrap();
    // OPM-03: 10,000 records plus 3 sharing the last second L, nextRecordsFrom = L + 1; then the rest.
    let last = NOW - 50;
    let page_one: Vec<Value> = (0..10_003)
        .map(|i| record(NOW - 64 + (i % 15), IP_A, "Producer", true, "getRandom"))
        .collect();
    fake.push(Reply::Page {
        records: page_one,
        count: Some(10_003),
        next: Some(last + 1),
    });
    fake.push(Reply::Page {
        records: (0..5)
            .map(|_| record(last + 1, IP_B, "Producer", true, "getRandom"))
            .collect(),
        count: None,
        next: None,
    });
    let summary = collector.poll(&inventory, NOW + 30).await.unwrap();
    assert_eq!((summary.pages, summary.counted), (2, 10_008));
    assert_eq!(
        fake.requests(),
        [
            (NOW - 65, NOW - 65),
            (NOW - 64, NOW - 35),
            (last + 1, NOW - 35)
        ]
    );
    let exposition = metrics.encode();
    assert_eq!(requests(&exposition, &["abcde"]), 10_003.0);
    assert_eq!(requests(&exposition, &["fghij"]), 5.0);
}

#[tokio::test]
async fn sizes_are_collected_from_every_security_server_version_by_the_names_it_knows() {
    // OPM-06 and OPM-14: a 6.x server faults on `requestSize`; the collector asks again with the 6.x names,
    // within the same poll, and the sizes still arrive.
    for (version, fields_of) in [
        (ServerVersion::V7_5, "6.24 and later"),
        (ServerVersion::V6_23, "6.21 to 6.23"),
        (ServerVersion::V6_21, "6.21 to 6.23"),
    ] {
        let fake = FakeOpMonitor::start(steady_traffic()).await;
        fake.set_version(version);
        fake.set_now(NOW + 30);
        let metrics = Metrics::default();
        let collector = Collector::new(config(&fake.url), &metrics).unwrap();
        let inventory = sidecar_inventory();
        collector.poll(&inventory, NOW).await.unwrap();
        let summary = collector.poll(&inventory, NOW + 30).await.unwrap();
        assert!(summary.counted > 0, "{version:?}");
        let exposition = metrics.encode();
        let sizes = |name: &str| {
            exposition
                .lines()
                .filter(|l| {
                    l.starts_with(name)
                        && l.contains("pod=\"security-server-sidecar-secondary-7d9f8-abcde\"")
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum::<f64>()
        };
        // Pod A handles 2 getRandom per second, over the first poll's second and the next 30: 62 requests
        // of 1,200 bytes and responses of 800.
        assert_eq!(
            sizes("xroad_opmon_request_size_bytes_sum"),
            62.0 * 1200.0,
            "{version:?}"
        );
        assert_eq!(
            sizes("xroad_opmon_response_size_bytes_sum"),
            62.0 * 800.0,
            "{version:?}"
        );
        assert_eq!(
            value(
                &exposition,
                &format!("xroad_opmon_output_fields{{servers=\"{fields_of}\"}}")
            ),
            1.0,
            "{version:?}: {exposition}"
        );
        assert!(
            !exposition.contains("xroad_opmon_collect_errors_total"),
            "{version:?}: a fallback is no error"
        );
        assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    }
}

#[tokio::test]
async fn records_from_ipv6_and_dual_stack_pods_are_counted_under_their_pods() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("pods.yaml");
    std::fs::write(
        &snapshot,
        "kind: List\nitems:\n\
         - kind: Pod\n  metadata: {name: dual-stack, namespace: sidecar, creationTimestamp: '2020-01-01T00:00:00Z'}\n  \
           status: {phase: Running, podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: 'fd00:10:244:1::5'}]}\n\
         - kind: Pod\n  metadata: {name: ipv6-only, namespace: sidecar, creationTimestamp: '2020-01-01T00:00:00Z'}\n  \
           status: {phase: Running, podIP: 'fd00:10:244:1::6', podIPs: [{ip: 'fd00:10:244:1::6'}]}\n",
    )
    .unwrap();
    let inventory = Arc::new(PodInventory::new());
    inventory.load(inventory::load_file(&snapshot).unwrap());
    // Addresses as a Security Server writes them: Java's full IPv6 form, with and without a zone.
    let fake = FakeOpMonitor::start(Arc::new(|from, to| {
        (from..=to)
            .flat_map(|s| {
                [
                    record(s, "10.244.1.5", "Producer", true, "getRandom"),
                    record(
                        s,
                        "fd00:10:244:1:0:0:0:5%eth0",
                        "Producer",
                        true,
                        "getRandom",
                    ),
                    record(s, "fd00:10:244:1:0:0:0:6", "Producer", true, "getRandom"),
                ]
            })
            .collect()
    }))
    .await;
    fake.set_now(NOW + 30);
    let metrics = Metrics::default();
    let collector = Collector::new(config(&fake.url), &metrics).unwrap();
    collector.poll(&inventory, NOW).await.unwrap();
    collector.poll(&inventory, NOW + 30).await.unwrap();
    let exposition = metrics.encode();
    assert_eq!(requests(&exposition, &["pod=\"dual-stack\""]), 2.0 * 31.0);
    assert_eq!(requests(&exposition, &["pod=\"ipv6-only\""]), 31.0);
    assert_eq!(requests(&exposition, &["pod=\"\""]), 0.0, "{exposition}");
    assert!(!exposition.contains("xroad_opmon_unattributed_records_total{"));
}

/// A snapshot of pods in `sidecar`, each `(name, ip, created)`.
fn pods_snapshot(dir: &std::path::Path, pods: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let items: String = pods
        .iter()
        .map(|(name, ip, created)| {
            format!(
                "- kind: Pod\n  metadata: {{name: {name}, namespace: sidecar, creationTimestamp: '{created}'}}\n  \
                 status: {{phase: Running, podIP: '{ip}', podIPs: [{{ip: '{ip}'}}]}}\n"
            )
        })
        .collect();
    let path = dir.join(format!("pods-{}.yaml", pods.len()));
    std::fs::write(&path, format!("kind: List\nitems:\n{items}")).unwrap();
    path
}

#[tokio::test]
async fn an_ip_reused_by_a_new_pod_splits_records_by_time_even_within_one_page_run() {
    // 1,800,000,000 is 2027-01-15T08:00:00Z. pod-old holds fd00::11 and is replaced; pod-new gets the same
    // address at NOW - 50, while the old pod's records for NOW - 64 … NOW - 51 are still to be collected.
    let dir = tempfile::tempdir().unwrap();
    let inventory = Arc::new(PodInventory::new());
    inventory.load(
        inventory::load_file(&pods_snapshot(
            dir.path(),
            &[("pod-old", "fd00::11", "2027-01-15T07:00:00Z")],
        ))
        .unwrap(),
    );
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    fake.set_now(NOW + 30);
    let metrics = Metrics::default();
    let collector = Collector::new(config(&fake.url), &metrics).unwrap();
    fake.push(Reply::Page {
        records: vec![],
        count: None,
        next: None,
    });
    collector.poll(&inventory, NOW).await.unwrap();
    inventory.load(
        inventory::load_file(&pods_snapshot(
            dir.path(),
            &[
                ("pod-b", "10.0.0.2", "2027-01-15T07:00:00Z"),
                ("pod-new", "fd00::11", "2027-01-15T07:59:10Z"),
            ],
        ))
        .unwrap(),
    );
    // Two pages, the first full, split at NOW - 55: the reuse happens inside the second.
    let at = |second: i64| record(second, "fd00:0:0:0:0:0:0:11", "Producer", true, "getRandom");
    fake.push(Reply::Page {
        records: (NOW - 64..=NOW - 55).map(at).collect(),
        count: Some(10_000),
        next: Some(NOW - 54),
    });
    fake.push(Reply::Page {
        records: (NOW - 54..=NOW - 35).map(at).collect(),
        count: None,
        next: None,
    });
    let summary = collector.poll(&inventory, NOW + 30).await.unwrap();
    assert_eq!(summary.pages, 2);
    let exposition = metrics.encode();
    assert_eq!(
        requests(&exposition, &["pod=\"pod-old\""]),
        14.0,
        "NOW-64 … NOW-51"
    );
    assert_eq!(
        requests(&exposition, &["pod=\"pod-new\""]),
        16.0,
        "NOW-50 … NOW-35"
    );
    assert_eq!(requests(&exposition, &["pod=\"\""]), 0.0);
}

#[tokio::test]
async fn a_security_server_clock_10_s_behind_loses_and_repeats_nothing_and_is_no_error() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    let metrics = Metrics::default();
    let collector = Collector::new(config(&fake.url), &metrics).unwrap();
    let inventory = sidecar_inventory();
    let mut not_yet = 0;
    for poll in 0..8 {
        // Polls every 20 s, a little faster than the 30 s default, so the window often reaches the daemon's
        // "now − 60" on its slower clock.
        let now = NOW + 20 * poll;
        fake.set_now(now - 10);
        let summary = collector.poll(&inventory, now).await.unwrap();
        not_yet += usize::from(summary.not_yet_available);
    }
    let exposition = metrics.encode();
    let cursor = collector.cursor().unwrap();
    // Every second from the first poll's up to the cursor counted exactly once.
    let expected: f64 = (NOW - 65..cursor)
        .map(|s| 2.0 + f64::from(s % 3 == 0) + f64::from(s % 5 == 0))
        .sum();
    assert_eq!(requests(&exposition, &[]), expected);
    assert!(not_yet > 0, "the clock skew was never met");
    assert_eq!(
        value(
            &exposition,
            "xroad_opmon_polls_total{outcome=\"not_yet_available\"}"
        ),
        not_yet as f64
    );
    assert!(
        !exposition.contains("xroad_opmon_collect_errors_total{"),
        "{exposition}"
    );
    assert_eq!(
        value(&exposition, "xroad_opmon_clock_offset_seconds"),
        -10.0,
        "the Security Server's clock, read from the Date of its answers"
    );
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn failures_leave_the_cursor_so_every_window_is_counted_once() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    let metrics = Metrics::default();
    let collector = Collector::new(config(&fake.url), &metrics).unwrap();
    let inventory = sidecar_inventory();
    fake.set_now(NOW);
    collector.poll(&inventory, NOW).await.unwrap();
    let first = requests(&metrics.encode(), &[]);

    // OPM-10, OPM-13: broken gzip, an HTML 502 from an ingress, a hung proxy. None moves the cursor.
    fake.set_now(NOW + 30);
    fake.push(Reply::BrokenGzip);
    assert!(matches!(
        collector.poll(&inventory, NOW + 30).await,
        Err(CollectError::Response(_))
    ));
    fake.push(Reply::BadGateway);
    assert_eq!(
        collector.poll(&inventory, NOW + 30).await,
        Err(CollectError::Http(502))
    );
    fake.push(Reply::Hang);
    assert_eq!(
        collector.poll(&inventory, NOW + 30).await,
        Err(CollectError::Transport("timed out".into()))
    );
    // OPM-05: the daemon's clock is behind ours: "not available yet" is no data, not an error.
    fake.set_now(NOW - 40);
    let summary = collector.poll(&inventory, NOW + 30).await.unwrap();
    assert!(summary.not_yet_available);
    assert_eq!(
        requests(&metrics.encode(), &[]),
        first,
        "nothing counted by any failure"
    );

    fake.set_now(NOW + 30);
    collector.poll(&inventory, NOW + 30).await.unwrap();
    let windows: Vec<_> = fake.requests().into_iter().collect();
    assert!(
        windows[1..].iter().all(|w| *w == (NOW - 64, NOW - 35)),
        "the same window is asked again: {windows:?}"
    );
    // Seconds NOW-65 … NOW-35 counted exactly once: 2 per second for A, every 3rd second for B, every 5th unknown.
    let expected: f64 = (NOW - 65..=NOW - 35)
        .map(|s| 2.0 + f64::from(s % 3 == 0) + f64::from(s % 5 == 0))
        .sum();
    assert_eq!(requests(&metrics.encode(), &[]), expected);
    let exposition = metrics.encode();
    assert_eq!(
        value(
            &exposition,
            "xroad_opmon_collect_errors_total{reason=\"gzip\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &exposition,
            "xroad_opmon_collect_errors_total{reason=\"transport\"}"
        ),
        2.0
    );
    assert!(
        !exposition.contains("xroad_opmon_collect_errors_total{reason=\"not_yet_available\"}"),
        "a clock behind ours is no error"
    );
    assert_eq!(
        value(
            &exposition,
            "xroad_opmon_polls_total{outcome=\"not_yet_available\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&exposition, "xroad_opmon_polls_total{outcome=\"error\"}"),
        3.0
    );
    assert_eq!(value(&exposition, "xroad_opmon_collect_lag_seconds"), 64.0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test]
async fn the_service_label_cap_folds_the_excess_into_other() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    fake.set_now(NOW);
    let records = (0..5)
        .map(|i| record(NOW - 70, IP_A, "Producer", true, &format!("service{i}")))
        .collect();
    fake.push(Reply::Page {
        records,
        count: None,
        next: None,
    });
    let metrics = Metrics::default();
    let mut capped = config(&fake.url);
    capped.max_services = 3;
    Collector::new(capped, &metrics)
        .unwrap()
        .poll(&sidecar_inventory(), NOW)
        .await
        .unwrap();
    let exposition = metrics.encode();
    assert_eq!(requests(&exposition, &["service_code=\"other\""]), 2.0);
    assert_eq!(value(&exposition, "xroad_opmon_services_folded_total"), 2.0);
}

/// Polls the collector at simulated 15-second steps around now, and records each `/metrics` exposition of
/// `xroad_opmon_requests_total` with that step's timestamp: what a Prometheus scraping every 15 s would
/// store, but with exact timestamps (a live scrape would make every rate approximate).
async fn scraped_history(
    collector: &Collector,
    fake: &FakeOpMonitor,
    metrics: &Metrics,
    inventory: &PodInventory,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut samples = String::from("# TYPE xroad_opmon_requests counter\n");
    let start = (now - 1800) / 15 * 15;
    for t in (start..now + 600).step_by(15) {
        fake.set_now(t);
        collector.poll(inventory, t).await.unwrap();
        for line in metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("xroad_opmon_requests_total{"))
        {
            samples.push_str(&format!("{line} {t}\n"));
        }
    }
    // OpenMetrics wants each series' samples together.
    let mut lines: Vec<&str> = samples.lines().skip(1).collect();
    lines.sort_by_key(|l| {
        (
            l.rsplit_once(' ')
                .unwrap()
                .0
                .rsplit_once(' ')
                .unwrap()
                .0
                .to_owned(),
            l.rsplit(' ').next().unwrap().parse::<i64>().unwrap(),
        )
    });
    format!(
        "# TYPE xroad_opmon_requests counter\n{}\n# EOF\n",
        lines.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_reads_exact_per_pod_message_rates_from_the_collected_records() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    let state = adapter(
        "http://127.0.0.1:9",
        Config::default(),
        std::path::Path::new(INVENTORY),
    )
    .await;
    let collector = Collector::new(config(&fake.url), &state.metrics).unwrap();
    let history = scraped_history(&collector, &fake, &state.metrics, &state.inventory).await;
    let prometheus = Prometheus::start_openmetrics(&history).await;
    let state = adapter(
        &prometheus.url,
        Config::default(),
        std::path::Path::new(INVENTORY),
    )
    .await;

    let pods = |metric: &str, extra: &str| {
        format!(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/{metric}?labelSelector=run%3Dsecurity-server-sidecar-secondary{extra}"
        )
    };
    let (code, list) = get(&state, &pods("xroad_messages_per_second", "")).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        values(&list),
        pairs(&[(SECONDARY_A, "2"), (SECONDARY_B, "334m")]),
        "2/s and 1/3 s⁻¹, rounded up"
    );
    let (_, failed) = get(&state, &pods("xroad_failed_messages_per_second", "")).await;
    assert_eq!(
        values(&failed),
        pairs(&[(SECONDARY_B, "67m")]),
        "one in 15 s"
    );
    let (_, producers) = get(
        &state,
        &pods(
            "xroad_messages_per_second",
            "&metricLabelSelector=security_server_type%3Dproducer,succeeded%3Dtrue",
        ),
    )
    .await;
    assert_eq!(
        values(&producers),
        pairs(&[(SECONDARY_A, "2"), (SECONDARY_B, "267m")])
    );
    let (_, total) = get(
        &state,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/sidecar/xroad_messages_per_second",
    )
    .await;
    assert_eq!(
        total["items"][0]["value"], "2534m",
        "2 + 1/3 + 0.2 unattributed: the namespace total"
    );

    let adapter = TlsAdapter::start(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let list = adapter
        .kubectl_json(dir.path(), &pods("xroad_messages_per_second", ""))
        .await;
    assert_eq!(
        values(&list),
        pairs(&[(SECONDARY_A, "2"), (SECONDARY_B, "334m")])
    );
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

/// Window gauges as a JMX exporter on the op-monitor daemon publishes them (X-Road's PR-OPMON, UG-SS and the Sidecar user guide),
/// constant for the last hour: A 120 successful and 6 unsuccessful, B 30 successful, in 60-second windows.
fn jmx_gauges() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let times: Vec<i64> = ((now - 3600) / 15 * 15..now + 600).step_by(15).collect();
    let mut text = String::from("# TYPE xroad_opmon_requests_in_window gauge\n");
    for (pod, result, count) in [
        (SECONDARY_A, "successful", 120),
        (SECONDARY_A, "unsuccessful", 6),
        (SECONDARY_B, "successful", 30),
    ] {
        for t in &times {
            text.push_str(&format!(
                "xroad_opmon_requests_in_window{{namespace=\"sidecar\",pod=\"{pod}\",service=\"EE/GOV/70000001/demo/getRandom/v1\",result=\"{result}\"}} {count} {t}\n"
            ));
        }
    }
    text.push_str("# TYPE xroad_opmon_statistics_period_seconds gauge\n");
    for pod in [SECONDARY_A, SECONDARY_B] {
        for t in &times {
            text.push_str(&format!("xroad_opmon_statistics_period_seconds{{namespace=\"sidecar\",pod=\"{pod}\"}} 60 {t}\n"));
        }
    }
    text + "# EOF\n"
}

#[tokio::test]
async fn the_jmx_preset_serves_window_counts_per_second() {
    let prometheus = Prometheus::start_openmetrics(&jmx_gauges()).await;
    let config = Config::parse("c.yaml", "xroad: {throughput: jmx}\n").unwrap();
    let state = adapter(&prometheus.url, config, std::path::Path::new(INVENTORY)).await;
    let path = |metric: &str| {
        format!(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/sidecar/pods/%2A/{metric}?labelSelector=run%3Dsecurity-server-sidecar-secondary"
        )
    };
    let (code, all) = get(&state, &path("xroad_messages_per_second")).await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(
        values(&all),
        pairs(&[(SECONDARY_A, "2100m"), (SECONDARY_B, "500m")]),
        "126/60 and 30/60"
    );
    let (_, failed) = get(&state, &path("xroad_failed_messages_per_second")).await;
    assert_eq!(values(&failed), pairs(&[(SECONDARY_A, "100m")]));
}

// ---------------------------------------------------------------------------------------------------------
// One collector among replicas: a Lease on a fake of the kube API (no kube-apiserver can run here), which
// implements GET/POST/PUT of `coordination.k8s.io/v1` Leases with resourceVersion conflicts as the real one.
// ---------------------------------------------------------------------------------------------------------

use xroad_metrics_adapter::xroad::election::{LeaderElection, Leadership};

#[derive(Clone, Default)]
struct FakeKube {
    lease: Arc<std::sync::Mutex<Option<Value>>>,
}

fn kube_status(code: u16, reason: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (
        axum::http::StatusCode::from_u16(code).unwrap(),
        axum::Json(body),
    )
        .into_response()
}

impl FakeKube {
    async fn start() -> (Self, kube::Client) {
        use axum::extract::State;
        use axum::response::IntoResponse;
        use axum::routing::{get, post};
        let fake = FakeKube::default();
        let base = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases";
        let app = axum::Router::new()
            .route(
                &format!("{base}/{{name}}"),
                get(|State(f): State<FakeKube>| async move {
                    match f.lease.lock().unwrap().clone() {
                        Some(lease) => axum::Json(lease).into_response(),
                        None => kube_status(404, "NotFound", "leases.coordination.k8s.io \"opmon\" not found"),
                    }
                })
                .put(|State(f): State<FakeKube>, axum::Json(mut lease): axum::Json<Value>| async move {
                    let mut stored = f.lease.lock().unwrap();
                    let current = stored.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                    if current != Some(lease["metadata"]["resourceVersion"].clone()) {
                        return kube_status(409, "Conflict", "the object has been modified; please apply your changes to the latest version");
                    }
                    let next: u64 = lease["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() + 1;
                    lease["metadata"]["resourceVersion"] = json!(next.to_string());
                    *stored = Some(lease.clone());
                    axum::Json(lease).into_response()
                }),
            )
            .route(
                base,
                post(|State(f): State<FakeKube>, axum::Json(mut lease): axum::Json<Value>| async move {
                    let mut stored = f.lease.lock().unwrap();
                    if stored.is_some() {
                        return kube_status(409, "AlreadyExists", "leases.coordination.k8s.io \"opmon\" already exists");
                    }
                    lease["metadata"]["resourceVersion"] = json!("1");
                    *stored = Some(lease.clone());
                    (axum::http::StatusCode::CREATED, axum::Json(lease)).into_response()
                }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        (fake, client)
    }
}

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test]
async fn a_new_leader_resumes_at_the_recorded_cursor_so_no_record_is_lost_or_repeated() {
    let (_kube, client) = FakeKube::start().await;
    let a = LeaderElection::new(client.clone(), "xroad-metrics", "opmon", "adapter-a", LEASE);
    let b = LeaderElection::new(client, "xroad-metrics", "opmon", "adapter-b", LEASE);
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    let inventory = sidecar_inventory();
    let (metrics_a, metrics_b) = (Metrics::default(), Metrics::default());
    let collector_a = Collector::new(config(&fake.url), &metrics_a).unwrap();
    let collector_b = Collector::new(config(&fake.url), &metrics_b).unwrap();

    // A leads and collects at T, T+30, T+60, recording its cursor at each renewal, the last at T+70.
    for t in [NOW, NOW + 30, NOW + 60] {
        assert!(matches!(
            a.lead(t, collector_a.cursor()).await.unwrap(),
            Leadership::Leader { .. }
        ));
        assert_eq!(
            b.lead(t + 1, None).await.unwrap(),
            Leadership::Follower {
                holder: "adapter-a".into()
            }
        );
        fake.set_now(t);
        collector_a.poll(&inventory, t).await.unwrap();
    }
    a.lead(NOW + 70, collector_a.cursor()).await.unwrap();
    // A dies. Until its lease expires, B waits; then B takes over with A's cursor.
    assert!(matches!(
        b.lead(NOW + 99, None).await.unwrap(),
        Leadership::Follower { .. }
    ));
    let Leadership::Leader { cursor } = b.lead(NOW + 101, None).await.unwrap() else {
        panic!("B should lead")
    };
    assert_eq!(cursor, collector_a.cursor());
    collector_b.resume_at(cursor, NOW + 101, LEASE * 3);
    for t in [NOW + 101, NOW + 131] {
        fake.set_now(t);
        collector_b.poll(&inventory, t).await.unwrap();
    }
    let counted = requests(&metrics_a.encode(), &[]) + requests(&metrics_b.encode(), &[]);
    let expected: f64 = (NOW - 65..=NOW + 131 - 65)
        .map(|s| 2.0 + f64::from(s % 3 == 0) + f64::from(s % 5 == 0))
        .sum();
    assert_eq!(
        counted, expected,
        "every second from A's start to B's last poll, once"
    );
    let windows = fake.requests();
    assert_eq!(
        windows[3].0,
        windows[2].1 + 1,
        "B's first window starts right after A's last: {windows:?}"
    );
}

#[tokio::test]
async fn replicas_racing_for_an_expired_lease_elect_exactly_one() {
    let (_kube, client) = FakeKube::start().await;
    let a = LeaderElection::new(client.clone(), "ns", "opmon", "adapter-a", LEASE);
    assert!(matches!(
        a.lead(NOW, Some(NOW - 65)).await.unwrap(),
        Leadership::Leader { cursor: None }
    ));
    let b = LeaderElection::new(client.clone(), "ns", "opmon", "adapter-b", LEASE);
    let c = LeaderElection::new(client, "ns", "opmon", "adapter-c", LEASE);
    let (rb, rc) = tokio::join!(b.lead(NOW + 100, None), c.lead(NOW + 100, None));
    let leaders = [rb.unwrap(), rc.unwrap()]
        .into_iter()
        .filter(|l| matches!(l, Leadership::Leader { .. }))
        .count();
    assert_eq!(leaders, 1);
}

#[tokio::test]
async fn a_cursor_left_by_a_long_outage_restarts_at_the_present() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    let collector = Collector::new(config(&fake.url), &Metrics::default()).unwrap();
    collector.resume_at(Some(NOW - 65 - 3600), NOW, LEASE * 3);
    assert_eq!(
        collector.cursor(),
        None,
        "an hour of records in one scrape would read as a burst"
    );
    collector.resume_at(Some(NOW - 65 - 60), NOW, LEASE * 3);
    assert_eq!(collector.cursor(), Some(NOW - 125));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_collector_series_over_tls_with_their_labels() {
    let fake = FakeOpMonitor::start(steady_traffic()).await;
    fake.set_now(NOW);
    let state = adapter(
        "http://127.0.0.1:9",
        Config::default(),
        std::path::Path::new(INVENTORY),
    )
    .await;
    let collector = Collector::new(config(&fake.url), &state.metrics).unwrap();
    collector.poll(&state.inventory, NOW).await.unwrap();
    let adapter = TlsAdapter::start(state.clone()).await;
    // honor_labels keeps the records' namespace and pod: a kubernetes_sd scrape would overwrite them with the
    // adapter's own (the ServiceMonitor needs honorLabels: true).
    let prometheus = Prometheus::start_with_config(&format!(
        "scrape_configs:\n- job_name: xroad-metrics-adapter\n  scrape_interval: 1s\n  scheme: https\n  honor_labels: true\n  \
         tls_config: {{ca_file: {}}}\n  static_configs: [{{targets: ['localhost:{}']}}]\n",
        adapter.ca_file.display(),
        adapter.port
    ))
    .await;
    let query = format!("xroad_opmon_requests_total{{pod=\"{SECONDARY_A}\"}}");
    let result = wait_for(
        "Prometheus has scraped the collector",
        std::time::Duration::from_secs(20),
        || async {
            let result = prometheus.query(&query).await;
            let found = result["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            found.then_some(result)
        },
    )
    .await;
    let series = &result["data"]["result"][0];
    assert_eq!(series["value"][1], "2", "{result}");
    let labels = &series["metric"];
    assert_eq!(labels["namespace"], "sidecar");
    assert_eq!(labels["service_code"], "getRandom");
    assert_eq!(labels["security_server_type"], "producer");
    assert_eq!(labels["succeeded"], "true");
    assert_eq!(labels["job"], "xroad-metrics-adapter");
}

/// A client-proxy PKI: a CA, the proxy's certificate for `localhost`, and the adapter's client certificate
/// (what the Security Server's consumer port demands over HTTPS). Files in `dir`.
fn client_proxy_pki(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        (params.signed_by(&key, &issuer).unwrap(), key)
    };
    let (server, server_key) = leaf(
        vec!["localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(
        vec!["xroad-metrics-adapter".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), client.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), client_key.serialize_pem()).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.der().clone(), ca_cert.der().clone()], key)
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn over_https_the_collector_presents_its_client_certificate_and_trusts_only_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpMonitor::start_tls(steady_traffic(), client_proxy_pki(dir.path())).await;
    fake.set_now(NOW);
    let mut with_certificate = config(&fake.url);
    with_certificate.tls.ca_file = Some(dir.path().join("ca.crt"));
    with_certificate.tls.cert_file = Some(dir.path().join("tls.crt"));
    with_certificate.tls.key_file = Some(dir.path().join("tls.key"));
    let metrics = Metrics::default();
    let summary = Collector::new(with_certificate.clone(), &metrics)
        .unwrap()
        .poll(&sidecar_inventory(), NOW)
        .await
        .unwrap();
    let second = NOW - 65;
    let expected = 2 + usize::from(second % 3 == 0) + usize::from(second % 5 == 0);
    assert_eq!(summary.counted, expected, "the records of second NOW-65");

    let mut without_certificate = with_certificate.clone();
    without_certificate.tls.cert_file = None;
    without_certificate.tls.key_file = None;
    let refused = Collector::new(without_certificate, &Metrics::default())
        .unwrap()
        .poll(&sidecar_inventory(), NOW)
        .await;
    assert!(
        matches!(refused, Err(CollectError::Transport(_))),
        "{refused:?}"
    );

    let mut system_roots = with_certificate;
    system_roots.tls.ca_file = None;
    let untrusted = Collector::new(system_roots, &Metrics::default())
        .unwrap()
        .poll(&sidecar_inventory(), NOW)
        .await;
    assert!(
        matches!(untrusted, Err(CollectError::Transport(_))),
        "the proxy's private CA is not trusted by default"
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "only the authenticated poll reached the proxy"
    );
}
