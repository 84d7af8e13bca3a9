//! Records per second the collector parses and counts: a full 10,000-record page (multipart, gzipped JSON,
//! the fields the collector asks for) through `parse_response`, and through a whole `Collector::poll` against
//! the fake op-monitor (HTTP on loopback, parsing, attribution, counting into the exported series). Baseline in
//! the same run: gunzip and `serde_json` alone into untyped values, the floor any parser of this format pays.
//!
//! Run with `cargo bench --bench opmonitor_parse`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::opmonitor::{self, FakeOpMonitor, Reply};
use xroad_metrics_adapter::config::Config;
use xroad_metrics_adapter::inventory::{self, PodInventory};
use xroad_metrics_adapter::telemetry::Metrics;
use xroad_metrics_adapter::xroad::collector::Collector;
use xroad_metrics_adapter::xroad::protocol;

const RECORDS: usize = 10_000;
const ROUNDS: usize = 30;

fn page() -> (Vec<serde_json::Value>, String, Vec<u8>, Vec<u8>) {
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| {
            serde_json::json!({
                "monitoringDataTs": 1_800_000_000 + (i / 100) as i64, "securityServerInternalIp": format!("10.42.0.{}", 11 + i % 3),
                "securityServerType": if i % 2 == 0 { "Client" } else { "Producer" }, "requestInTs": 1_800_000_000_000i64 + i as i64,
                "responseOutTs": 1_800_000_000_250i64 + i as i64, "serviceXRoadInstance": "EE", "serviceMemberClass": "GOV",
                "serviceMemberCode": "70000001", "serviceSubsystemCode": "demo", "serviceCode": format!("service{}", i % 20),
                "serviceVersion": "v1", "succeeded": i % 50 != 0
            })
        })
        .collect();
    let (content_type, body) = opmonitor::multipart_page(&records, RECORDS, None, None);
    let json = serde_json::json!({ "records": records })
        .to_string()
        .into_bytes();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&json).unwrap();
    (records, content_type, body, encoder.finish().unwrap())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(mut work: impl FnMut()) -> Duration {
    work();
    median(
        (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                work();
                started.elapsed()
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() {
    let (records, content_type, body, gz) = page();
    let baseline = measure(|| {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut json)
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["records"].as_array().unwrap().len(), RECORDS);
    });
    let parse = measure(|| {
        let data = protocol::parse_response(&content_type, &body).unwrap();
        assert_eq!(data.records.len(), RECORDS);
    });

    let fake = FakeOpMonitor::start(Arc::new(|_, _| vec![])).await;
    let yaml = format!(
        "xroad:\n  opmonitor:\n    url: {}\n    client: {{xRoadInstance: EE, memberClass: GOV, memberCode: '1234567-8'}}\n    \
         securityServer: {{xRoadInstance: EE, memberClass: GOV, memberCode: '1234567-8', serverCode: sidecar}}\n    namespace: sidecar\n",
        fake.url
    );
    let config = Config::parse("bench.yaml", &yaml)
        .unwrap()
        .opmonitor
        .unwrap();
    let inventory = PodInventory::new();
    let snapshot = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inventory-sidecar.yaml"
    );
    inventory.load(inventory::load_file(std::path::Path::new(snapshot)).unwrap());
    let mut polls = Vec::new();
    for round in 0..ROUNDS as i64 {
        let collector = Collector::new(config.clone(), &Metrics::default()).unwrap();
        let now = 1_800_000_000 + round;
        fake.set_now(now + 1000);
        fake.push(Reply::Page {
            records: records.clone(),
            count: None,
            next: None,
        });
        let started = Instant::now();
        let summary = collector.poll(&inventory, now).await.unwrap();
        polls.push(started.elapsed());
        assert_eq!(summary.counted, RECORDS);
    }
    let poll = median(polls);

    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    let row = |name: &str, d: Duration| {
        println!(
            "{name:<40} {:>8.2} ms  {:>10.0} records/s  ratio to baseline {:.2}",
            d.as_secs_f64() * 1e3,
            rate(d),
            d.as_secs_f64() / baseline.as_secs_f64()
        )
    };
    println!(
        "one page of {RECORDS} records, {} KiB gzipped multipart; median of {ROUNDS} rounds",
        body.len() / 1024
    );
    row("baseline: gunzip + serde_json::Value", baseline);
    row("parse_response (multipart, gzip, typed)", parse);
    row("Collector::poll (HTTP, parse, count)", poll);
}
